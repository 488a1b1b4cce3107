package export

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/specforge/specforge/internal/checkpoint"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/tensor"
	"github.com/specforge/specforge/internal/vocab"
)

// Checkpoint is the format of a specforge training checkpoint folder (state.json, draft.safetensors), which
// Read accepts besides the export layouts.
const Checkpoint Format = "checkpoint"

// Imported is a draft read from a folder, before it meets its target.
type Imported struct {
	Dir    string
	Format Format
	// Config has the aux layers in specforge's convention (draft.OutputOfLayer), converted from the field
	// they were read from (AuxSource); none when the file leaves them to the target's defaults.
	Config    draft.Config
	AuxSource string
	Weights   draft.Weights
	Vocab     *vocab.Mapping
	// Embed is the file's embedding (F32, a copy), the nil tensor when it has none (engines then share the
	// target's).
	Embed tensor.Tensor
	// Ignored lists tensors of the file that a draft does not read.
	Ignored []string
}

// Read loads a draft folder in any layout specforge writes or engines load: the SGLang/official layout
// (midlayer.*), the vLLM variant, the speculators format (layers.0.*) and specforge training checkpoints;
// weights in F32, BF16, F16 or F64, with or without an embedding or t2d. The layout is recognised from
// config.json's architectures, and every aux-layer id is converted from the convention of the field that
// holds it.
func Read(dir string) (*Imported, error) {
	if checkpoint.Is(dir) {
		return readCheckpoint(dir)
	}
	path := filepath.Join(dir, "config.json")
	raw, err := model.ReadConfigFile(path, "draft")
	if err != nil {
		return nil, err
	}
	im := &Imported{Dir: dir}
	if err := im.parseConfig(path, raw); err != nil {
		return nil, err
	}
	ck, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return nil, fmt.Errorf("read draft: %w (pytorch_model.bin heads must be converted to safetensors first)", err)
	}
	defer ck.Close()
	if err := im.loadTensors(ck, path); err != nil {
		return nil, err
	}
	return im, nil
}

