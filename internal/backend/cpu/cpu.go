//go:build cgo

package cpu

import (
	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/backend/purego"
	"github.com/specforge/specforge/internal/bfgemm"
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
func (*Backend) Name() string {
	products := "bf16 products: " + bfgemm.Kernels() + " kernels"
	if !bf16Kernels {
		products = "bf16 products: float32 sgemm of widened tiles (this CPU has no AVX512-BF16)"
	}
	return "cpu (" + blas.Name() + "; " + products + ")"
}

// MatMul implements backend.Backend.
func (*Backend) MatMul(transA, transB bool, m, n, k int, alpha float32, a tensor.Tensor, lda int, b tensor.Tensor, ldb int, beta float32, c tensor.Tensor, ldc int) {
	if isHalf(a) || isHalf(b) {
		if bf16Kernels && a.DType() != tensor.F16 && b.DType() != tensor.F16 {
			bfgemm.Gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c.F32(), ldc)
			return
		}
		purego.MatMulHalf(blas.Sgemm, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c.F32(), ldc)
		return
	}
	blas.Sgemm(transA, transB, m, n, k, alpha, a.F32(), lda, b.F32(), ldb, beta, c.F32(), ldc)
}

// weight is the tensor a weight came from and, for an F32 one, its blas.Weight (with its transpose when
// small). BF16 and F16 weights have no blas.Weight: its transpose would be a float32 copy.
type weight struct {
	t       tensor.Tensor
	w       blas.Weight
	out, in int
	p       backend.Product
}

func (w *weight) Tensor() tensor.Tensor { return w.t }
func (w *weight) Out() int              { return w.out }
func (w *weight) In() int               { return w.in }

// isHalf reports whether t is BF16 or F16.
func isHalf(t tensor.Tensor) bool { d := t.DType(); return d == tensor.BF16 || d == tensor.F16 }

// PrepareWeight implements backend.Backend.
func (*Backend) PrepareWeight(w tensor.Tensor, out, in int, p backend.Product) (backend.Weight, error) {
	if err := purego.CheckWeight(w, out, in, p); err != nil {
		return nil, err
	}
	pw := &weight{t: w, out: out, in: in, p: p}
	if w.DType() == tensor.F32 {
		pw.w = blas.NewWeight(w.F32(), out, in)
	}
	return pw, nil
}

// Linear implements backend.Backend.
func (*Backend) Linear(y, x tensor.Tensor, w backend.Weight, rows int, acc bool) {
	pw := w.(*weight)
	switch d := pw.t.DType(); {
	case d == tensor.BF16 && pw.p == backend.BF16Product:
		linearBF16(y.F32(), x.F32(), pw, rows, acc)
	case d == tensor.BF16 || d == tensor.F16: // widened tiles times x as it is
		purego.LinearHalf(blas.Sgemm, y.F32(), x.F32(), pw.t, pw.out, pw.in, rows, acc, false)
	default:
		pw.w.Apply(y.F32(), x.F32(), rows, acc)
	}
}

// Linears implements backend.Backend.
func (b *Backend) Linears(calls []backend.LinearCall) { purego.Linears(b.Linear, calls) }

// bf16Kernels says whether bf16 products run on package bfgemm's AVX512-BF16 kernels; without them they
// run as the purego backend's tiled products (tiles of the bf16 operand widened, the other rounded to
// bf16) on OpenBLAS's sgemm: the same numbers up to the order of the sums, about half the speed.
var bf16Kernels = bfgemm.Available()

// linearBF16 is Linear with a BF16 weight prepared for BF16Product.
func linearBF16(y, x []float32, w *weight, rows int, acc bool) {
	if !bf16Kernels {
		purego.LinearHalf(blas.Sgemm, y, x, w.t, w.out, w.in, rows, acc, true)
		return
	}
	var beta float32
	if acc {
		beta = 1
	}
	bfgemm.Gemm(false, true, rows, w.out, w.in, 1, tensor.Vec(x), w.in, w.t, w.in, beta, y, w.out)
}

// Convert implements backend.Backend: rounding to bf16 runs on the AVX512-BF16 conversion where the CPU
// has it (a bf16 training step rounds its weights and gradients on every call).
func (b *Backend) Convert(dst, src tensor.Tensor) {
	if bf16Kernels && dst.DType() == tensor.BF16 && src.DType() == tensor.F32 && dst.Len() == src.Len() {
		bfgemm.Round(dst.Bits16(), src.F32())
		return
	}
	b.Backend.Convert(dst, src)
}

// AttentionForward implements backend.Backend.
func (*Backend) AttentionForward(out, q, k, v tensor.Tensor, T int, a backend.Attention, m backend.Mask) {
	kernels.Attention(a).Forward(out.F32(), q.F32(), k.F32(), v.F32(), T, kernels.Mask(m))
}

// TTTAttentionForward implements backend.Backend.
func (*Backend) TTTAttentionForward(out, lse, q tensor.Tensor, keys, values []tensor.Tensor, valid []bool, starts []int32, B, T int, a backend.Attention) {
	kernels.TTTForward(kernels.TTTAttention(a), false, out.F32(), lse.F32(), q.F32(), kernels.Tensors(keys), kernels.Tensors(values), valid, starts, B, T)
}

// TTTAttentionBackward implements backend.Backend.
func (*Backend) TTTAttentionBackward(dq tensor.Tensor, dKeys, dValues []tensor.Tensor, dout, out, lse, q tensor.Tensor, keys, values []tensor.Tensor, valid []bool, starts []int32, B, T int, a backend.Attention) {
	kernels.TTTBackward(kernels.TTTAttention(a), false, dq.F32(), kernels.Tensors(dKeys), kernels.Tensors(dValues),
		dout.F32(), out.F32(), lse.F32(), q.F32(), kernels.Tensors(keys), kernels.Tensors(values), valid, starts, B, T)
}

// SwiGLUForward implements backend.Backend.
func (*Backend) SwiGLUForward(out, gate, up tensor.Tensor) {
	kernels.SwiGLU(out.F32(), gate.F32(), up.F32())
}

// Softmax implements backend.Backend.
func (*Backend) Softmax(x tensor.Tensor, rows, n int) { kernels.SoftmaxRows(x.F32(), rows, n) }

// LogSumExp implements backend.Backend.
func (*Backend) LogSumExp(x tensor.Tensor) float64 { return kernels.LogSumExp(x.F32()) }
