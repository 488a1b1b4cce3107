package draft

import (
	"fmt"
	"math"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/rope"
	"github.com/specforge/specforge/internal/tensor"
)

// stepState is one unrolled step of TTT: each decoder layer's activations over the batch, the gradient of
// the step's own loss w.r.t. its output, and the rotations of its positions.
type stepState struct {
	layers    []layerState
	ids       []int32   // [N] the step's input tokens
	positions []int32   // [N] its RoPE positions
	dDirect   []float32 // [N, H]
	// out and outRstd are the last layer's residual stream [N, H] and its norm's 1/rms [N], kept when the
	// draft feeds the norm forward (norm_output).
	out, outRstd []float32
	rot          rope.Rotations
}

// layerState is one decoder layer's part of a step.
type layerState struct {
	acts
	lse []float32 // [N, heads] the attention's log-sum-exp, for its backward
}

// Workspace keeps the TTT buffers between batches, so that training allocates only when a batch is larger
// than any before. The zero Workspace is ready to use; a workspace serves one TTT call at a time.
type Workspace struct {
	// Precision is that of the products: F32 (or empty) multiplies in float32, BF16 rounds both operands
	// of every product to bf16 and accumulates in float32 (mixed precision: float32 master weights,
	// norms, attention, loss and optimiser).
	Precision tensor.DType
	// Loss is each step's objective (zero: KL).
	Loss Loss

	bf16 bf16Step
	// steps[k] is unrolled step k; the attention lists are per decoder layer, then per step: the steps'
	// keys and values, their gradients [N, kvDim] and the gradients' storage.
	steps                []stepState
	keys, values, dK, dV [][]tensor.Tensor
	dKs, dVs             [][][]float32
	pm                   []bool    // [N] position mask pm_0
	h, dh, dOut          []float32 // [N, H] the running hidden state, its gradient, the gradient of out
	act                  []float32 // [N, I] silu(gate)*up of the layer being run
	da, dq               []float32 // [N, qDim]
	dEN, dHN             []float32 // [N, H]
	out                  outGrads
	fc                   fcWork
	loss                 lossWork
	met                  Metrics
}

// grow gives the workspace room for K steps of L layers.
func (ws *Workspace) grow(K, L int) {
	for len(ws.steps) < K {
		ws.steps = append(ws.steps, stepState{})
	}
	for k := range ws.steps {
		for len(ws.steps[k].layers) < L {
			ws.steps[k].layers = append(ws.steps[k].layers, layerState{})
		}
	}
	for len(ws.keys) < L {
		ws.keys, ws.values, ws.dK, ws.dV = append(ws.keys, nil), append(ws.values, nil), append(ws.dK, nil), append(ws.dV, nil)
		ws.dKs, ws.dVs = append(ws.dKs, nil), append(ws.dVs, nil)
	}
	for i := range L {
		ws.keys[i], ws.values[i] = tensor.Resize(ws.keys[i], K), tensor.Resize(ws.values[i], K)
		ws.dK[i], ws.dV[i] = tensor.Resize(ws.dK[i], K), tensor.Resize(ws.dV[i], K)
		for len(ws.dKs[i]) < K {
			ws.dKs[i], ws.dVs[i] = append(ws.dKs[i], nil), append(ws.dVs[i], nil)
		}
	}
}

// resizeZero returns b with length n and every element zero, reallocated only when its capacity is short.
func resizeZero[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	b = b[:n]
	clear(b)
	return b
}

