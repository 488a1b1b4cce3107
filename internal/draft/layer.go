package draft

import (
	"github.com/specforge/specforge/internal/blas"
	"github.com/specforge/specforge/internal/kernels"
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
// vocabulary.

// linear is one weight w [out, in] of the draft as a product reads it: training multiplies many rows by the
// weight itself (one BLAS call), decoding multiplies a few rows by its prepared blas.Weight (which keeps a
// transpose for them).
type linear struct {
	w       []float32
	out, in int
	prep    *blas.Weight // nil: multiply by w
}

// apply computes y [n, out] = x [n, in] w^T, or adds it to y when acc is set.
func (l *linear) apply(y, x []float32, n int, acc bool) {
	if l.prep != nil {
		l.prep.Apply(y, x, n, acc)
		return
	}
	var beta float32
	if acc {
		beta = 1
	}
	blas.Sgemm(false, true, n, l.out, l.in, 1, x, l.in, l.w, l.in, beta, y, l.out)
}

// applyPair computes y [n, out] = [xe | xh] w^T for w [out, 2H] and xe, xh [n, H]. Unprepared, it takes two
// products by the halves of w, so that training never builds the [n, 2H] concatenation; prepared, it takes
// one product of x = [xe | xh] [n, 2H] (a few rows, concatenated by the caller) by the kept transpose.
func (l *linear) applyPair(y, xe, xh, x []float32, n int) {
	h := l.in / 2
	if l.prep != nil {
		l.prep.Apply(y, x, n, false)
		return
	}
	blas.Sgemm(false, true, n, l.out, h, 1, xe, h, l.w, 2*h, 0, y, l.out)
	blas.Sgemm(false, true, n, l.out, h, 1, xh, h, l.w[h:], 2*h, 1, y, l.out)
}

// backward adds to dx [n, in] the input gradient dy [n, out] w (or sets it when acc is false) and, when dw
// is not nil, adds to dw [out, in] the weight gradient dy^T x.
func (l *linear) backward(dx, dw, dy, x []float32, n int, acc bool) {
	if dw != nil {
		blas.Sgemm(true, false, l.out, l.in, n, 1, dy, l.out, x, l.in, 1, dw, l.in)
	}
	if dx != nil {
		var beta float32
		if acc {
			beta = 1
		}
		blas.Sgemm(false, false, n, l.in, l.out, 1, dy, l.out, l.w, l.in, beta, dx, l.in)
	}
}

// backwardPair adds to dxe, dxh [n, H] and dw [out, 2H] the gradients of applyPair (unprepared) given dy.
func (l *linear) backwardPair(dxe, dxh, dw, dy, xe, xh []float32, n int) {
	h := l.in / 2
	blas.Sgemm(false, false, n, h, l.out, 1, dy, l.out, l.w, 2*h, 1, dxe, h)
	blas.Sgemm(false, false, n, h, l.out, 1, dy, l.out, l.w[h:], 2*h, 1, dxh, h)
	blas.Sgemm(true, false, l.out, h, n, 1, dy, l.out, xe, h, 1, dw, 2*h)
	blas.Sgemm(true, false, l.out, h, n, 1, dy, l.out, xh, h, 1, dw[h:], 2*h)
}

// layer is the draft's weights as its forward and backward read them.
type layer struct {
	d                                      *Draft
	H, I, qDim, kvDim, heads, kvHeads, vd  int
	eps                                    float32
	fc, q, k, v, o, gate, up, down, lmHead linear
}

// newLayer binds the layer to d's weights, prepared for decoding when p is not nil.
func newLayer(d *Draft, p *Prepared) layer {
	c, w := &d.Config, &d.W
	H, I, qDim, kvDim := c.HiddenSize, c.IntermediateSize, c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
	l := layer{d: d, H: H, I: I, qDim: qDim, kvDim: kvDim, heads: c.NumHeads, kvHeads: c.NumKVHeads,
		vd: c.DraftVocabSize, eps: float32(c.RMSNormEps),
		fc: linear{w: w.FC, out: H, in: 3 * c.TargetHiddenSize},
		q:  linear{w: w.Wq, out: qDim, in: 2 * H}, k: linear{w: w.Wk, out: kvDim, in: 2 * H}, v: linear{w: w.Wv, out: kvDim, in: 2 * H},
		o:    linear{w: w.Wo, out: H, in: qDim},
		gate: linear{w: w.Wgate, out: I, in: H}, up: linear{w: w.Wup, out: I, in: H}, down: linear{w: w.Wdown, out: H, in: I},
		lmHead: linear{w: w.LMHead, out: c.DraftVocabSize, in: H},
	}
	if p != nil {
		l.fc.prep, l.q.prep, l.k.prep, l.v.prep, l.o.prep = &p.fc, &p.q, &p.k, &p.v, &p.o
		l.gate.prep, l.up.prep, l.down.prep, l.lmHead.prep = &p.gate, &p.up, &p.down, &p.lmHead
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
	rope         *kernels.RopeTable
}

// forwardIn computes s.e, s.eN, s.hN, s.q, s.k and s.v of tokens ids and hidden states s.h [n, H].
func (l *layer) forwardIn(s *acts, ids []int32, n int) {
	kernels.Embedding(s.e, l.d.Embed, ids, l.H)
	kernels.RMSNormForward(s.eN, s.eRstd, s.e, l.d.W.InputNorm, n, l.H, l.eps)
	kernels.RMSNormForward(s.hN, s.hRstd, s.h, l.d.W.HiddenNorm, n, l.H, l.eps)
	if l.q.prep != nil {
		for r := 0; r < n; r++ {
			copy(s.x[r*2*l.H:], s.eN[r*l.H:(r+1)*l.H])
			copy(s.x[r*2*l.H+l.H:], s.hN[r*l.H:(r+1)*l.H])
		}
	}
	l.q.applyPair(s.q, s.eN, s.hN, s.x, n)
	l.k.applyPair(s.k, s.eN, s.hN, s.x, n)
	l.v.applyPair(s.v, s.eN, s.hN, s.x, n)
	s.rope.Apply(s.q, n, l.heads)
	s.rope.Apply(s.k, n, l.kvHeads)
}

// backwardIn adds to dh [n, H] the gradient w.r.t. s.h and to grad the weight gradients, given dq [n, qDim],
// dk, dv [n, kvDim] w.r.t. the post-RoPE queries and keys and the values (dq and dk are rotated back in
// place). dEN, dHN [n, H] are zeroed scratch.
func (l *layer) backwardIn(dh []float32, grad *Weights, s *acts, dq, dk, dv, dEN, dHN []float32, n int) {
	s.rope.ApplyInverse(dq, n, l.heads)
	s.rope.ApplyInverse(dk, n, l.kvHeads)
	l.q.backwardPair(dEN, dHN, grad.Wq, dq, s.eN, s.hN, n)
	l.k.backwardPair(dEN, dHN, grad.Wk, dk, s.eN, s.hN, n)
	l.v.backwardPair(dEN, dHN, grad.Wv, dv, s.eN, s.hN, n)
	w := &l.d.W
	kernels.RMSNormBackward(nil, grad.InputNorm, dEN, s.e, w.InputNorm, s.eRstd, n, l.H) // the embedding is frozen
	kernels.RMSNormBackward(dh, grad.HiddenNorm, dHN, s.h, w.HiddenNorm, s.hRstd, n, l.H)
}

// forwardOut computes out [n, H] from the attention output s.a and s.h, saving s.hp, s.y, s.gate and s.up;
// act [n, I] receives silu(gate)*up (it may be s.gate when no backward follows). out may be s.hp.
func (l *layer) forwardOut(out, act []float32, s *acts, n int) {
	copy(s.hp, s.h)
	l.o.apply(s.hp, s.a, n, true)
	kernels.RMSNormForward(s.y, s.hpRstd, s.hp, l.d.W.PostNorm, n, l.H, l.eps)
	l.gate.apply(s.gate, s.y, n, false)
	l.up.apply(s.up, s.y, n, false)
	kernels.SwiGLU(act, s.gate, s.up)
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
	w := &l.d.W
	kernels.SwiGLU(g.act, s.gate, s.up) // recomputed: one [n, I] buffer serves every step
	l.down.backward(g.dact, grad.Wdown, dh, g.act, n, false)
	kernels.SwiGLUBackward(g.dgate, g.dup, g.dact, s.gate, s.up)
	l.gate.backward(g.dy, nil, g.dgate, s.y, n, false)
	l.up.backward(g.dy, nil, g.dup, s.y, n, true)
	l.gate.backward(nil, grad.Wgate, g.dgate, s.y, n, false)
	l.up.backward(nil, grad.Wup, g.dup, s.y, n, false)
	kernels.RMSNormBackward(dh, grad.PostNorm, g.dy, s.hp, w.PostNorm, s.hpRstd, n, l.H)
	l.o.backward(da, grad.Wo, dh, s.a, n, false)
}

// headForward computes logits [n, Vd] = norm(h) lm_head^T for h [n, H], saving the norm hn [n, H] and, when
// not nil, rstd [n].
func (l *layer) headForward(logits, hn, rstd, h []float32, n int) {
	kernels.RMSNormForward(hn, rstd, h, l.d.W.Norm, n, l.H, l.eps)
	l.lmHead.apply(logits, hn, n, false)
}

// headBackward adds to dh [n, H] the gradient through headForward given dlogits [n, Vd], and to grad the
// weight gradients; dhn [n, H] is scratch.
func (l *layer) headBackward(dh []float32, grad *Weights, dlogits, dhn, hn, h, rstd []float32, n int) {
	l.lmHead.backward(dhn, grad.LMHead, dlogits, hn, n, false)
	kernels.RMSNormBackward(dh, grad.Norm, dhn, h, l.d.W.Norm, rstd, n, l.H)
}
