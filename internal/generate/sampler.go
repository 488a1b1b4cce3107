// Package generate decodes text from a target model: greedy or sampled (temperature, top-k, top-p) with a
// KV cache, the way Hugging Face's generate does.
package generate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/tensor"
)

// SamplingParams are the decoding settings. Temperature 0 means greedy.
type SamplingParams struct {
	Temperature float64
	TopK        int     // 0: no limit
	TopP        float64 // 1 (or 0): no limit
	Seed        uint64
}

// Validate rejects settings that have no meaning.
func (p SamplingParams) Validate() error {
	if p.Temperature < 0 || math.IsNaN(p.Temperature) {
		return fmt.Errorf("temperature must be >= 0, got %g", p.Temperature)
	}
	if p.TopK < 0 {
		return fmt.Errorf("top-k must be >= 0, got %d", p.TopK)
	}
	if p.TopP < 0 || p.TopP > 1 {
		return fmt.Errorf("top-p must be in [0, 1], got %g", p.TopP)
	}
	return nil
}

// Sampler picks next tokens from logits.
type Sampler struct {
	p   SamplingParams
	be  backend.Backend // of the model whose logits it reads
	rng *rand.Rand
}

// NewSampler returns a sampler seeded from p.Seed that reads logits with be (the greedy argmax), the backend
// of the model that produces them.
func NewSampler(be backend.Backend, p SamplingParams) *Sampler {
	return &Sampler{p: p, be: be, rng: rand.New(rand.NewPCG(p.Seed, p.Seed^0x9e3779b97f4a7c15))}
}

// Greedy reports whether the sampler always takes the most likely token.
func (s *Sampler) Greedy() bool { return s.p.Temperature == 0 }

// Next picks a token from one row of logits.
func (s *Sampler) Next(logits []float32) int {
	if s.Greedy() {
		return s.be.Argmax(tensor.Vec(logits))
	}
	probs := s.Distribution(logits)
	return s.Draw(probs)
}

// Draw samples an index from a probability vector.
func (s *Sampler) Draw(probs []float64) int {
	u := s.rng.Float64()
	var acc float64
	last := 0
	for i, p := range probs {
		if p == 0 {
			continue
		}
		acc += p
		last = i
		if u < acc {
			return i
		}
	}
	return last // rounding left u above the total
}

// Uniform returns a uniform number in [0, 1) from the sampler's stream.
func (s *Sampler) Uniform() float64 { return s.rng.Float64() }

// Distribution turns logits into the probabilities the sampler draws from: softmax(logits/T), then the
// top-k tokens, then the smallest set whose probability reaches top-p (HF's TopPLogitsWarper keeps tokens
// until the cumulative probability exceeds p, and always the most likely one), renormalised.
func (s *Sampler) Distribution(logits []float32) []float64 {
	probs := make([]float64, len(logits))
	if s.Greedy() {
		probs[s.be.Argmax(tensor.Vec(logits))] = 1
		return probs
	}
	m := math.Inf(-1)
	for _, v := range logits {
		m = math.Max(m, float64(v))
	}
	var z float64
	for i, v := range logits {
		probs[i] = math.Exp((float64(v) - m) / s.p.Temperature)
		z += probs[i]
	}
	for i := range probs {
		probs[i] /= z
	}
	topP := s.p.TopP
	if topP == 0 {
		topP = 1
	}
	if s.p.TopK == 0 && topP >= 1 {
		return probs
	}
	order := make([]int, len(probs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return probs[order[a]] > probs[order[b]] })
	keep := len(order)
	if s.p.TopK > 0 && s.p.TopK < keep {
		keep = s.p.TopK
	}
	if topP < 1 {
		// Top-p sees the distribution renormalised over the top-k survivors.
		var zk float64
		for _, i := range order[:keep] {
			zk += probs[i]
		}
		var acc float64
		for i := 0; i < keep; i++ {
			acc += probs[order[i]] / zk
			if acc >= topP {
				keep = i + 1
				break
			}
		}
	}
	var kept float64
	for _, i := range order[:keep] {
		kept += probs[i]
	}
	out := make([]float64, len(probs))
	for _, i := range order[:keep] {
		out[i] = probs[i] / kept
	}
	return out
}
