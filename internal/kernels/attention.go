package kernels

import (
	"math"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/blas"
	"github.com/specforge/specforge/internal/parallel"
)

// Attention is grouped-query scaled dot-product attention of the shape backend.Attention describes, with
// the kernels as its methods.
type Attention backend.Attention

// Mask is backend.Mask (which keys each new query sees), with the kernels' visibility test as a method.
type Mask backend.Mask

func (m *Mask) visible(T, i, j int) bool {
	if m.KeyValid != nil && !m.KeyValid[j] {
		return false
	}
	if m.Window > 0 && m.Past+i-j >= m.Window {
		return false
	}
	if j > m.Past+i {
		return false
	}
	if jj := j - m.TreeFrom; m.Tree != nil && jj >= 0 {
		return m.Tree[i*(m.Past+T-m.TreeFrom)+jj]
	}
	return true
}

// fewQueries is the most new queries of a forward that are attended to one at a time in the arithmetic of a
// single query: by the few-query kernel where it applies, else by blocks of one query. A verification forward
// of up to fewQueries drafted tokens then gives each row bit for bit what decoding them one by one gives,
// whatever the heads per KV head; longer forwards (prefill) take blocks of many queries.
const fewQueries = 32 // at most 32: forwardFew keeps the queries that see a key in a uint32

// queryBlockRows bounds the rows of one score block (queries times heads of a group), so that memory stays
// O(rows * keys) for any sequence length.
const queryBlockRows = 512

// Forward computes out [T, Heads*HeadDim] from q [T, Heads*HeadDim] and the keys and values k, v
// [Past+T, KVHeads*HeadDim] of one sequence.
func (a Attention) Forward(out, q, k, v []float32, T int, m Mask) {
	if !a.forwardFew(out, q, k, v, T, m) {
		a.forwardBlocked(blas.Sgemm, Softmax, out, q, k, v, T, m)
	}
}

// ForwardGo is Forward computed in pure Go in every build (gonum products, SoftmaxGo, no few-query kernel).
func (a Attention) ForwardGo(out, q, k, v []float32, T int, m Mask) {
	a.forwardBlocked(blas.SgemmGo, SoftmaxGo, out, q, k, v, T, m)
}

// gemmFunc is the signature of blas.Sgemm: the kernels built on products take it as a parameter, so that
// the pure-Go versions share their code with the others.
type gemmFunc = func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

// forwardBlocked computes Forward for one KV head and block of queries at a time: a score block by one
// product, row softmaxes, and the values by another product.
func (a Attention) forwardBlocked(gemm gemmFunc, softmax func([]float32), out, q, k, v []float32, T int, m Mask) {
	group := a.Heads / a.KVHeads
	d := a.HeadDim
	qStride, kvStride := a.Heads*d, a.KVHeads*d
	tb := max(1, min(T, queryBlockRows/group))
	if T <= fewQueries {
		tb = 1 // the products and softmaxes of each query have the shapes of a one-query forward
	}
	qg := make([]float32, group*tb*d)
	og := make([]float32, group*tb*d)
	var scores []float32
	for kvh := 0; kvh < a.KVHeads; kvh++ {
		for q0 := 0; q0 < T; q0 += tb {
			nq := min(tb, T-q0)
			keyEnd := m.Past + q0 + nq
			keyStart := 0
			if m.Window > 0 {
				keyStart = max(0, m.Past+q0-m.Window+1)
			}
			nk := keyEnd - keyStart
			rows := group * nq
			// Gather the queries of the group's heads: row hh*nq+i is head kvh*group+hh at query q0+i.
			for hh := 0; hh < group; hh++ {
				h := kvh*group + hh
				for i := 0; i < nq; i++ {
					copy(qg[(hh*nq+i)*d:(hh*nq+i+1)*d], q[(q0+i)*qStride+h*d:(q0+i)*qStride+h*d+d])
				}
			}
			if cap(scores) < rows*nk {
				scores = make([]float32, rows*nk)
			}
			s := scores[:rows*nk]
			kOff := keyStart*kvStride + kvh*d
			gemm(false, true, rows, nk, d, a.Scale, qg, d, k[kOff:], kvStride, 0, s, nk)
			parallel.For(rows, max(1, 16384/nk), func(lo, hi int) {
				for r := lo; r < hi; r++ {
					i := q0 + r%nq
					row := s[r*nk : (r+1)*nk]
					if m.KeyValid == nil && m.Tree == nil {
						// Plain causal (and windowed) rows see one contiguous range of keys.
						lo := 0
						if m.Window > 0 {
							lo = max(0, m.Past+i-m.Window+1-keyStart)
						}
						hi := m.Past + i + 1 - keyStart
						clear(row[:lo])
						clear(row[hi:])
						softmax(row[lo:hi])
						continue
					}
					for jj := range row {
						if !m.visible(T, i, keyStart+jj) {
							row[jj] = float32(math.Inf(-1))
						}
					}
					softmax(row)
				}
			})
			gemm(false, false, rows, d, nk, 1, s, nk, v[kOff:], kvStride, 0, og, d)
			for hh := 0; hh < group; hh++ {
				h := kvh*group + hh
				for i := 0; i < nq; i++ {
					copy(out[(q0+i)*qStride+h*d:(q0+i)*qStride+h*d+d], og[(hh*nq+i)*d:(hh*nq+i+1)*d])
				}
			}
		}
	}
}
