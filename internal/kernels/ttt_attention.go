package kernels

import (
	"math"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/bfgemm"
	"github.com/specforge/specforge/internal/blas"
	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/parallel"
	"github.com/specforge/specforge/internal/tensor"
)

// TTTAttention is the attention of EAGLE-3's training-time test. At unrolled step k the query of row t sees
// the step-0 keys of rows s in [start(t), t] that are not padding, and the step-i key of its own row t for
// i = 1..k, nothing else. start(t) is 0 unless the batch is packed (several samples per row): then it is the
// first row of t's sample, so that no sample sees another. Each step costs O(T*(T+k)) scores per head
// (O(T*(tttBlockRows+L)) for a packed row of samples of length L), computed one block of query rows at a
// time over the keys from the block's first start: no T x T matrix is kept, let alone one per step. The
// backward pass recomputes the scores from the saved log-sum-exp (as flash attention does).
//
// Layouts: q and out are [B*T, Heads*HeadDim]; keys[i] and values[i] (step i) are [B*T, KVHeads*HeadDim];
// valid [B*T] marks real (non-padding) rows; starts [B*T] (nil: all 0) gives start(t) within the row,
// non-decreasing along a row; lse is [B*T, Heads].
type TTTAttention backend.Attention

// tttBlockRows bounds the rows of one score block (query rows times heads of a group).
const tttBlockRows = 256

// tttBlock is the queries [q0, q0+nq) of row b and kv head kvh, which see at most the step-0 keys
// [keyStart, keyEnd) of the row: keyStart is the start of q0's sample (starts do not decrease along a row).
type tttBlock struct {
	b, kvh, q0, nq, keyStart, keyEnd int
}

// width is the number of step-0 keys the block's scores span.
func (blk tttBlock) width() int { return blk.keyEnd - blk.keyStart }

func (a TTTAttention) blocks(starts []int32, B, T int) []tttBlock {
	group := a.Heads / a.KVHeads
	tb := max(1, min(T, tttBlockRows/group))
	var out []tttBlock
	for b := 0; b < B; b++ {
		for kvh := 0; kvh < a.KVHeads; kvh++ {
			for q0 := 0; q0 < T; q0 += tb {
				nq := min(tb, T-q0)
				ks := 0
				if starts != nil {
					ks = int(starts[b*T+q0])
				}
				out = append(out, tttBlock{b, kvh, q0, nq, ks, q0 + nq})
			}
		}
	}
	return out
}

// gather copies the rows of the group's heads for the block's queries from x [B*T, Heads*HeadDim] into
// dst [group*nq, HeadDim] (row hh*nq+i is head kvh*group+hh at query q0+i).
func (a TTTAttention) gather(dst, x []float32, blk tttBlock, T int) {
	d, group, stride := a.HeadDim, a.Heads/a.KVHeads, a.Heads*a.HeadDim
	for hh := 0; hh < group; hh++ {
		h := blk.kvh*group + hh
		for i := 0; i < blk.nq; i++ {
			row := (blk.b*T + blk.q0 + i) * stride
			copy(dst[(hh*blk.nq+i)*d:(hh*blk.nq+i+1)*d], x[row+h*d:row+h*d+d])
		}
	}
}

func (a TTTAttention) scatter(x, src []float32, blk tttBlock, T int) {
	d, group, stride := a.HeadDim, a.Heads/a.KVHeads, a.Heads*a.HeadDim
	for hh := 0; hh < group; hh++ {
		h := blk.kvh*group + hh
		for i := 0; i < blk.nq; i++ {
			row := (blk.b*T + blk.q0 + i) * stride
			copy(x[row+h*d:row+h*d+d], src[(hh*blk.nq+i)*d:(hh*blk.nq+i+1)*d])
		}
	}
}

func dot32(x, y []float32) float32 {
	var s float32
	for i := range x {
		s += x[i] * y[i]
	}
	return s
}

// kvOffset is the offset in a [B*T, KVHeads*HeadDim] step of the block's first step-0 key.
func (a TTTAttention) kvOffset(blk tttBlock, T int) int {
	return (blk.b*T+blk.keyStart)*a.KVHeads*a.HeadDim + blk.kvh*a.HeadDim
}

