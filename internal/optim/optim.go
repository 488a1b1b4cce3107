// Package optim holds the optimiser of draft training: global gradient-norm clipping, AdamW on float32
// master weights (torch.optim.AdamW semantics), and the warmup + cosine learning-rate schedule.
package optim

import (
	"math"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/backend/auto"
	"github.com/specforge/specforge/internal/parallel"
	"github.com/specforge/specforge/internal/tensor"
)

// ClipGradNorm scales every gradient by min(1, maxNorm/(norm+1e-6)), norm being the global L2 norm of all
// of them (torch.nn.utils.clip_grad_norm_). It returns the norm before clipping and the coefficient used.
func ClipGradNorm(grads [][]float32, maxNorm float64) (norm, coef float64) {
	return ClipGradNormOf(grads, SumSquares(grads), maxNorm)
}

// ClipGradNormOf is ClipGradNorm for gradients whose global sum of squares is sq (grads may be a part of
// them: a rank's share of the optimiser, sq summed over all the ranks).
func ClipGradNormOf(grads [][]float32, sq, maxNorm float64) (norm, coef float64) {
	norm = math.Sqrt(sq)
	coef = math.Min(1, maxNorm/(norm+1e-6))
	if coef < 1 {
		c := float32(coef)
		for _, g := range grads {
			parallel.For(len(g), 1<<15, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					g[i] *= c
				}
			})
		}
	}
	return norm, coef
}

// SumSquares is the sum of the squares of every gradient, the same on every run.
func SumSquares(grads [][]float32) float64 {
	var sq float64
	for _, g := range grads {
		sq += sumSquares(g)
	}
	return sq
}

// sumSquares adds per-block partial sums in block order, so the result is the same on every run.
func sumSquares(g []float32) float64 {
	const block = 1 << 15
	parts := make([]float64, (len(g)+block-1)/block)
	parallel.For(len(parts), 1, func(lo, hi int) {
		for b := lo; b < hi; b++ {
			var s float64
			for _, v := range g[b*block : min((b+1)*block, len(g))] {
				s += float64(v) * float64(v)
			}
			parts[b] = s
		}
	})
	var total float64
	for _, s := range parts {
		total += s
	}
	return total
}

// AdamW is torch.optim.AdamW with float32 moments, stepping on a backend.
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	Step                           int
	M, V                           [][]float32
	be                             backend.Backend
}

// NewAdamW returns an optimiser with zero moments for parameters of the given sizes, on the backend of this
// build (backend/auto).
func NewAdamW(sizes []int, beta1, beta2, eps, weightDecay float64) *AdamW {
	return NewAdamWOn(auto.Default(), sizes, beta1, beta2, eps, weightDecay)
}

// NewAdamWOn is NewAdamW stepping on backend be (the model's).
func NewAdamWOn(be backend.Backend, sizes []int, beta1, beta2, eps, weightDecay float64) *AdamW {
	o := &AdamW{Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: weightDecay, be: be}
	for _, n := range sizes {
		o.M = append(o.M, make([]float32, n))
		o.V = append(o.V, make([]float32, n))
	}
	return o
}

// Update applies one step with learning rate lr:
// p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
func (o *AdamW) Update(params, grads [][]float32, lr float64) {
	o.Step++
	bc1 := 1 - math.Pow(o.Beta1, float64(o.Step))
	bc2 := 1 - math.Pow(o.Beta2, float64(o.Step))
	s := backend.AdamWStep{Decay: float32(1 - lr*o.WeightDecay), Beta1: float32(o.Beta1), Beta2: float32(o.Beta2),
		StepSize: float32(lr / bc1), SqrtBC2: float32(math.Sqrt(bc2)), Eps: float32(o.Eps)}
	for k, p := range params {
		o.be.AdamW(tensor.Vec(p), tensor.Vec(grads[k]), tensor.Vec(o.M[k]), tensor.Vec(o.V[k]), s)
	}
}

// CosineWarmup is SpecForge's schedule: with W = int(warmupRatio*total) warmup steps, the learning rate of
// optimiser step s (0-based) is base*(s+1)/W for s < W, then base*(1+cos(pi*(s-W)/(total-W)))/2.
func CosineWarmup(step, total int, warmupRatio, base float64) float64 {
	w := int(warmupRatio * float64(total))
	if step < w {
		return base * float64(step+1) / float64(w)
	}
	if total <= w {
		return base
	}
	return base * (1 + math.Cos(math.Pi*float64(step-w)/float64(total-w))) / 2
}
