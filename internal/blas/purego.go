//go:build !cgo

package blas

// smallKernels says that this build has no small kernels: Weight keeps no transposes.
const smallKernels = false

func useSmall(transA bool, m, n, k int) bool { return false }

// Name says which implementation multiplies matrices.
func Name() string { return "gonum (pure Go)" }

func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmGonum(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