// scores fills s [group*nq, width] with the masked, scaled step-0 scores of the block (column j is key
// keyStart+j) and diag [group*nq, k] with the same-row scores of steps 1..k.
func tttScores[S Steps](a TTTAttention, gemm gemmFunc, s, diag, qg []float32, keys S, valid []bool, starts []int32, blk tttBlock, T int) {
	d, kvStride := a.HeadDim, a.KVHeads*a.HeadDim
	rows := len(qg) / d
	k := keys.Len() - 1
	w := blk.width()
	gemm(false, true, rows, w, d, a.Scale, qg, d, keys.Step(0)[a.kvOffset(blk, T):], kvStride, 0, s, w)
	negInf := float32(math.Inf(-1))
	parallel.For(rows, max(1, 4096/w), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			t := blk.q0 + r%blk.nq
			first := 0
			if starts != nil {
				first = int(starts[blk.b*T+t])
			}
			// Keys from first to t are causal and of the row's sample; of those, the valid ones count.
			row := s[r*w : (r+1)*w]
			lo, hi := min(max(first-blk.keyStart, 0), w), min(max(t-blk.keyStart+1, 0), w)
			lo = min(lo, hi)
			for j := range row[:lo] {
				row[j] = negInf
			}
			for j := range row[hi:] {
				row[hi+j] = negInf
			}
			for j, ok := range valid[blk.b*T+blk.keyStart+lo : blk.b*T+blk.keyStart+hi] {
				if !ok {
					row[lo+j] = negInf
				}
			}
			q := qg[r*d : (r+1)*d]
			for i := 1; i <= k; i++ {
				kr := keys.Step(i)[(blk.b*T+t)*kvStride+blk.kvh*d:]
				diag[r*k+i-1] = a.Scale * dot32(q, kr[:d])
			}
		}
	})
}

// Forward computes out and lse for step len(keys)-1.
func (a TTTAttention) Forward(out, lse, q []float32, keys, values [][]float32, valid []bool, starts []int32, B, T int) {
	TTTForward(a, false, out, lse, q, Slices(keys), Slices(values), valid, starts, B, T)
}

// TTTForward is TTTAttention.Forward over any list of steps (a backend's tensors), with pure-Go (gonum)
// products when pure is set: the pure-Go backend's.
func TTTForward[S Steps](a TTTAttention, pure bool, out, lse, q []float32, keys, values S, valid []bool, starts []int32, B, T int) {
	gemm := a.gemmOf(pure)
	d, group, kvStride := a.HeadDim, a.Heads/a.KVHeads, a.KVHeads*a.HeadDim
	k := keys.Len() - 1
	var s, diag, qg, og []float32
	for _, blk := range a.blocks(starts, B, T) {
		rows, w := group*blk.nq, blk.width()
		s = tensor.Resize(s, rows*w)
		diag = tensor.Resize(diag, rows*k)
		qg, og = tensor.Resize(qg, rows*d), tensor.Resize(og, rows*d)
		a.gather(qg, q, blk, T)
		tttScores(a, gemm, s, diag, qg, keys, valid, starts, blk, T)
		parallel.For(rows, max(1, 4096/w), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				row, dg := s[r*w:(r+1)*w], diag[r*k:(r+1)*k]
				m := maxFold(maxFold(float32(math.Inf(-1)), row), dg)
				if math.IsInf(float64(m), -1) { // every key masked (a padding row 0): attend uniformly
					m = 0
					for j := range row {
						row[j] = 0
					}
				}
				expShift(row, m)
				expShift(dg, m)
				sum := sum64(row)
				for _, e := range dg {
					sum += float64(e)
				}
				inv := float32(1 / sum)
				for j := range row {
					row[j] *= inv
				}
				for j := range dg {
					dg[j] *= inv
				}
				t := blk.q0 + r%blk.nq
				h := blk.kvh*group + r/blk.nq
				lse[(blk.b*T+t)*a.Heads+h] = m + float32(math.Log(sum))
			}
		})
		gemm(false, false, rows, d, w, 1, s, w, values.Step(0)[a.kvOffset(blk, T):], kvStride, 0, og, d)
		for r := 0; r < rows; r++ {
			t := blk.q0 + r%blk.nq
			o := og[r*d : (r+1)*d]
			for i := 1; i <= k; i++ {
				p := diag[r*k+i-1]
				vr := values.Step(i)[(blk.b*T+t)*kvStride+blk.kvh*d:]
				for c := range o {
					o[c] += p * vr[c]
				}
			}
		}
		a.scatter(out, og, blk, T)
	}
}

