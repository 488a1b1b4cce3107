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

// SoftmaxRows replaces each row of length n by its softmax, computed in float32 after subtracting the row
// maximum; a row whose entries are all -Inf becomes uniform (as PyTorch does with a finite minimum mask).
func SoftmaxRows(x []float32, rows, n int) {
	parallel.For(rows, max(1, 8192/max(n, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			Softmax(x[r*n : (r+1)*n])
		}
	})
}

// Softmax replaces x by softmax(x) in place.
func Softmax(x []float32) {
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	if m < -3.0e38 { // every entry masked
		u := 1 / float32(len(x))
		for i := range x {
			x[i] = u
		}
		return
	}
	var s float64
	for i, v := range x {
		e := Exp(v - m)
		x[i] = e
		s += float64(e)
	}
	inv := float32(1 / s)
	for i := range x {
		x[i] *= inv
	}
}

// Embedding copies rows ids[i] of table [V, dim] into out [len(ids), dim].
func Embedding(out, table []float32, ids []int32, dim int) {
	parallel.For(len(ids), max(1, 8192/dim), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			id := int(ids[i])
			copy(out[i*dim:(i+1)*dim], table[id*dim:(id+1)*dim])
		}
	})
}

// Add computes dst += src elementwise.
func Add(dst, src []float32) {
	parallel.For(len(dst), 1<<15, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] += src[i]
		}
	})
}
