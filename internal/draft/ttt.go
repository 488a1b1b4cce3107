package draft

import (
	"fmt"
	"math"

	"github.com/specforge/specforge/internal/blas"
	"github.com/specforge/specforge/internal/kernels"
)

// LossDecay weighs the loss of unrolled step k by LossDecay^k.
const LossDecay = 0.8

// Metrics of one TTT pass.
type Metrics struct {
	Loss    []float64 // per step: -(1/(B*T)) sum pm_k sum_v p log softmax(logits)
	Total   float64   // sum_k LossDecay^k Loss[k]
	Correct []int     // rows where the draft's argmax equals the teacher's
	Denom   []int     // loss-mask rows of the step
	Acc     []float64 // Correct / max(Denom, 1e-6)
}

// SimulatedAcceptanceLength is sum_k prod_{j<=k} Acc[j]: the expected number of drafted tokens accepted per
// target step, not counting the target's own bonus token.
func (m *Metrics) SimulatedAcceptanceLength() float64 {
	total, prod := 0.0, 1.0
	for _, a := range m.Acc {
		prod *= a
		total += prod
	}
	return total
}

// stepState holds what the backward pass needs of one unrolled step.
type stepState struct {
	ids           []int32
	e, eN, eRstd  []float32 // embedding, its norm and 1/rms
	h, hN, hRstd  []float32 // step input hidden state, its norm and 1/rms
	q, k, v       []float32 // post-RoPE queries and keys, values
	lse, a        []float32 // attention log-sum-exp and output
	hp, hpRstd, y []float32 // after attention, 1/rms, post-attention norm
	gate, up      []float32
	dDirect       []float32 // gradient of this step's loss w.r.t. the step output
	rope          *kernels.RopeTable
}

// Workspace keeps TTT buffers between batches so training allocates once.
type Workspace struct {
	steps  []stepState
	dK, dV [][]float32
	buf    map[string][]float32
}

func (ws *Workspace) get(name string, n int) []float32 {
	if ws.buf == nil {
		ws.buf = map[string][]float32{}
	}
	b := ws.buf[name]
	if cap(b) < n {
		b = make([]float32, n)
		ws.buf[name] = b
	}
	b = b[:n]
	clear(b)
	return b
}

// resize is kernels.Resize with the buffer cleared: the backward accumulates into some of them.
func resize(b []float32, n int) []float32 {
	b = kernels.Resize(b, n)
	clear(b)
	return b
}

