//go:build !cgo

package kernels

// SwiGLU computes out = silu(gate) * up elementwise, silu(g) = g * sigmoid(g). out may alias gate or up.
// Without cgo it is SwiGLUGo.
func SwiGLU(out, gate, up []float32) { SwiGLUGo(out, gate, up) }
