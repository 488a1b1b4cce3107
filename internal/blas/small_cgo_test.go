//go:build cgo

package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestSmallKernels checks the register-blocked kernels, AVX-512 and portable, on every row count they
// take, column and depth tails, strides, and beta zero (C is not read) or not.
func TestSmallKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	defer setSmallAVX512(true)
	for _, avx := range []bool{true, false} {
		setSmallAVX512(avx)
		for m := 1; m <= 17; m++ {
			for _, nk := range [][2]int{{1, 1}, {5, 8}, {16, 16}, {17, 31}, {40, 64}, {130, 33}, {7, 172}, {37, 300}, {5, 513}} {
				for _, tb := range []bool{false, true} {
					for _, beta := range []float32{0, -0.5} {
						n, k := nk[0], nk[1]
						lda, ldb, ldc, brows := k+1, n+3, n+2, k
						if tb {
							ldb, brows = k+3, n
						}
						a, b, c := randSlice(r, m*lda), randSlice(r, brows*ldb), randSlice(r, m*ldc)
						if beta == 0 {
							for i := range c {
								c[i] = float32(math.NaN()) // must be overwritten, not scaled
							}
						}
						want := naive(false, tb, m, n, k, 1.25, a, lda, b, ldb, beta, c, ldc)
						callSmall(tb, m, n, k, 1.25, a, lda, b, ldb, beta, c, ldc)
						for i := 0; i < m; i++ {
							for j := 0; j < ldc; j++ {
								got, w := float64(c[i*ldc+j]), want[i*ldc+j]
								if j >= n { // outside the product: untouched
									if !(math.IsNaN(got) && math.IsNaN(w)) && got != w {
										t.Fatalf("avx512=%v m=%d n=%d k=%d tb=%v: wrote c[%d][%d] beyond n", avx, m, n, k, tb, i, j)
									}
									continue
								}
								if math.Abs(got-w) > 1e-5*float64(k+1)*(1+math.Abs(w)) {
									t.Fatalf("avx512=%v m=%d n=%d k=%d tb=%v beta=%g: c[%d][%d] = %g, want %g", avx, m, n, k, tb, beta, i, j, got, w)
								}
							}
						}
					}
				}
			}
		}
	}
}

// BenchmarkSmall compares the small kernels (on w, and on its transpose as Weight keeps it) with OpenBLAS
// (sgemv per row, and sgemm) on the products of a stories260K decoding step (m = 1) and of a 5-token
// verification (m = 6).
func BenchmarkSmall(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, sz := range [][3]int{{1, 172, 64}, {6, 172, 64}, {1, 512, 64}, {6, 512, 64}, {1, 4096, 4096}, {6, 4096, 4096}} {
		m, n, k := sz[0], sz[1], sz[2]
		x, w, y := randSlice(r, m*k), randSlice(r, n*k), make([]float32, m*n)
		wt := make([]float32, k*n)
		for i := 0; i < n; i++ {
			for j := 0; j < k; j++ {
				wt[j*n+i] = w[i*k+j]
			}
		}
		for _, impl := range []struct {
			name string
			run  func()
		}{
			{"small", func() { callSmall(true, m, n, k, 1, x, k, w, k, 0, y, n) }},
			{"small-transposed", func() { callSmall(false, m, n, k, 1, x, k, wt, n, 0, y, n) }},
			{"sgemv", func() {
				for i := 0; i < m; i++ {
					sgemv(false, n, k, 1, w, k, x[i*k:], 1, 0, y[i*n:])
				}
			}},
			{"sgemm", func() { cblasSgemm(false, true, m, n, k, 1, x, k, w, k, 0, y, n) }},
		} {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", m, n, k, impl.name), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					impl.run()
				}
				b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
