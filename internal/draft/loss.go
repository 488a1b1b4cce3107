package draft

import (
	"math"

	"github.com/specforge/specforge/internal/tensor"
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

// reset makes m the zero metrics of K steps, reusing its slices.
func (m *Metrics) reset(K int) {
	m.Loss, m.Correct, m.Denom, m.Acc = resizeZero(m.Loss, K), resizeZero(m.Correct, K), resizeZero(m.Denom, K), resizeZero(m.Acc, K)
	m.Total = 0
}

// total sets m.Total from the per-step losses.
func (m *Metrics) total() {
	m.Total = 0
	for k := range m.Loss {
		m.Total += math.Pow(LossDecay, float64(k)) * m.Loss[k]
	}
}

// lossBlock bounds the rows multiplied out to logits at once: no [rows, Vd] tensor of a whole batch exists.
const lossBlock = 256

// lossWork is the loss's workspace: the rows of a step that have a teacher, and one block of them.
type lossWork struct {
	rows, src   []int     // output rows and the teacher rows they learn from
	h, hn, rstd []float32 // [n, H], [n, H], [n]: the block's outputs, their norm, 1/rms
	tp, logits  []float32 // [n, Vd]: teacher rows, logits (then their gradient)
	dhn, dh     []float32 // [n, H]
	coef        []float32 // [n]
	pred        []int32   // [n]
}

// stepLoss computes the loss, accuracy and gradient of unrolled step k from its output h [N, H] into met
// and dDirect [N, H] (zeroed: rows without a teacher get no gradient). Only rows with a teacher (pm_k) are
// multiplied out to logits, one block of rows at a time, and each block's gradient is folded into lm_head's
// and the norm's right away. With grad nil it only evaluates.
func (l *layer) stepLoss(k int, b *Batch, pm []bool, h, dDirect []float32, grad *Weights, lw *lossWork, met *Metrics, gradScale float64) {
	H, vd := l.H, l.vd
	lw.rows, lw.src = lw.rows[:0], lw.src[:0]
	for r := 0; r < b.B; r++ {
		for t := 0; t+k < b.T; t++ {
			if b.LossMask[r*b.T+t+k] {
				met.Denom[k]++
			}
			if pm[r*b.T+t+k] {
				lw.rows = append(lw.rows, r*b.T+t)
				lw.src = append(lw.src, r*b.T+t+k)
			}
		}
	}
	coef := float32(math.Pow(LossDecay, float64(k)) / float64(b.B*b.T) * gradScale)
	var loss float64
	for lo := 0; lo < len(lw.rows); lo += lossBlock {
		n := min(lossBlock, len(lw.rows)-lo)
		rows, src := lw.rows[lo:lo+n], lw.src[lo:lo+n]
		// Every buffer but dh is overwritten whole before it is read.
		hb, hn, rstd := tensor.Resize(lw.h, n*H), tensor.Resize(lw.hn, n*H), tensor.Resize(lw.rstd, n)
		tp, logits := tensor.Resize(lw.tp, n*vd), tensor.Resize(lw.logits, n*vd)
		lw.h, lw.hn, lw.rstd, lw.tp, lw.logits = hb, hn, rstd, tp, logits
		lw.coef, lw.pred = tensor.Resize(lw.coef, n), resizeZero(lw.pred, n)
		for i := range n {
			copy(hb[i*H:(i+1)*H], h[rows[i]*H:(rows[i]+1)*H])
			copy(tp[i*vd:(i+1)*vd], b.Teacher.P[src[i]*vd:(src[i]+1)*vd])
			lw.coef[i] = coef
		}
		l.headForward(logits, hn, rstd, hb, n)
		loss += l.be.SoftCrossEntropy(t32(logits), t32(tp), t32(lw.coef), lw.pred, n, vd)
		for i := range n {
			if lw.pred[i] == b.Teacher.Argmax[src[i]] {
				met.Correct[k]++
			}
		}
		if grad == nil {
			continue
		}
		// logits now holds d loss / d logits.
		lw.dhn, lw.dh = tensor.Resize(lw.dhn, n*H), resizeZero(lw.dh, n*H)
		l.headBackward(lw.dh, grad, logits, lw.dhn, hn, hb, rstd, n)
		for i := range n {
			copy(dDirect[rows[i]*H:(rows[i]+1)*H], lw.dh[i*H:(i+1)*H])
		}
	}
	met.Loss[k] = loss / float64(b.B*b.T)
	met.Acc[k] = float64(met.Correct[k]) / math.Max(float64(met.Denom[k]), 1e-6)
}
