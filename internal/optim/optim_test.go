package optim

import (
	"math"
	"testing"
)

func TestClipGradNorm(t *testing.T) {
	g := [][]float32{{3, 0}, {4}}
	norm, coef := ClipGradNorm(g, 0.5)
	if math.Abs(norm-5) > 1e-12 || math.Abs(coef-0.5/(5+1e-6)) > 1e-12 {
		t.Errorf("norm %g coef %g", norm, coef)
	}
	if math.Abs(float64(g[0][0])-3*coef) > 1e-7 || math.Abs(float64(g[1][0])-4*coef) > 1e-7 {
		t.Errorf("clipped %v", g)
	}
	small := [][]float32{{0.1}}
	if _, c := ClipGradNorm(small, 0.5); c != 1 || small[0][0] != 0.1 {
		t.Errorf("small gradient changed: %v %g", small, c)
	}
}

// TestAdamWMatchesDefinition runs three steps and compares with the update written out in float64.
func TestAdamWMatchesDefinition(t *testing.T) {
	p := [][]float32{{0.5, -1, 2}}
	grads := [][][]float32{{{0.1, -0.2, 0.3}}, {{-0.05, 0.4, 0}}, {{0.2, 0.2, -1}}}
	o := NewAdamW([]int{3}, 0.9, 0.999, 1e-8, 0.01)
	ref := []float64{0.5, -1, 2}
	m, v := make([]float64, 3), make([]float64, 3)
	for s, g := range grads {
		lr := 1e-3 * float64(s+1)
		o.Update(p, g, lr)
		for i := range ref {
			gi := float64(g[0][i])
			ref[i] *= 1 - lr*0.01
			m[i] = 0.9*m[i] + 0.1*gi
			v[i] = 0.999*v[i] + 0.001*gi*gi
			bc1, bc2 := 1-math.Pow(0.9, float64(s+1)), 1-math.Pow(0.999, float64(s+1))
			ref[i] -= lr / bc1 * m[i] / (math.Sqrt(v[i])/math.Sqrt(bc2) + 1e-8)
		}
	}
	for i := range ref {
		if math.Abs(float64(p[0][i])-ref[i]) > 1e-6 {
			t.Errorf("p[%d] = %g, want %g", i, p[0][i], ref[i])
		}
	}
}

func TestCosineWarmup(t *testing.T) {
	// The h golden case: total 12, warmup ratio 0.25 (3 steps), base 1e-3.
	want := []float64{1e-3 / 3, 2e-3 / 3, 1e-3}
	for s, w := range want {
		if got := CosineWarmup(s, 12, 0.25, 1e-3); math.Abs(got-w) > 1e-15 {
			t.Errorf("step %d: %g, want %g", s, got, w)
		}
	}
	if got := CosineWarmup(12, 12, 0.25, 1e-3); math.Abs(got) > 1e-15 {
		t.Errorf("end of schedule: %g", got)
	}
	if got := CosineWarmup(7, 12, 0.25, 1e-3); math.Abs(got-1e-3*(1+math.Cos(math.Pi*4/9))/2) > 1e-15 {
		t.Errorf("mid schedule: %g", got)
	}
}
