package draft

import (
	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/rope"
	"github.com/specforge/specforge/internal/tensor"
)

// The draft's layers, forward and backward side by side. Training (ttt.go) and decoding (session.go)
// both run them; they differ only in the attention between the two halves of a decoder layer (the TTT
// attention over the unrolled steps, or cached attention over a sequence) and in how the products are taken
// (linear).
//
//	fc:   h = fc(aux), each aux state through its fc_norm first when the draft has them
//	in:   layer 0: e = embed(ids); eN = norm(e); hN = norm(h); q, k, v = [eN | hN] W^T; rope(q, k)
//	      later layers (h the layer before's out): hN = norm(h); q, k, v = hN W^T; rope(q, k)
//	      (attention: a from q, k, v)
//	out:  hp = h + a Wo^T; y = norm(hp); out = hp + down(silu(y Wgate^T) * (y Wup^T))
//	head: logits = norm(out) lm_head^T, out the last layer's
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

// layer is the draft's weights as its forward and backward read them, on the draft's backend: fc, the
// decoder layers (blocks) and the head.
type layer struct {
	d                                     *Draft
	be                                    backend.Backend
	H, I, qDim, kvDim, heads, kvHeads, vd int
	eps                                   float32
	fc, lmHead                            linear
	blocks                                []block
}

// block is one decoder layer: its weights and products. The first reads the token embedding beside the
// hidden state (2H wide), later ones the residual stream of the one before.
type block struct {
	w                          *LayerWeights
	first                      bool
	q, k, v, o, gate, up, down linear
}

// newLayer binds the layer to d's weights, prepared for decoding when p is not nil.
func newLayer(d *Draft, p *Prepared) layer {
	c, w, be := &d.Config, &d.W, d.be
	H, I, qDim, kvDim := c.HiddenSize, c.IntermediateSize, c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
	l := layer{d: d, be: be, H: H, I: I, qDim: qDim, kvDim: kvDim, heads: c.NumHeads, kvHeads: c.NumKVHeads,
		vd: c.DraftVocabSize, eps: float32(c.RMSNormEps),
		fc:     linear{be: be, w: w.FC, out: H, in: c.AuxWidth()},
		lmHead: linear{be: be, w: w.LMHead, out: c.DraftVocabSize, in: H},
	}
	for i := range w.Layers {
		lw, in := &w.Layers[i], H
		if i == 0 {
			in = 2 * H
		}
		l.blocks = append(l.blocks, block{w: lw, first: i == 0,
			q: linear{be: be, w: lw.Wq, out: qDim, in: in}, k: linear{be: be, w: lw.Wk, out: kvDim, in: in}, v: linear{be: be, w: lw.Wv, out: kvDim, in: in},
			o:    linear{be: be, w: lw.Wo, out: H, in: qDim},
			gate: linear{be: be, w: lw.Wgate, out: I, in: H}, up: linear{be: be, w: lw.Wup, out: I, in: H}, down: linear{be: be, w: lw.Wdown, out: H, in: I},
		})
	}
	if p != nil {
		l.fc.prep, l.lmHead.prep = p.fc, p.lmHead
		for i := range l.blocks {
			b, pb := &l.blocks[i], &p.blocks[i]
			b.q.prep, b.k.prep, b.v.prep, b.o.prep = pb.q, pb.k, pb.v, pb.o
			b.gate.prep, b.up.prep, b.down.prep = pb.gate, pb.up, pb.down
		}
	}
	return l
}

// linears lists every product of the layer.
func (l *layer) linears() []*linear {
	out := []*linear{&l.fc, &l.lmHead}
	for i := range l.blocks {
		b := &l.blocks[i]
		out = append(out, &b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down)
	}
	return out
}

// acts is what a decoder layer's forward of n rows writes and its backward reads. Decoding leaves the
// 1/rms buffers nil (it has no backward) and points k and v into its cache; later layers leave the
// embedding's buffers and x unused.
type acts struct {
	h            []float32 // [n, H] input hidden state (the caller's, or the layer before's out)
	e, eN, eRstd []float32 // [n, H], [n, H], [n]: token embedding, its norm, 1/rms
	hN, hRstd    []float32 // [n, H], [n]: norm of h, 1/rms
	x            []float32 // [n, 2H] scratch for prepared q, k, v products of the first layer (decoding only)
	q, k, v      []float32 // [n, qDim], [n, kvDim], [n, kvDim]: post-RoPE queries and keys, values
	a            []float32 // [n, qDim] attention output
	hp, hpRstd   []float32 // [n, H], [n]: residual after attention, 1/rms
	y            []float32 // [n, H] post-attention norm
	gate, up     []float32 // [n, I]
	rope         *rope.Table
}

