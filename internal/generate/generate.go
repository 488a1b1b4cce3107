package generate

import (
	"fmt"
	"slices"
	"time"

	"github.com/specforge/specforge/internal/model"
)

// Options of one generation.
type Options struct {
	MaxNewTokens int
	Sampling     SamplingParams
	// StopIDs end generation when produced (the token is kept in the output).
	StopIDs []int
	// OnToken, if set, is called with every new token as it is produced.
	OnToken func(id int)
}

// Result of a generation with timings.
type Result struct {
	Tokens      []int
	PrefillTime time.Duration
	DecodeTime  time.Duration
}

// DecodeTokensPerSecond is the rate of the tokens produced after the first.
func (r *Result) DecodeTokensPerSecond() float64 {
	if len(r.Tokens) <= 1 || r.DecodeTime <= 0 {
		return 0
	}
	return float64(len(r.Tokens)-1) / r.DecodeTime.Seconds()
}

// Generate continues prompt with the target model alone, one token per forward after the prefill.
func Generate(m *model.Model, prompt []int, opt Options) (*Result, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generate: empty prompt")
	}
	if err := opt.Sampling.Validate(); err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	sampler := NewSampler(opt.Sampling)
	cache := m.NewCache(1, len(prompt)+opt.MaxNewTokens)
	ids := make([]int32, len(prompt))
	for i, p := range prompt {
		ids[i] = int32(p)
	}
	res := &Result{}
	start := time.Now()
	for len(res.Tokens) < opt.MaxNewTokens {
		out, err := m.Forward(model.Batch{B: 1, T: len(ids), IDs: ids}, cache, model.Request{Logits: model.LastLogits})
		if err != nil {
			return nil, err
		}
		next := sampler.Next(out.Logits)
		if len(res.Tokens) == 0 {
			res.PrefillTime = time.Since(start)
			start = time.Now()
		}
		res.Tokens = append(res.Tokens, next)
		if opt.OnToken != nil {
			opt.OnToken(next)
		}
		if slices.Contains(opt.StopIDs, next) {
			break
		}
		ids = []int32{int32(next)}
	}
	res.DecodeTime = time.Since(start)
	return res, nil
}
