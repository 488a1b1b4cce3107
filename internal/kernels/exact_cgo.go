//go:build cgo

package kernels

/*
// The kernels here give the pure-Go loops' results bit for bit (exact_go.go), 16 lanes at a time: each lane
// does the Go code's float32 operations in its order, so the compiler must neither fuse a multiply and an
// add (fp-contract) nor reassociate (which would also fold Exp's rounding trick).
#cgo LDFLAGS: -lm
#pragma GCC optimize("O3", "fp-contract=off", "no-math-errno", "no-trapping-math")
#include <stdint.h>

typedef float g16 __attribute__((vector_size(64)));
typedef int g16i __attribute__((vector_size(64)));
typedef float g16u __attribute__((vector_size(64), aligned(4)));

static inline __attribute__((always_inline)) g16 g16_select(g16i m, g16 a, g16 b) { return (g16)((m & (g16i)a) | (~m & (g16i)b)); }

// sf_goexp16 is Exp of exp.go on 16 lanes. It and g16_select are always inlined: called out of line from a
// target_clones version, their vector arguments would pass by another ABI than they were compiled for.
static inline __attribute__((always_inline)) g16 sf_goexp16(g16 x) {
	const float log2e = 1.44269504088896341f, ln2hi = 0.693145751953125f, ln2lo = 1.428606765330187045e-06f;
	g16 zero = {0};
	g16 n = (x * log2e + 12582912.0f) - 12582912.0f;
	g16 r = x - n * ln2hi - n * ln2lo;
	g16 p = zero + 1.0f / 5040;
	p = p * r + 1.0f / 720;
	p = p * r + 1.0f / 120;
	p = p * r + 1.0f / 24;
	p = p * r + 1.0f / 6;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	// n is an integer; clamped, it converts without overflow also where x is NaN or out of range (those
	// lanes are selected below, or are NaN through p).
	g16 nc = g16_select(n < -150.0f, zero - 150.0f, n);
	nc = g16_select(nc > 128.0f, zero + 128.0f, nc);
	g16i ni = __builtin_convertvector(nc, g16i);
	g16 normal = p * (g16)((ni + 127) << 23);
	g16 sub = p * (g16)((ni + 126 + 127) << 23) * (g16)((g16i){0} + (1 << 23));
	g16 big = p * 2 * (g16)((ni - 1 + 127) << 23);
	g16 y = g16_select(ni < -126, sub, g16_select(ni > 127, big, normal));
	y = g16_select(x < -103.97208f, zero, y);
	return g16_select(x > 88.72283f, zero + __builtin_inff(), y);
}

// sf_go_exp_shift replaces x[0..n) by Exp(x[i] - m).
__attribute__((target_clones("avx512f", "avx2", "default")))
void sf_go_exp_shift(float *x, long n, float m) {
	long i = 0;
	for (; i + 16 <= n; i += 16) *(g16u *)(x + i) = sf_goexp16(*(g16u *)(x + i) - m);
	if (i < n) {
		g16 v = {0};
		for (long j = 0; i + j < n; j++) v[j] = x[i + j];
		v = sf_goexp16(v - m);
		for (long j = 0; i + j < n; j++) x[i + j] = v[j];
	}
}

// sf_go_swiglu_backward is SwiGLUBackward over [0, n).
__attribute__((target_clones("avx512f", "avx2", "default")))
void sf_go_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, long n) {
	long i = 0;
	for (; i + 16 <= n; i += 16) {
		g16 g = *(const g16u *)(gate + i), d = *(const g16u *)(dout + i);
		g16 sg = 1.0f / (1.0f + sf_goexp16(-g));
		*(g16u *)(dup + i) += d * (g * sg);
		*(g16u *)(dgate + i) += d * *(const g16u *)(up + i) * sg * (1.0f + g * (1.0f - sg));
	}
	for (; i < n; i++) {
		g16 g = {gate[i]};
		g16 sg = 1.0f / (1.0f + sf_goexp16(-g));
		dup[i] += dout[i] * (gate[i] * sg[0]);
		dgate[i] += dout[i] * up[i] * sg[0] * (1.0f + gate[i] * (1.0f - sg[0]));
	}
}

// sf_go_argmax is Argmax: the first index of the largest value, 0 when x[0] is NaN (nothing exceeds it).
__attribute__((target_clones("avx512f", "avx2", "default")))
long sf_go_argmax(const float *x, long n) {
	float best = x[0];
	if (best != best) return 0;
	long i = 0;
	if (n >= 16) {
		g16 m = {0};
		m += best;
		for (; i + 16 <= n; i += 16) {
			g16 v = *(const g16u *)(x + i);
			m = g16_select(v > m, v, m);
		}
		for (int j = 0; j < 16; j++) best = m[j] > best ? m[j] : best;
	}
	for (; i < n; i++) best = x[i] > best ? x[i] : best;
	for (i = 0; x[i] != best; i++) {}
	return i;
}

// sf_go_max is maxFold: m = max(m, x[i]) in Go's semantics (a NaN anywhere gives NaN, max(-0, +0) = +0).
__attribute__((target_clones("avx512f", "avx2", "default")))
float sf_go_max(float m, const float *x, long n) {
	long i = 0;
	int nan = m != m;
	if (n >= 16) {
		g16 acc = {0}, seen = {0};
		acc += m;
		for (; i + 16 <= n; i += 16) {
			g16 v = *(const g16u *)(x + i);
			g16i eq = v == acc;
			seen = (g16)((g16i)seen | (v != v)); // NaN lanes
			acc = g16_select(v > acc, v, g16_select(eq, (g16)((g16i)v & (g16i)acc), acc));
		}
		for (int j = 0; j < 16; j++) {
			nan |= ((g16i)seen)[j] != 0;
			float a = acc[j];
			if (a > m) m = a;
			else if (a == m) { uint32_t ab, mb; __builtin_memcpy(&ab, &a, 4); __builtin_memcpy(&mb, &m, 4); mb &= ab; __builtin_memcpy(&m, &mb, 4); }
		}
	}
	for (; i < n; i++) {
		float v = x[i];
		nan |= v != v;
		if (v > m) m = v;
		else if (v == m) { uint32_t vb, mb; __builtin_memcpy(&vb, &v, 4); __builtin_memcpy(&mb, &m, 4); mb &= vb; __builtin_memcpy(&m, &mb, 4); }
	}
	return nan ? __builtin_nanf("") : m;
}

// sf_go_adamw is AdamW's update over [0, n).
__attribute__((target_clones("avx512f", "avx2", "default")))
void sf_go_adamw(float *p, const float *g, float *m, float *v, long n, float decay, float beta1, float beta2, float sqrtbc2, float eps, float step) {
	long i = 0;
	for (; i + 16 <= n; i += 16) {
		g16 pi = *(g16u *)(p + i), gi = *(const g16u *)(g + i);
		if (decay != 1) pi *= decay;
		g16 mi = beta1 * *(g16u *)(m + i) + (1 - beta1) * gi;
		g16 vi = beta2 * *(g16u *)(v + i) + (1 - beta2) * gi * gi;
		g16 s;
		for (int j = 0; j < 16; j++) s[j] = __builtin_sqrtf(vi[j]);
		*(g16u *)(m + i) = mi;
		*(g16u *)(v + i) = vi;
		*(g16u *)(p + i) = pi - step * mi / (s / sqrtbc2 + eps);
	}
	for (; i < n; i++) {
		if (decay != 1) p[i] *= decay;
		m[i] = beta1 * m[i] + (1 - beta1) * g[i];
		v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
		p[i] -= step * m[i] / (__builtin_sqrtf(v[i]) / sqrtbc2 + eps);
	}
}
// The loss's row loops (exact_go.go). The float64 sums stay scalar and in order; acceptance's branches
// become selects (adding 0.0 leaves a sum that starts at +0 unchanged).
double sf_go_dot64(const float *p, const float *z, long n) {
	double d = 0;
	for (long j = 0; j < n; j++) d += (double)p[j] * (double)z[j];
	return d;
}

double sf_go_sum64(const float *z, long n) {
	double s = 0;
	for (long j = 0; j < n; j++) s += (double)z[j];
	return s;
}

void sf_go_accept_row(float *z, const float *p, long n, float inv, double *out) {
	double a = 0, gq = 0;
	for (long j = 0; j < n; j++) {
		float q = z[j] * inv, pj = p[j];
		z[j] = q;
		int lt = q < pj, eq = q == pj;
		a += lt | eq ? (double)q : (double)pj;
		gq += lt ? (double)q : (eq ? (double)q / 2 : 0.0);
	}
	out[0] = a, out[1] = gq;
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void sf_go_accept_grad(float *z, const float *p, long n, float c, float w, float s) {
	long i = 0;
	g16 zero = {0};
	for (; i + 16 <= n; i += 16) {
		g16 q = *(g16u *)(z + i), pv = *(const g16u *)(p + i);
		g16 g = g16_select(q < pv, zero + 1.0f, g16_select(q == pv, zero + 0.5f, zero));
		*(g16u *)(z + i) = c * (q - pv) + w * q * (g - s);
	}
	for (; i < n; i++) {
		float q = z[i], g = q < p[i] ? 1.0f : (q == p[i] ? 0.5f : 0.0f);
		z[i] = c * (q - p[i]) + w * q * (g - s);
	}
}
*/
import "C"

