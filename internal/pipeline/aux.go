package pipeline

import (
	"fmt"
	"slices"

	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/model"
)

// auxSources are the places a run's aux layers (the target layers whose outputs the draft reads) can come
// from. All hold them in specforge's convention (draft.OutputOfLayer: the output of 0-based layer i);
// draft.aux_layers is converted from its configured convention on the way in.
type auxSources struct {
	configured []int // draft.aux_layers; nil when unset
	// warm are draft.checkpoint's layers and warmSource the field they were read from; nil without a warm
	// start.
	warm       []int
	warmSource string
	shards     *hidden.Manifest // offline: the stored hidden states
	target     []int            // the target's default
}

// newAuxSources reads draft.aux_layers (converted to specforge's convention) and the target's default.
func newAuxSources(cfg *config.Run, target *model.Config) (auxSources, error) {
	configured, err := cfg.Draft.OutputAuxLayers()
	if err != nil {
		return auxSources{}, err
	}
	if len(configured) == 0 {
		configured = nil // unset, not an empty choice
	}
	return auxSources{configured: configured, target: target.DefaultAuxLayers()}, nil
}

// resolve is the one place that decides a run's aux layers: draft.aux_layers first, then draft.checkpoint's,
// then the shards' (an offline run can read no others, so they must agree with a layer set chosen above),
// then the target's default.
func (s auxSources) resolve() ([]int, error) {
	chosen := s.configured
	if s.warm != nil {
		if chosen != nil && !slices.Equal(chosen, s.warm) {
			return nil, fmt.Errorf("draft.aux_layers %v (output of layer i) differ from draft.checkpoint's %v, read from %s", chosen, s.warm, s.warmSource)
		}
		chosen = s.warm
	}
	if s.shards != nil {
		if chosen != nil && !slices.Equal(chosen, s.shards.AuxLayers) {
			return nil, fmt.Errorf("the draft reads aux layers %v but the shards hold %v (%s)", chosen, s.shards.AuxLayers, s.shards.AuxConvention)
		}
		chosen = s.shards.AuxLayers
	}
	if chosen == nil {
		chosen = s.target
	}
	return chosen, nil
}