// TTT runs the K-step training-time test over a batch, forward and backward, and adds gradScale times the
// gradient of the total loss to grad. With grad nil it only evaluates (no backward pass).
func (d *Draft) TTT(b *Batch, K int, grad *Weights, ws *Workspace, gradScale float64) (*Metrics, error) {
	c := &d.Config
	if d.Embed == nil {
		return nil, errNoEmbedding
	}
	N, H, Ht, I := b.B*b.T, c.HiddenSize, c.TargetHiddenSize, c.IntermediateSize
	nh, nkv, hd := c.NumHeads, c.NumKVHeads, c.HeadDim
	qDim, kvDim, vd := nh*hd, nkv*hd, c.DraftVocabSize
	if len(b.InputIDs) != N || len(b.Aux) != N*3*Ht || len(b.Teacher.P) != N*vd {
		return nil, fmt.Errorf("ttt: batch of %d x %d rows does not match its ids (%d), aux (%d) or teacher (%d)", b.B, b.T, len(b.InputIDs), len(b.Aux), len(b.Teacher.P))
	}
	rope, err := c.Rope()
	if err != nil {
		return nil, err
	}
	eps := float32(c.RMSNormEps)
	att := kernels.TTTAttention{Heads: nh, KVHeads: nkv, HeadDim: hd, Scale: float32(1 / math.Sqrt(float64(hd)))}
	pm := b.PositionMask(d.Vocab.T2D)
	w := &d.W
	for len(ws.steps) < K {
		ws.steps = append(ws.steps, stepState{})
	}
	keys, values := make([][]float32, K), make([][]float32, K)
	met := &Metrics{Loss: make([]float64, K), Correct: make([]int, K), Denom: make([]int, K), Acc: make([]float64, K)}

	h := ws.get("fc_out", N*H)
	blas.MatMulT(h, b.Aux, w.FC, N, H, 3*Ht)
	for k := 0; k < K; k++ {
		st := &ws.steps[k]
		st.h = resize(st.h, N*H)
		copy(st.h, h)
		st.ids = st.ids[:0]
		positions := make([]int32, N)
		for r := 0; r < b.B; r++ {
			for t := 0; t < b.T; t++ {
				id := int32(0)
				if t+1+k < b.T {
					id = b.InputIDs[r*b.T+t+1+k]
				}
				st.ids = append(st.ids, id)
				positions[r*b.T+t] = int32(t + k)
			}
		}
		inv, scale := rope.Frequencies(b.T + k)
		st.rope = kernels.NewRopeTable(inv, scale, positions)

		st.e, st.eN, st.eRstd = resize(st.e, N*H), resize(st.eN, N*H), resize(st.eRstd, N)
		st.hN, st.hRstd = resize(st.hN, N*H), resize(st.hRstd, N)
		kernels.Embedding(st.e, d.Embed, st.ids, H)
		kernels.RMSNormForward(st.eN, st.eRstd, st.e, w.InputNorm, N, H, eps)
		kernels.RMSNormForward(st.hN, st.hRstd, st.h, w.HiddenNorm, N, H, eps)
		st.q, st.k, st.v = resize(st.q, N*qDim), resize(st.k, N*kvDim), resize(st.v, N*kvDim)
		halves(st.q, st.eN, st.hN, w.Wq, N, qDim, H)
		halves(st.k, st.eN, st.hN, w.Wk, N, kvDim, H)
		halves(st.v, st.eN, st.hN, w.Wv, N, kvDim, H)
		st.rope.Apply(st.q, N, nh)
		st.rope.Apply(st.k, N, nkv)
		keys[k], values[k] = st.k, st.v
		st.lse, st.a = resize(st.lse, N*nh), resize(st.a, N*qDim)
		att.Forward(st.a, st.lse, st.q, keys[:k+1], values[:k+1], b.AttentionMask, b.B, b.T)

		st.hp = resize(st.hp, N*H)
		copy(st.hp, st.h)
		blas.MatMulTAcc(st.hp, st.a, w.Wo, N, H, qDim)
		st.y, st.hpRstd = resize(st.y, N*H), resize(st.hpRstd, N)
		kernels.RMSNormForward(st.y, st.hpRstd, st.hp, w.PostNorm, N, H, eps)
		st.gate, st.up = resize(st.gate, N*I), resize(st.up, N*I)
		blas.MatMulT(st.gate, st.y, w.Wgate, N, I, H)
		blas.MatMulT(st.up, st.y, w.Wup, N, I, H)
		act := ws.get("act", N*I)
		kernels.SwiGLU(act, st.gate, st.up)
		copy(h, st.hp)
		blas.MatMulTAcc(h, act, w.Wdown, N, H, I) // h is now h_{k+1}

		st.dDirect = resize(st.dDirect, N*H)
		d.stepLoss(k, b, pm, h, st.dDirect, grad, ws, met, gradScale)
	}
	met.Total = 0
	for k := range met.Loss {
		met.Total += math.Pow(LossDecay, float64(k)) * met.Loss[k]
	}
	if grad == nil {
		return met, nil
	}

	// Backward through the unrolled steps, last first; dh carries the gradient w.r.t. the step output.
	dh := ws.get("dh", N*H)
	for len(ws.dK) < K {
		ws.dK, ws.dV = append(ws.dK, nil), append(ws.dV, nil)
	}
	for k := 0; k < K; k++ {
		ws.dK[k], ws.dV[k] = resize(ws.dK[k], N*kvDim), resize(ws.dV[k], N*kvDim)
	}
	for k := K - 1; k >= 0; k-- {
		st := &ws.steps[k]
		kernels.Add(dh, st.dDirect)
		// MLP: h_{k+1} = hp + down(silu(gate)*up).
		act := ws.get("act", N*I)
		kernels.SwiGLU(act, st.gate, st.up)
		blas.Sgemm(true, false, H, I, N, 1, dh, H, act, I, 1, grad.Wdown, I)
		dact := ws.get("dact", N*I)
		blas.Sgemm(false, false, N, I, H, 1, dh, H, w.Wdown, I, 0, dact, I)
		dgate, dup := ws.get("dgate", N*I), ws.get("dup", N*I)
		kernels.SwiGLUBackward(dgate, dup, dact, st.gate, st.up)
		dy := ws.get("dy", N*H)
		blas.Sgemm(false, false, N, H, I, 1, dgate, I, w.Wgate, H, 0, dy, H)
		blas.Sgemm(false, false, N, H, I, 1, dup, I, w.Wup, H, 1, dy, H)
		blas.Sgemm(true, false, I, H, N, 1, dgate, I, st.y, H, 1, grad.Wgate, H)
		blas.Sgemm(true, false, I, H, N, 1, dup, I, st.y, H, 1, grad.Wup, H)
		kernels.RMSNormBackward(dh, grad.PostNorm, dy, st.hp, w.PostNorm, st.hpRstd, N, H) // dh is now d hp
		// Attention: hp = h + o(a).
		blas.Sgemm(true, false, H, qDim, N, 1, dh, H, st.a, qDim, 1, grad.Wo, qDim)
		da := ws.get("da", N*qDim)
		blas.Sgemm(false, false, N, qDim, H, 1, dh, H, w.Wo, qDim, 0, da, qDim)
		dq := ws.get("dq", N*qDim)
		att.Backward(dq, ws.dK[:k+1], ws.dV[:k+1], da, st.a, st.lse, st.q, keys[:k+1], values[:k+1], b.AttentionMask, b.B, b.T)
		// Every later step has added to this step's keys and values: their gradients are complete.
		st.rope.ApplyInverse(dq, N, nh)
		dk := ws.dK[k]
		st.rope.ApplyInverse(dk, N, nkv)
		dEN, dHN := ws.get("dEN", N*H), ws.get("dHN", N*H)
		for _, p := range []struct {
			dy, w, dw []float32
			out       int
		}{
			{dq, w.Wq, grad.Wq, qDim}, {dk, w.Wk, grad.Wk, kvDim}, {ws.dV[k], w.Wv, grad.Wv, kvDim},
		} {
			blas.Sgemm(false, false, N, H, p.out, 1, p.dy, p.out, p.w, 2*H, 1, dEN, H)
			blas.Sgemm(false, false, N, H, p.out, 1, p.dy, p.out, p.w[H:], 2*H, 1, dHN, H)
			blas.Sgemm(true, false, p.out, H, N, 1, p.dy, p.out, st.eN, H, 1, p.dw, 2*H)
			blas.Sgemm(true, false, p.out, H, N, 1, p.dy, p.out, st.hN, H, 1, p.dw[H:], 2*H)
		}
		kernels.RMSNormBackward(nil, grad.InputNorm, dEN, st.e, w.InputNorm, st.eRstd, N, H) // the embedding is frozen
		kernels.RMSNormBackward(dh, grad.HiddenNorm, dHN, st.h, w.HiddenNorm, st.hRstd, N, H)
	}
	blas.Sgemm(true, false, H, 3*Ht, N, 1, dh, H, b.Aux, 3*Ht, 1, grad.FC, 3*Ht)
	return met, nil
}