import (
	"unsafe"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/parallel"
)

// expShift replaces x[i] by Exp(x[i] - m) (vectorised C, bit for bit expShiftGo).
func expShift(x []float32, m float32) {
	if len(x) > 0 {
		C.sf_go_exp_shift((*C.float)(unsafe.Pointer(&x[0])), C.long(len(x)), C.float(m))
	}
}

// maxFold returns m folded with Go's max over x (vectorised C; maxFoldGo's value, NaN when it is NaN).
func maxFold(m float32, x []float32) float32 {
	if len(x) == 0 {
		return m
	}
	return float32(C.sf_go_max(C.float(m), (*C.float)(unsafe.Pointer(&x[0])), C.long(len(x))))
}

// Argmax returns the index of x's largest value (the first on ties; vectorised C, bit for bit ArgmaxGo).
func Argmax(x []float32) int {
	if len(x) == 0 {
		return 0
	}
	return int(C.sf_go_argmax((*C.float)(unsafe.Pointer(&x[0])), C.long(len(x))))
}

// SwiGLUBackward adds to dgate and dup the gradients of out = silu(gate)*up given dout (vectorised C, bit
// for bit SwiGLUBackwardGo).
func SwiGLUBackward(dgate, dup, dout, gate, up []float32) {
	parallel.For(len(dout), 1<<14, func(lo, hi int) {
		C.sf_go_swiglu_backward((*C.float)(unsafe.Pointer(&dgate[lo])), (*C.float)(unsafe.Pointer(&dup[lo])), (*C.float)(unsafe.Pointer(&dout[lo])),
			(*C.float)(unsafe.Pointer(&gate[lo])), (*C.float)(unsafe.Pointer(&up[lo])), C.long(hi-lo))
	})
}

