// Package backend is the compute seam of specforge: the interface over the operations the target model and
// the draft run (matrix products, RMSNorm, RoPE, attention, SwiGLU, softmax, cross-entropy, embedding, with
// the backwards training needs, dtype conversion and the AdamW step), written against tensor.Tensor.
// Implementations are packages of their own: backend/cpu (OpenBLAS, C vector kernels and bf16 products,
// cgo) and backend/purego (pure Go, the reference); package backend/auto picks one by build. A model holds a Backend and calls nothing below it.
//
// Signatures follow llm.c: outputs first, then inputs, then the shapes, spelt out (rows, dim, heads...);
// tensors are row-major and their sizes must cover the shapes given. An optional operand is the nil Tensor
// (tensor.Tensor{}). The calls allocate nothing per call beyond what the kernels below them do (they take
// Tensors by value, and Tensors are plain values).
//
// Every floating operand is F32, except the weights a checkpoint stores in 16 bits, which stay as stored:
//   - PrepareWeight accepts F32, BF16 and F16 weights, and the Product Linear computes with a BF16 one.
//   - Linear with a BF16 weight prepared for BF16Product is a bf16 product: x is rounded to bf16 (to
//     nearest, ties to even, as package half does) and the products accumulate in float32, the semantics
//     of an AVX512-BF16 vdpbf16ps kernel and of PyTorch's bf16 matmul. With a BF16 weight prepared for
//     F32Product, and with any F16 weight, the weight is widened to float32 (exactly) and multiplied by x
//     as it is, unrounded: the model computes as its float32 copy would.
//   - MatMul takes a BF16 or F16 a or b (or both) the same way: with a BF16 operand the F32 one is rounded
//     to bf16; a 16-bit operand is widened exactly. c is always F32.
//   - Embedding takes a BF16 or F16 table and widens the rows it copies.
//
// An implementation widens a 16-bit operand a tile of rows at a time, never as a whole: a bf16 model's
// resident memory stays about its checkpoint's size.
package backend

import (
	"fmt"

	"github.com/specforge/specforge/internal/rope"
	"github.com/specforge/specforge/internal/tensor"
)

