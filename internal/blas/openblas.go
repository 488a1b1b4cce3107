//go:build cgo

package blas

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
*/
import "C"

import (
	"unsafe"

	"github.com/specforge/specforge/internal/parallel"
)

// OpenBLAS runs single-threaded; products are split across goroutines here instead. OpenBLAS's own worker
// threads spin while idle, which on a small machine steals the cores the rest of the Go program needs.
func init() { C.openblas_set_num_threads(1) }

// Name says which implementation multiplies matrices.
func Name() string { return "OpenBLAS " + C.GoString(C.openblas_get_config()) }

// minParallelFlops is the size below which a product runs on one goroutine.
const minParallelFlops = 1 << 21

// gemvRows is the row count up to which a product with a transposed A (which the small kernels do not take)
// runs as one matrix-vector product per row: OpenBLAS's sgemm packs its operands on every call, which for a
// handful of rows costs several times the arithmetic.
const gemvRows = 8

func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if useSmall(transA, m, n, k) {
		smallGemm(transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	if m <= gemvRows {
		for i := 0; i < m; i++ {
			x, incX := a[i*lda:], 1
			if transA {
				x, incX = a[i:], lda
			}
			if transB { // row i of C = alpha * B x + beta * row i, B [n, k]
				sgemv(false, n, k, alpha, b, ldb, x, incX, beta, c[i*ldc:])
			} else { // row i of C = alpha * B^T x, B [k, n]
				sgemv(true, k, n, alpha, b, ldb, x, incX, beta, c[i*ldc:])
			}
		}
		return
	}
	if 2*m*n*k < minParallelFlops {
		cblasSgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	// Split the larger of the output's dimensions into one block per worker.
	if m >= n {
		parallel.For(m, 1, func(lo, hi int) {
			aOff := lo * lda
			if transA {
				aOff = lo
			}
			cblasSgemm(transA, transB, hi-lo, n, k, alpha, a[aOff:], lda, b, ldb, beta, c[lo*ldc:], ldc)
		})
		return
	}
	parallel.For(n, 1, func(lo, hi int) {
		cblasSgemm(transA, transB, m, hi-lo, k, alpha, a, lda, b[columnOffset(lo, transB, ldb):], ldb, beta, c[lo:], ldc)
	})
}

// columnOffset is where column j of op(B) starts in B: row j of B when op(B) = B^T.
func columnOffset(j int, transB bool, ldb int) int {
	if transB {
		return j * ldb
	}
	return j
}

func cblasSgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := uint32(C.CblasNoTrans), uint32(C.CblasNoTrans)
	if transA {
		ta = C.CblasTrans
	}
	if transB {
		tb = C.CblasTrans
	}
	C.cblas_sgemm(C.CblasRowMajor, ta, tb, C.blasint(m), C.blasint(n), C.blasint(k), C.float(alpha),
		(*C.float)(unsafe.Pointer(&a[0])), C.blasint(lda), (*C.float)(unsafe.Pointer(&b[0])), C.blasint(ldb),
		C.float(beta), (*C.float)(unsafe.Pointer(&c[0])), C.blasint(ldc))
}

// sgemv computes y = alpha*op(W) x + beta*y for W [rows, cols] row-major with row stride ldw; x has stride
// incX, y is contiguous.
func sgemv(trans bool, rows, cols int, alpha float32, w []float32, ldw int, x []float32, incX int, beta float32, y []float32) {
	t := uint32(C.CblasNoTrans)
	if trans {
		t = C.CblasTrans
	}
	C.cblas_sgemv(C.CblasRowMajor, t, C.blasint(rows), C.blasint(cols), C.float(alpha),
		(*C.float)(unsafe.Pointer(&w[0])), C.blasint(ldw), (*C.float)(unsafe.Pointer(&x[0])), C.blasint(incX),
		C.float(beta), (*C.float)(unsafe.Pointer(&y[0])), 1)
}
