package draft

import (
	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/rope"
	"github.com/specforge/specforge/internal/tensor"
)

// The draft's decoder layer, forward and backward side by side. Training (ttt.go) and decoding (session.go)
// both run it; they differ only in the attention between its two halves (the TTT attention over the
// unrolled steps, or cached attention over a sequence) and in how the products are taken (linear).
//
//	in:   e = embed(ids); eN = norm(e); hN = norm(h); q, k, v = [eN | hN] W^T; rope(q, k)
//	      (attention: a from q, k, v)
//	out:  hp = h + a Wo^T; y = norm(hp); out = hp + down(silu(y Wgate^T) * (y Wup^T))
//	head: logits = norm(out) lm_head^T
//
// Shapes: n rows; H hidden, I intermediate, qDim = heads*headDim, kvDim = kvHeads*headDim, Vd the draft
// vocabulary. Every operation runs on the draft's backend.Backend; the workspaces are host float32 slices,
// wrapped as tensors at each call (a Tensor is a plain value: wrapping allocates nothing).

// t32 wraps a float32 slice for the backend; a nil slice is the absent operand (the nil Tensor).
func t32(x []float32) tensor.Tensor {
	if x == nil {
		return tensor.Tensor{}
	}
	return tensor.Vec(x)
}

// linear is one weight w [out, in] of the draft as a product reads it: training multiplies many rows by the
// weight itself (one matrix product), decoding multiplies a few rows by the backend's prepared weight (the
// CPU backend keeps a transpose for them). A bf16 training step multiplies by w16, w rounded to bf16, and
// rounds the gradients it multiplies to bf16 in conv: every product is then a bf16 product with float32
// accumulation (the backend rounds the other, float32 operand), as under PyTorch's bf16 autocast.
type linear struct {
	be      backend.Backend
	w       []float32
	out, in int
	prep    backend.Weight // nil: multiply by w
	w16     tensor.Tensor  // the nil Tensor: float32 products
	conv    *[]byte        // scratch for a gradient rounded to bf16 (bf16 steps)
}

// weight is w (or w16) from element off on, for products that read a column block of it.
func (l *linear) weight(off int) tensor.Tensor {
	if !l.w16.IsNil() {
		return l.w16.Rows(off, l.w16.Len())
	}
	return t32(l.w[off:])
}

// grad is dy [n, out] as the backward's products read it: rounded to bf16 in a bf16 step.
func (l *linear) grad(dy []float32) tensor.Tensor {
	if l.w16.IsNil() {
		return t32(dy)
	}
	*l.conv = tensor.Resize(*l.conv, 2*len(dy))
	t, err := tensor.FromBytes(tensor.BF16, tensor.Host, *l.conv, len(dy))
	if err != nil {
		panic(err) // the buffer was just sized for dy
	}
	l.be.Convert(t, t32(dy))
	return t
}

// apply computes y [n, out] = x [n, in] w^T, or adds it to y when acc is set.
func (l *linear) apply(y, x []float32, n int, acc bool) {
	if l.prep != nil {
		l.be.Linear(t32(y), t32(x), l.prep, n, acc)
		return
	}
	var beta float32
	if acc {
		beta = 1
	}
	l.be.MatMul(false, true, n, l.out, l.in, 1, t32(x), l.in, l.weight(0), l.in, beta, t32(y), l.out)
}

// applyPair computes y [n, out] = [xe | xh] w^T for w [out, 2H] and xe, xh [n, H]. Unprepared, it takes two
// products by the halves of w, so that training never builds the [n, 2H] concatenation; prepared, it takes
// one product of x = [xe | xh] [n, 2H] (a few rows, concatenated by the caller) by the prepared weight.
func (l *linear) applyPair(y, xe, xh, x []float32, n int) {
	h := l.in / 2
	if l.prep != nil {
		l.be.Linear(t32(y), t32(x), l.prep, n, false)
		return
	}
	l.be.MatMul(false, true, n, l.out, h, 1, t32(xe), h, l.weight(0), 2*h, 0, t32(y), l.out)
	l.be.MatMul(false, true, n, l.out, h, 1, t32(xh), h, l.weight(h), 2*h, 1, t32(y), l.out)
}

// backward adds to dw [out, in] the weight gradient dy^T x and, unless dx is nil (fc's input is the
// target's), writes the input gradient dy [n, out] w into dx [n, in] (adds it when acc is set).
func (l *linear) backward(dx, dw, dy, x []float32, n int, acc bool) {
	g := l.grad(dy)
	l.be.MatMul(true, false, l.out, l.in, n, 1, g, l.out, t32(x), l.in, 1, t32(dw), l.in)
	if dx != nil {
		var beta float32
		if acc {
			beta = 1
		}
		l.be.MatMul(false, false, n, l.in, l.out, 1, g, l.out, l.weight(0), l.in, beta, t32(dx), l.in)
	}
}