// forwardIn computes the queries, keys and values s.q, s.k and s.v of decoder layer b from its input
// s.h [n, H] (and, in the first layer, the embedding of tokens ids), with the norms they read.
func (l *layer) forwardIn(b *block, s *acts, ids []int32, n int) {
	be := l.be
	if !b.first {
		be.RMSNormForward(t32(s.hN), t32(s.hRstd), t32(s.h), t32(b.w.InputNorm), n, l.H, l.eps)
		b.q.apply(s.q, s.hN, n, false)
		b.k.apply(s.k, s.hN, n, false)
		b.v.apply(s.v, s.hN, n, false)
	} else {
		be.Embedding(t32(s.e), l.d.Embed, ids, l.H)
		be.RMSNormForward(t32(s.eN), t32(s.eRstd), t32(s.e), t32(b.w.InputNorm), n, l.H, l.eps)
		be.RMSNormForward(t32(s.hN), t32(s.hRstd), t32(s.h), t32(b.w.HiddenNorm), n, l.H, l.eps)
		if b.q.prep != nil {
			for r := 0; r < n; r++ {
				copy(s.x[r*2*l.H:], s.eN[r*l.H:(r+1)*l.H])
				copy(s.x[r*2*l.H+l.H:], s.hN[r*l.H:(r+1)*l.H])
			}
		}
		b.q.applyPair(s.q, s.eN, s.hN, s.x, n)
		b.k.applyPair(s.k, s.eN, s.hN, s.x, n)
		b.v.applyPair(s.v, s.eN, s.hN, s.x, n)
	}
	be.RoPEForward(t32(s.q), s.rope, n, l.heads)
	be.RoPEForward(t32(s.k), s.rope, n, l.kvHeads)
}

// backwardIn adds to dh [n, H] the gradient w.r.t. s.h and to grad (layer b's) the weight gradients, given
// dq [n, qDim], dk, dv [n, kvDim] w.r.t. the post-RoPE queries and keys and the values (dq and dk are
// rotated back in place). dEN, dHN [n, H] are zeroed scratch.
func (l *layer) backwardIn(b *block, dh []float32, grad *LayerWeights, s *acts, dq, dk, dv, dEN, dHN []float32, n int) {
	be := l.be
	be.RoPEBackward(t32(dq), s.rope, n, l.heads)
	be.RoPEBackward(t32(dk), s.rope, n, l.kvHeads)
	if !b.first {
		b.q.backward(dHN, grad.Wq, dq, s.hN, n, true)
		b.k.backward(dHN, grad.Wk, dk, s.hN, n, true)
		b.v.backward(dHN, grad.Wv, dv, s.hN, n, true)
		be.RMSNormBackward(t32(dh), t32(grad.InputNorm), t32(dHN), t32(s.h), t32(b.w.InputNorm), t32(s.hRstd), n, l.H)
		return
	}
	b.q.backwardPair(dEN, dHN, grad.Wq, dq, s.eN, s.hN, n)
	b.k.backwardPair(dEN, dHN, grad.Wk, dk, s.eN, s.hN, n)
	b.v.backwardPair(dEN, dHN, grad.Wv, dv, s.eN, s.hN, n)
	be.RMSNormBackward(tensor.Tensor{}, t32(grad.InputNorm), t32(dEN), t32(s.e), t32(b.w.InputNorm), t32(s.eRstd), n, l.H) // the embedding is frozen
	be.RMSNormBackward(t32(dh), t32(grad.HiddenNorm), t32(dHN), t32(s.h), t32(b.w.HiddenNorm), t32(s.hRstd), n, l.H)
}

// forwardOut computes layer b's out [n, H] from the attention output s.a and s.h, saving s.hp, s.y, s.gate
// and s.up; act [n, I] receives silu(gate)*up (it may be s.gate when no backward follows). out may be s.hp.
func (l *layer) forwardOut(b *block, out, act []float32, s *acts, n int) {
	copy(s.hp, s.h)
	b.o.apply(s.hp, s.a, n, true)
	l.be.RMSNormForward(t32(s.y), t32(s.hpRstd), t32(s.hp), t32(b.w.PostNorm), n, l.H, l.eps)
	b.gate.apply(s.gate, s.y, n, false)
	b.up.apply(s.up, s.y, n, false)
	l.be.SwiGLUForward(t32(act), t32(s.gate), t32(s.up))
	copy(out, s.hp)
	b.down.apply(out, act, n, true)
}

// outGrads is the scratch of backwardOut: act, dact, dgate, dup [n, I] and dy [n, H]; dgate and dup zeroed.
type outGrads struct {
	act, dact, dgate, dup, dy []float32
}

// backwardOut turns dh [n, H], the gradient w.r.t. layer b's out, into the gradient w.r.t. s.hp (in
// place), writes the gradient w.r.t. s.a into da [n, qDim] and adds the weight gradients to grad.
func (l *layer) backwardOut(b *block, dh, da []float32, grad *LayerWeights, s *acts, g *outGrads, n int) {
	be := l.be
	be.SwiGLUForward(t32(g.act), t32(s.gate), t32(s.up)) // recomputed: one [n, I] buffer serves every step
	b.down.backward(g.dact, grad.Wdown, dh, g.act, n, false)
	be.SwiGLUBackward(t32(g.dgate), t32(g.dup), t32(g.dact), t32(s.gate), t32(s.up))
	b.gate.backward(g.dy, grad.Wgate, g.dgate, s.y, n, false)
	b.up.backward(g.dy, grad.Wup, g.dup, s.y, n, true)
	be.RMSNormBackward(t32(dh), t32(grad.PostNorm), t32(g.dy), t32(s.hp), t32(b.w.PostNorm), t32(s.hpRstd), n, l.H)
	b.o.backward(da, grad.Wo, dh, s.a, n, false)
}

