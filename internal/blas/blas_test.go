package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// naive is the float64 definition of Sgemm that the implementations are checked against.
func naive(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) []float64 {
	out := make([]float64, len(c))
	for i := range c {
		out[i] = float64(c[i])
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			out[i*ldc+j] = float64(alpha)*s + float64(beta)*float64(c[i*ldc+j])
		}
	}
	return out
}

func randSlice(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

func TestSgemm(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	// The last three are above the size at which products split across goroutines: by rows, by columns,
	// and a few-row product split by columns.
	for _, sz := range [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 9, 33}, {64, 48, 130}, {5, 0, 3}, {4, 6, 0}, {300, 200, 100}, {40, 700, 80}, {4, 4096, 256}} {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				m, n, k := sz[0], sz[1], sz[2]
				// Strides wider than the matrices check the leading-dimension handling.
				lda, ldb, ldc := k+3, n+2, n+1
				arows, brows := m, k
				if ta {
					lda, arows = m+3, k
				}
				if tb {
					ldb, brows = k+2, n
				}
				a, b, c := randSlice(r, arows*lda+1), randSlice(r, brows*ldb+1), randSlice(r, m*ldc+1)
				want := naive(ta, tb, m, n, k, 0.75, a, lda, b, ldb, -0.5, c, ldc)
				Sgemm(ta, tb, m, n, k, 0.75, a, lda, b, ldb, -0.5, c, ldc)
				for i := range c {
					if d := math.Abs(float64(c[i]) - want[i]); d > 1e-5*float64(k+1)*(1+math.Abs(want[i])) {
						t.Fatalf("%v ta=%v tb=%v: c[%d] = %g, want %g", sz, ta, tb, i, c[i], want[i])
					}
				}
			}
		}
	}
}

func TestSgemmPanicsOnShortSlice(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for a too short A")
		}
	}()
	Sgemm(false, false, 4, 4, 4, 1, make([]float32, 15), 4, make([]float32, 16), 4, 0, make([]float32, 16), 4)
}

// BenchmarkSgemm reports GFLOP/s for square products and for the shapes of a Llama-3.2-1B prefill.
func BenchmarkSgemm(b *testing.B) {
	b.Logf("BLAS: %s", Name())
	for _, sz := range [][3]int{{1024, 1024, 1024}, {1024, 2048, 2048}, {1024, 8192, 2048}, {1024, 2048, 8192}} {
		m, n, k := sz[0], sz[1], sz[2]
		b.Run(fmt.Sprintf("m%d_n%d_k%d", m, n, k), func(b *testing.B) {
			r := rand.New(rand.NewPCG(3, 4))
			x, w, y := randSlice(r, m*k), randSlice(r, n*k), make([]float32, m*n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				Sgemm(false, true, m, n, k, 1, x, k, w, k, 0, y, n)
			}
			b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
