package purego

import (
	"sync"

	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/tensor"
)

// Products with a BF16 or F16 operand, as the backend package defines them: the 16-bit operand is widened a
// tile of its stored rows at a time into a pooled float32 buffer (never as a whole: a checkpoint's matrices
// stay as stored), the other operand is rounded to bf16 when the 16-bit one is BF16, and an f32 product
// runs on each tile. The cpu backend runs the same code on OpenBLAS.

// Gemm is an f32 product with blas.Sgemm's signature: the kernel the tiled products run on.
type Gemm func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

// tileRows is how many stored rows of a 16-bit operand are widened at a time: 128 rows of a 4096-wide
// weight are 2 MiB of float32, small enough to stay in cache next to the product and large enough that the
// product of each tile is not dominated by its set-up.
const tileRows = 128

// buffers pools the widened tiles and rounded operands, so that a product allocates nothing once warm.
var buffers = sync.Pool{New: func() any { return new([]float32) }}

func getBuffer(n int) *[]float32 {
	b := buffers.Get().(*[]float32)
	*b = tensor.Resize(*b, n)
	return b
}

// widen converts n elements of the 16-bit tensor t from element off into dst[:n] (exact).
func widen(dst []float32, t tensor.Tensor, off, n int) {
	bits := t.Bits16()[off : off+n]
	if t.DType() == tensor.BF16 {
		half.BF16ToF32(dst[:n], bits)
	} else {
		half.F16ToF32(dst[:n], bits)
	}
}

// isHalf reports whether t is BF16 or F16.
func isHalf(t tensor.Tensor) bool { d := t.DType(); return d == tensor.BF16 || d == tensor.F16 }

// LinearHalf computes y = x w^T (or adds it to y when acc is set) for x [rows, in] and a BF16 or F16 weight
// w [out, in], tile by tile of w's rows on gemm. With roundX (a BF16Product) x is rounded to bf16 first.
func LinearHalf(gemm Gemm, y, x []float32, w tensor.Tensor, out, in, rows int, acc, roundX bool) {
	var beta float32
	if acc {
		beta = 1
	}
	if rows == 0 || out == 0 {
		return
	}
	xs := x[:rows*in]
	if roundX {
		rounded := getBuffer(rows * in)
		defer buffers.Put(rounded)
		half.RoundToBF16(*rounded, xs)
		xs = *rounded
	}
	tile := getBuffer(min(tileRows, out) * in)
	defer buffers.Put(tile)
	for o := 0; o < out; o += tileRows {
		n := min(tileRows, out-o)
		widen(*tile, w, o*in, n*in)
		gemm(false, true, rows, n, in, 1, xs, in, *tile, in, beta, y[o:], out)
	}
}

// MatMulHalf is backend.Backend's MatMul where a or b (or both) is BF16 or F16, on gemm: the 16-bit
// operand (b when both are) is widened tile by tile; the other is rounded to bf16 when it is F32 and the
// tiled one BF16, widened whole when it is 16-bit itself.
func MatMulHalf(gemm Gemm, transA, transB bool, m, n, k int, alpha float32, a tensor.Tensor, lda int, b tensor.Tensor, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 { // nothing to widen: the product only scales c
		gemm(transA, transB, m, n, 0, alpha, nil, max(lda, 1), nil, max(ldb, 1), beta, c, ldc)
		return
	}
	ar, ac, br, bc := m, k, k, n
	if transA {
		ar, ac = k, m
	}
	if transB {
		br, bc = n, k
	}
	tileB := isHalf(b)
	tiled, other := b, a
	if !tileB {
		tiled, other = a, b
	}
	// The other operand as float32, its stored extent: rows*ld less the last row's padding.
	oRows, oCols, oLd := ar, ac, lda
	if !tileB {
		oRows, oCols, oLd = br, bc, ldb
	}
	need := (oRows-1)*oLd + oCols
	var o []float32
	switch {
	case isHalf(other):
		buf := getBuffer(need)
		defer buffers.Put(buf)
		widen(*buf, other, 0, need)
		o = *buf
	case tiled.DType() == tensor.BF16:
		buf := getBuffer(need)
		defer buffers.Put(buf)
		half.RoundToBF16(*buf, other.F32()[:need])
		o = *buf
	default:
		o = other.F32()
	}
	// The tiled operand's stored rows: a stored row is an output row or column (the tiles fill disjoint
	// parts of c) or a stretch of k (the tiles add up, so every tile after the first accumulates).
	rows, cols, ld := br, bc, ldb
	if !tileB {
		rows, cols, ld = ar, ac, lda
	}
	tile := getBuffer(min(tileRows, rows) * cols)
	defer buffers.Put(tile)
	t := *tile
	for r := 0; r < rows; r += tileRows {
		nr := min(tileRows, rows-r)
		for i := range nr {
			widen(t[i*cols:], tiled, (r+i)*ld, cols)
		}
		bt := beta
		if r > 0 {
			bt = 1
		}
		switch {
		case tileB && transB: // rows of b are columns r.. of c
			gemm(transA, true, m, nr, k, alpha, o, lda, t, cols, beta, c[r:], ldc)
		case tileB: // rows of b are k r..: columns r.. of op(a)
			aOff := r
			if transA {
				aOff = r * lda
			}
			gemm(transA, false, m, n, nr, alpha, o[aOff:], lda, t, cols, bt, c, ldc)
		case !transA: // rows of a are rows r.. of c
			gemm(false, transB, nr, n, k, alpha, t, cols, o, ldb, beta, c[r*ldc:], ldc)
		default: // rows of a are k r..: rows r.. of op(b)
			bOff := r * ldb
			if transB {
				bOff = r
			}
			gemm(true, transB, m, n, nr, alpha, t, cols, o[bOff:], ldb, bt, c, ldc)
		}
	}
}

// embedHalf copies rows ids[i] of the BF16 or F16 table into out, widening only those rows.
func embedHalf(out []float32, table tensor.Tensor, ids []int32, dim int) {
	for i, id := range ids {
		widen(out[i*dim:], table, int(id)*dim, dim)
	}
}
