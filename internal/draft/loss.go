package draft

import (
	"fmt"
	"math"

	"github.com/specforge/specforge/internal/tensor"
)

// LossDecay weighs the loss of unrolled step k by LossDecay^k.
const LossDecay = 0.8

// Metrics of one TTT pass.
type Metrics struct {
	Loss []float64 // per step: the loss trained on (KL below, or an LK loss)
	// KL per step: -(1/(B*T)) sum pm_k sum_v p log softmax(logits), the usual EAGLE-3 loss.
	KL []float64
	// Alpha per step: the mean over the rows of pm_k of sum_v min(p_v, q_v), the probability that a token
	// drafted from the draft's distribution q is accepted against the teacher p.
	Alpha   []float64
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
	m.KL, m.Alpha = resizeZero(m.KL, K), resizeZero(m.Alpha, K)
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

// Loss is the objective of each TTT step (train.loss).
type Loss struct {
	Kind LossKind
	// KLScale and KLDecay set lk_lambda's weight of the KL term, KLScale*exp(-KLDecay*alpha_k).
	KLScale, KLDecay float64
}

// LossKind names a per-step loss.
type LossKind string

// The per-step losses. The LK losses (arXiv 2602.23881, as SpecForge's lk_loss.py computes them) target
// the acceptance alpha_k itself.
const (
	LossKL       LossKind = "kl"        // the KL (soft cross-entropy) to the teacher, EAGLE-3's loss
	LossLKLambda LossKind = "lk_lambda" // lambda*KL + (1-lambda)*(1-alpha), lambda = scale*exp(-decay*alpha)
	LossLKAlpha  LossKind = "lk_alpha"  // -mean over rows of log(sum_v min(p_v, q_v))
)

// Check refuses an unknown kind.
func (l Loss) Check() error {
	switch l.Kind {
	case "", LossKL, LossLKLambda, LossLKAlpha:
		return nil
	}
	return fmt.Errorf("loss %q is not one of kl, lk_lambda, lk_alpha", l.Kind)
}

// lossWork is the loss's workspace: the rows of a step that have a teacher, and one block of them.
type lossWork struct {
	rows, src       []int     // output rows and the teacher rows they learn from
	h, hn, rstd     []float32 // [n, H], [n, H], [n]: the block's outputs, their norm, 1/rms
	tp, logits      []float32 // [n, Vd]: teacher rows, logits (then their gradient)
	dhn, dh         []float32 // [n, H]
	klCoef, accCoef []float32 // [n]
	accept          []float64 // [n]
	pred            []int32   // [n]
}

// stepLoss computes the loss, accuracy, acceptance and gradient of unrolled step k from its output h
// [N, H] into met and dDirect [N, H] (zeroed: rows without a teacher get no gradient). Only rows with a
// teacher (pm_k) are multiplied out to logits, one block of rows at a time, and each block's gradient is
// folded into lm_head's and the norm's right away. With grad nil it only evaluates. lk_lambda's weight
// depends on the step's acceptance over all its rows, so when training with it the blocks' logits are
// computed twice: once for alpha_k, once for the gradient (no [rows, Vd] buffer is kept between them).
func (l *layer) stepLoss(k int, b *Batch, pm []bool, h, dDirect []float32, grad *Weights, lw *lossWork, met *Metrics, gradScale float64, obj Loss) {
	lw.rows, lw.src = lw.rows[:0], lw.src[:0]
	for r := 0; r < b.B; r++ {
		for t := 0; t+k < b.T; t++ {
			if !b.sameSample(r, t, t+k) { // the step's row t+k would learn from another sample
				continue
			}
			if b.LossMask[r*b.T+t+k] {
				met.Denom[k]++
			}
			if pm[r*b.T+t+k] {
				lw.rows = append(lw.rows, r*b.T+t)
				lw.src = append(lw.src, r*b.T+t+k)
			}
		}
	}
	decay := math.Pow(LossDecay, float64(k)) * gradScale
	perRow := 1 / float64(b.B*b.T)                     // the KL's normalisation
	perPM := 1 / math.Max(float64(len(lw.rows)), 1e-8) // the LK losses'
	var klC, accC float64
	logAccept := false
	switch obj.Kind {
	case LossLKAlpha:
		accC, logAccept = -decay*perPM, true
	case LossLKLambda:
		if grad != nil {
			_, sumA, _ := l.lossBlocks(b, h, nil, nil, lw, met, k, 0, 0, false, false)
			lambda := obj.KLScale * math.Exp(-obj.KLDecay*sumA*perPM)
			klC, accC = lambda*decay*perRow, -(1-lambda)*decay*perPM
		}
	default:
		klC = decay * perRow
	}
	ce, sumA, sumLogA := l.lossBlocks(b, h, dDirect, grad, lw, met, k, klC, accC, logAccept, true)
	met.KL[k] = ce * perRow
	met.Alpha[k] = sumA * perPM
	switch obj.Kind {
	case LossLKAlpha:
		met.Loss[k] = -sumLogA * perPM
	case LossLKLambda:
		lambda := obj.KLScale * math.Exp(-obj.KLDecay*met.Alpha[k])
		met.Loss[k] = lambda*met.KL[k] + (1-lambda)*(1-met.Alpha[k])
	default:
		met.Loss[k] = met.KL[k]
	}
	met.Acc[k] = float64(met.Correct[k]) / math.Max(float64(met.Denom[k]), 1e-6)
}

// lossBlocks runs the rows of lw through the head a block at a time and returns the summed cross-entropy,
// acceptance and log-acceptance (rows of zero acceptance left out). With grad set it folds the gradient of
// klC*CE + accC*accept (or accC*log(accept)) per row into grad and dDirect; with count it counts the
// draft's correct argmaxes into met.
func (l *layer) lossBlocks(b *Batch, h, dDirect []float32, grad *Weights, lw *lossWork, met *Metrics, k int, klC, accC float64, logAccept, count bool) (ce, sumA, sumLogA float64) {
	H, vd := l.H, l.vd
	for lo := 0; lo < len(lw.rows); lo += lossBlock {
		n := min(lossBlock, len(lw.rows)-lo)
		rows, src := lw.rows[lo:lo+n], lw.src[lo:lo+n]
		// Every buffer but dh is overwritten whole before it is read.
		hb, hn, rstd := tensor.Resize(lw.h, n*H), tensor.Resize(lw.hn, n*H), tensor.Resize(lw.rstd, n)
		tp, logits := tensor.Resize(lw.tp, n*vd), tensor.Resize(lw.logits, n*vd)
		lw.h, lw.hn, lw.rstd, lw.tp, lw.logits = hb, hn, rstd, tp, logits
		lw.klCoef, lw.accCoef, lw.accept = tensor.Resize(lw.klCoef, n), tensor.Resize(lw.accCoef, n), resizeZero(lw.accept, n)
		lw.pred = resizeZero(lw.pred, n)
		for i := range n {
			copy(hb[i*H:(i+1)*H], h[rows[i]*H:(rows[i]+1)*H])
			copy(tp[i*vd:(i+1)*vd], b.Teacher.P[src[i]*vd:(src[i]+1)*vd])
			lw.klCoef[i], lw.accCoef[i] = float32(klC), float32(accC)
		}
		l.headForward(logits, hn, rstd, hb, n)
		ce += l.be.SoftCrossEntropyAccept(t32(logits), t32(tp), t32(lw.klCoef), t32(lw.accCoef), logAccept, lw.accept, lw.pred, n, vd)
		for i, a := range lw.accept {
			sumA += a
			if a > 0 {
				sumLogA += math.Log(a)
			}
			if count && lw.pred[i] == b.Teacher.Argmax[src[i]] {
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
	return ce, sumA, sumLogA
}