// readCheckpoint reads a training checkpoint: the configuration from state.json, float32 weights in the
// SGLang names.
func readCheckpoint(dir string) (*Imported, error) {
	st, err := checkpoint.ReadState(dir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, checkpoint.StateFile)
	im := &Imported{Dir: dir, Format: Checkpoint, Config: *st.Draft, AuxSource: "state.json draft_config.aux_layers"}
	if im.Config.AuxConvention == "" {
		im.Config.AuxConvention = draft.OutputOfLayer
	}
	if err := im.Config.ValidateShape(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f, err := checkpoint.OpenWeights(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := im.loadTensors(f, path); err != nil {
		return nil, err
	}
	return im, nil
}

// Architectures engines map to the EAGLE-3 Llama draft.
var (
	sglangArchitectures      = []string{"LlamaForCausalLMEagle3", "Eagle3LlamaForCausalLM"}
	speculatorsArchitectures = []string{"Eagle3Speculator", "Eagle3DraftModel"}
)

func (im *Imported) parseConfig(path string, raw []byte) error {
	var probe struct {
		Architectures        []string `json:"architectures"`
		SpeculatorsModelType string   `json:"speculators_model_type"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return model.JSONError(path, raw, err)
	}
	var (
		layer                    LayerConfig
		draftVocab, targetHidden int
		info                     *SpecForgeInfo
		eagle                    *EagleConfig
		vllmAux                  []int
		fcNorm, normBeforeFC     bool
		normOutput               bool
	)
	switch {
	case probe.SpeculatorsModelType != "" || anyIn(probe.Architectures, speculatorsArchitectures):
		var j SpeculatorsConfig
		if err := json.Unmarshal(raw, &j); err != nil {
			return model.JSONError(path, raw, err)
		}
		if j.SpeculatorsModelType != "" && j.SpeculatorsModelType != "eagle3" {
			return fmt.Errorf("%s: speculators_model_type %q is not supported (want eagle3)", path, j.SpeculatorsModelType)
		}
		if j.TransformerLayer == nil {
			return fmt.Errorf("%s: a speculators config needs transformer_layer_config (the draft layer's LlamaConfig)", path)
		}
		if j.NormBeforeResidual == nil || *j.NormBeforeResidual {
			// vLLM's reading when the key is absent; the EAGLE-3 layer specforge trains normalises inside the
			// residual branch, so the weights would compute another function.
			return fmt.Errorf("%s: norm_before_residual is true or absent (true by vLLM's default): specforge drafts normalise the hidden input inside the residual branch (norm_before_residual: false)", path)
		}
		im.Format = Speculators
		layer, draftVocab, targetHidden = *j.TransformerLayer, j.DraftVocabSize, j.TargetHiddenSize
		info, eagle, vllmAux = j.SpecForge, j.Eagle, j.VLLMAux
		fcNorm, normBeforeFC, normOutput = j.FCNorm, j.NormBeforeFC, j.NormOutput
		if j.Speculators != nil {
			im.Config.TargetPath = j.Speculators.Verifier.NameOrPath
			if a := j.Speculators.Verifier.Architectures; len(a) > 0 {
				im.Config.TargetArchitecture = a[0]
			}
		}
	case anyIn(probe.Architectures, sglangArchitectures):
		var j SGLangConfig
		if err := json.Unmarshal(raw, &j); err != nil {
			return model.JSONError(path, raw, err)
		}
		im.Format = SGLang
		if j.VLLMAux != nil {
			im.Format = VLLM
		}
		layer, draftVocab, targetHidden = j.LayerConfig, j.DraftVocabSize, j.TargetHiddenSize
		info, eagle, vllmAux = j.SpecForge, j.Eagle, j.VLLMAux
		fcNorm, normBeforeFC, normOutput = j.FCNorm, j.NormBeforeFC, j.NormOutput
		if im.Format == SGLang && layer.NumLayers > 1 {
			return fmt.Errorf("%s: num_hidden_layers %d in the SGLang layout: SGLang's later layers normalise their input with hidden_norm, vLLM's and speculators' with input_layernorm, and specforge trains the latter: read a vLLM or speculators export of the head instead", path, layer.NumLayers)
		}
	default:
		return fmt.Errorf("%s: architectures %v is not an EAGLE-3 draft (want one of %v or %v)", path, probe.Architectures, sglangArchitectures, speculatorsArchitectures)
	}
	if layer.NumLayers < 0 || layer.NumLayers > model.MaxLayers {
		return fmt.Errorf("%s: num_hidden_layers %d must be in [1, %d]", path, layer.NumLayers, model.MaxLayers)
	}
	if normBeforeFC {
		return fmt.Errorf("%s: norm_before_fc is true: one RMSNorm over all aux states before fc (input_norm.weight) is not a draft specforge runs; it runs fc_norm, a norm per aux state", path)
	}
	if layer.HiddenAct != "" && layer.HiddenAct != "silu" {
		return fmt.Errorf("%s: hidden_act %q is not supported (want silu)", path, layer.HiddenAct)
	}
	c := &im.Config
	*c = draft.Config{
		HiddenSize: layer.HiddenSize, IntermediateSize: layer.IntermediateSize, NumHeads: layer.NumHeads,
		NumKVHeads: layer.NumKVHeads, HeadDim: layer.HeadDim, VocabSize: layer.VocabSize,
		DraftVocabSize: draftVocab, TargetHiddenSize: targetHidden,
		RMSNormEps: layer.RMSNormEps, RopeTheta: layer.RopeTheta, RopeScaling: layer.RopeScaling,
		MaxPositions: layer.MaxPositions, TargetPath: c.TargetPath, TargetArchitecture: c.TargetArchitecture,
		FCNorm: fcNorm, NormOutput: normOutput,
	}
	if layer.NumLayers > 1 {
		c.NumLayers = layer.NumLayers
	}
	// LlamaConfig's defaults, which a config.json may leave out.
	if c.RMSNormEps == 0 {
		c.RMSNormEps = 1e-6
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.MaxPositions == 0 {
		c.MaxPositions = 2048
	}
	if string(c.RopeScaling) == "null" {
		c.RopeScaling = nil
	}
	if c.NumKVHeads == 0 {
		c.NumKVHeads = c.NumHeads
	}
	if c.HeadDim == 0 && c.NumHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumHeads
	}
	if layer.BOS != nil {
		c.BOS = *layer.BOS
	}
	if len(layer.EOS) > 0 && string(layer.EOS) != "null" {
		var one int
		if json.Unmarshal(layer.EOS, &one) == nil {
			c.EOS = []int{one}
		} else if err := json.Unmarshal(layer.EOS, &c.EOS); err != nil {
			return fmt.Errorf("%s: eos_token_id must be an id or a list of ids", path)
		}
	}
	if info != nil {
		c.TargetNumLayers = info.TargetNumLayers
		if c.TargetPath == "" {
			c.TargetPath = info.TargetPath
		}
		if c.TargetArchitecture == "" {
			c.TargetArchitecture = info.TargetArchitecture
		}
	}
	return im.readAuxLayers(path, info, eagle, vllmAux)
}

// readAuxLayers converts the ids of every field that holds them to specforge's convention and requires them
// to agree: a file whose fields disagree would make two engines read different layers.
func (im *Imported) readAuxLayers(path string, info *SpecForgeInfo, eagle *EagleConfig, vllmAux []int) error {
	type source struct {
		field string
		ids   []int
	}
	var sources []source
	if info != nil && info.AuxLayers != nil {
		if info.AuxLayerConvention != draft.OutputOfLayer {
			return fmt.Errorf("%s: specforge.aux_layer_convention %q is not %q", path, info.AuxLayerConvention, draft.OutputOfLayer)
		}
		sources = append(sources, source{"specforge.aux_layers", info.AuxLayers})
	}
	if eagle != nil && eagle.AuxLayers != nil {
		sources = append(sources, source{"eagle_config.eagle_aux_hidden_state_layer_ids (sglang: output of layer i)", eagle.AuxLayers})
	}
	if vllmAux != nil {
		ids, err := draft.FromVLLMAuxIDs(vllmAux)
		if err != nil {
			return fmt.Errorf("%s: eagle_aux_hidden_state_layer_ids: %w", path, err)
		}
		sources = append(sources, source{"eagle_aux_hidden_state_layer_ids (vllm: input of layer k = output of layer k-1)", ids})
	}
	if len(sources) == 0 {
		im.AuxSource = "none in the file: the target's defaults"
		return nil
	}
	for _, s := range sources[1:] {
		if !slices.Equal(s.ids, sources[0].ids) {
			return fmt.Errorf("%s: aux layers disagree: %s gives %v, %s gives %v (in %s)", path, sources[0].field, sources[0].ids, s.field, s.ids, draft.OutputOfLayer)
		}
	}
	if len(sources[0].ids) != draft.NumAuxLayers {
		return fmt.Errorf("%s: %s has %d ids, EAGLE-3 reads %d", path, sources[0].field, len(sources[0].ids), draft.NumAuxLayers)
	}
	im.Config.AuxLayers, im.Config.AuxConvention, im.AuxSource = sources[0].ids, draft.OutputOfLayer, sources[0].field
	return nil
}

// tensorSource is a safetensors file or a model folder's checkpoint.
type tensorSource interface {
	Tensor(string) (*safetensors.Tensor, error)
	Names() []string
}

// loadTensors reads the weights, the vocabulary mapping and the optional embedding, filling the sizes
// the config leaves out from the tensors' shapes (fc gives target_hidden_size, lm_head the draft
// vocabulary, t2d the target's).
func (im *Imported) loadTensors(f tensorSource, configPath string) error {
	c := &im.Config
	has := map[string]bool{}
	for _, n := range f.Names() {
		has[n] = true
	}
	name := func(n string) string { return weightName(im.Format, n) }
	// The first layer's query weight, as this configuration and layout name it.
	var q string
	for _, p := range (&draft.Weights{}).Params(c) {
		if strings.HasSuffix(p.Name, "self_attn.q_proj.weight") {
			q = name(p.Name)
			break
		}
	}
	if !has[q] {
		for _, other := range []string{"midlayer.self_attn.q_proj.weight", "layers.0.self_attn.q_proj.weight"} {
			if has[other] {
				return fmt.Errorf("%s: the weights are named %s.* but config.json (%s, num_hidden_layers %d) says %s.*", im.Dir, strings.TrimSuffix(other, ".self_attn.q_proj.weight"), im.Format, c.Layers(), strings.TrimSuffix(q, ".self_attn.q_proj.weight"))
			}
		}
		return fmt.Errorf("%s: no %s: not an EAGLE-3 draft layer", im.Dir, q)
	}
	if fc, err := f.Tensor("fc.weight"); err == nil && len(fc.Shape) == 2 && fc.Shape[1]%draft.NumAuxLayers == 0 {
		if ht := fc.Shape[1] / draft.NumAuxLayers; c.TargetHiddenSize == 0 {
			c.TargetHiddenSize = ht
		} else if c.TargetHiddenSize != ht {
			return fmt.Errorf("%s: target_hidden_size %d but fc.weight reads %d = %d x %d features", configPath, c.TargetHiddenSize, fc.Shape[1], draft.NumAuxLayers, ht)
		}
	}
	if lm, err := f.Tensor("lm_head.weight"); err == nil && len(lm.Shape) == 2 && c.DraftVocabSize == 0 {
		c.DraftVocabSize = lm.Shape[0]
	}
	var t2d []bool
	if t, err := f.Tensor("t2d"); err == nil {
		if t2d, err = t.Bool(); err != nil {
			return err
		}
		if c.VocabSize == 0 {
			c.VocabSize = len(t2d)
		} else if len(t2d) != c.VocabSize {
			return fmt.Errorf("%s: t2d has %d entries but vocab_size is %d", im.Dir, len(t2d), c.VocabSize)
		}
	}
	if c.DraftVocabSize == 0 {
		c.DraftVocabSize = c.VocabSize
	}
	if err := checkLimits(configPath, c); err != nil {
		return err
	}
	if err := c.ValidateShape(); err != nil {
		return fmt.Errorf("%s: %w", configPath, err)
	}
	var err error
	if im.Weights, err = draft.LoadWeights(c, renamed{f, im.Format}); err != nil {
		return err
	}
	if err := im.loadVocab(f, t2d); err != nil {
		return err
	}
	if t, err := f.Tensor("embed_tokens.weight"); err == nil {
		if err := t.CheckShape(c.VocabSize, c.HiddenSize); err != nil {
			return err
		}
		values, err := t.Float32()
		if err != nil {
			return err
		}
		im.Embed = tensor.FromF32(values, c.VocabSize, c.HiddenSize)
	}
	known := map[string]bool{"embed_tokens.weight": true, "d2t": true, "t2d": true}
	for _, p := range im.Weights.Params(c) {
		known[name(p.Name)] = true
	}
	for n := range has {
		if !known[n] {
			im.Ignored = append(im.Ignored, n)
		}
	}
	sort.Strings(im.Ignored)
	return nil
}

// loadVocab reads d2t (any integer type) or, without it, a draft vocabulary spanning the target's; t2d,
// when present, must mark exactly the ids d2t maps to.
func (im *Imported) loadVocab(f tensorSource, t2d []bool) error {
	c := &im.Config
	var d2t []int64
	if t, err := f.Tensor("d2t"); err == nil {
		if err := t.CheckShape(c.DraftVocabSize); err != nil {
			return err
		}
		if d2t, err = t.Int64(); err != nil {
			return err
		}
	} else if c.DraftVocabSize == c.VocabSize {
		d2t = make([]int64, c.VocabSize) // the whole vocabulary: every offset is 0
	} else {
		return fmt.Errorf("%s: no d2t, and the draft vocabulary (%d) is not the target's (%d)", im.Dir, c.DraftVocabSize, c.VocabSize)
	}
	m, err := vocab.FromTensors(d2t, t2d, c.VocabSize)
	if err != nil {
		return fmt.Errorf("%s: %w", im.Dir, err)
	}
	im.Vocab = m
	return nil
}

// renamed reads the layout's names under the SGLang names draft.LoadWeights asks for.
type renamed struct {
	f      tensorSource
	format Format
}

func (r renamed) Tensor(name string) (*safetensors.Tensor, error) {
	return r.f.Tensor(weightName(r.format, name))
}

// ForTarget checks the imported head against the target it will draft for (filling the aux layers and
// sizes the file leaves to the target's defaults) and assembles the draft. The draft shares the target's
// embedding, as the engines do, unless its width differs from the target's; it then needs its own in the
// file.
func (im *Imported) ForTarget(target *model.Head) (*draft.Draft, error) {
	c := im.Config
	if err := c.FitTarget(target.Config); err != nil {
		return nil, fmt.Errorf("%s does not fit the target: %w", im.Dir, err)
	}
	embed := target.Embed
	if c.HiddenSize != target.Config.HiddenSize {
		if im.Embed.IsNil() {
			return nil, fmt.Errorf("%s does not fit the target: the draft is %d wide, the target %d, and the file has no embed_tokens.weight of its width", im.Dir, c.HiddenSize, target.Config.HiddenSize)
		}
		embed = im.Embed
	}
	return draft.New(c, embed, im.Vocab, im.Weights)
}

// Draft assembles the imported head without its target, to be exported again: it cannot run (the
// embedding is the target's), and its aux layers must be in the file.
func (im *Imported) Draft() (*draft.Draft, error) {
	if len(im.Config.AuxLayers) == 0 {
		return nil, fmt.Errorf("%s leaves its aux layers to the target's defaults: give the target so that they can be written explicitly", im.Dir)
	}
	if im.Config.HiddenSize != im.Config.TargetHiddenSize && im.Embed.IsNil() {
		return nil, fmt.Errorf("%s: the draft is %d wide, its target %d, and the file has no embed_tokens.weight of its width", im.Dir, im.Config.HiddenSize, im.Config.TargetHiddenSize)
	}
	d, err := draft.New(im.Config, im.Embed, im.Vocab, im.Weights)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", im.Dir, err)
	}
	return d, nil
}

func anyIn(have, want []string) bool {
	for _, h := range have {
		if slices.Contains(want, h) {
			return true
		}
	}
	return false
}
