package generate

import (
	"context"
	"fmt"
	"slices"

	"github.com/specforge/specforge/internal/model"
)

// GenerateBatch continues prompts of equal length together, one forward for all rows per token. A row stops
// at a stop token (kept) or after maxNew tokens; stopped rows keep being fed but their outputs are dropped.
// Cancelling ctx stops it before the next forward with an error that wraps ctx.Err().
func GenerateBatch(ctx context.Context, m *model.Model, prompts [][]int32, maxNew int, p SamplingParams, stopIDs []int) ([][]int32, error) {
	if len(prompts) == 0 {
		return nil, nil
	}
	T := len(prompts[0])
	B := len(prompts)
	ids := make([]int32, 0, B*T)
	for i, pr := range prompts {
		if len(pr) != T {
			return nil, fmt.Errorf("generate: prompt %d has %d tokens, the batch needs %d", i, len(pr), T)
		}
		ids = append(ids, pr...)
	}
	sampler := NewSampler(m.Backend(), p)
	cache := m.NewCache(B, T+maxNew)
	out := make([][]int32, B)
	done := make([]bool, B)
	var reuse *model.Output
	for step := 0; step < maxNew; step++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("generate: interrupted after %d of %d tokens: %w", step, maxNew, err)
		}
		o, err := m.Forward(model.Batch{B: B, T: len(ids) / B, IDs: ids}, cache, model.Request{Logits: model.LastLogits, Reuse: reuse})
		if err != nil {
			return nil, err
		}
		reuse = o
		V := m.Config.VocabSize
		ids = ids[:0]
		alive := false
		for r := 0; r < B; r++ {
			next := int32(sampler.Next(o.Logits[r*V : (r+1)*V]))
			if !done[r] {
				out[r] = append(out[r], next)
				done[r] = slices.Contains(stopIDs, int(next))
			}
			alive = alive || !done[r]
			ids = append(ids, next)
		}
		if !alive {
			break
		}
	}
	return out, nil
}
