package pipeline

import (
	"fmt"

	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/export"
	"github.com/specforge/specforge/internal/model"
)

// DraftConfig derives the draft's shape from the target and applies the configured overrides; with
// draft.checkpoint, the shape is the imported head's, checked against the target and the overrides, and the
// head is returned for its weights and vocabulary. The aux layers are resolved by auxSources.resolve.
func DraftConfig(cfg *config.Run, target *model.Head) (draft.Config, *export.Imported, error) {
	dc, im, _, err := draftConfig(cfg, target)
	return dc, im, err
}

// draftConfig is DraftConfig, also returning the aux sources it resolved, for an offline run to add its
// shards to.
func draftConfig(cfg *config.Run, target *model.Head) (draft.Config, *export.Imported, auxSources, error) {
	o := cfg.Draft
	aux, err := newAuxSources(cfg, target.Config)
	if err != nil {
		return draft.Config{}, nil, aux, err
	}
	if o.Checkpoint != "" {
		dc, im, err := warmStartConfig(cfg, target, &aux)
		return dc, im, aux, err
	}
	// The default draft vocabulary (32000) is capped at the target's; an explicit larger one is an error.
	if o.VocabSize > target.Config.VocabSize && o.VocabSize != config.Defaults().Draft.VocabSize {
		return draft.Config{}, nil, aux, fmt.Errorf("draft.vocab_size %d is larger than the target's vocabulary (%d)", o.VocabSize, target.Config.VocabSize)
	}
	dc := draft.FromTarget(target.Config, target.Config.RopeScaling, o.VocabSize)
	dc.TargetPath = cfg.Target.Path
	for _, ov := range shapeOverrides(o, &dc) {
		if ov.v > 0 {
			*ov.dst = ov.v
		}
	}
	if o.HiddenSize > 0 && o.HeadDim == 0 && o.NumHeads > 0 {
		dc.HeadDim = dc.HiddenSize / dc.NumHeads
	}
	if o.NumLayers > 1 {
		dc.NumLayers = o.NumLayers
	}
	dc.FCNorm, dc.NormOutput = o.FCNorm, o.NormOutput
	if dc.AuxLayers, err = aux.resolve(); err != nil {
		return dc, nil, aux, err
	}
	return dc, nil, aux, dc.Validate(target.Config)
}

type shapeOverride struct {
	key string
	v   int
	dst *int
}

// shapeOverrides pairs the draft.* shape settings with the fields of dc they set.
func shapeOverrides(o config.DraftConfig, dc *draft.Config) []shapeOverride {
	return []shapeOverride{{"hidden_size", o.HiddenSize, &dc.HiddenSize}, {"intermediate_size", o.IntermediateSize, &dc.IntermediateSize},
		{"num_attention_heads", o.NumHeads, &dc.NumHeads}, {"num_key_value_heads", o.NumKVHeads, &dc.NumKVHeads}, {"head_dim", o.HeadDim, &dc.HeadDim}}
}

// warmStartConfig imports draft.checkpoint and checks it against the target and the draft.* settings.
func warmStartConfig(cfg *config.Run, target *model.Head, aux *auxSources) (draft.Config, *export.Imported, error) {
	im, err := export.Read(cfg.Draft.Checkpoint)
	if err != nil {
		return draft.Config{}, nil, fmt.Errorf("draft.checkpoint: %w", err)
	}
	dc := im.Config
	if err := dc.FitTarget(target.Config); err != nil {
		return dc, nil, fmt.Errorf("draft.checkpoint %s does not fit the target: %w", im.Dir, err)
	}
	for _, ov := range shapeOverrides(cfg.Draft, &dc) {
		if ov.v > 0 && ov.v != *ov.dst {
			return dc, nil, fmt.Errorf("draft.%s is %d but draft.checkpoint %s has %d: leave it unset to train the imported head", ov.key, ov.v, im.Dir, *ov.dst)
		}
	}
	switch o := cfg.Draft; {
	case o.NumLayers > 0 && o.NumLayers != dc.Layers():
		return dc, nil, fmt.Errorf("draft.num_layers is %d but draft.checkpoint %s has %d layers: leave it unset to train the imported head", o.NumLayers, im.Dir, dc.Layers())
	case o.FCNorm && !dc.FCNorm:
		return dc, nil, fmt.Errorf("draft.fc_norm is set but draft.checkpoint %s has no fc_norm weights: leave it unset to train the imported head", im.Dir)
	case o.NormOutput && !dc.NormOutput:
		return dc, nil, fmt.Errorf("draft.norm_output is set but draft.checkpoint %s was trained without it (it would compute another function): leave it unset to train the imported head", im.Dir)
	}
	aux.warm, aux.warmSource = dc.AuxLayers, im.AuxSource
	if dc.AuxLayers, err = aux.resolve(); err != nil {
		return dc, nil, err
	}
	dc.TargetPath = cfg.Target.Path
	return dc, im, nil
}
