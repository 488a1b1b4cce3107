package blas

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestWeightApply checks y = x w^T, overwritten and accumulated, for weights with and without a transpose,
// on the small kernels' row counts and beyond.
func TestWeightApply(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	for _, size := range [][2]int{{172, 64}, {64, 172}, {33, 17}, {1024, 512}} {
		out, in := size[0], size[1]
		w := NewWeight(randSlice(r, out*in), out, in)
		if wantT := smallKernels && out*in <= transposeLimit; (w.t != nil) != wantT {
			t.Fatalf("%dx%d: transpose kept = %v, want %v", out, in, w.t != nil, wantT)
		}
		for _, m := range []int{1, 2, 3, 5, 6, 7, 8, 13, 40} {
			for _, acc := range []bool{false, true} {
				x, y := randSlice(r, m*in), randSlice(r, m*out)
				var beta float32
				if acc {
					beta = 1
				}
				want := naive(false, true, m, out, in, 1, x, in, w.W, in, beta, y, out)
				w.Apply(y, x, m, acc)
				for i := range y {
					if d := math.Abs(float64(y[i]) - want[i]); d > 1e-5*float64(in)*(1+math.Abs(want[i])) {
						t.Fatalf("%dx%d m=%d acc=%v: y[%d] = %g, want %g", out, in, m, acc, i, y[i], want[i])
					}
				}
			}
		}
	}
}

// TestWeightRowsIndependent: a row's result is bit for bit the same whether it is multiplied alone or
// with others (decoding one token and verifying several must agree exactly for greedy equality).
func TestWeightRowsIndependent(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 11))
	out, in := 172, 64
	w := NewWeight(randSlice(r, out*in), out, in)
	const m = 8
	x := randSlice(r, m*in)
	all := make([]float32, m*out)
	w.Apply(all, x, m, false)
	for i := 0; i < m; i++ {
		one := make([]float32, out)
		w.Apply(one, x[i*in:(i+1)*in], 1, false)
		for j := range one {
			if one[j] != all[i*out+j] {
				t.Fatalf("row %d column %d: %g alone, %g among %d rows", i, j, one[j], all[i*out+j], m)
			}
		}
	}
}
