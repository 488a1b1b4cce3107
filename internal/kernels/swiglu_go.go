//go:build !cgo

package kernels

import "github.com/specforge/specforge/internal/parallel"

// SwiGLU computes out = silu(gate) * up elementwise, silu(g) = g * sigmoid(g). out may alias gate or up.
func SwiGLU(out, gate, up []float32) {
	parallel.For(len(out), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g := gate[i]
			out[i] = g * Sigmoid(g) * up[i]
		}
	})
}
