package pipeline

import (
	"context"

	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/specdecode"
)

// acceptanceProbe decodes the first tokens of the first eval samples speculatively and reports the acceptance
// length; nil when switched off.
func acceptanceProbe(target *model.Model, data *dataset.File, tc config.TrainConfig) func(*draft.Draft) (float64, error) {
	if tc.EvalAcceptancePrompts <= 0 || tc.EvalAcceptanceSteps <= 0 || tc.EvalAcceptanceTokens <= 0 {
		return nil
	}
	var prompts [][]int32
	for i := 0; i < data.Len() && len(prompts) < tc.EvalAcceptancePrompts; i++ {
		ids, _ := data.Sample(i)
		prompts = append(prompts, ids[:min(len(ids), 16)])
	}
	return func(d *draft.Draft) (float64, error) {
		dec := &specdecode.Decoder{Target: target, Draft: d}
		total := &specdecode.Stats{}
		for _, p := range prompts {
			// Not the run's context: a run interrupted during an evaluation finishes it and saves its
			// checkpoint (train.Trainer.Run).
			_, st, err := dec.Generate(context.Background(), p, specdecode.Options{Steps: tc.EvalAcceptanceSteps, MaxNewTokens: tc.EvalAcceptanceTokens, StopIDs: target.Config.EOSTokenIDs})
			if err != nil {
				return 0, err
			}
			total.Add(st)
		}
		return total.AcceptanceLength(), nil
	}
}