// Backend runs the compute operations. Implementations are safe for concurrent use: they hold no per-call
// state.
type Backend interface {
	// Name says which implementation this is, for logs and benchmarks.
	Name() string

	// MatMul computes c = alpha*op(a)*op(b) + beta*c where op(x) is x or its transpose, op(a) is [m, k],
	// op(b) is [k, n] and c is [m, n]; lda, ldb and ldc are the row strides of a, b and c as stored (so
	// views into wider rows are products too). beta 1 accumulates.
	MatMul(transA, transB bool, m, n, k int, alpha float32, a tensor.Tensor, lda int, b tensor.Tensor, ldb int, beta float32, c tensor.Tensor, ldc int)

	// PrepareWeight makes w [out, in] (PyTorch's linear layout; F32, BF16 or F16) ready for Linear, which
	// multiplies by a BF16 w as p says (F32 and F16 weights have one product): a backend may keep a
	// transposed copy of a small F32 weight for its few-row kernels, or move it to a device.
	PrepareWeight(w tensor.Tensor, out, in int, p Product) (Weight, error)
	// Linear computes y = x w^T for x [rows, w.In()] into y [rows, w.Out()], or adds it to y when acc is set.
	// w must come from this backend's PrepareWeight.
	Linear(y, x tensor.Tensor, w Weight, rows int, acc bool)
	// Linears runs independent Linear calls, whose outputs must not overlap, spread across the cores (each
	// call computes what Linear would): the per-expert products of a mixture-of-experts layer.
	Linears(calls []LinearCall)

	// RMSNormForward computes out[r] = w * x[r] / sqrt(mean(x[r]^2) + eps) for rows of length dim (out may
	// alias x), and stores each row's 1/rms in rstd [rows] unless rstd is nil (inference).
	RMSNormForward(out, rstd, x, w tensor.Tensor, rows, dim int, eps float32)
	// RMSNormBackward adds to dx [rows, dim] and dw [dim] the gradients through out = RMSNorm(x) given dy
	// [rows, dim] and the rstd the forward saved; dx or dw may be nil (a frozen input or weight).
	RMSNormBackward(dx, dw, dy, x, w, rstd tensor.Tensor, rows, dim int)

	// RoPEForward rotates x [rows, heads*headDim] in place by table row r for row r (rotate-half layout).
	RoPEForward(x tensor.Tensor, t *rope.Table, rows, heads int)
	// RoPEBackward rotates x back (the gradient of RoPEForward: the rotation is orthogonal).
	RoPEBackward(x tensor.Tensor, t *rope.Table, rows, heads int)

	// AttentionForward is grouped-query scaled dot-product attention of one sequence: out [T, Heads*HeadDim]
	// from q [T, Heads*HeadDim] and k, v [m.Past+T, KVHeads*HeadDim], the keys each query sees given by m
	// (causal, sliding window, padding, draft tree). It serves prefill and few-query cached decoding alike.
	AttentionForward(out, q, k, v tensor.Tensor, T int, a Attention, m Mask)
	// TTTAttentionForward is the attention of EAGLE-3's training-time test at step len(keys)-1: q and out
	// [B*T, Heads*HeadDim]; keys[i], values[i] [B*T, KVHeads*HeadDim] of step i; valid [B*T] marks real rows;
	// starts [B*T] (nil: all 0) is, in a packed batch, the row index of the first token of each token's
	// sample: a query sees no step-0 key before its start. lse [B*T, Heads] is saved for the backward.
	TTTAttentionForward(out, lse, q tensor.Tensor, keys, values []tensor.Tensor, valid []bool, starts []int32, B, T int, a Attention)
	// TTTAttentionBackward adds the gradients of TTTAttentionForward to dq, dKeys[i] and dValues[i] (same
	// shapes as q, keys and values) given dout and the forward's out and lse.
	TTTAttentionBackward(dq tensor.Tensor, dKeys, dValues []tensor.Tensor, dout, out, lse, q tensor.Tensor, keys, values []tensor.Tensor, valid []bool, starts []int32, B, T int, a Attention)

	// SwiGLUForward computes out = silu(gate) * up elementwise; out may alias gate or up.
	SwiGLUForward(out, gate, up tensor.Tensor)
	// SwiGLUBackward adds to dgate and dup the gradients of out = silu(gate)*up given dout.
	SwiGLUBackward(dgate, dup, dout, gate, up tensor.Tensor)

	// Softmax replaces each row of x [rows, n] by its softmax; a row of only -Inf becomes uniform.
	Softmax(x tensor.Tensor, rows, n int)
	// LogSumExp returns log(sum(exp(x))) over all of x (-Inf when x is empty or only -Inf).
	LogSumExp(x tensor.Tensor) float64
	// GatherSoftmax computes, for each row r of logits [rows, v], the softmax of the row's values at ids
	// into p [rows, len(ids)] (exponentials summed in float64: the teacher's probabilities), the index of
	// each p row's largest value into argmax [rows] and of each logits row's into fullArgmax [rows].
	GatherSoftmax(p, logits tensor.Tensor, ids []int64, argmax, fullArgmax []int32, rows, v int)
	// SoftCrossEntropy computes, for each row r of logits [rows, v] with coef[r] != 0, the cross-entropy
	// against the distribution targets [rows, v], replaces the logits row by its gradient
	// coef[r]*(softmax - targets) (rows with coef 0 become 0), writes each row's argmax into pred [rows],
	// and returns the summed loss.
	SoftCrossEntropy(logits, targets, coef tensor.Tensor, pred []int32, rows, v int) float64
	// SoftCrossEntropyAccept is SoftCrossEntropy for the LK losses: it also writes each row's acceptance
	// sum_v min(targets, softmax(logits)) into accept [rows], and each logits row becomes the gradient of
	// klCoef[r]*CE_r + w_r*accept_r, with w_r = accCoef[r], or accCoef[r]/accept_r when logAccept (the
	// gradient of accCoef[r]*log(accept_r); 0 where accept_r is 0). It returns the summed cross-entropy.
	SoftCrossEntropyAccept(logits, targets, klCoef, accCoef tensor.Tensor, logAccept bool, accept []float64, pred []int32, rows, v int) float64

	// Convert copies src into dst (same length) in dst's dtype: F32 to BF16 rounds to nearest, ties to
	// even (a bf16 training step's copies of its weights and gradients); BF16 and F16 to F32 are exact.
	Convert(dst, src tensor.Tensor)

	// AdamW applies one AdamW step to param from grad, updating the moments m and v (all F32, the same
	// length), with the step's scalars s (package optim computes them from the step count).
	AdamW(param, grad, m, v tensor.Tensor, s AdamWStep)

	// Embedding copies rows ids[i] of table [V, dim] into out [len(ids), dim].
	Embedding(out, table tensor.Tensor, ids []int32, dim int)
	// Add computes dst += src elementwise.
	Add(dst, src tensor.Tensor)
	// AddBias adds bias [dim] to every row of y [rows, dim].
	AddBias(y, bias tensor.Tensor, rows, dim int)
	// AddWeightedRows adds to each row r of dst [rows, dim], in order of j < k, weight[r*k+j] times row
	// from[r*k+j] of src: the combine of a mixture-of-experts layer, whose experts' outputs src holds.
	AddWeightedRows(dst, src tensor.Tensor, from []int32, weight []float32, rows, k, dim int)
	// Argmax returns the index of the largest element of x (the first on ties).
	Argmax(x tensor.Tensor) int
}

