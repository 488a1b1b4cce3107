package generate

import (
	"math"
	"testing"

	"github.com/specforge/specforge/internal/backend/auto"
)

func TestDistribution(t *testing.T) {
	logits := []float32{2, 1, 0, -1, 3}
	soft := func(temp float64) []float64 {
		p := make([]float64, len(logits))
		var z float64
		for i, v := range logits {
			p[i] = math.Exp(float64(v) / temp)
			z += p[i]
		}
		for i := range p {
			p[i] /= z
		}
		return p
	}
	full := soft(0.7)
	cases := []struct {
		name string
		p    SamplingParams
		want []float64
	}{
		{"greedy", SamplingParams{}, []float64{0, 0, 0, 0, 1}},
		{"temperature", SamplingParams{Temperature: 0.7, TopP: 1}, full},
		{"top-k 2", SamplingParams{Temperature: 0.7, TopK: 2}, []float64{full[0] / (full[0] + full[4]), 0, 0, 0, full[4] / (full[0] + full[4])}},
		// Cumulative probabilities in order 4, 0, 1, ...: top-p keeps tokens until the sum reaches p.
		{"top-p just below the first", SamplingParams{Temperature: 0.7, TopP: full[4] - 1e-9}, []float64{0, 0, 0, 0, 1}},
		{"top-p just above the first", SamplingParams{Temperature: 0.7, TopP: full[4] + 1e-9}, []float64{full[0] / (full[0] + full[4]), 0, 0, 0, full[4] / (full[0] + full[4])}},
	}
	for _, c := range cases {
		got := NewSampler(auto.Default(), c.p).Distribution(logits)
		for i := range got {
			if math.Abs(got[i]-c.want[i]) > 1e-12 {
				t.Errorf("%s: %v, want %v", c.name, got, c.want)
				break
			}
		}
	}
}

// TestSamplingFrequencies draws many samples and checks each token's frequency against its probability
// within 5 standard deviations.
func TestSamplingFrequencies(t *testing.T) {
	logits := []float32{0.5, 1.5, -0.3, 1.0}
	s := NewSampler(auto.Default(), SamplingParams{Temperature: 1.3, Seed: 7})
	probs := s.Distribution(logits)
	const n = 200000
	counts := make([]int, len(logits))
	for i := 0; i < n; i++ {
		counts[s.Next(logits)]++
	}
	for i, p := range probs {
		sd := math.Sqrt(n * p * (1 - p))
		if math.Abs(float64(counts[i])-n*p) > 5*sd {
			t.Errorf("token %d: %d draws, expected %.0f ± %.0f", i, counts[i], n*p, sd)
		}
	}
	// The same seed gives the same stream.
	a, b := NewSampler(auto.Default(), SamplingParams{Temperature: 1, Seed: 3}), NewSampler(auto.Default(), SamplingParams{Temperature: 1, Seed: 3})
	for i := 0; i < 100; i++ {
		if a.Next(logits) != b.Next(logits) {
			t.Fatal("same seed, different samples")
		}
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []SamplingParams{{Temperature: -1}, {TopK: -2}, {TopP: 1.5}} {
		if p.Validate() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}
