// Package purego is the pure-Go implementation of backend.Backend: gonum products and the Go kernels of
// package kernels, in every build. It is the reference the cpu backend is tested against, and the backend
// of a binary built with CGO_ENABLED=0. Package cpu embeds it for the operations that have no C kernel.
package purego

import (
	"fmt"
	"sort"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/blas"
	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/kernels"
	"github.com/specforge/specforge/internal/parallel"
	"github.com/specforge/specforge/internal/rope"
	"github.com/specforge/specforge/internal/tensor"
)

// Backend is the pure-Go backend. Its zero value is ready to use.
type Backend struct{}

var _ backend.Backend = (*Backend)(nil)

// New returns the pure-Go backend.
func New() *Backend { return &Backend{} }

// Name implements backend.Backend.
func (*Backend) Name() string {
	return "purego (gonum; bf16 products: float32 products of widened tiles)"
}

// MatMul implements backend.Backend.
func (*Backend) MatMul(transA, transB bool, m, n, k int, alpha float32, a tensor.Tensor, lda int, b tensor.Tensor, ldb int, beta float32, c tensor.Tensor, ldc int) {
	if isHalf(a) || isHalf(b) {
		MatMulHalf(blas.SgemmGo, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c.F32(), ldc)
		return
	}
	blas.SgemmGo(transA, transB, m, n, k, alpha, a.F32(), lda, b.F32(), ldb, beta, c.F32(), ldc)
}

// weight is a weight as this backend keeps it: the given tensor, no transpose.
type weight struct {
	t       tensor.Tensor
	w       []float32 // the data of an F32 weight; nil for BF16 and F16, which Linear widens tile by tile
	out, in int
	roundX  bool // a BF16 weight's BF16Product
}

func (w *weight) Tensor() tensor.Tensor { return w.t }
func (w *weight) Out() int              { return w.out }
func (w *weight) In() int               { return w.in }

// PrepareWeight implements backend.Backend.
func (*Backend) PrepareWeight(w tensor.Tensor, out, in int, p backend.Product) (backend.Weight, error) {
	if err := CheckWeight(w, out, in, p); err != nil {
		return nil, err
	}
	pw := &weight{t: w, out: out, in: in, roundX: w.DType() == tensor.BF16 && p == backend.BF16Product}
	if w.DType() == tensor.F32 {
		pw.w = w.F32()[:out*in]
	}
	return pw, nil
}

// CheckWeight returns an error unless w is an F32, BF16 or F16 tensor of at least out*in elements and p is
// a Product.
func CheckWeight(w tensor.Tensor, out, in int, p backend.Product) error {
	if p != backend.F32Product && p != backend.BF16Product {
		return fmt.Errorf("prepare weight [%d, %d]: unknown %v", out, in, p)
	}
	if d := w.DType(); d != tensor.F32 && d != tensor.BF16 && d != tensor.F16 {
		return fmt.Errorf("prepare weight [%d, %d]: dtype %s, want F32, BF16 or F16", out, in, d)
	}
	if w.Len() < out*in {
		return fmt.Errorf("prepare weight [%d, %d]: %d elements", out, in, w.Len())
	}
	return nil
}

// Linear implements backend.Backend.
func (*Backend) Linear(y, x tensor.Tensor, w backend.Weight, rows int, acc bool) {
	pw := w.(*weight)
	if pw.w == nil {
		LinearHalf(blas.SgemmGo, y.F32(), x.F32(), pw.t, pw.out, pw.in, rows, acc, pw.roundX)
		return
	}
	var beta float32
	if acc {
		beta = 1
	}
	blas.SgemmGo(false, true, rows, pw.out, pw.in, 1, x.F32(), pw.in, pw.w, pw.in, beta, y.F32(), pw.out)
}

// Linears implements backend.Backend.
func (b *Backend) Linears(calls []backend.LinearCall) { Linears(b.Linear, calls) }

// Linears runs calls on linear spread across the cores, the costliest first.
func Linears(linear func(y, x tensor.Tensor, w backend.Weight, rows int, acc bool), calls []backend.LinearCall) {
	cost := func(c *backend.LinearCall) int { return c.Rows * c.W.Out() * c.W.In() }
	order := make([]int, len(calls))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return cost(&calls[order[i]]) > cost(&calls[order[j]]) })
	parallel.Items(len(order), func(i int) {
		c := &calls[order[i]]
		linear(c.Y, c.X, c.W, c.Rows, c.Acc)
	})
}

// RMSNormForward implements backend.Backend.
func (*Backend) RMSNormForward(out, rstd, x, w tensor.Tensor, rows, dim int, eps float32) {
	kernels.RMSNormForward(out.F32(), rstd.F32(), x.F32(), w.F32(), rows, dim, eps)
}

// RMSNormBackward implements backend.Backend.
func (*Backend) RMSNormBackward(dx, dw, dy, x, w, rstd tensor.Tensor, rows, dim int) {
	kernels.RMSNormBackward(dx.F32(), dw.F32(), dy.F32(), x.F32(), w.F32(), rstd.F32(), rows, dim)
}

// RoPEForward implements backend.Backend.
func (*Backend) RoPEForward(x tensor.Tensor, t *rope.Table, rows, heads int) {
	t.Apply(x.F32(), rows, heads)
}

// RoPEBackward implements backend.Backend.
func (*Backend) RoPEBackward(x tensor.Tensor, t *rope.Table, rows, heads int) {
	t.ApplyInverse(x.F32(), rows, heads)
}

// AttentionForward implements backend.Backend.
func (*Backend) AttentionForward(out, q, k, v tensor.Tensor, T int, a backend.Attention, m backend.Mask) {
	kernels.Attention(a).ForwardGo(out.F32(), q.F32(), k.F32(), v.F32(), T, kernels.Mask(m))
}

