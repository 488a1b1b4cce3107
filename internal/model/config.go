// Package model runs Llama-family decoder-only target models from Hugging Face folders (config.json plus
// safetensors): Llama 2/3/3.1/3.2, Mistral, Qwen2 and Qwen3. One file per architecture decodes its config;
// the forward pass they share lives in forward.go. Besides logits, the forward captures the residual streams
// EAGLE-3 drafts read (aux hidden states) and keeps a KV cache for incremental decoding.
package model

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/specforge/specforge/internal/rope"
)

// Config is the architecture of a target model, decoded from its config.json.
type Config struct {
	Architecture          string
	ModelType             string
	VocabSize             int
	HiddenSize            int
	IntermediateSize      int
	NumLayers             int
	NumHeads              int
	NumKVHeads            int
	HeadDim               int
	RMSNormEps            float64
	Rope                  rope.Config
	MaxPositionEmbeddings int
	TieWordEmbeddings     bool
	// Biases: QKVBias adds biases to the q, k and v projections (Qwen2, Llama attention_bias), OBias to
	// o_proj (Llama attention_bias), MLPBias to the three MLP projections.
	QKVBias, OBias, MLPBias bool
	// QKNorm applies per-head RMSNorm to queries and keys before RoPE (Qwen3).
	QKNorm bool
	// SlidingWindow > 0 limits attention to that many keys in the layers where SlidingLayers is true.
	SlidingWindow int
	SlidingLayers []bool
	// MoE is the mixture-of-experts MLP of the layers it marks sparse (Qwen3-MoE, Qwen2-MoE, Mixtral); nil
	// for a dense model.
	MoE         *MoE `json:",omitempty"`
	BOSTokenID  int
	EOSTokenIDs []int
	TorchDType  string
	// RopeScaling is config.json's rope_scaling object as written (nil when absent or null), for drafts that
	// copy it into their own config. Rope holds its meaning, so it stays out of the config's encoding, which
	// cache keys hash (regen.Key).
	RopeScaling json.RawMessage `json:"-"`
}

// rawConfig holds the config.json fields any supported architecture reads. Pointers tell absent from zero.
type rawConfig struct {
	Architectures         []string         `json:"architectures"`
	ModelType             string           `json:"model_type"`
	VocabSize             *int             `json:"vocab_size"`
	HiddenSize            *int             `json:"hidden_size"`
	IntermediateSize      *int             `json:"intermediate_size"`
	NumHiddenLayers       *int             `json:"num_hidden_layers"`
	NumAttentionHeads     *int             `json:"num_attention_heads"`
	NumKeyValueHeads      *int             `json:"num_key_value_heads"`
	HeadDim               *int             `json:"head_dim"`
	RMSNormEps            *float64         `json:"rms_norm_eps"`
	RopeTheta             *float64         `json:"rope_theta"`
	RopeScaling           *json.RawMessage `json:"rope_scaling"`
	PartialRotaryFactor   *float64         `json:"partial_rotary_factor"`
	MaxPositionEmbeddings *int             `json:"max_position_embeddings"`
	TieWordEmbeddings     *bool            `json:"tie_word_embeddings"`
	AttentionBias         *bool            `json:"attention_bias"`
	MLPBias               *bool            `json:"mlp_bias"`
	HiddenAct             *string          `json:"hidden_act"`
	SlidingWindow         *int             `json:"sliding_window"`
	UseSlidingWindow      *bool            `json:"use_sliding_window"`
	MaxWindowLayers       *int             `json:"max_window_layers"`
	LayerTypes            []string         `json:"layer_types"`
	BOSTokenID            *int             `json:"bos_token_id"`
	EOSTokenID            json.RawMessage  `json:"eos_token_id"`
	TorchDType            string           `json:"torch_dtype"`
	DType                 string           `json:"dtype"`
	QuantizationConfig    json.RawMessage  `json:"quantization_config"`
	// Mixture-of-experts fields (moe.go); num_local_experts is Mixtral's spelling of num_experts.
	NumExperts                   *int  `json:"num_experts"`
	NumLocalExperts              *int  `json:"num_local_experts"`
	NumExpertsPerTok             *int  `json:"num_experts_per_tok"`
	MoEIntermediateSize          *int  `json:"moe_intermediate_size"`
	NormTopKProb                 *bool `json:"norm_topk_prob"`
	DecoderSparseStep            *int  `json:"decoder_sparse_step"`
	MLPOnlyLayers                []int `json:"mlp_only_layers"`
	SharedExpertIntermediateSize *int  `json:"shared_expert_intermediate_size"`
	// fields holds every field of the file, for the checks of fields no supported architecture reads.
	fields map[string]json.RawMessage
}

