//go:build cgo

package bfgemm

/*
#cgo CFLAGS: -O3
#include "bfgemm.h"
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/specforge/specforge/internal/parallel"
	"github.com/specforge/specforge/internal/tensor"
)

var available = C.sf_bf16_available() != 0

// amx says whether this CPU has AMX-BF16 tiles that this process may use; products then run on them.
var amx = available && C.sf_amx_available() != 0

func init() { setAMX(amx) }

// Available reports whether this CPU runs the AVX512-BF16 kernels.
func Available() bool { return available }

// Kernels names the kernels products run on: AMX-BF16 tiles where the CPU has them, else AVX512-BF16.
func Kernels() string {
	if C.sf_amx_on != 0 {
		return "AMX-BF16 tiles"
	}
	return "AVX512-BF16"
}

// setAMX turns the AMX kernels on or off (off where the CPU has none) and returns whether they were on;
// tests and benchmarks compare them with the AVX512-BF16 ones.
func setAMX(on bool) bool {
	was := C.sf_amx_on != 0
	C.sf_amx_on = 0
	if on && amx {
		C.sf_amx_on = 1
	}
	return was
}

// tileCols and tileRows are the shape of the kernels' register tile; parallel splits keep to their
// multiples so that no tile straddles two goroutines.
const (
	tileCols = 32
	tileRows = 12
)

// FewRows is the row count up to which a product by a BF16 weight stored [n, k] (op(b) = b^T, the layout
// of Linear) takes dot products that read the weight as stored; each of those rows gets the result it
// would get alone, bit for bit. Larger products pack their operands.
const FewRows = 64

// minParallelFlops is the product size (2*m*n*k) from which Gemm splits columns across goroutines.
const minParallelFlops = 1 << 21

// Gemm computes c = alpha*op(a)*op(b) + beta*c with op(a) [m, k], op(b) [k, n] and c [m, n], where op(x)
// is x or its transpose and lda, ldb, ldc are row strides as stored (MatMul's convention in package
// backend). a and b are BF16 or F32 tensors; F32 operands are rounded to bf16. Products accumulate in
// float32. It panics when the kernels are not Available or an operand is too short: callers check.
func Gemm(transA, transB bool, m, n, k int, alpha float32, a tensor.Tensor, lda int, b tensor.Tensor, ldb int, beta float32, c []float32, ldc int) {
	if !available {
		panic("bfgemm: no AVX512-BF16 on this CPU")
	}
	if m == 0 || n == 0 {
		return
	}
	rsa, csa := lda, 1
	if transA {
		rsa, csa = 1, lda
	}
	rsb, csb := ldb, 1
	if transB {
		rsb, csb = 1, ldb
	}
	check("a", a, m, k, rsa, csa)
	check("b", b, k, n, rsb, csb)
	if len(c) < (m-1)*ldc+n || ldc < n {
		panic(fmt.Sprintf("bfgemm: c has %d elements, ldc %d; want [%d, %d]", len(c), ldc, m, n))
	}
	if k == 0 {
		for i := 0; i < m; i++ {
			row := c[i*ldc : i*ldc+n]
			for j := range row {
				if beta == 0 {
					row[j] = 0
				} else {
					row[j] *= beta
				}
			}
		}
		return
	}
	ap, abf := operand(a)
	bp, bbf := operand(b)
	aSize := uintptr(a.DType().Size())
	cp := unsafe.Pointer(&c[0])
	// The kernels take dot products for up to FewRows rows; the choice is the whole product's, so that
	// goroutines given fewer rows each (how many run depends on what else runs) compute what one would.
	few := C.int(FewRows)
	if m > FewRows {
		few = 0
	}
	// run computes rows [r0, r1) and columns [lo, hi) of c, from A as packed when packed is not nil.
	run := func(r0, r1, lo, hi int, packed *C.uint32_t) {
		C.sf_bf16_gemm(C.int(r1-r0), C.int(lo), C.int(hi), C.int(k), C.float(alpha), unsafe.Add(ap, uintptr(r0*rsa)*aSize), abf,
			C.long(rsa), C.long(csa), bp, bbf, C.long(rsb), C.long(csb), C.float(beta), (*C.float)(unsafe.Add(cp, r0*ldc*4)), C.long(ldc),
			few, packed)
	}
	switch {
	case 2*m*n*k < minParallelFlops || n <= tileCols && m <= FewRows:
		run(0, m, 0, n, nil)
	case m > n && m > FewRows:
		// Split the larger side: each goroutine packs the operand it does not split, a copy of the smaller
		// one (a weight gradient dy^T x has many more rows than columns).
		parallel.For((m+tileRows-1)/tileRows, 1, func(lo, hi int) { run(lo*tileRows, min(hi*tileRows, m), 0, n, nil) })
	case m > packedRows && m*k <= sharedPackElems && C.sf_amx_on == 0:
		// The goroutines that split the columns share one packing of A, which they make together.
		buf := packedBuffers.Get().(*[]uint32)
		defer packedBuffers.Put(buf)
		*buf = tensor.Resize(*buf, int(C.sf_bf16_packed_a_dwords(C.int(m), C.int(k)))+16)
		packed := alignedAt64(*buf)
		parallel.For((m+packBlockRows-1)/packBlockRows, 1, func(lo, hi int) {
			C.sf_bf16_pack_a(packed, C.int(m), C.int(k), C.int(lo), C.int(hi), ap, abf, C.long(rsa), C.long(csa))
		})
		parallel.For((n+tileCols-1)/tileCols, 1, func(lo, hi int) { run(0, m, lo*tileCols, min(hi*tileCols, n), packed) })
	default:
		parallel.For((n+tileCols-1)/tileCols, 1, func(lo, hi int) { run(0, m, lo*tileCols, min(hi*tileCols, n), nil) })
	}
}

// packedRows is the row count from which the kernels take their A blocks from a shared packing (below it,
// every goroutine packs all its rows at once anyway), and sharedPackElems the size of A up to which they do:
// a shared packing saves each goroutine packing its blocks again for every 512 columns of B (measured on
// Zen 5: 1024x4096x4096 at 769 GFLOP/s shared, 724 not), at the cost of a buffer of 2 bytes an element.
const (
	packedRows      = 4 * tileRows
	sharedPackElems = 16 << 20
)

// packBlockRows is the height of an A block, the unit the shared packing is split in.
var packBlockRows = int(C.sf_bf16_block_rows())

// packedBuffers pools the shared packings of A.
var packedBuffers = sync.Pool{New: func() any { return new([]uint32) }}

// alignedAt64 is a pointer into buf at its first 64-byte boundary (buf has 16 elements to spare).
func alignedAt64(buf []uint32) *C.uint32_t {
	p := unsafe.Pointer(&buf[0])
	return (*C.uint32_t)(unsafe.Add(p, (64-uintptr(p)%64)%64))
}

// Round rounds src to bf16 bit patterns in dst (to nearest, ties to even; the kernels' rounding, which
// also flushes float32 subnormals to zero), splitting long slices across goroutines.
func Round(dst []uint16, src []float32) {
	if !available {
		panic("bfgemm: no AVX512-BF16 on this CPU")
	}
	if len(dst) < len(src) {
		panic(fmt.Sprintf("bfgemm: rounding %d values into %d", len(src), len(dst)))
	}
	parallel.For(len(src), 1<<16, func(lo, hi int) {
		C.sf_bf16_round((*C.uint16_t)(unsafe.Pointer(&dst[lo])), (*C.float)(unsafe.Pointer(&src[lo])), C.long(hi-lo))
	})
}

// peakRounds is the length of one run of the CPU's bf16 product peak loop, of 24*64 flops per round.
const peakRounds = 1 << 22

// runPeak runs the CPU's bf16 product peak loop once (peakRounds rounds).
func runPeak() { C.sf_bf16_peak(peakRounds) }

// amxRounds is the length of one run of runAMX, of 4*16384 flops per round.
const amxRounds = 1 << 20

// runAMX runs amxRounds rounds of four AMX tile products whose operands are loaded from a and b, or stay
// in registers where a slice is shorter than 4 KiB (sf_amx_stream). The caller has turned AMX on.
func runAMX(a, b []uint16) {
	region := func(x []uint16) C.long {
		if len(x) < 2048 {
			return 0
		}
		return C.long(2 * len(x))
	}
	C.sf_amx_stream(amxRounds, (*C.char)(unsafe.Pointer(&a[0])), region(a), (*C.char)(unsafe.Pointer(&b[0])), region(b))
}

// operand returns x's data pointer and whether it holds bf16.
func operand(x tensor.Tensor) (unsafe.Pointer, C.int) {
	raw := x.Raw()
	if x.DType() == tensor.BF16 {
		return unsafe.Pointer(&raw[0]), 1
	}
	return unsafe.Pointer(&raw[0]), 0
}

// check panics unless x is F32 or BF16 and holds element (rows-1, cols-1) at (rows-1)*rs + (cols-1)*cs.
func check(name string, x tensor.Tensor, rows, cols, rs, cs int) {
	if d := x.DType(); d != tensor.F32 && d != tensor.BF16 {
		panic(fmt.Sprintf("bfgemm: %s is %s, want F32 or BF16", name, d))
	}
	if rows == 0 || cols == 0 {
		return
	}
	if need := (rows-1)*rs + (cols-1)*cs + 1; x.Len() < need {
		panic(fmt.Sprintf("bfgemm: %s has %d elements, want at least %d for [%d, %d]", name, x.Len(), need, rows, cols))
	}
}
