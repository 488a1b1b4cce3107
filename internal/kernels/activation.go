package kernels

import "github.com/specforge/specforge/internal/parallel"

// SoftmaxRows replaces each row of length n by its softmax, computed in float32 after subtracting the row
// maximum; a row whose entries are all -Inf becomes uniform (as PyTorch does with a finite minimum mask).
func SoftmaxRows(x []float32, rows, n int) { softmaxRows(Softmax, x, rows, n) }

// SoftmaxRowsGo is SoftmaxRows on SoftmaxGo.
func SoftmaxRowsGo(x []float32, rows, n int) { softmaxRows(SoftmaxGo, x, rows, n) }

func softmaxRows(softmax func([]float32), x []float32, rows, n int) {
	parallel.For(rows, max(1, 8192/max(n, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			softmax(x[r*n : (r+1)*n])
		}
	})
}

// ArgmaxGo is Argmax in pure Go, compiled in every build: the index of the largest value (the first one on
// ties; 0 when x[0] is NaN, which no value exceeds).
func ArgmaxGo(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// Embedding copies rows ids[i] of table [V, dim] into out [len(ids), dim].
func Embedding(out, table []float32, ids []int32, dim int) {
	if grain := max(1, 8192/dim); len(ids) > grain {
		parallel.For(len(ids), grain, func(lo, hi int) { embedRows(out[lo*dim:hi*dim], table, ids[lo:hi], dim) })
		return
	}
	embedRows(out, table, ids, dim)
}

func embedRows(out, table []float32, ids []int32, dim int) {
	for i, id := range ids {
		copy(out[i*dim:(i+1)*dim], table[int(id)*dim:(int(id)+1)*dim])
	}
}

// Add computes dst += src elementwise.
func Add(dst, src []float32) {
	parallel.For(len(dst), 1<<15, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] += src[i]
		}
	})
}

// AddBias adds bias [dim] to every row of y [rows, dim] (a linear layer's bias).
func AddBias(y, bias []float32, rows, dim int) {
	for r := 0; r < rows; r++ {
		row := y[r*dim : (r+1)*dim]
		for j, v := range bias {
			row[j] += v
		}
	}
}

// AddWeightedRows adds to each row r of dst [rows, dim], in order of j < k, weight[r*k+j] times row
// from[r*k+j] of src.
func AddWeightedRows(dst, src []float32, from []int32, weight []float32, rows, k, dim int) {
	parallel.For(rows, max(1, 8192/(k*dim)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			out := dst[r*dim : (r+1)*dim]
			for j := r * k; j < (r+1)*k; j++ {
				w, in := weight[j], src[int(from[j])*dim:int(from[j]+1)*dim]
				for i := range out {
					out[i] += w * in[i]
				}
			}
		}
	})
}
