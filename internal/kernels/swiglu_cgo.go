//go:build cgo

package kernels

/*
#pragma GCC optimize("O3", "no-math-errno", "no-trapping-math", "no-signed-zeros", "associative-math", "reciprocal-math")
#include "fastexp.h"

// sf_swiglu computes out = silu(gate) * up.
__attribute__((target_clones("avx512f", "avx2", "default")))
void sf_swiglu(float *out, const float *gate, const float *up, int n) {
	for (int i = 0; i < n; i++) {
		float g = gate[i];
		out[i] = g / (1.0f + sf_exp(-g)) * up[i];
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
