//go:build cgo

package blas

/*
#pragma GCC optimize("O3")
#include <immintrin.h>
#include <stddef.h>

// Products with a handful of rows (decoding, draft verification, attention of a few queries) are too
// small for OpenBLAS's sgemm, which packs its operands on every call, and run one matrix-vector product
// per row through sgemv, which reads the matrix once per row. These kernels keep a block of rows in
// registers so the matrix is read once per block, and have no per-call set-up.

static int sf_small_avx512 = -1; // -1: not yet probed; set to 0 by tests to exercise the generic path

static void sf_small_probe(void) {
	if (sf_small_avx512 < 0) {
		__builtin_cpu_init();
		sf_small_avx512 = __builtin_cpu_supports("avx512f") ? 1 : 0;
	}
}

static inline void sf_store(float *dst, float v, float alpha, float beta) {
	*dst = beta == 0 ? alpha * v : alpha * v + beta * *dst;
}

// sf_hsum16 returns the vector whose lane i is the sum of the lanes of v[i].
__attribute__((target("avx512f"), always_inline)) static inline __m512 sf_hsum16(const __m512 *v) {
	__m512 t[8], u[4];
	for (int i = 0; i < 8; i++)
		t[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
	for (int i = 0; i < 4; i++) {
		__m512d a = _mm512_castps_pd(t[2 * i]), b = _mm512_castps_pd(t[2 * i + 1]);
		u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
	}
	__m512 s01 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88), _mm512_shuffle_f32x4(u[0], u[1], 0xDD));
	__m512 s23 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88), _mm512_shuffle_f32x4(u[2], u[3], 0xDD));
	return _mm512_add_ps(_mm512_shuffle_f32x4(s01, s23, 0x88), _mm512_shuffle_f32x4(s01, s23, 0xDD));
}

// sf_nt_block returns the RM x RN dot products of rows ar[r] and br[c] (k long) in lane r*RN+c;
// RM*RN == 16.
__attribute__((target("avx512f"), always_inline)) static inline __m512
sf_nt_block(const int RM, const int RN, int k, const float *const *ar, const float *const *br) {
	__m512 acc[16], av[4], bv[16];
	for (int x = 0; x < 16; x++) acc[x] = _mm512_setzero_ps();
	for (int p = 0; p < k; p += 16) {
		__mmask16 mk = k - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - p)) - 1);
		for (int r = 0; r < RM; r++) av[r] = _mm512_maskz_loadu_ps(mk, ar[r] + p);
		for (int c = 0; c < RN; c++) bv[c] = _mm512_maskz_loadu_ps(mk, br[c] + p);
		for (int r = 0; r < RM; r++)
			for (int c = 0; c < RN; c++) acc[r * RN + c] = _mm512_fmadd_ps(av[r], bv[c], acc[r * RN + c]);
	}
	return sf_hsum16(acc);
}

// C = alpha A B^T + beta C for A [m, k], B [n, k].
__attribute__((target("avx512f"))) static void
sf_nt_avx512(int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
	const float *ar[4], *br[16];
	__m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
	for (int i = 0; i < m;) {
		int RM = m - i >= 4 ? 4 : m - i >= 2 ? 2 : 1, RN = 16 / RM;
		for (int r = 0; r < RM; r++) ar[r] = a + (size_t)(i + r) * lda;
		for (int j = 0; j < n; j += RN) {
			for (int q = 0; q < RN; q++) br[q] = b + (size_t)(j + q < n ? j + q : n - 1) * ldb;
			__m512 y;
			if (RM == 4) y = sf_nt_block(4, 4, k, ar, br);
			else if (RM == 2) y = sf_nt_block(2, 8, k, ar, br);
			else y = sf_nt_block(1, 16, k, ar, br);
			y = _mm512_mul_ps(va, y);
			// Row r's results are lanes r*RN.. of y: a masked store from RN*r floats before the row's
			// first column puts them in place (masked lanes are neither read nor written).
			unsigned cols = (1u << (n - j < RN ? n - j : RN)) - 1;
			for (int r = 0; r < RM; r++) {
				float *dst = c + (size_t)(i + r) * ldc + j - r * RN;
				__mmask16 mk = (__mmask16)(cols << (r * RN));
				__m512 z = beta == 0 ? y : _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mk, dst), y);
				_mm512_mask_storeu_ps(dst, mk, z);
			}
		}
		i += RM;
	}
}

// SF_NN_ROWS(RM, NV) defines sf_nn_RMxNV: C = alpha A B + beta C for RM rows of A [RM, k] and all n columns
// of B [k, n], 16*NV columns at a time in RM*NV accumulators. Each is its own function with literal sizes:
// so GCC keeps the accumulators in registers (inlined into one dispatcher, they spill on every step).
#define SF_NN_ROWS(RM, NV)                                                                                        \
	__attribute__((target("avx512f"), noinline)) static void sf_nn_##RM##x##NV(                                 \
		int n, int k, float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) { \
		__m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);                                      \
		for (int j = 0; j < n; j += 16 * NV) {                                                              \
			__mmask16 cm[NV];                                                                           \
			for (int v = 0; v < NV; v++) {                                                              \
				int left = n - j - 16 * v;                                                          \
				cm[v] = left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1); \
			}                                                                                           \
			__m512 acc[RM][NV];                                                                         \
			for (int r = 0; r < RM; r++)                                                                \
				for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();                        \
			for (int p = 0; p < k; p++) {                                                               \
				const float *bp = b + (size_t)p * ldb + j;                                          \
				__m512 bv[NV];                                                                      \
				for (int v = 0; v < NV; v++) bv[v] = _mm512_maskz_loadu_ps(cm[v], bp + 16 * v);      \
				for (int r = 0; r < RM; r++) {                                                      \
					__m512 x = _mm512_set1_ps(a[(size_t)r * lda + p]);                          \
					for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(x, bv[v], acc[r][v]); \
				}                                                                                   \
			}                                                                                           \
			for (int r = 0; r < RM; r++)                                                                \
				for (int v = 0; v < NV; v++) {                                                      \
					float *dst = c + (size_t)r * ldc + j + 16 * v;                              \
					__m512 y = _mm512_mul_ps(va, acc[r][v]);                                    \
					if (beta != 0) y = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(cm[v], dst), y); \
					_mm512_mask_storeu_ps(dst, cm[v], y);                                       \
				}                                                                                   \
		}                                                                                                   \
	}
SF_NN_ROWS(6, 4)
SF_NN_ROWS(5, 4)
SF_NN_ROWS(4, 4)
SF_NN_ROWS(3, 4)
SF_NN_ROWS(2, 8)
SF_NN_ROWS(2, 4)
SF_NN_ROWS(1, 8)
SF_NN_ROWS(1, 4)

// C = alpha A B + beta C for A [m, k], B [k, n]: six rows at a time, then the rest together. One or two
// rows take 128 columns at a time, and the last fewer than 128 columns 64 at a time.
__attribute__((target("avx512f"))) static void
sf_nn_avx512(int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
	int wide = n / 128 * 128;
	for (int i = 0; i < m;) {
		int RM = m - i >= 6 ? 6 : m - i;
		const float *ai = a + (size_t)i * lda;
		float *ci = c + (size_t)i * ldc;
		switch (RM) {
		case 6: sf_nn_6x4(n, k, alpha, ai, lda, b, ldb, beta, ci, ldc); break;
		case 5: sf_nn_5x4(n, k, alpha, ai, lda, b, ldb, beta, ci, ldc); break;
		case 4: sf_nn_4x4(n, k, alpha, ai, lda, b, ldb, beta, ci, ldc); break;
		case 3: sf_nn_3x4(n, k, alpha, ai, lda, b, ldb, beta, ci, ldc); break;
		case 2:
			if (wide > 0) sf_nn_2x8(wide, k, alpha, ai, lda, b, ldb, beta, ci, ldc);
			if (n > wide) sf_nn_2x4(n - wide, k, alpha, ai, lda, b + wide, ldb, beta, ci + wide, ldc);
			break;
		default:
			if (wide > 0) sf_nn_1x8(wide, k, alpha, ai, lda, b, ldb, beta, ci, ldc);
			if (n > wide) sf_nn_1x4(n - wide, k, alpha, ai, lda, b + wide, ldb, beta, ci + wide, ldc);
		}
		i += RM;
	}
}

__attribute__((target_clones("avx2", "default"))) static void
sf_nt_generic(int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			const float *x = a + (size_t)i * lda, *y = b + (size_t)j * ldb;
			float s = 0;
			for (int p = 0; p < k; p++) s += x[p] * y[p];
			sf_store(c + (size_t)i * ldc + j, s, alpha, beta);
		}
}

__attribute__((target_clones("avx2", "default"))) static void
sf_nn_generic(int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
	for (int i = 0; i < m; i++) {
		float *y = c + (size_t)i * ldc;
		for (int j = 0; j < n; j++) y[j] = beta == 0 ? 0 : beta * y[j];
		for (int p = 0; p < k; p++) {
			float x = alpha * a[(size_t)i * lda + p];
			const float *row = b + (size_t)p * ldb;
			for (int j = 0; j < n; j++) y[j] += x * row[j];
		}
	}
}

static void sf_small_gemm(int transB, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
			  float beta, float *c, int ldc) {
	sf_small_probe();
	if (transB) {
		if (sf_small_avx512) sf_nt_avx512(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
		else sf_nt_generic(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	} else {
		if (sf_small_avx512) sf_nn_avx512(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
		else sf_nn_generic(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	}
}

static void sf_small_set_avx512(int on) { sf_small_probe(); if (!on) sf_small_avx512 = 0; else sf_small_avx512 = __builtin_cpu_supports("avx512f") ? 1 : 0; }
*/
import "C"

