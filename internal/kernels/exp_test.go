package kernels

import (
	"math"
	"testing"
)

func TestExp(t *testing.T) {
	worst := 0.0
	for x := float32(-103); x < 88.7; x += 0.00731 {
		got, want := float64(Exp(x)), math.Exp(float64(x))
		if want < 1.2e-38 { // subnormal results: absolute error of one subnormal step
			if math.Abs(got-want) > 1.5e-45 {
				t.Fatalf("Exp(%g) = %g, want %g", x, got, want)
			}
			continue
		}
		if rel := math.Abs(got-want) / want; rel > worst {
			worst = rel
		}
	}
	if worst > 2e-7 {
		t.Errorf("worst relative error %g", worst)
	}
	if !math.IsInf(float64(Exp(100)), 1) || Exp(-200) != 0 || Exp(0) != 1 {
		t.Errorf("limits: %g %g %g", Exp(100), Exp(-200), Exp(0))
	}
}

func BenchmarkExp(b *testing.B) {
	var s float32
	for i := 0; i < b.N; i++ {
		s += Exp(float32(i%1000) * -0.01)
	}
	_ = s
}