// Backward adds to dq the query gradient of step len(keys)-1 and to dKeys[i], dValues[i] (i = 0..k) the
// key and value gradients, given the step's output gradient dout and its forward out and lse.
func (a TTTAttention) Backward(dq []float32, dKeys, dValues [][]float32, dout, out, lse, q []float32, keys, values [][]float32, valid []bool, starts []int32, B, T int) {
	TTTBackward(a, false, dq, Slices(dKeys), Slices(dValues), dout, out, lse, q, Slices(keys), Slices(values), valid, starts, B, T)
}

// TTTBackward is TTTAttention.Backward over any list of steps, with pure-Go products when pure is set.
func TTTBackward[S Steps](a TTTAttention, pure bool, dq []float32, dKeys, dValues S, dout, out, lse, q []float32, keys, values S, valid []bool, starts []int32, B, T int) {
	gemm := a.gemmOf(pure)
	d, group, kvStride := a.HeadDim, a.Heads/a.KVHeads, a.KVHeads*a.HeadDim
	k := keys.Len() - 1
	var s, dp, diag, dsDiag, qg, og, dog, dqg, dsum []float32
	for _, blk := range a.blocks(starts, B, T) {
		rows, w := group*blk.nq, blk.width()
		s, dp = tensor.Resize(s, rows*w), tensor.Resize(dp, rows*w)
		diag, dsDiag = tensor.Resize(diag, rows*k), tensor.Resize(dsDiag, rows*k)
		qg, og, dog, dqg = tensor.Resize(qg, rows*d), tensor.Resize(og, rows*d), tensor.Resize(dog, rows*d), tensor.Resize(dqg, rows*d)
		dsum = tensor.Resize(dsum, rows)
		a.gather(qg, q, blk, T)
		a.gather(og, out, blk, T)
		a.gather(dog, dout, blk, T)
		tttScores(a, gemm, s, diag, qg, keys, valid, starts, blk, T)
		vOff := a.kvOffset(blk, T)
		// dP0 = dO V0^T
		gemm(false, true, rows, w, d, 1, dog, d, values.Step(0)[vOff:], kvStride, 0, dp, w)
		parallel.For(rows, max(1, 4096/w), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				t := blk.q0 + r%blk.nq
				h := blk.kvh*group + r/blk.nq
				l := lse[(blk.b*T+t)*a.Heads+h]
				do := dog[r*d : (r+1)*d]
				dsum[r] = dot32(do, og[r*d:(r+1)*d]) // sum_j P_j dP_j = dO . O
				row, dprow := s[r*w:(r+1)*w], dp[r*w:(r+1)*w]
				expShift(row, l) // P0
				for j, p := range row {
					dprow[j] = p * (dprow[j] - dsum[r]) // dS0
				}
				for i := 1; i <= k; i++ {
					p := Exp(diag[r*k+i-1] - l)
					vr := values.Step(i)[(blk.b*T+t)*kvStride+blk.kvh*d:]
					diag[r*k+i-1] = p                                   // P_i
					dsDiag[r*k+i-1] = p * (dot32(do, vr[:d]) - dsum[r]) // dS_i
				}
			}
		})
		// dQ = scale (dS0 K0 + sum_i dS_i K_i[t])
		gemm(false, false, rows, d, w, a.Scale, dp, w, keys.Step(0)[vOff:], kvStride, 0, dqg, d)
		// dK0 += scale dS0^T Q ; dV0 += P0^T dO
		gemm(true, false, w, d, rows, a.Scale, dp, w, qg, d, 1, dKeys.Step(0)[vOff:], kvStride)
		gemm(true, false, w, d, rows, 1, s, w, dog, d, 1, dValues.Step(0)[vOff:], kvStride)
		if k > 0 {
			for r := 0; r < rows; r++ {
				t := blk.q0 + r%blk.nq
				qr, dor, dqr := qg[r*d:(r+1)*d], dog[r*d:(r+1)*d], dqg[r*d:(r+1)*d]
				for i := 1; i <= k; i++ {
					off := (blk.b*T+t)*kvStride + blk.kvh*d
					p, ds := diag[r*k+i-1], dsDiag[r*k+i-1]
					kr, dkr, dvr := keys.Step(i)[off:off+d], dKeys.Step(i)[off:off+d], dValues.Step(i)[off:off+d]
					for c := 0; c < d; c++ {
						dqr[c] += a.Scale * ds * kr[c]
						dkr[c] += a.Scale * ds * qr[c]
						dvr[c] += p * dor[c]
					}
				}
			}
		}
		// dq accumulates: add the block's query gradient.
		for hh := 0; hh < group; hh++ {
			h := blk.kvh*group + hh
			for i := 0; i < blk.nq; i++ {
				row := (blk.b*T+blk.q0+i)*a.Heads*d + h*d
				src := dqg[(hh*blk.nq+i)*d : (hh*blk.nq+i+1)*d]
				dst := dq[row : row+d]
				for c := range dst {
					dst[c] += src[c]
				}
			}
		}
	}
}

