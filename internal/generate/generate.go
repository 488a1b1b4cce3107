package generate

import (
	"context"
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
	// OnToken, when set, is handed each token as it is produced, so a server can stream it; returning false
	// ends the generation there (a stop string was found in the text).
	OnToken func(token int32) bool
}

// Result of a generation with timings.
type Result struct {
	Tokens      []int32
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

// Generate continues prompt with the target model alone, one token per forward after the prefill. Cancelling
// ctx stops it before the next forward with an error that wraps ctx.Err().
func Generate(ctx context.Context, m *model.Model, prompt []int32, opt Options) (*Result, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generate: empty prompt")
	}
	if err := opt.Sampling.Validate(); err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	sampler := NewSampler(m.Backend(), opt.Sampling)
	cache := m.NewCache(1, len(prompt)+opt.MaxNewTokens)
	ids := prompt
	var out *model.Output
	res := &Result{}
	start := time.Now()
	for len(res.Tokens) < opt.MaxNewTokens {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("generate: interrupted after %d tokens: %w", len(res.Tokens), err)
		}
		var err error
		if out, err = m.Forward(model.Batch{B: 1, T: len(ids), IDs: ids}, cache, model.Request{Logits: model.LastLogits, Reuse: out}); err != nil {
			return nil, err
		}
		next := int32(sampler.Next(out.Logits))
		if len(res.Tokens) == 0 {
			res.PrefillTime = time.Since(start)
			start = time.Now()
		}
		res.Tokens = append(res.Tokens, next)
		if slices.Contains(opt.StopIDs, int(next)) || opt.OnToken != nil && !opt.OnToken(next) {
			break
		}
		ids = res.Tokens[len(res.Tokens)-1:]
	}
	res.DecodeTime = time.Since(start)
	return res, nil
}
