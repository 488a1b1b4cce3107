//go:build cgo

package kernels

/*
// No associative-math here: it would fold sf_exp16's rounding trick, (x + 1.5*2^23) - 1.5*2^23, into x.
#pragma GCC optimize("O3", "no-math-errno", "no-trapping-math")
#include "fastexp.h"

typedef float v16u __attribute__((vector_size(64), aligned(4)));

static inline v16 sf_swiglu16(v16 g, v16 u) { return g / (1.0f + sf_exp16(-g)) * u; }

// sf_swiglu computes out = silu(gate) * up, 16 elements at a time; the last few go through the same vector
// code in a padded block, so an element's result does not depend on where the buffer ends (one row alone
// and the same row among others agree bit for bit).
__attribute__((target_clones("avx512f", "avx2", "default")))
void sf_swiglu(float *out, const float *gate, const float *up, int n) {
	int i = 0;
	for (; i + 16 <= n; i += 16) *(v16u *)(out + i) = sf_swiglu16(*(const v16u *)(gate + i), *(const v16u *)(up + i));
	if (i < n) {
		v16 g = {0}, u = {0};
		for (int j = 0; i + j < n; j++) g[j] = gate[i + j], u[j] = up[i + j];
		v16 y = sf_swiglu16(g, u);
		for (int j = 0; i + j < n; j++) out[i + j] = y[j];
	}
}
*/
import "C"

import (
	"unsafe"

	"github.com/specforge/specforge/internal/parallel"
)

// SwiGLU computes out = silu(gate) * up elementwise (vectorised C). out may alias gate or up.
func SwiGLU(out, gate, up []float32) {
	if len(out) == 0 {
		return
	}
	const block = 1 << 14
	if len(out) <= block {
		C.sf_swiglu((*C.float)(unsafe.Pointer(&out[0])), (*C.float)(unsafe.Pointer(&gate[0])), (*C.float)(unsafe.Pointer(&up[0])), C.int(len(out)))
		return
	}
	parallel.For(len(out), block, func(lo, hi int) {
		C.sf_swiglu((*C.float)(unsafe.Pointer(&out[lo])), (*C.float)(unsafe.Pointer(&gate[lo])), (*C.float)(unsafe.Pointer(&up[lo])), C.int(hi-lo))
	})
}
