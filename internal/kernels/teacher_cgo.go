//go:build cgo

package kernels

/*
// sf_go_gather_softmax is GatherSoftmaxGo bit for bit, its exponentials 8 at a time: math.Exp on amd64 is
// Go's assembly (math/exp_amd64.s), whose FMA path (taken on every CPU with AVX and FMA, so on every one
// with AVX512F) is repeated here lane by lane, operation by operation.
#pragma GCC optimize("O3", "fp-contract=off", "no-math-errno", "no-trapping-math")
#include <immintrin.h>
#include <stdint.h>

int sf_go_gather_avx512(void) { return __builtin_cpu_supports("avx512f"); }

__attribute__((target("avx512f,fma"), always_inline))
static inline __m512d sf_go_exp8(__m512d x) {
	const __m512d ln2u = _mm512_set1_pd(0.69314718055966295651160180568695068359375);
	const __m512d ln2l = _mm512_set1_pd(0.28235290563031577122588448175013436025525412068e-12);
	const __m512d two = _mm512_set1_pd(2.0), one = _mm512_set1_pd(1.0);
	__m512d ax = _mm512_abs_pd(x);
	__mmask8 finite = _mm512_cmp_pd_mask(ax, _mm512_set1_pd(__builtin_inf()), _CMP_LT_OQ);
	__mmask8 over = _mm512_cmp_pd_mask(x, _mm512_set1_pd(7.09782712893384e+02), _CMP_GT_OQ);
	__m256i e = _mm512_cvtpd_epi32(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634073599246810018920)));
	__m512d fe = _mm512_cvtepi32_pd(e);
	__m512d r = _mm512_fnmadd_pd(ln2u, fe, x);
	r = _mm512_fnmadd_pd(ln2l, fe, r);
	r = _mm512_mul_pd(r, _mm512_set1_pd(0.0625));
	__m512d p = _mm512_set1_pd(2.4801587301587301587e-5);
	p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.9841269841269841270e-4));
	p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.3888888888888888889e-3));
	p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(8.3333333333333333333e-3));
	p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(4.1666666666666666667e-2));
	p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.6666666666666666667e-1));
	p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0.5));
	p = _mm512_fmadd_pd(p, r, one);
	r = _mm512_mul_pd(r, p);
	for (int i = 0; i < 3; i++) r = _mm512_mul_pd(r, _mm512_add_pd(r, two));
	r = _mm512_fmadd_pd(r, _mm512_add_pd(r, two), one);
	// ldexp: r * 2^e, through the subnormal range in two steps, 0 below it and +Inf above.
	__m512i bx = _mm512_add_epi64(_mm512_cvtepi32_epi64(e), _mm512_set1_epi64(0x3FF));
	__mmask8 sub = _mm512_cmp_epi64_mask(bx, _mm512_setzero_si512(), _MM_CMPINT_LE);
	__mmask8 under = _mm512_cmp_epi64_mask(bx, _mm512_set1_epi64(-52), _MM_CMPINT_LT);
	__mmask8 big = _mm512_cmp_epi64_mask(bx, _mm512_set1_epi64(0x7FF), _MM_CMPINT_GE);
	__m512i bs = _mm512_mask_add_epi64(bx, sub, bx, _mm512_set1_epi64(0x3FE));
	__m512d y = _mm512_mask_mul_pd(r, sub & ~under, r, _mm512_castsi512_pd(_mm512_slli_epi64(bs, 52)));
	bs = _mm512_mask_mov_epi64(bs, sub, _mm512_set1_epi64(1));
	y = _mm512_mul_pd(y, _mm512_castsi512_pd(_mm512_slli_epi64(bs, 52)));
	y = _mm512_mask_mov_pd(y, big, _mm512_set1_pd(__builtin_inf()));
	y = _mm512_mask_mov_pd(y, under, _mm512_setzero_pd());
	y = _mm512_mask_mov_pd(y, over, _mm512_set1_pd(__builtin_inf()));
	// Not finite: -Inf gives 0, NaN and +Inf themselves.
	__mmask8 neginf = _mm512_cmp_pd_mask(x, _mm512_set1_pd(-__builtin_inf()), _CMP_EQ_OQ);
	y = _mm512_mask_mov_pd(y, ~finite, x);
	return _mm512_mask_mov_pd(y, neginf, _mm512_setzero_pd());
}

// sf_go_gather_exp writes p[j] = z[ids[j]], replaces them by exp(p[j] - max) (float64 exponentials rounded
// to float32) and returns their float64 sum in order; the caller normalises. The max
// follows Go's max: NaN when any value is NaN (the sign of a zero maximum changes no difference p[j] - m).
__attribute__((target("avx512f,fma")))
double sf_go_gather_exp(float *p, const float *z, const int64_t *ids, long n) {
	float m = -__builtin_inff();
	int nan = 0;
	for (long j = 0; j < n; j++) {
		float v = z[ids[j]];
		p[j] = v;
		nan |= v != v;
		m = v > m ? v : m;
	}
	if (nan) m = __builtin_nanf("");
	long j = 0;
	for (; j + 8 <= n; j += 8) {
		__m256 d = _mm256_sub_ps(_mm256_loadu_ps(p + j), _mm256_set1_ps(m));
		_mm256_storeu_ps(p + j, _mm512_cvtpd_ps(sf_go_exp8(_mm512_cvtps_pd(d))));
	}
	if (j < n) {
		float buf[8] = {0};
		for (long i = 0; j + i < n; i++) buf[i] = p[j + i] - m;
		_mm256_storeu_ps(buf, _mm512_cvtpd_ps(sf_go_exp8(_mm512_cvtps_pd(_mm256_loadu_ps(buf)))));
		for (long i = 0; j + i < n; i++) p[j + i] = buf[i];
	}
	double sum = 0;
	for (long i = 0; i < n; i++) sum += (double)p[i];
	return sum;
}
*/
import "C"

import "unsafe"

// gatherAVX512 says whether GatherSoftmax's exponentials run in C: on AVX512F, where math.Exp takes the
// FMA path that the C code repeats.
var gatherAVX512 = C.sf_go_gather_avx512() != 0

// GatherSoftmax writes into p [len(ids)] the softmax of the logits z at ids (exponentials and their sum in
// float64, as the EAGLE-3 teacher's probabilities need them exact to the last bit of float32) and returns
// the index of p's largest value (the first on ties): GatherSoftmaxGo bit for bit, its exponentials
// vectorised on AVX512F.
func GatherSoftmax(p, z []float32, ids []int64) int {
	if !gatherAVX512 || len(ids) == 0 {
		return GatherSoftmaxGo(p, z, ids)
	}
	p = p[:len(ids)]
	for _, id := range ids {
		_ = z[id] // Go's bounds check, which the C gather does not make
	}
	sum := float64(C.sf_go_gather_exp((*C.float)(unsafe.Pointer(&p[0])), (*C.float)(unsafe.Pointer(&z[0])), (*C.int64_t)(unsafe.Pointer(&ids[0])), C.long(len(ids))))
	inv := float32(1 / sum)
	for j := range p {
		p[j] *= inv
	}
	return Argmax(p)
}