// Steps is a list of per-step matrices (the keys or values of each unrolled step): Slices, or a backend's
// Tensors. The TTT kernels are generic over it, so that neither list is converted (allocated) per call.
type Steps interface {
	Len() int
	Step(i int) []float32
}

// Slices is a list of steps as float32 slices.
type Slices [][]float32

// Len implements Steps.
func (s Slices) Len() int { return len(s) }

// Step implements Steps.
func (s Slices) Step(i int) []float32 { return s[i] }

// Tensors is a list of steps as F32 tensors.
type Tensors []tensor.Tensor

// Len implements Steps.
func (s Tensors) Len() int { return len(s) }

// Step implements Steps.
func (s Tensors) Step(i int) []float32 { return s[i].F32() }

// gemmOf is the product the TTT kernels multiply with: sgemm (pure Go when pure is set) or, for a bf16
// attention, products of operands rounded to bf16 with float32 sums: on package bfgemm's kernels (AMX tiles
// where the CPU has them) when the build and CPU have them, else sgemm of rounded copies.
func (a TTTAttention) gemmOf(pure bool) gemmFunc {
	g := blas.Sgemm
	if pure {
		g = blas.SgemmGo
	}
	switch {
	case !a.BF16:
		return g
	case !pure && bfgemm.Available():
		return bf16Gemm
	}
	return roundedGemm(g)
}

// bf16Gemm is bfgemm.Gemm on float32 operands, which it rounds to bf16 as it packs them.
func bf16Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	bfgemm.Gemm(transA, transB, m, n, k, alpha, tensor.Vec(a), lda, tensor.Vec(b), ldb, beta, c, ldc)
}

// roundedGemm is g on copies of its operands rounded to bf16, kept in buffers of its own: one per kernel
// call, which multiplies one block at a time.
func roundedGemm(g gemmFunc) gemmFunc {
	var ra, rb []float32
	return func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
		ra = roundedExtent(ra, a, transA, m, k, lda)
		rb = roundedExtent(rb, b, transB, k, n, ldb)
		g(transA, transB, m, n, k, alpha, ra, lda, rb, ldb, beta, c, ldc)
	}
}

// roundedExtent is buf holding x rounded to bf16 over the stored extent of op(x) [rows, cols] at stride ld.
func roundedExtent(buf, x []float32, trans bool, rows, cols, ld int) []float32 {
	if trans {
		rows, cols = cols, rows
	}
	if rows == 0 || cols == 0 {
		return buf[:0]
	}
	need := (rows-1)*ld + cols
	buf = tensor.Resize(buf, need)
	half.RoundToBF16(buf, x[:need])
	return buf
}
