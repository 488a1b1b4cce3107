package specdecode

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/specforge/specforge/internal/generate"
)

// BenchResult is what `specforge bench` reports.
type BenchResult struct {
	Prompts          int     `json:"prompts"`
	Tokens           int     `json:"tokens"`
	Rounds           int     `json:"target_verifications"`
	AcceptanceLength float64 `json:"acceptance_length"`
	// PositionAcceptance[i] is the share of drafted tokens at depth i+1 accepted, of those verified.
	PositionAcceptance []float64 `json:"position_acceptance"`
	TargetTokensPerS   float64   `json:"target_only_tokens_per_s"`
	SpecTokensPerS     float64   `json:"speculative_tokens_per_s"`
	Speedup            float64   `json:"speedup"`
	// Mismatches counts greedy outputs that differ from the target's own (always 0 unless something is
	// wrong).
	Mismatches int `json:"greedy_mismatches"`
}

// Bench decodes every prompt with the target alone and speculatively, alternating per prompt so that both
// see the same machine state, and compares speed and outputs. The first warmup prompts run untimed.
// Cancelling ctx stops it within the current round or token with an error that wraps ctx.Err().
func Bench(ctx context.Context, dec *Decoder, prompts [][]int32, o Options, warmup int) (*BenchResult, error) {
	warmup = min(warmup, len(prompts))
	run := func(p []int32) ([]int32, time.Duration, []int32, *Stats, time.Duration, error) {
		t0 := time.Now()
		base, err := generate.Generate(ctx, dec.Target, p, generate.Options{MaxNewTokens: o.MaxNewTokens, Sampling: o.Sampling, StopIDs: o.StopIDs})
		if err != nil {
			return nil, 0, nil, nil, 0, err
		}
		tBase := time.Since(t0)
		t0 = time.Now()
		out, st, err := dec.Generate(ctx, p, o)
		return base.Tokens, tBase, out, st, time.Since(t0), err
	}
	for i, p := range prompts[:warmup] {
		if _, _, _, _, _, err := run(p); err != nil {
			return nil, fmt.Errorf("bench: warm-up prompt %d of %d: %w", i+1, warmup, err)
		}
	}
	prompts = prompts[warmup:]
	if len(prompts) == 0 {
		return nil, fmt.Errorf("bench: no prompts left after the %d warm-up prompts", warmup)
	}
	res := &BenchResult{Prompts: len(prompts)}
	total := &Stats{}
	var baseTime, specTime time.Duration
	baseTokens := 0
	for i, p := range prompts {
		base, tBase, out, st, tSpec, err := run(p)
		if err != nil {
			return nil, fmt.Errorf("bench: prompt %d of %d: %w", i+1, len(prompts), err)
		}
		baseTime += tBase
		specTime += tSpec
		baseTokens += len(base)
		total.Add(st)
		if o.Sampling.Temperature == 0 && !slices.Equal(base, out) {
			res.Mismatches++
		}
	}
	res.Tokens, res.Rounds = total.Tokens, total.Rounds
	res.AcceptanceLength = total.AcceptanceLength()
	for i := range total.Tried {
		res.PositionAcceptance = append(res.PositionAcceptance, float64(total.Accepted[i])/float64(max(total.Tried[i], 1)))
	}
	res.TargetTokensPerS = float64(baseTokens) / baseTime.Seconds()
	res.SpecTokensPerS = float64(total.Tokens) / specTime.Seconds()
	res.Speedup = res.SpecTokensPerS / res.TargetTokensPerS
	return res, nil
}
