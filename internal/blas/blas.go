// Package blas multiplies float32 matrices: OpenBLAS through cgo when cgo is enabled, and a pure-Go
// implementation (gonum) when the binary is built with CGO_ENABLED=0 (and, as SgemmGo, in every build). All
// matrices are row-major.
package blas

import "fmt"

// Sgemm computes C = alpha*op(A)*op(B) + beta*C where op(X) is X or its transpose, op(A) is m x k, op(B) is
// k x n and C is m x n; lda, ldb and ldc are the row strides of the matrices as stored.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if prologue(transA, transB, m, n, k, a, lda, b, ldb, beta, c, ldc) {
		sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	}
}

// SgemmGo is Sgemm computed in pure Go (gonum) in every build: the reference the OpenBLAS path is tested
// against, and the product of the pure-Go backend.
func SgemmGo(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if prologue(transA, transB, m, n, k, a, lda, b, ldb, beta, c, ldc) {
		sgemmGonum(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	}
}

// prologue checks the operands and handles the empty products (k == 0 only scales C); it reports whether
// a product remains to compute.
func prologue(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) bool {
	if m == 0 || n == 0 {
		return false
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	check("A", a, ar, ac, lda)
	check("B", b, br, bc, ldb)
	check("C", c, m, n, ldc)
	if k == 0 {
		for i := 0; i < m; i++ {
			row := c[i*ldc : i*ldc+n]
			for j := range row {
				row[j] *= beta
			}
		}
		return false
	}
	return true
}

func check(name string, x []float32, rows, cols, ld int) {
	if rows == 0 || cols == 0 {
		return
	}
	if ld < cols {
		panic(fmt.Sprintf("blas: leading dimension of %s is %d < %d columns", name, ld, cols))
	}
	if need := (rows-1)*ld + cols; len(x) < need {
		panic(fmt.Sprintf("blas: %s has %d elements, a %dx%d matrix with stride %d needs %d", name, len(x), rows, cols, ld, need))
	}
}