// backwardPair adds to dxe, dxh [n, H] and dw [out, 2H] the gradients of applyPair (unprepared) given dy.
func (l *linear) backwardPair(dxe, dxh, dw, dy, xe, xh []float32, n int) {
	h := l.in / 2
	g := l.grad(dy)
	l.be.MatMul(false, false, n, h, l.out, 1, g, l.out, l.weight(0), 2*h, 1, t32(dxe), h)
	l.be.MatMul(false, false, n, h, l.out, 1, g, l.out, l.weight(h), 2*h, 1, t32(dxh), h)
	l.be.MatMul(true, false, l.out, h, n, 1, g, l.out, t32(xe), h, 1, t32(dw), 2*h)
	l.be.MatMul(true, false, l.out, h, n, 1, g, l.out, t32(xh), h, 1, t32(dw[h:]), 2*h)
}

// layer is the draft's weights as its forward and backward read them, on the draft's backend.
type layer struct {
	d                                      *Draft
	be                                     backend.Backend
	H, I, qDim, kvDim, heads, kvHeads, vd  int
	eps                                    float32
	fc, q, k, v, o, gate, up, down, lmHead linear
}

// newLayer binds the layer to d's weights, prepared for decoding when p is not nil.
func newLayer(d *Draft, p *Prepared) layer {
	c, w, be := &d.Config, &d.W, d.be
	H, I, qDim, kvDim := c.HiddenSize, c.IntermediateSize, c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
	l := layer{d: d, be: be, H: H, I: I, qDim: qDim, kvDim: kvDim, heads: c.NumHeads, kvHeads: c.NumKVHeads,
		vd: c.DraftVocabSize, eps: float32(c.RMSNormEps),
		fc: linear{be: be, w: w.FC, out: H, in: c.AuxWidth()},
		q:  linear{be: be, w: w.Wq, out: qDim, in: 2 * H}, k: linear{be: be, w: w.Wk, out: kvDim, in: 2 * H}, v: linear{be: be, w: w.Wv, out: kvDim, in: 2 * H},
		o:    linear{be: be, w: w.Wo, out: H, in: qDim},
		gate: linear{be: be, w: w.Wgate, out: I, in: H}, up: linear{be: be, w: w.Wup, out: I, in: H}, down: linear{be: be, w: w.Wdown, out: H, in: I},
		lmHead: linear{be: be, w: w.LMHead, out: c.DraftVocabSize, in: H},
	}
	if p != nil {
		l.fc.prep, l.q.prep, l.k.prep, l.v.prep, l.o.prep = p.fc, p.q, p.k, p.v, p.o
		l.gate.prep, l.up.prep, l.down.prep, l.lmHead.prep = p.gate, p.up, p.down, p.lmHead
	}
	return l
}

// acts is what the layer's forward of n rows writes and its backward reads. Decoding leaves the 1/rms
// buffers nil (it has no backward) and points k and v into its cache.
type acts struct {
	h            []float32 // [n, H] input hidden state (the caller's; training keeps it per step)
	e, eN, eRstd []float32 // [n, H], [n, H], [n]: token embedding, its norm, 1/rms
	hN, hRstd    []float32 // [n, H], [n]: norm of h, 1/rms
	x            []float32 // [n, 2H] scratch for prepared q, k, v products (decoding only)
	q, k, v      []float32 // [n, qDim], [n, kvDim], [n, kvDim]: post-RoPE queries and keys, values
	a            []float32 // [n, qDim] attention output
	hp, hpRstd   []float32 // [n, H], [n]: residual after attention, 1/rms
	y            []float32 // [n, H] post-attention norm
	gate, up     []float32 // [n, I]
	rope         *rope.Table
}

// forwardIn computes s.e, s.eN, s.hN, s.q, s.k and s.v of tokens ids and hidden states s.h [n, H].
func (l *layer) forwardIn(s *acts, ids []int32, n int) {
	be, w := l.be, &l.d.W
	be.Embedding(t32(s.e), l.d.Embed, ids, l.H)
	be.RMSNormForward(t32(s.eN), t32(s.eRstd), t32(s.e), t32(w.InputNorm), n, l.H, l.eps)
	be.RMSNormForward(t32(s.hN), t32(s.hRstd), t32(s.h), t32(w.HiddenNorm), n, l.H, l.eps)
	if l.q.prep != nil {
		for r := 0; r < n; r++ {
			copy(s.x[r*2*l.H:], s.eN[r*l.H:(r+1)*l.H])
			copy(s.x[r*2*l.H+l.H:], s.hN[r*l.H:(r+1)*l.H])
		}
	}
	l.q.applyPair(s.q, s.eN, s.hN, s.x, n)
	l.k.applyPair(s.k, s.eN, s.hN, s.x, n)
	l.v.applyPair(s.v, s.eN, s.hN, s.x, n)
	be.RoPEForward(t32(s.q), s.rope, n, l.heads)
	be.RoPEForward(t32(s.k), s.rope, n, l.kvHeads)
}