import (
	"unsafe"

	"github.com/specforge/specforge/internal/parallel"
)

// smallKernels says that this build has the small kernels (Weight keeps transposes for them).
const smallKernels = true

// smallRows is the row count up to which products run on the register-blocked kernels; up to
// smallShared rows, products whose matrix is small (attention of a few queries) do too.
const (
	smallRows   = 8
	smallShared = 32
)

// useSmall says whether op(A) [m, k] times op(B) [k, n] runs on the small kernels.
func useSmall(transA bool, m, n, k int) bool {
	return !transA && (m <= smallRows || m <= smallShared && n*k <= 1<<16)
}

// smallGemm computes C = alpha A op(B) + beta C with the small kernels, splitting the columns across
// goroutines when the product is large (a decoding step through a large lm_head).
func smallGemm(transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if 2*m*n*k < minParallelFlops {
		callSmall(transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	parallel.For(n, 16, func(lo, hi int) {
		callSmall(transB, m, hi-lo, k, alpha, a, lda, b[columnOffset(lo, transB, ldb):], ldb, beta, c[lo:], ldc)
	})
}

func callSmall(transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	tb := C.int(0)
	if transB {
		tb = 1
	}
	C.sf_small_gemm(tb, C.int(m), C.int(n), C.int(k), C.float(alpha), (*C.float)(unsafe.Pointer(&a[0])), C.int(lda),
		(*C.float)(unsafe.Pointer(&b[0])), C.int(ldb), C.float(beta), (*C.float)(unsafe.Pointer(&c[0])), C.int(ldc))
}

// setSmallAVX512 switches the AVX-512 kernels off (tests of the portable ones) or back on where the CPU
// has them.
func setSmallAVX512(on bool) {
	v := C.int(0)
	if on {
		v = 1
	}
	C.sf_small_set_avx512(v)
}