// halves computes y = [xe | xh] w^T for w [out, 2H] without building the concatenation.
func halves(y, xe, xh, w []float32, n, out, h int) {
	blas.Sgemm(false, true, n, out, h, 1, xe, h, w, 2*h, 0, y, out)
	blas.Sgemm(false, true, n, out, h, 1, xh, h, w[h:], 2*h, 1, y, out)
}

// stepLoss computes the loss, accuracy and gradient of unrolled step k from its output h [N, H]. Only rows
// with a teacher (pm_k) are multiplied out to logits, one block of rows at a time, and each block's
// gradient is folded into lm_head's and the norm's right away: no [N, Vd] tensor outlives the call.
func (d *Draft) stepLoss(k int, b *Batch, pm []bool, h, dDirect []float32, grad *Weights, ws *Workspace, met *Metrics, gradScale float64) {
	c := &d.Config
	H, vd := c.HiddenSize, c.DraftVocabSize
	var rows, src []int // output rows and the teacher rows they learn from
	for r := 0; r < b.B; r++ {
		for t := 0; t < b.T; t++ {
			if t+k < b.T {
				if b.LossMask[r*b.T+t+k] {
					met.Denom[k]++
				}
				if pm[r*b.T+t+k] {
					rows = append(rows, r*b.T+t)
					src = append(src, r*b.T+t+k)
				}
			}
		}
	}
	coef := float32(math.Pow(LossDecay, float64(k)) / float64(b.B*b.T) * gradScale)
	const block = 256
	var loss float64
	for lo := 0; lo < len(rows); lo += block {
		n := min(block, len(rows)-lo)
		hb, hn, rstd := ws.get("loss_h", n*H), ws.get("loss_hn", n*H), ws.get("loss_rstd", n)
		tp := ws.get("loss_tp", n*vd)
		for i := 0; i < n; i++ {
			copy(hb[i*H:(i+1)*H], h[rows[lo+i]*H:(rows[lo+i]+1)*H])
			copy(tp[i*vd:(i+1)*vd], b.Teacher.P[src[lo+i]*vd:(src[lo+i]+1)*vd])
		}
		kernels.RMSNormForward(hn, rstd, hb, d.W.Norm, n, H, float32(c.RMSNormEps))
		logits := ws.get("loss_logits", n*vd)
		blas.MatMulT(logits, hn, d.W.LMHead, n, vd, H)
		coefs := make([]float32, n)
		for i := range coefs {
			coefs[i] = coef
		}
		pred := make([]int32, n)
		loss += kernels.SoftCrossEntropy(logits, tp, coefs, pred, n, vd)
		for i := 0; i < n; i++ {
			if pred[i] == b.Teacher.Argmax[src[lo+i]] {
				met.Correct[k]++
			}
		}
		if grad == nil {
			continue
		}
		// logits now holds d loss / d logits.
		blas.Sgemm(true, false, vd, H, n, 1, logits, vd, hn, H, 1, grad.LMHead, H)
		dhn := ws.get("loss_dhn", n*H)
		blas.Sgemm(false, false, n, H, vd, 1, logits, vd, d.W.LMHead, H, 0, dhn, H)
		dhb := ws.get("loss_dh", n*H)
		kernels.RMSNormBackward(dhb, grad.Norm, dhn, hb, d.W.Norm, rstd, n, H)
		for i := 0; i < n; i++ {
			copy(dDirect[rows[lo+i]*H:(rows[lo+i]+1)*H], dhb[i*H:(i+1)*H])
		}
	}
	met.Loss[k] = loss / float64(b.B*b.T)
	met.Acc[k] = float64(met.Correct[k]) / math.Max(float64(met.Denom[k]), 1e-6)
}
