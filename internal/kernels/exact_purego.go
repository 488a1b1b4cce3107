//go:build !cgo

package kernels

import "github.com/specforge/specforge/internal/backend"

// expShift replaces x[i] by Exp(x[i] - m). Without cgo it is expShiftGo.
func expShift(x []float32, m float32) { expShiftGo(x, m) }

// maxFold returns m folded with Go's max over x. Without cgo it is maxFoldGo.
func maxFold(m float32, x []float32) float32 { return maxFoldGo(m, x) }

// Argmax returns the index of x's largest value (the first on ties). Without cgo it is ArgmaxGo.
func Argmax(x []float32) int { return ArgmaxGo(x) }

// SwiGLUBackward adds to dgate and dup the gradients of out = silu(gate)*up given dout. Without cgo it is
// SwiGLUBackwardGo.
func SwiGLUBackward(dgate, dup, dout, gate, up []float32) {
	SwiGLUBackwardGo(dgate, dup, dout, gate, up)
}

// AdamW applies one AdamW step to p given its gradient g and moments m, v. Without cgo it is AdamWGo.
func AdamW(p, g, m, v []float32, s backend.AdamWStep) { AdamWGo(p, g, m, v, s) }

// The loss's row loops, without cgo their pure-Go versions (exact_go.go).
func dot64(p, z []float32) float64                          { return dot64Go(p, z) }
func sum64(z []float32) float64                             { return sum64Go(z) }
func acceptRow(z, p []float32, inv float32) (a, gq float64) { return acceptRowGo(z, p, inv) }
func acceptGrad(z, p []float32, c, w, s float32)            { acceptGradGo(z, p, c, w, s) }

// GatherSoftmax writes into p [len(ids)] the softmax of the logits z at ids and returns the index of p's
// largest value. Without cgo it is GatherSoftmaxGo.
func GatherSoftmax(p, z []float32, ids []int64) int { return GatherSoftmaxGo(p, z, ids) }