// TTTAttentionForward implements backend.Backend.
func (*Backend) TTTAttentionForward(out, lse, q tensor.Tensor, keys, values []tensor.Tensor, valid []bool, starts []int32, B, T int, a backend.Attention) {
	kernels.TTTForward(kernels.TTTAttention(a), true, out.F32(), lse.F32(), q.F32(), kernels.Tensors(keys), kernels.Tensors(values), valid, starts, B, T)
}

// TTTAttentionBackward implements backend.Backend.
func (*Backend) TTTAttentionBackward(dq tensor.Tensor, dKeys, dValues []tensor.Tensor, dout, out, lse, q tensor.Tensor, keys, values []tensor.Tensor, valid []bool, starts []int32, B, T int, a backend.Attention) {
	kernels.TTTBackward(kernels.TTTAttention(a), true, dq.F32(), kernels.Tensors(dKeys), kernels.Tensors(dValues),
		dout.F32(), out.F32(), lse.F32(), q.F32(), kernels.Tensors(keys), kernels.Tensors(values), valid, starts, B, T)
}

// SwiGLUForward implements backend.Backend.
func (*Backend) SwiGLUForward(out, gate, up tensor.Tensor) {
	kernels.SwiGLUGo(out.F32(), gate.F32(), up.F32())
}

// SwiGLUBackward implements backend.Backend.
func (*Backend) SwiGLUBackward(dgate, dup, dout, gate, up tensor.Tensor) {
	kernels.SwiGLUBackward(dgate.F32(), dup.F32(), dout.F32(), gate.F32(), up.F32())
}

// Softmax implements backend.Backend.
func (*Backend) Softmax(x tensor.Tensor, rows, n int) { kernels.SoftmaxRowsGo(x.F32(), rows, n) }

// LogSumExp implements backend.Backend.
func (*Backend) LogSumExp(x tensor.Tensor) float64 { return kernels.LogSumExpGo(x.F32()) }

// SoftCrossEntropyAccept implements backend.Backend.
func (*Backend) SoftCrossEntropyAccept(logits, targets, klCoef, accCoef tensor.Tensor, logAccept bool, accept []float64, pred []int32, rows, v int) float64 {
	return kernels.SoftCrossEntropyAccept(logits.F32(), targets.F32(), klCoef.F32(), accCoef.F32(), logAccept, accept, pred, rows, v)
}

// SoftCrossEntropy implements backend.Backend.
func (*Backend) SoftCrossEntropy(logits, targets, coef tensor.Tensor, pred []int32, rows, v int) float64 {
	return kernels.SoftCrossEntropy(logits.F32(), targets.F32(), coef.F32(), pred, rows, v)
}

// Embedding implements backend.Backend.
func (*Backend) Embedding(out, table tensor.Tensor, ids []int32, dim int) {
	if isHalf(table) {
		embedHalf(out.F32(), table, ids, dim)
		return
	}
	kernels.Embedding(out.F32(), table.F32(), ids, dim)
}

// Add implements backend.Backend.
func (*Backend) Add(dst, src tensor.Tensor) { kernels.Add(dst.F32(), src.F32()) }

// AddBias implements backend.Backend.
func (*Backend) AddBias(y, bias tensor.Tensor, rows, dim int) {
	kernels.AddBias(y.F32(), bias.F32(), rows, dim)
}

// AddWeightedRows implements backend.Backend.
func (*Backend) AddWeightedRows(dst, src tensor.Tensor, from []int32, weight []float32, rows, k, dim int) {
	kernels.AddWeightedRows(dst.F32(), src.F32(), from, weight, rows, k, dim)
}

// Convert implements backend.Backend.
func (*Backend) Convert(dst, src tensor.Tensor) {
	if dst.Len() != src.Len() {
		panic(fmt.Sprintf("backend: convert %v into %v", src, dst))
	}
	switch d, s := dst.DType(), src.DType(); {
	case d == s:
		copy(dst.Raw(), src.Raw())
	case d == tensor.BF16 && s == tensor.F32:
		half.F32ToBF16(dst.Bits16(), src.F32())
	case d == tensor.F32 && s == tensor.BF16:
		half.BF16ToF32(dst.F32(), src.Bits16())
	case d == tensor.F32 && s == tensor.F16:
		half.F16ToF32(dst.F32(), src.Bits16())
	default:
		panic(fmt.Sprintf("backend: no conversion from %s to %s", s, d))
	}
}

// GatherSoftmax implements backend.Backend.
func (*Backend) GatherSoftmax(p, logits tensor.Tensor, ids []int64, argmax, fullArgmax []int32, rows, v int) {
	ps, z, vd := p.F32(), logits.F32(), len(ids)
	parallel.For(rows, max(1, 16384/v), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := z[r*v : (r+1)*v]
			fullArgmax[r] = int32(kernels.Argmax(row))
			argmax[r] = int32(kernels.GatherSoftmax(ps[r*vd:(r+1)*vd], row, ids))
		}
	})
}

// AdamW implements backend.Backend.
func (*Backend) AdamW(param, grad, m, v tensor.Tensor, s backend.AdamWStep) {
	p := param.F32()
	if grad.Len() != len(p) || m.Len() != len(p) || v.Len() != len(p) {
		panic(fmt.Sprintf("backend: AdamW of %v with gradient %v and moments %v, %v", param, grad, m, v))
	}
	kernels.AdamW(p, grad.F32(), m.F32(), v.F32(), s)
}

// Argmax implements backend.Backend.
func (*Backend) Argmax(x tensor.Tensor) int { return kernels.Argmax(x.F32()) }
