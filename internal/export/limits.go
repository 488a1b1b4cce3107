package export

import (
	"fmt"

	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/model"
)

// checkLimits bounds the sizes of an imported draft's configuration by the target models' limits
// (model.MaxHiddenSize, ...): a draft is one layer of its target's shape, and a folder from a stranger may
// declare any size. Within them no product of sizes the draft computes (heads x head_dim, 3 x
// target_hidden_size) overflows, and what a size allocates before the weights are checked against it (the
// vocabulary mapping's vocab_size flags) stays small.
func checkLimits(path string, c *draft.Config) error {
	for _, f := range []struct {
		name    string
		v, max  int
		atLeast int
	}{
		{"hidden_size", c.HiddenSize, model.MaxHiddenSize, 1},
		{"intermediate_size", c.IntermediateSize, model.MaxIntermediateSize, 1},
		{"num_attention_heads", c.NumHeads, model.MaxHeads, 1},
		{"num_key_value_heads", c.NumKVHeads, model.MaxHeads, 1},
		{"head_dim", c.HeadDim, model.MaxHeadDim, 1},
		{"vocab_size", c.VocabSize, model.MaxVocabSize, 1},
		{"draft_vocab_size", c.DraftVocabSize, model.MaxVocabSize, 1},
		{"target_hidden_size", c.TargetHiddenSize, model.MaxHiddenSize, 1},
		{"max_position_embeddings", c.MaxPositions, model.MaxPositionEmbeddings, 1},
		{"target_num_hidden_layers", c.TargetNumLayers, model.MaxLayers, 0}, // 0: not recorded
	} {
		if f.v < f.atLeast || f.v > f.max {
			return fmt.Errorf("%s: %s must be in [%d, %d], got %d", path, f.name, f.atLeast, f.max, f.v)
		}
	}
	// JSON has no NaN or infinities, so a decoded epsilon is finite: only its range needs checking.
	if !(c.RMSNormEps > 0 && c.RMSNormEps <= model.MaxRMSNormEps) {
		return fmt.Errorf("%s: rms_norm_eps must be in (0, %g], got %g", path, float64(model.MaxRMSNormEps), c.RMSNormEps)
	}
	for _, l := range c.AuxLayers {
		if l < 0 || l >= model.MaxLayers {
			return fmt.Errorf("%s: aux layer %d (%s) must be in [0, %d)", path, l, draft.OutputOfLayer, model.MaxLayers)
		}
	}
	return nil
}