// TTT runs the K-step training-time test over a batch, forward and backward, and adds gradScale times the
// gradient of the total loss to grad. With grad nil it only evaluates (no backward pass). The metrics live
// in ws: they stay valid until its next use.
func (d *Draft) TTT(b *Batch, K int, grad *Weights, ws *Workspace, gradScale float64) (*Metrics, error) {
	c := &d.Config
	if d.Embed.IsNil() {
		return nil, errNoEmbedding
	}
	N, H, I, vd := b.B*b.T, c.HiddenSize, c.IntermediateSize, c.DraftVocabSize
	qDim, kvDim := c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
	if len(b.IDs) != N || len(b.Aux) != N*c.AuxWidth() || len(b.Teacher.P) != N*vd {
		return nil, fmt.Errorf("ttt: batch of %d x %d rows does not match its ids (%d), aux (%d) or teacher (%d)", b.B, b.T, len(b.IDs), len(b.Aux), len(b.Teacher.P))
	}
	rc, err := c.Rope()
	if err != nil {
		return nil, err
	}
	if err := checkPrecision(ws.Precision); err != nil {
		return nil, err
	}
	if err := ws.Loss.Check(); err != nil {
		return nil, err
	}
	l := newLayer(d, nil)
	if ws.Precision == tensor.BF16 {
		ws.bf16.round(&l)
	}
	be := d.be
	att := backend.Attention{Heads: c.NumHeads, KVHeads: c.NumKVHeads, HeadDim: c.HeadDim, Scale: float32(1 / math.Sqrt(float64(c.HeadDim))),
		BF16: ws.Precision == tensor.BF16}
	ws.pm = b.positionMask(ws.pm, d.Vocab.T2D)
	L := len(l.blocks)
	ws.grow(K, L)
	met := &ws.met
	met.reset(K)

	ws.h = resizeZero(ws.h, N*H)
	h := ws.h
	l.fcForward(h, b.Aux, &ws.fc, N)
	for k := range K {
		st := &ws.steps[k]
		st.ids, st.positions = st.ids[:0], st.positions[:0]
		for r := 0; r < b.B; r++ {
			for t := 0; t < b.T; t++ {
				// The step reads the token k+1 ahead of t within t's sample, at t's position in its sample
				// plus k: a packed row is its samples side by side, each laid out as if alone.
				id := int32(0)
				if b.sameSample(r, t, t+1+k) {
					id = b.IDs[r*b.T+t+1+k]
				}
				st.ids = append(st.ids, id)
				st.positions = append(st.positions, int32(t-b.start(r*b.T+t)+k))
			}
		}
		if st.rot.Config != rc {
			st.rot = rope.Rotations{Config: rc}
		}
		table := st.rot.Table(st.positions)
		// Each layer reads the one before's out (the first, h); the last writes the step's output, h itself
		// unless the norm of it is fed forward.
		out := h
		if c.NormOutput {
			st.out = resizeZero(st.out, N*H)
			out = st.out
		}
		for i := range l.blocks {
			ls := &st.layers[i]
			if i == 0 {
				ls.h = tensor.Resize(ls.h, N*H)
				copy(ls.h, h)
			}
			ls.rope = table
			// The forward's buffers are written whole before they are read (products with beta 0, norms,
			// copies): they are not zeroed. Those the backward adds into are.
			ls.e, ls.eN, ls.eRstd = tensor.Resize(ls.e, N*H), tensor.Resize(ls.eN, N*H), tensor.Resize(ls.eRstd, N)
			ls.hN, ls.hRstd = tensor.Resize(ls.hN, N*H), tensor.Resize(ls.hRstd, N)
			ls.q, ls.k, ls.v = tensor.Resize(ls.q, N*qDim), tensor.Resize(ls.k, N*kvDim), tensor.Resize(ls.v, N*kvDim)
			l.forwardIn(&l.blocks[i], &ls.acts, st.ids, N)
			ws.keys[i][k], ws.values[i][k] = t32(ls.k), t32(ls.v)
			ls.lse, ls.a = resizeZero(ls.lse, N*c.NumHeads), resizeZero(ls.a, N*qDim)
			be.TTTAttentionForward(t32(ls.a), t32(ls.lse), t32(ls.q), ws.keys[i][:k+1], ws.values[i][:k+1], b.AttentionMask, b.Starts, b.B, b.T, att)
			ls.hp, ls.hpRstd, ls.y = tensor.Resize(ls.hp, N*H), tensor.Resize(ls.hpRstd, N), tensor.Resize(ls.y, N*H)
			ls.gate, ls.up = tensor.Resize(ls.gate, N*I), tensor.Resize(ls.up, N*I)
			ws.act = tensor.Resize(ws.act, N*I)
			dst := out
			if i+1 < L {
				next := &st.layers[i+1]
				next.h = tensor.Resize(next.h, N*H)
				dst = next.h
			}
			l.forwardOut(&l.blocks[i], dst, ws.act, &ls.acts, N)
		}
		if c.NormOutput {
			st.outRstd = resizeZero(st.outRstd, N)
			be.RMSNormForward(t32(h), t32(st.outRstd), t32(out), t32(d.W.Norm), N, H, l.eps)
		} // h is now h_{k+1}

		st.dDirect = resizeZero(st.dDirect, N*H)
		l.stepLoss(k, b, ws.pm, h, st.dDirect, grad, &ws.loss, met, gradScale, ws.Loss)
	}
	met.total()
	if grad == nil {
		return met, nil
	}

	// Backward through the unrolled steps, last first, and within a step through its layers, last first;
	// dh carries the gradient w.r.t. the step output.
	ws.dh = resizeZero(ws.dh, N*H)
	dh := ws.dh
	for i := range L {
		for k := range K {
			ws.dKs[i][k], ws.dVs[i][k] = resizeZero(ws.dKs[i][k], N*kvDim), resizeZero(ws.dVs[i][k], N*kvDim)
			ws.dK[i][k], ws.dV[i][k] = t32(ws.dKs[i][k]), t32(ws.dVs[i][k])
		}
	}
	g := &ws.out
	for k := K - 1; k >= 0; k-- {
		st := &ws.steps[k]
		be.Add(t32(dh), t32(st.dDirect))
		if c.NormOutput { // dh is d h_{k+1}, the norm of out: make it d out
			ws.dOut = resizeZero(ws.dOut, N*H)
			be.RMSNormBackward(t32(ws.dOut), t32(grad.Norm), t32(dh), t32(st.out), t32(d.W.Norm), t32(st.outRstd), N, H)
			copy(dh, ws.dOut)
		}
		for i := L - 1; i >= 0; i-- {
			ls, blk := &st.layers[i], &l.blocks[i]
			g.act, g.dact = tensor.Resize(g.act, N*I), tensor.Resize(g.dact, N*I) // written whole
			g.dgate, g.dup, g.dy = resizeZero(g.dgate, N*I), resizeZero(g.dup, N*I), tensor.Resize(g.dy, N*H)
			ws.da = tensor.Resize(ws.da, N*qDim)
			l.backwardOut(blk, dh, ws.da, &grad.Layers[i], &ls.acts, g, N) // dh is now d hp
			ws.dq = resizeZero(ws.dq, N*qDim)
			be.TTTAttentionBackward(t32(ws.dq), ws.dK[i][:k+1], ws.dV[i][:k+1], t32(ws.da), t32(ls.a), t32(ls.lse), t32(ls.q), ws.keys[i][:k+1], ws.values[i][:k+1], b.AttentionMask, b.Starts, b.B, b.T, att)
			// Every later step has added to this step's keys and values: their gradients are complete.
			ws.dEN, ws.dHN = resizeZero(ws.dEN, N*H), resizeZero(ws.dHN, N*H)
			l.backwardIn(blk, dh, &grad.Layers[i], &ls.acts, ws.dq, ws.dKs[i][k], ws.dVs[i][k], ws.dEN, ws.dHN, N) // dh is now d of the layer's input
		}
	}
	l.fcBackward(grad, dh, b.Aux, &ws.fc, N)
	return met, nil
}
