#include <stdint.h>

int sf_bf16_available(void);
void sf_bf16_gemm(int m, int n0, int n1, int k, float alpha, const void *a, int a_bf16, long rsa, long csa,
                  const void *b, int b_bf16, long rsb, long csb, float beta, float *c, long ldc, int few);
void sf_bf16_round(uint16_t *dst, const float *src, long n);
float sf_bf16_peak(long iters);
