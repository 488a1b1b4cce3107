//go:build !cgo

package bfgemm

import "github.com/specforge/specforge/internal/tensor"

// Available reports whether this build has the AVX512-BF16 kernels: not without cgo.
func Available() bool { return false }

// Gemm is not available without cgo; callers check Available first.
func Gemm(transA, transB bool, m, n, k int, alpha float32, a tensor.Tensor, lda int, b tensor.Tensor, ldb int, beta float32, c []float32, ldc int) {
	panic("bfgemm: built without cgo")
}