// Product is how Linear multiplies by a BF16 weight.
type Product uint8

const (
	// F32Product widens the weight to float32 and multiplies x as it is: a bf16 checkpoint computes as its
	// float32 copy would (what the forward goldens of a bf16 model folder hold it to).
	F32Product Product = iota
	// BF16Product rounds x to bf16 and accumulates the products in float32 (vdpbf16ps; PyTorch's bf16
	// matmul): the product native bf16 kernels compute.
	BF16Product
)

func (p Product) String() string {
	switch p {
	case F32Product:
		return "f32"
	case BF16Product:
		return "bf16"
	}
	return fmt.Sprintf("Product(%d)", uint8(p))
}

// AdamWStep is one step's scalars of AdamW: p *= Decay; m = Beta1 m + (1-Beta1) g; v = Beta2 v +
// (1-Beta2) g^2; p -= StepSize * m / (sqrt(v)/SqrtBC2 + Eps), with Decay = 1-lr*wd, StepSize =
// lr/(1-Beta1^t), SqrtBC2 = sqrt(1-Beta2^t).
type AdamWStep struct {
	Decay, Beta1, Beta2, StepSize, SqrtBC2, Eps float32
}

// LinearCall is one product of Linears: Y = X W^T over Rows rows, or Y += X W^T when Acc is set.
type LinearCall struct {
	Y, X tensor.Tensor
	W    Weight
	Rows int
	Acc  bool
}

// Weight is a linear layer's weight [Out, In] as a backend prepared it.
type Weight interface {
	// Tensor is the weight as given to PrepareWeight.
	Tensor() tensor.Tensor
	Out() int
	In() int
}

// Attention is the shape of grouped-query attention: query head h reads key/value head h/(Heads/KVHeads),
// as Hugging Face's repeat_kv does; Scale is usually 1/sqrt(HeadDim). BF16 has the TTT attention take its
// products (scores, values and their gradients) of operands rounded to bf16 with float32 sums, as autocast
// does in a bf16 training step; its softmax stays float32.
type Attention struct {
	Heads, KVHeads, HeadDim int
	Scale                   float32
	BF16                    bool
}

// Mask says which keys each of T new queries sees. Keys are indexed 0..Past+T-1: Past cached keys, then the
// keys of the new tokens. Query i (0-based within the new block) sees key j when every rule below allows it.
type Mask struct {
	Past int
	// KeyValid[j] false hides key j from every query (padding); nil means all keys are valid.
	KeyValid []bool
	// Tree is a draft tree's ancestor mask over the keys from TreeFrom on (TreeFrom <= Past; keys before it
	// are a visible prefix): Tree[i*(Past+T-TreeFrom)+(j-TreeFrom)] says whether query i sees key j. Trees
	// list ancestors before descendants: a key after the query's own is never visible. nil means causal.
	Tree     []bool
	TreeFrom int
	// Window > 0 limits query i to keys j with Past+i-j < Window (sliding-window attention).
	Window int
}