// backwardIn adds to dh [n, H] the gradient w.r.t. s.h and to grad the weight gradients, given dq [n, qDim],
// dk, dv [n, kvDim] w.r.t. the post-RoPE queries and keys and the values (dq and dk are rotated back in
// place). dEN, dHN [n, H] are zeroed scratch.
func (l *layer) backwardIn(dh []float32, grad *Weights, s *acts, dq, dk, dv, dEN, dHN []float32, n int) {
	be, w := l.be, &l.d.W
	be.RoPEBackward(t32(dq), s.rope, n, l.heads)
	be.RoPEBackward(t32(dk), s.rope, n, l.kvHeads)
	l.q.backwardPair(dEN, dHN, grad.Wq, dq, s.eN, s.hN, n)
	l.k.backwardPair(dEN, dHN, grad.Wk, dk, s.eN, s.hN, n)
	l.v.backwardPair(dEN, dHN, grad.Wv, dv, s.eN, s.hN, n)
	be.RMSNormBackward(tensor.Tensor{}, t32(grad.InputNorm), t32(dEN), t32(s.e), t32(w.InputNorm), t32(s.eRstd), n, l.H) // the embedding is frozen
	be.RMSNormBackward(t32(dh), t32(grad.HiddenNorm), t32(dHN), t32(s.h), t32(w.HiddenNorm), t32(s.hRstd), n, l.H)
}

// forwardOut computes out [n, H] from the attention output s.a and s.h, saving s.hp, s.y, s.gate and s.up;
// act [n, I] receives silu(gate)*up (it may be s.gate when no backward follows). out may be s.hp.
func (l *layer) forwardOut(out, act []float32, s *acts, n int) {
	copy(s.hp, s.h)
	l.o.apply(s.hp, s.a, n, true)
	l.be.RMSNormForward(t32(s.y), t32(s.hpRstd), t32(s.hp), t32(l.d.W.PostNorm), n, l.H, l.eps)
	l.gate.apply(s.gate, s.y, n, false)
	l.up.apply(s.up, s.y, n, false)
	l.be.SwiGLUForward(t32(act), t32(s.gate), t32(s.up))
	copy(out, s.hp)
	l.down.apply(out, act, n, true)
}

// outGrads is the scratch of backwardOut: act, dact, dgate, dup [n, I] and dy [n, H]; dgate and dup zeroed.
type outGrads struct {
	act, dact, dgate, dup, dy []float32
}

// backwardOut turns dh [n, H], the gradient w.r.t. out, into the gradient w.r.t. s.hp (in place), writes
// the gradient w.r.t. s.a into da [n, qDim] and adds the weight gradients to grad.
func (l *layer) backwardOut(dh, da []float32, grad *Weights, s *acts, g *outGrads, n int) {
	be, w := l.be, &l.d.W
	be.SwiGLUForward(t32(g.act), t32(s.gate), t32(s.up)) // recomputed: one [n, I] buffer serves every step
	l.down.backward(g.dact, grad.Wdown, dh, g.act, n, false)
	be.SwiGLUBackward(t32(g.dgate), t32(g.dup), t32(g.dact), t32(s.gate), t32(s.up))
	l.gate.backward(g.dy, grad.Wgate, g.dgate, s.y, n, false)
	l.up.backward(g.dy, grad.Wup, g.dup, s.y, n, true)
	be.RMSNormBackward(t32(dh), t32(grad.PostNorm), t32(g.dy), t32(s.hp), t32(w.PostNorm), t32(s.hpRstd), n, l.H)
	l.o.backward(da, grad.Wo, dh, s.a, n, false)
}

// headForward computes logits [n, Vd] = norm(h) lm_head^T for h [n, H], saving the norm hn [n, H] and, when
// not nil, rstd [n].
func (l *layer) headForward(logits, hn, rstd, h []float32, n int) {
	l.be.RMSNormForward(t32(hn), t32(rstd), t32(h), t32(l.d.W.Norm), n, l.H, l.eps)
	l.lmHead.apply(logits, hn, n, false)
}

// headBackward adds to dh [n, H] the gradient through headForward given dlogits [n, Vd], and to grad the
// weight gradients; dhn [n, H] is scratch.
func (l *layer) headBackward(dh []float32, grad *Weights, dlogits, dhn, hn, h, rstd []float32, n int) {
	l.lmHead.backward(dhn, grad.LMHead, dlogits, hn, n, false)
	l.be.RMSNormBackward(t32(dh), t32(grad.Norm), t32(dhn), t32(h), t32(l.d.W.Norm), t32(rstd), n, l.H)
}
