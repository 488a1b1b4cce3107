package kernels

import "github.com/specforge/specforge/internal/parallel"

// SwiGLUGo is SwiGLU in pure Go, compiled in every build: out = silu(gate) * up elementwise, silu(g) = g * sigmoid(g). out may alias gate or up.
func SwiGLUGo(out, gate, up []float32) {
	parallel.For(len(out), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g := gate[i]
			out[i] = g * Sigmoid(g) * up[i]
		}
	})
}
