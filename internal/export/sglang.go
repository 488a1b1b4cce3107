// Package export writes trained drafts in the layouts serving engines load and reads them back: the
// SGLang / official EAGLE-3 layout (config.json with LlamaForCausalLMEagle3, model.safetensors with
// midlayer.* weights, d2t and t2d, no embedding). See ../shared/docs/INTEROP.md.
package export

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/vocab"
)

// SGLangConfig is the config.json of the SGLang layout.
func SGLangConfig(c *draft.Config, dtype string) map[string]any {
	cfg := map[string]any{
		"architectures": []string{"LlamaForCausalLMEagle3"}, "model_type": "llama",
		"hidden_size": c.HiddenSize, "intermediate_size": c.IntermediateSize,
		"num_attention_heads": c.NumHeads, "num_key_value_heads": c.NumKVHeads, "head_dim": c.HeadDim,
		"num_hidden_layers": 1, "hidden_act": "silu", "rms_norm_eps": c.RMSNormEps,
		"max_position_embeddings": c.MaxPositions, "rope_theta": c.RopeTheta, "rope_scaling": rawOrNull(c.RopeScaling),
		"vocab_size": c.VocabSize, "draft_vocab_size": c.DraftVocabSize, "tie_word_embeddings": false,
		"torch_dtype": dtype, "bos_token_id": c.BOS,
		// SGLang reads these ids as "output of layer i", the convention specforge uses internally.
		"eagle_config": map[string]any{"eagle_aux_hidden_state_layer_ids": c.AuxLayers, "use_aux_hidden_state": true},
	}
	if len(c.EOS) == 1 {
		cfg["eos_token_id"] = c.EOS[0]
	} else if len(c.EOS) > 1 {
		cfg["eos_token_id"] = c.EOS
	}
	if c.TargetHiddenSize != c.HiddenSize {
		cfg["target_hidden_size"] = c.TargetHiddenSize
	}
	return cfg
}

func rawOrNull(r json.RawMessage) any {
	if len(r) == 0 {
		return nil
	}
	return r
}

// Tensors returns the draft's tensors under their export names: weights in dtype (BF16 by default for
// serving, F32 for an exact copy), d2t int64, t2d bool, and the embedding only when the draft is narrower than
// the target (engines cannot share the target's then).
func Tensors(d *draft.Draft, dtype safetensors.DType) []safetensors.Tensor {
	var ts []safetensors.Tensor
	for _, p := range d.W.Params(&d.Config) {
		ts = append(ts, safetensors.FromFloat32(p.Name, dtype, p.Shape, *p.Data))
	}
	if d.Config.TargetHiddenSize != d.Config.HiddenSize {
		ts = append(ts, safetensors.FromFloat32("embed_tokens.weight", dtype, []int{d.Config.VocabSize, d.Config.HiddenSize}, d.Embed))
	}
	ts = append(ts,
		safetensors.FromInt64("d2t", safetensors.I64, []int{len(d.Vocab.D2T)}, d.Vocab.D2T),
		safetensors.FromBool("t2d", []int{len(d.Vocab.T2D)}, d.Vocab.T2D))
	return ts
}

// WriteSGLang writes dir/config.json and dir/model.safetensors in bf16.
func WriteSGLang(dir string, d *draft.Draft) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), Tensors(d, safetensors.BF16), map[string]string{"format": "pt"}); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(SGLangConfig(&d.Config, "bfloat16"), "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(filepath.Join(dir, "config.json"), append(raw, '\n'))
}

// ReadSGLang loads a draft folder in the SGLang layout: its configuration, weights (any float dtype) and
// vocabulary mapping. The embedding is the caller's (the target's) unless the file has one.
func ReadSGLang(dir string) (*draft.Config, draft.Weights, *vocab.Mapping, []float32, error) {
	var w draft.Weights
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, w, nil, nil, fmt.Errorf("read draft config: %w", err)
	}
	c, err := parseDraftConfig(filepath.Join(dir, "config.json"), raw)
	if err != nil {
		return nil, w, nil, nil, err
	}
	f, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		return nil, w, nil, nil, err
	}
	defer f.Close()
	if w, err = draft.LoadWeights(c, f); err != nil {
		return nil, w, nil, nil, err
	}
	dt, err := f.Tensor("d2t")
	if err != nil {
		return nil, w, nil, nil, err
	}
	d2t, err := dt.Int64()
	if err != nil {
		return nil, w, nil, nil, err
	}
	m, err := vocab.FromD2T(d2t, c.VocabSize)
	if err != nil {
		return nil, w, nil, nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	var embed []float32
	if t, err := f.Tensor("embed_tokens.weight"); err == nil {
		if err := t.CheckShape(c.VocabSize, c.HiddenSize); err != nil {
			return nil, w, nil, nil, err
		}
		if embed, err = t.Float32(); err != nil {
			return nil, w, nil, nil, err
		}
	}
	return c, w, m, embed, nil
}

// parseDraftConfig reads a LlamaForCausalLMEagle3 config.json.
func parseDraftConfig(path string, raw []byte) (*draft.Config, error) {
	var j struct {
		Architectures    []string        `json:"architectures"`
		HiddenSize       int             `json:"hidden_size"`
		IntermediateSize int             `json:"intermediate_size"`
		NumHeads         int             `json:"num_attention_heads"`
		NumKVHeads       int             `json:"num_key_value_heads"`
		HeadDim          int             `json:"head_dim"`
		VocabSize        int             `json:"vocab_size"`
		DraftVocabSize   int             `json:"draft_vocab_size"`
		TargetHiddenSize int             `json:"target_hidden_size"`
		RMSNormEps       float64         `json:"rms_norm_eps"`
		RopeTheta        float64         `json:"rope_theta"`
		RopeScaling      json.RawMessage `json:"rope_scaling"`
		MaxPositions     int             `json:"max_position_embeddings"`
		BOS              int             `json:"bos_token_id"`
		Eagle            struct {
			AuxLayers []int `json:"eagle_aux_hidden_state_layer_ids"`
		} `json:"eagle_config"`
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %v", path, err)
	}
	c := &draft.Config{
		HiddenSize: j.HiddenSize, IntermediateSize: j.IntermediateSize, NumHeads: j.NumHeads, NumKVHeads: j.NumKVHeads,
		HeadDim: j.HeadDim, VocabSize: j.VocabSize, DraftVocabSize: j.DraftVocabSize, TargetHiddenSize: j.TargetHiddenSize,
		RMSNormEps: j.RMSNormEps, RopeTheta: j.RopeTheta, RopeScaling: j.RopeScaling, MaxPositions: j.MaxPositions,
		AuxLayers: j.Eagle.AuxLayers, BOS: j.BOS,
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
	if c.TargetHiddenSize == 0 {
		c.TargetHiddenSize = c.HiddenSize
	}
	if c.DraftVocabSize == 0 {
		c.DraftVocabSize = c.VocabSize
	}
	if err := c.Validate(nil); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