// fcWork is what fc's forward over n rows keeps for its backward when the draft has fc_norm: the
// normalised aux states (fc's input) and their 1/rms per aux state, with the scratch of both passes.
type fcWork struct {
	x, dx       []float32               // [n, AuxWidth]: fc's input, its gradient
	rstd        [NumAuxLayers][]float32 // [n] each
	part, dpart []float32               // [n, TargetHiddenSize]: one aux state, its gradient
}

// auxPart copies aux state c of x [n, NumAuxLayers*th] into part [n, th], or back when toX is set.
func auxPart(part, x []float32, c, th, n int, toX bool) {
	w := NumAuxLayers * th
	for r := 0; r < n; r++ {
		xs, ps := x[r*w+c*th:r*w+(c+1)*th], part[r*th:(r+1)*th]
		if toX {
			copy(xs, ps)
		} else {
			copy(ps, xs)
		}
	}
}

// fcForward computes h [n, H] = fc(aux) for the target's aux states aux [n, AuxWidth], each passing its
// fc_norm first when the draft has it (the norms run on contiguous copies, the backend's row layout).
func (l *layer) fcForward(h, aux []float32, fw *fcWork, n int) {
	c := &l.d.Config
	if !c.FCNorm {
		l.fc.apply(h, aux, n, false)
		return
	}
	th := c.TargetHiddenSize
	fw.x, fw.part = tensor.Resize(fw.x, len(aux)), tensor.Resize(fw.part, n*th)
	for i := range NumAuxLayers {
		fw.rstd[i] = tensor.Resize(fw.rstd[i], n)
		auxPart(fw.part, aux, i, th, n, false)
		l.be.RMSNormForward(t32(fw.part), t32(fw.rstd[i]), t32(fw.part), t32(l.d.W.FCNorm[i]), n, th, l.eps)
		auxPart(fw.part, fw.x, i, th, n, true)
	}
	l.fc.apply(h, fw.x, n, false)
}

// fcBackward adds to grad the gradients of fcForward (fc's, and fc_norm's) given dh [n, H]; the aux states
// are the target's, so no gradient flows into them.
func (l *layer) fcBackward(grad *Weights, dh, aux []float32, fw *fcWork, n int) {
	c := &l.d.Config
	if !c.FCNorm {
		l.fc.backward(nil, grad.FC, dh, aux, n, false)
		return
	}
	th := c.TargetHiddenSize
	fw.dx, fw.dpart = tensor.Resize(fw.dx, len(aux)), tensor.Resize(fw.dpart, n*th)
	l.fc.backward(fw.dx, grad.FC, dh, fw.x, n, false)
	for i := range NumAuxLayers {
		auxPart(fw.part, aux, i, th, n, false)
		auxPart(fw.dpart, fw.dx, i, th, n, false)
		l.be.RMSNormBackward(tensor.Tensor{}, t32(grad.FCNorm[i]), t32(fw.dpart), t32(fw.part), t32(l.d.W.FCNorm[i]), t32(fw.rstd[i]), n, th)
	}
}

// headForward computes logits [n, Vd] = norm(h) lm_head^T for h [n, H], saving the norm hn [n, H] and, when
// not nil, rstd [n]. A draft with norm_output feeds the norm forward as its hidden state, so its head
// reads h normalised already: logits = h lm_head^T.
func (l *layer) headForward(logits, hn, rstd, h []float32, n int) {
	if l.d.Config.NormOutput {
		l.lmHead.apply(logits, h, n, false)
		return
	}
	l.be.RMSNormForward(t32(hn), t32(rstd), t32(h), t32(l.d.W.Norm), n, l.H, l.eps)
	l.lmHead.apply(logits, hn, n, false)
}

// headBackward adds to dh [n, H] the gradient through headForward given dlogits [n, Vd], and to grad the
// weight gradients; dhn [n, H] is scratch.
func (l *layer) headBackward(dh []float32, grad *Weights, dlogits, dhn, hn, h, rstd []float32, n int) {
	if l.d.Config.NormOutput {
		l.lmHead.backward(dh, grad.LMHead, dlogits, h, n, true)
		return
	}
	l.lmHead.backward(dhn, grad.LMHead, dlogits, hn, n, false)
	l.be.RMSNormBackward(t32(dh), t32(grad.Norm), t32(dhn), t32(h), t32(l.d.W.Norm), t32(rstd), n, l.H)
}