// AdamW applies one AdamW step to p given its gradient g and moments m, v (vectorised C, bit for bit
// AdamWGo).
func AdamW(p, g, m, v []float32, s backend.AdamWStep) {
	parallel.For(len(p), 1<<14, func(lo, hi int) {
		C.sf_go_adamw((*C.float)(unsafe.Pointer(&p[lo])), (*C.float)(unsafe.Pointer(&g[lo])), (*C.float)(unsafe.Pointer(&m[lo])), (*C.float)(unsafe.Pointer(&v[lo])),
			C.long(hi-lo), C.float(s.Decay), C.float(s.Beta1), C.float(s.Beta2), C.float(s.SqrtBC2), C.float(s.Eps), C.float(s.StepSize))
	})
}

// dot64 is sum_j p[j]*z[j] in float64, in order (C, bit for bit dot64Go).
func dot64(p, z []float32) float64 {
	if len(z) == 0 {
		return 0
	}
	return float64(C.sf_go_dot64((*C.float)(unsafe.Pointer(&p[0])), (*C.float)(unsafe.Pointer(&z[0])), C.long(len(z))))
}

// sum64 is the float64 sum of z in order (C, bit for bit sum64Go).
func sum64(z []float32) float64 {
	if len(z) == 0 {
		return 0
	}
	return float64(C.sf_go_sum64((*C.float)(unsafe.Pointer(&z[0])), C.long(len(z))))
}

// acceptRow is acceptRowGo in C, bit for bit.
func acceptRow(z, p []float32, inv float32) (a, gq float64) {
	if len(z) == 0 {
		return 0, 0
	}
	var out [2]C.double
	C.sf_go_accept_row((*C.float)(unsafe.Pointer(&z[0])), (*C.float)(unsafe.Pointer(&p[0])), C.long(len(z)), C.float(inv), &out[0])
	return float64(out[0]), float64(out[1])
}

// acceptGrad is acceptGradGo in vectorised C, bit for bit.
func acceptGrad(z, p []float32, c, w, s float32) {
	if len(z) > 0 {
		C.sf_go_accept_grad((*C.float)(unsafe.Pointer(&z[0])), (*C.float)(unsafe.Pointer(&p[0])), C.long(len(z)), C.float(c), C.float(w), C.float(s))
	}
}
