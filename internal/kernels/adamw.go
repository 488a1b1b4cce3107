package kernels

import (
	"math"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/parallel"
)

// AdamWGo is AdamW in pure Go, compiled in every build: it updates p in place from its gradient g and moments m, v (float32 throughout, as torch.optim.AdamW
// with float32 state): p *= decay; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= stepSize * m /
// (sqrt(v)/sqrtBC2 + eps).
func AdamWGo(p, g, m, v []float32, s backend.AdamWStep) {
	parallel.For(len(p), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if s.Decay != 1 {
				p[i] *= s.Decay
			}
			m[i] = s.Beta1*m[i] + (1-s.Beta1)*g[i]
			v[i] = s.Beta2*v[i] + (1-s.Beta2)*g[i]*g[i]
			denom := float32(math.Sqrt(float64(v[i])))/s.SqrtBC2 + s.Eps
			p[i] -= s.StepSize * m[i] / denom
		}
	})
}
