//go:build cgo

package cpu

import (
	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/backend/purego"
	"github.com/specforge/specforge/internal/blas"
	"github.com/specforge/specforge/internal/kernels"
	"github.com/specforge/specforge/internal/tensor"
)

// Backend is the cgo CPU backend. Its zero value is ready to use.
type Backend struct {
	purego.Backend // RMSNorm, RoPE, the backwards, cross-entropy, embedding, Add, Argmax: Go kernels
}

var _ backend.Backend = (*Backend)(nil)

// New returns the cgo CPU backend.
func New() *Backend { return &Backend{} }

// Name implements backend.Backend.
func (*Backend) Name() string { return "cpu (" + blas.Name() + ")" }

// MatMul implements backend.Backend.
func (*Backend) MatMul(transA, transB bool, m, n, k int, alpha float32, a tensor.Tensor, lda int, b tensor.Tensor, ldb int, beta float32, c tensor.Tensor, ldc int) {
	blas.Sgemm(transA, transB, m, n, k, alpha, a.F32(), lda, b.F32(), ldb, beta, c.F32(), ldc)
}

// weight is a blas.Weight (with its transpose when small) and the tensor it came from.
type weight struct {
	t tensor.Tensor
	w blas.Weight
}

func (w *weight) Tensor() tensor.Tensor { return w.t }
func (w *weight) Out() int              { return w.w.Out }
func (w *weight) In() int               { return w.w.In }

// PrepareWeight implements backend.Backend.
func (*Backend) PrepareWeight(w tensor.Tensor, out, in int) (backend.Weight, error) {
	if err := purego.CheckWeight(w, out, in); err != nil {
		return nil, err
	}
	return &weight{t: w, w: blas.NewWeight(w.F32(), out, in)}, nil
}

// Linear implements backend.Backend.
func (*Backend) Linear(y, x tensor.Tensor, w backend.Weight, rows int, acc bool) {
	w.(*weight).w.Apply(y.F32(), x.F32(), rows, acc)
}

// AttentionForward implements backend.Backend.
func (*Backend) AttentionForward(out, q, k, v tensor.Tensor, T int, a backend.Attention, m backend.Mask) {
	kernels.Attention(a).Forward(out.F32(), q.F32(), k.F32(), v.F32(), T, kernels.Mask(m))
}

// TTTAttentionForward implements backend.Backend.
func (*Backend) TTTAttentionForward(out, lse, q tensor.Tensor, keys, values []tensor.Tensor, valid []bool, B, T int, a backend.Attention) {
	kernels.TTTForward(kernels.TTTAttention(a), false, out.F32(), lse.F32(), q.F32(), kernels.Tensors(keys), kernels.Tensors(values), valid, B, T)
}

// TTTAttentionBackward implements backend.Backend.
func (*Backend) TTTAttentionBackward(dq tensor.Tensor, dKeys, dValues []tensor.Tensor, dout, out, lse, q tensor.Tensor, keys, values []tensor.Tensor, valid []bool, B, T int, a backend.Attention) {
	kernels.TTTBackward(kernels.TTTAttention(a), false, dq.F32(), kernels.Tensors(dKeys), kernels.Tensors(dValues),
		dout.F32(), out.F32(), lse.F32(), q.F32(), kernels.Tensors(keys), kernels.Tensors(values), valid, B, T)
}

// SwiGLUForward implements backend.Backend.
func (*Backend) SwiGLUForward(out, gate, up tensor.Tensor) {
	kernels.SwiGLU(out.F32(), gate.F32(), up.F32())
}

// Softmax implements backend.Backend.
func (*Backend) Softmax(x tensor.Tensor, rows, n int) { kernels.SoftmaxRows(x.F32(), rows, n) }

// LogSumExp implements backend.Backend.
func (*Backend) LogSumExp(x tensor.Tensor) float64 { return kernels.LogSumExp(x.F32()) }
