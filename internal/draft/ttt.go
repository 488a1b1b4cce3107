package draft

import (
	"fmt"
	"math"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/rope"
	"github.com/specforge/specforge/internal/tensor"
)

// stepState is one unrolled step of TTT: the layer's activations over the batch, the gradient of the
// step's own loss w.r.t. its output, and the rotations of its positions.
type stepState struct {
	acts
	ids       []int32   // [N] the step's input tokens
	positions []int32   // [N] its RoPE positions
	lse       []float32 // [N, heads] the attention's log-sum-exp, for its backward
	dDirect   []float32 // [N, H]
	rot       rope.Rotations
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

	bf16                 bf16Step
	steps                []stepState
	keys, values, dK, dV []tensor.Tensor // per step: the steps' k and v; their gradients [N, kvDim]
	dKs, dVs             [][]float32     // the gradients' storage
	pm                   []bool          // [N] position mask pm_0
	h, dh                []float32       // [N, H] the running hidden state, and its gradient
	act                  []float32       // [N, I] silu(gate)*up of the step being run
	da, dq               []float32       // [N, qDim]
	dEN, dHN             []float32       // [N, H]
	out                  outGrads
	loss                 lossWork
	met                  Metrics
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
	att := backend.Attention{Heads: c.NumHeads, KVHeads: c.NumKVHeads, HeadDim: c.HeadDim, Scale: float32(1 / math.Sqrt(float64(c.HeadDim)))}
	ws.pm = b.positionMask(ws.pm, d.Vocab.T2D)
	for len(ws.steps) < K {
		ws.steps = append(ws.steps, stepState{})
		ws.keys, ws.values = append(ws.keys, tensor.Tensor{}), append(ws.values, tensor.Tensor{})
		ws.dK, ws.dV = append(ws.dK, tensor.Tensor{}), append(ws.dV, tensor.Tensor{})
		ws.dKs, ws.dVs = append(ws.dKs, nil), append(ws.dVs, nil)
	}
	met := &ws.met
	met.reset(K)

	ws.h = resizeZero(ws.h, N*H)
	h := ws.h
	l.fc.apply(h, b.Aux, N, false)
	for k := range K {
		st := &ws.steps[k]
		st.h = resizeZero(st.h, N*H)
		copy(st.h, h)
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
		st.rope = st.rot.Table(st.positions)
		st.e, st.eN, st.eRstd = resizeZero(st.e, N*H), resizeZero(st.eN, N*H), resizeZero(st.eRstd, N)
		st.hN, st.hRstd = resizeZero(st.hN, N*H), resizeZero(st.hRstd, N)
		st.q, st.k, st.v = resizeZero(st.q, N*qDim), resizeZero(st.k, N*kvDim), resizeZero(st.v, N*kvDim)
		l.forwardIn(&st.acts, st.ids, N)
		ws.keys[k], ws.values[k] = t32(st.k), t32(st.v)
		st.lse, st.a = resizeZero(st.lse, N*c.NumHeads), resizeZero(st.a, N*qDim)
		be.TTTAttentionForward(t32(st.a), t32(st.lse), t32(st.q), ws.keys[:k+1], ws.values[:k+1], b.AttentionMask, b.Starts, b.B, b.T, att)
		st.hp, st.hpRstd, st.y = resizeZero(st.hp, N*H), resizeZero(st.hpRstd, N), resizeZero(st.y, N*H)
		st.gate, st.up = resizeZero(st.gate, N*I), resizeZero(st.up, N*I)
		ws.act = resizeZero(ws.act, N*I)
		l.forwardOut(h, ws.act, &st.acts, N) // h is now h_{k+1}

		st.dDirect = resizeZero(st.dDirect, N*H)
		l.stepLoss(k, b, ws.pm, h, st.dDirect, grad, &ws.loss, met, gradScale, ws.Loss)
	}
	met.total()
	if grad == nil {
		return met, nil
	}

	// Backward through the unrolled steps, last first; dh carries the gradient w.r.t. the step output.
	ws.dh = resizeZero(ws.dh, N*H)
	dh := ws.dh
	for k := range K {
		ws.dKs[k], ws.dVs[k] = resizeZero(ws.dKs[k], N*kvDim), resizeZero(ws.dVs[k], N*kvDim)
		ws.dK[k], ws.dV[k] = t32(ws.dKs[k]), t32(ws.dVs[k])
	}
	g := &ws.out
	for k := K - 1; k >= 0; k-- {
		st := &ws.steps[k]
		be.Add(t32(dh), t32(st.dDirect))
		g.act, g.dact = resizeZero(g.act, N*I), resizeZero(g.dact, N*I)
		g.dgate, g.dup, g.dy = resizeZero(g.dgate, N*I), resizeZero(g.dup, N*I), resizeZero(g.dy, N*H)
		ws.da = resizeZero(ws.da, N*qDim)
		l.backwardOut(dh, ws.da, grad, &st.acts, g, N) // dh is now d hp
		ws.dq = resizeZero(ws.dq, N*qDim)
		be.TTTAttentionBackward(t32(ws.dq), ws.dK[:k+1], ws.dV[:k+1], t32(ws.da), t32(st.a), t32(st.lse), t32(st.q), ws.keys[:k+1], ws.values[:k+1], b.AttentionMask, b.Starts, b.B, b.T, att)
		// Every later step has added to this step's keys and values: their gradients are complete.
		ws.dEN, ws.dHN = resizeZero(ws.dEN, N*H), resizeZero(ws.dHN, N*H)
		l.backwardIn(dh, grad, &st.acts, ws.dq, ws.dKs[k], ws.dVs[k], ws.dEN, ws.dHN, N) // dh is now d h_k
	}
	l.fc.backward(nil, grad.FC, dh, b.Aux, N, false)
	return met, nil
}
