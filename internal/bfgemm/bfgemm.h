#include <stddef.h>
#include <stdint.h>

int sf_bf16_available(void);
void sf_bf16_gemm(int m, int n0, int n1, int k, float alpha, const void *a, int a_bf16, long rsa, long csa,
                  const void *b, int b_bf16, long rsb, long csb, float beta, float *c, long ldc, int few,
                  const uint32_t *apacked);
size_t sf_bf16_packed_a_dwords(int m, int k);
void sf_bf16_pack_a(uint32_t *dst, int m, int k, int ib0, int ib1, const void *a, int a_bf16, long rsa, long csa);
void sf_bf16_round(uint16_t *dst, const float *src, long n);
float sf_bf16_peak(long iters);
int sf_bf16_block_rows(void);

// Internal to the package's C files.
void sf_bf16_pack(uint32_t *dst, int L, int nl, int p0, int kc, int kend, const void *x, int bf, long rs, long cs);
extern int sf_amx_on;
int sf_amx_available(void);
void sf_amx_stream(long iters, const char *a, long areg, const char *b, long breg);
void sf_amx_gemm(int m, int n0, int n1, int k, float alpha, const void *a, int a_bf16, long rsa, long csa, const void *b,
                 int b_bf16, long rsb, long csb, float beta, float *c, long ldc);
