// Package draft is the EAGLE-3 draft model: one Llama decoder layer that reads the target's token
// embedding and three of its hidden states, trained with the training-time test (TTT) unroll of
// ../shared/docs/EAGLE3.md. It holds the configuration and the parameters (config.go, draft.go), the
// teacher distribution over the draft vocabulary (teacher.go), the decoder layer's forward and backward
// (layer.go), the TTT unroll that trains it (ttt.go) with its loss (loss.go), and decoding with the same
// layer (session.go).
package draft

import (
	"encoding/json"
	"fmt"

	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/rope"
)

// Config is the shape of a draft.
type Config struct {
	HiddenSize       int             `json:"hidden_size"`
	IntermediateSize int             `json:"intermediate_size"`
	NumHeads         int             `json:"num_attention_heads"`
	NumKVHeads       int             `json:"num_key_value_heads"`
	HeadDim          int             `json:"head_dim"`
	VocabSize        int             `json:"vocab_size"` // the target's vocabulary
	DraftVocabSize   int             `json:"draft_vocab_size"`
	TargetHiddenSize int             `json:"target_hidden_size"`
	RMSNormEps       float64         `json:"rms_norm_eps"`
	RopeTheta        float64         `json:"rope_theta"`
	RopeScaling      json.RawMessage `json:"rope_scaling"`
	MaxPositions     int             `json:"max_position_embeddings"`
	// FCNorm is EAGLE-3.1's fc_norm: each aux hidden state passes its own RMSNorm (weights of
	// TargetHiddenSize) before fc.
	FCNorm bool `json:"fc_norm,omitempty"`
	// NormOutput is EAGLE-3.1's norm_output, as SGLang and vLLM define it: each step's hidden state, fed to
	// the next, is the final norm of the last layer's residual stream rather than the stream itself (the
	// logits are lm_head of that norm either way).
	NormOutput bool `json:"norm_output,omitempty"`
	// NumLayers is the number of decoder layers (0 means 1, EAGLE-3's).
	NumLayers int `json:"num_layers,omitempty"`
	// AuxLayers are the target layers whose outputs feed fc, in AuxConvention: 0-based "output of layer i"
	// (SGLang's; vLLM counts the same tensors as "input of layer i+1").
	AuxLayers     []int  `json:"aux_layers"`
	AuxConvention string `json:"aux_layer_convention"`
	BOS           int    `json:"bos_token_id"`
	EOS           []int  `json:"eos_token_id"`
	// The target the draft was made for.
	TargetNumLayers    int    `json:"target_num_hidden_layers"`
	TargetArchitecture string `json:"target_architecture"`
	TargetPath         string `json:"target_path"`
}

// OutputOfLayer is the aux-layer convention of Config.AuxLayers: id i is the residual stream after 0-based
// decoder layer i (SGLang's eagle_config ids; vLLM's ids are these plus one).
const OutputOfLayer = "output of 0-based decoder layer i (sglang eagle_config convention; vllm = i+1)"

// VLLMAuxIDs converts ids from OutputOfLayer to vLLM's convention: output of layer i is the input of layer
// i+1.
func VLLMAuxIDs(ids []int) []int {
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = id + 1
	}
	return out
}

// FromVLLMAuxIDs converts ids in vLLM's "input of layer k" convention to OutputOfLayer; k = 0 (the
// embeddings) has no counterpart.
func FromVLLMAuxIDs(ids []int) ([]int, error) {
	out := make([]int, len(ids))
	for i, k := range ids {
		if k < 1 {
			return nil, fmt.Errorf("aux layer ids %v in vLLM's convention (input of layer k) must each be at least 1", ids)
		}
		out[i] = k - 1
	}
	return out, nil
}

// FromTarget derives a draft configuration from the target's, as SpecForge does: one layer of the target's
// width, heads and RoPE, a draft vocabulary of draftVocab tokens (capped at the target's vocabulary).
func FromTarget(t *model.Config, rawRopeScaling json.RawMessage, draftVocab int) Config {
	return Config{
		HiddenSize: t.HiddenSize, IntermediateSize: t.IntermediateSize, NumHeads: t.NumHeads,
		NumKVHeads: t.NumKVHeads, HeadDim: t.HeadDim, VocabSize: t.VocabSize,
		DraftVocabSize: min(draftVocab, t.VocabSize), TargetHiddenSize: t.HiddenSize,
		RMSNormEps: t.RMSNormEps, RopeTheta: t.Rope.Theta, RopeScaling: rawRopeScaling,
		MaxPositions: t.MaxPositionEmbeddings, AuxLayers: t.DefaultAuxLayers(), AuxConvention: OutputOfLayer,
		BOS: t.BOSTokenID, EOS: t.EOSTokenIDs, TargetNumLayers: t.NumLayers, TargetArchitecture: t.Architecture,
	}
}