// architecture decodes the architecture-specific parts of a config. Each lives in its own file.
type architecture func(path string, raw *rawConfig, c *Config) error

var architectures = map[string]architecture{
	"LlamaForCausalLM":    decodeLlama,
	"MistralForCausalLM":  decodeMistral,
	"Qwen2ForCausalLM":    decodeQwen2,
	"Qwen3ForCausalLM":    decodeQwen3,
	"Qwen3MoeForCausalLM": decodeQwen3Moe,
	"Qwen2MoeForCausalLM": decodeQwen2Moe,
	"MixtralForCausalLM":  decodeMixtral,
}

// SupportedArchitectures lists the architectures Load accepts.
func SupportedArchitectures() []string {
	var names []string
	for n := range architectures {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LoadConfig reads and validates dir/config.json.
func LoadConfig(dir string) (*Config, error) {
	path := filepath.Join(dir, "config.json")
	data, err := ReadConfigFile(path, "model config")
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes a config.json; path is used in error messages. Every size is checked against its
// limit (MaxLayers, MaxHiddenSize, ...) before anything is allocated by it.
func ParseConfig(path string, data []byte) (*Config, error) {
	var raw rawConfig
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, JSONError(path, data, err)
	}
	if err := json.Unmarshal(data, &raw.fields); err != nil {
		return nil, JSONError(path, data, err)
	}
	if len(raw.Architectures) != 1 {
		return nil, fmt.Errorf("%s: architectures must name exactly one architecture, got %v (supported: %s)",
			path, raw.Architectures, strings.Join(SupportedArchitectures(), ", "))
	}
	decode, ok := architectures[raw.Architectures[0]]
	if !ok {
		return nil, fmt.Errorf("%s: architecture %q is not supported (supported: %s)",
			path, raw.Architectures[0], strings.Join(SupportedArchitectures(), ", "))
	}
	if len(raw.QuantizationConfig) > 0 && string(raw.QuantizationConfig) != "null" {
		return nil, fmt.Errorf("%s: quantized checkpoints (quantization_config) are not supported; use float32, bfloat16 or float16 weights", path)
	}
	c := &Config{Architecture: raw.Architectures[0], ModelType: raw.ModelType, TorchDType: raw.TorchDType}
	if c.TorchDType == "" {
		c.TorchDType = raw.DType
	}
	if err := decodeCommon(path, &raw, c); err != nil {
		return nil, err
	}
	if err := decode(path, &raw, c); err != nil {
		return nil, err
	}
	if err := c.Rope.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// decodeCommon reads the fields every Llama-family config shares, with Hugging Face's defaults.
func decodeCommon(path string, raw *rawConfig, c *Config) error {
	required := []struct {
		name string
		v    *int
		dst  *int
		max  int
	}{
		{"vocab_size", raw.VocabSize, &c.VocabSize, MaxVocabSize},
		{"hidden_size", raw.HiddenSize, &c.HiddenSize, MaxHiddenSize},
		{"intermediate_size", raw.IntermediateSize, &c.IntermediateSize, MaxIntermediateSize},
		{"num_hidden_layers", raw.NumHiddenLayers, &c.NumLayers, MaxLayers},
		{"num_attention_heads", raw.NumAttentionHeads, &c.NumHeads, MaxHeads},
	}
	for _, f := range required {
		if f.v == nil {
			return fmt.Errorf("%s: missing required field %s", path, f.name)
		}
		if err := inRange(path, f.name, *f.v, 1, f.max); err != nil {
			return err
		}
		*f.dst = *f.v
	}
	c.NumKVHeads = c.NumHeads
	if raw.NumKeyValueHeads != nil {
		c.NumKVHeads = *raw.NumKeyValueHeads
	}
	if c.NumKVHeads <= 0 || c.NumHeads%c.NumKVHeads != 0 {
		return fmt.Errorf("%s: num_key_value_heads %d must be positive and divide num_attention_heads %d", path, c.NumKVHeads, c.NumHeads)
	}
	c.HeadDim = c.HiddenSize / c.NumHeads
	if raw.HeadDim != nil && *raw.HeadDim != 0 { // 0, like null, leaves the default
		c.HeadDim = *raw.HeadDim
	}
	if c.HeadDim == 0 {
		return fmt.Errorf("%s: head_dim defaults to hidden_size / num_attention_heads = %d / %d = 0: set head_dim", path, c.HiddenSize, c.NumHeads)
	}
	if err := inRange(path, "head_dim", c.HeadDim, 1, MaxHeadDim); err != nil {
		return err
	}
	if c.HeadDim%2 != 0 {
		return fmt.Errorf("%s: head_dim %d must be even for rotary embeddings", path, c.HeadDim)
	}
	c.RMSNormEps = 1e-6
	if raw.RMSNormEps != nil {
		c.RMSNormEps = *raw.RMSNormEps
	}
	// JSON has no NaN or infinities, so a decoded epsilon is finite: only its range needs checking.
	if !(c.RMSNormEps > 0 && c.RMSNormEps <= MaxRMSNormEps) {
		return fmt.Errorf("%s: rms_norm_eps must be in (0, %g], got %g", path, float64(MaxRMSNormEps), c.RMSNormEps)
	}
	if raw.HiddenAct != nil && *raw.HiddenAct != "silu" {
		return fmt.Errorf("%s: hidden_act %q is not supported (supported: silu)", path, *raw.HiddenAct)
	}
	if raw.PartialRotaryFactor != nil && *raw.PartialRotaryFactor != 1 {
		return fmt.Errorf("%s: partial_rotary_factor %g is not supported (supported: 1)", path, *raw.PartialRotaryFactor)
	}
	c.MaxPositionEmbeddings = 2048
	if raw.MaxPositionEmbeddings != nil {
		c.MaxPositionEmbeddings = *raw.MaxPositionEmbeddings
	}
	if err := inRange(path, "max_position_embeddings", c.MaxPositionEmbeddings, 1, MaxPositionEmbeddings); err != nil {
		return err
	}
	theta := 10000.0
	if raw.RopeTheta != nil {
		theta = *raw.RopeTheta
	}
	rc, err := rope.ParseScaling(rawOrNil(raw.RopeScaling), theta, c.HeadDim, c.MaxPositionEmbeddings)
	if err != nil {
		return fmt.Errorf("%s: rope_scaling: %w", path, err)
	}
	c.Rope = rc
	c.RopeScaling = rawOrNil(raw.RopeScaling)
	if raw.TieWordEmbeddings != nil {
		c.TieWordEmbeddings = *raw.TieWordEmbeddings
	}
	if raw.MLPBias != nil {
		c.MLPBias = *raw.MLPBias
	}
	if raw.BOSTokenID != nil {
		c.BOSTokenID = *raw.BOSTokenID
	}
	eos, err := parseIDs(raw.EOSTokenID)
	if err != nil {
		return fmt.Errorf("%s: eos_token_id: %w", path, err)
	}
	c.EOSTokenIDs = eos
	return nil
}

func rawOrNil(m *json.RawMessage) []byte {
	if m == nil {
		return nil
	}
	return *m
}

// parseIDs accepts null, one id or a list of ids.
func parseIDs(raw json.RawMessage) ([]int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one int
	if err := json.Unmarshal(raw, &one); err == nil {
		return []int{one}, nil
	}
	var many []int
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("want an integer or a list of integers, got %s", raw)
	}
	return many, nil
}

// slidingWindow applies a sliding_window to the layers selected by use; a null or absent window turns it off.
func (c *Config) slidingWindow(raw *rawConfig, use func(layer int) bool) {
	if raw.SlidingWindow == nil || *raw.SlidingWindow <= 0 {
		return
	}
	c.SlidingWindow = *raw.SlidingWindow
	c.SlidingLayers = make([]bool, c.NumLayers)
	for i := range c.SlidingLayers {
		c.SlidingLayers[i] = use(i)
	}
}

// DefaultAuxLayers are the decoder layers whose outputs EAGLE-3 reads by default: [1, N/2-1, N-4] (0-based,
// "output of layer i"), clamped at 0 for very shallow models as SpecForge's formula gives them.
func (c *Config) DefaultAuxLayers() []int {
	n := c.NumLayers
	ids := []int{1, n/2 - 1, n - 4}
	for i := range ids {
		ids[i] = max(0, min(ids[i], n-1))
	}
	return ids
}