// FitTarget fills what a draft file may leave out from the target it will serve (default aux layers,
// target_hidden_size) and checks the rest against it, saying which field does not fit and why.
func (c *Config) FitTarget(target *model.Config) error {
	if c.TargetHiddenSize == 0 {
		c.TargetHiddenSize = target.HiddenSize
	}
	if len(c.AuxLayers) == 0 {
		c.AuxLayers = target.DefaultAuxLayers()
	}
	if c.AuxConvention == "" {
		c.AuxConvention = OutputOfLayer
	}
	if c.TargetNumLayers == 0 {
		c.TargetNumLayers = target.NumLayers
	}
	if c.TargetArchitecture == "" {
		c.TargetArchitecture = target.Architecture
	}
	return c.Validate(target)
}

// Layers is the number of decoder layers.
func (c *Config) Layers() int { return max(1, c.NumLayers) }

// Rope returns the rotary embedding of the draft.
func (c *Config) Rope() (rope.Config, error) {
	r, err := rope.ParseScaling(c.RopeScaling, c.RopeTheta, c.HeadDim, c.MaxPositions)
	if err != nil {
		return r, fmt.Errorf("draft rope_scaling: %w", err)
	}
	return r, r.Validate()
}

// ValidateShape checks the layer's own shape, leaving out what a draft file may omit (the aux layers, which
// FitTarget fills from the target).
func (c *Config) ValidateShape() error {
	switch {
	case c.HiddenSize <= 0 || c.IntermediateSize <= 0 || c.NumHeads <= 0 || c.HeadDim <= 0:
		return fmt.Errorf("draft: hidden_size, intermediate_size, num_attention_heads and head_dim must be positive")
	case c.NumKVHeads <= 0 || c.NumHeads%c.NumKVHeads != 0:
		return fmt.Errorf("draft: num_key_value_heads %d must divide num_attention_heads %d", c.NumKVHeads, c.NumHeads)
	case c.DraftVocabSize <= 0 || c.DraftVocabSize > c.VocabSize:
		return fmt.Errorf("draft: draft_vocab_size %d must be in [1, vocab_size %d]", c.DraftVocabSize, c.VocabSize)
	case c.NumLayers < 0 || c.NumLayers > model.MaxLayers:
		return fmt.Errorf("draft: num_layers %d must be in [1, %d]", c.NumLayers, model.MaxLayers)
	case c.TargetHiddenSize <= 0:
		return fmt.Errorf("draft: target_hidden_size must be positive")
	case c.AuxConvention != "" && c.AuxConvention != OutputOfLayer:
		return fmt.Errorf("draft: aux_layer_convention %q is not specforge's (%q)", c.AuxConvention, OutputOfLayer)
	}
	_, err := c.Rope()
	return err
}

// NumAuxLayers is how many target layers an EAGLE-3 draft reads.
const NumAuxLayers = 3

// AuxWidth is the width of the aux hidden states per token: the outputs of numAux target layers of
// targetHidden values each, side by side (fc's input).
func AuxWidth(numAux, targetHidden int) int { return numAux * targetHidden }

// AuxWidth is the width of the aux hidden states this draft reads per token. It counts NumAuxLayers, not
// AuxLayers, which a foreign head may not name (Validate holds the two equal when it does).
func (c *Config) AuxWidth() int { return AuxWidth(NumAuxLayers, c.TargetHiddenSize) }

// Validate checks the configuration on its own and, when target is not nil, against the target it drafts
// for, saying which field does not fit and why.
func (c *Config) Validate(target *model.Config) error {
	if err := c.ValidateShape(); err != nil {
		return err
	}
	if len(c.AuxLayers) != NumAuxLayers {
		return fmt.Errorf("draft: EAGLE-3 reads %d aux layers, got %v", NumAuxLayers, c.AuxLayers)
	}
	if target == nil {
		return nil
	}
	if c.VocabSize != target.VocabSize {
		return fmt.Errorf("draft vocab_size %d differs from the target's vocabulary %d: it was made for another tokenizer", c.VocabSize, target.VocabSize)
	}
	if c.TargetHiddenSize != target.HiddenSize {
		return fmt.Errorf("draft fc reads 3 x %d target features but the target's hidden_size is %d: it was made for another model", c.TargetHiddenSize, target.HiddenSize)
	}
	if c.TargetNumLayers != 0 && c.TargetNumLayers != target.NumLayers {
		return fmt.Errorf("draft was made for a target of %d layers, this target has %d: its aux layers %v would read other hidden states", c.TargetNumLayers, target.NumLayers, c.AuxLayers)
	}
	for _, l := range c.AuxLayers {
		if l < 0 || l >= target.NumLayers {
			return fmt.Errorf("draft aux layer %d (%s) is outside the target's %d layers", l, OutputOfLayer, target.NumLayers)
		}
	}
	return nil
}
