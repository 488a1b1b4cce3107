package export

import (
	"encoding/json"

	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/safetensors"
)

// The config.json of each layout, as Write writes it and Read reads it. Fields a file may leave out are
// pointers, slices or raw messages, so that the reader tells absent from zero and fills LlamaConfig's
// defaults. Within a struct, fields are in the order of their keys, so that the files list them sorted.

// LayerConfig is the LlamaConfig of the draft layer: the top level of config.json in the sglang and vllm
// layouts, transformer_layer_config in the speculators one.
type LayerConfig struct {
	AttentionBias    bool            `json:"attention_bias"`
	BOS              *int            `json:"bos_token_id,omitempty"`
	EOS              json.RawMessage `json:"eos_token_id,omitempty"` // an id or a list of ids
	HeadDim          int             `json:"head_dim"`
	HiddenAct        string          `json:"hidden_act"`
	HiddenSize       int             `json:"hidden_size"`
	IntermediateSize int             `json:"intermediate_size"`
	MaxPositions     int             `json:"max_position_embeddings"`
	MLPBias          bool            `json:"mlp_bias"`
	ModelType        string          `json:"model_type"`
	NumHeads         int             `json:"num_attention_heads"`
	NumLayers        int             `json:"num_hidden_layers"`
	NumKVHeads       int             `json:"num_key_value_heads"`
	RMSNormEps       float64         `json:"rms_norm_eps"`
	RopeScaling      json.RawMessage `json:"rope_scaling"`
	RopeTheta        float64         `json:"rope_theta"`
	TieEmbeddings    bool            `json:"tie_word_embeddings"`
	VocabSize        int             `json:"vocab_size"`
}

// SGLangConfig is config.json of the sglang and vllm layouts: the layer's LlamaConfig with the EAGLE-3
// fields beside it.
type SGLangConfig struct {
	LayerConfig
	Architectures  []string `json:"architectures"`
	DraftVocabSize int      `json:"draft_vocab_size"`
	// VLLMAux is vLLM's top-level field, "input of layer k"; only the vllm layout has it.
	VLLMAux []int        `json:"eagle_aux_hidden_state_layer_ids,omitempty"`
	Eagle   *EagleConfig `json:"eagle_config,omitempty"`
	// FCNorm, NormBeforeFC and NormOutput are EAGLE-3.1's switches, top-level keys SGLang and vLLM read
	// (written only when set). specforge trains fc_norm and norm_output; norm_before_fc (one norm over all
	// aux states, which SGLang ignores) is refused when read.
	FCNorm       bool `json:"fc_norm,omitempty"`
	NormBeforeFC bool `json:"norm_before_fc,omitempty"`
	NormOutput   bool `json:"norm_output,omitempty"`
	// SpecForge is specforge's own record, which engines ignore.
	SpecForge *SpecForgeInfo `json:"specforge,omitempty"`
	// TargetHiddenSize is written only when it differs from hidden_size: engines test for the key and
	// multiply it, so it is never null.
	TargetHiddenSize int    `json:"target_hidden_size,omitempty"`
	TorchDType       string `json:"torch_dtype"`
}

// EagleConfig is SGLang's eagle_config.
type EagleConfig struct {
	// AuxLayers is SGLang's field: "output of layer i".
	AuxLayers         []int `json:"eagle_aux_hidden_state_layer_ids"`
	UseAuxHiddenState bool  `json:"use_aux_hidden_state"`
}

// SpeculatorsConfig is config.json of vLLM's Eagle3Speculator format.
type SpeculatorsConfig struct {
	Architectures  []string `json:"architectures"`
	DraftVocabSize int      `json:"draft_vocab_size"`
	// VLLMAux is read by vLLM as "input of layer k".
	VLLMAux []int `json:"eagle_aux_hidden_state_layer_ids"`
	// Eagle is never written in this layout; a file that has it must agree with the other aux fields.
	Eagle *EagleConfig `json:"eagle_config,omitempty"`
	// The EAGLE-3.1 switches of Eagle3SpeculatorConfig, as in SGLangConfig.
	FCNorm       bool `json:"fc_norm,omitempty"`
	NormBeforeFC bool `json:"norm_before_fc,omitempty"`
	// NormBeforeResidual is false for the EAGLE-3 layer, which normalises the hidden input inside the
	// residual branch; vLLM assumes true when the key is absent.
	NormBeforeResidual   *bool              `json:"norm_before_residual"`
	NormOutput           bool               `json:"norm_output,omitempty"`
	SpecForge            *SpecForgeInfo     `json:"specforge,omitempty"`
	Speculators          *SpeculatorsDetail `json:"speculators_config"`
	SpeculatorsModelType string             `json:"speculators_model_type"`
	TargetHiddenSize     int                `json:"target_hidden_size"`
	TorchDType           string             `json:"torch_dtype"`
	TransformerLayer     *LayerConfig       `json:"transformer_layer_config"`
}

// SpeculatorsDetail is the speculators_config block: the proposal method and the verifier (the target).
type SpeculatorsDetail struct {
	Algorithm             string           `json:"algorithm"`
	DefaultProposalMethod string           `json:"default_proposal_method"`
	ProposalMethods       []ProposalMethod `json:"proposal_methods"`
	Verifier              Verifier         `json:"verifier"`
}

// ProposalMethod is one entry of speculators_config.proposal_methods.
type ProposalMethod struct {
	AcceptTolerance   float64 `json:"accept_tolerance"`
	ProposalType      string  `json:"proposal_type"`
	SpeculativeTokens int     `json:"speculative_tokens"`
	VerifierAcceptK   int     `json:"verifier_accept_k"`
}

// Verifier names the target model of a speculators draft.
type Verifier struct {
	Architectures []string `json:"architectures,omitempty"`
	NameOrPath    string   `json:"name_or_path"`
}

// SpecForgeInfo records the aux ids in specforge's own, explicit convention, and the target the draft was
// made for.
type SpecForgeInfo struct {
	AuxLayerConvention string `json:"aux_layer_convention"`
	AuxLayers          []int  `json:"aux_layers"`
	TargetArchitecture string `json:"target_architecture"`
	TargetNumLayers    int    `json:"target_num_hidden_layers"`
	TargetPath         string `json:"target_path"`
}

// Config returns the config.json of a layout: a *SpeculatorsConfig for Speculators, else an *SGLangConfig.
func Config(d *draft.Draft, f Format, o Options) any {
	c := &d.Config
	dtype := map[safetensors.DType]string{safetensors.F32: "float32", safetensors.F16: "float16"}[o.DType]
	if dtype == "" {
		dtype = "bfloat16"
	}
	layer := LayerConfig{
		ModelType: "llama", HiddenSize: c.HiddenSize, IntermediateSize: c.IntermediateSize,
		NumHeads: c.NumHeads, NumKVHeads: c.NumKVHeads, HeadDim: c.HeadDim,
		NumLayers: c.Layers(), HiddenAct: "silu", RMSNormEps: c.RMSNormEps,
		MaxPositions: c.MaxPositions, RopeTheta: c.RopeTheta, RopeScaling: rawOrNull(c.RopeScaling), VocabSize: c.VocabSize,
	}
	info := &SpecForgeInfo{AuxLayers: c.AuxLayers, AuxLayerConvention: draft.OutputOfLayer, TargetNumLayers: c.TargetNumLayers,
		TargetPath: c.TargetPath, TargetArchitecture: c.TargetArchitecture}
	if f == Speculators {
		tokens := o.SpeculativeTokens
		if tokens <= 0 {
			tokens = 3
		}
		verifier := Verifier{NameOrPath: o.Verifier}
		if verifier.NameOrPath == "" {
			verifier.NameOrPath = c.TargetPath
		}
		if c.TargetArchitecture != "" {
			verifier.Architectures = []string{c.TargetArchitecture}
		}
		notBefore := false
		return &SpeculatorsConfig{
			Architectures: []string{"Eagle3Speculator"}, SpeculatorsModelType: "eagle3",
			Speculators: &SpeculatorsDetail{
				Algorithm:             "eagle3",
				ProposalMethods:       []ProposalMethod{{ProposalType: "greedy", SpeculativeTokens: tokens, AcceptTolerance: 0, VerifierAcceptK: 1}},
				DefaultProposalMethod: "greedy",
				Verifier:              verifier,
			},
			TransformerLayer: &layer, DraftVocabSize: c.DraftVocabSize, TargetHiddenSize: c.TargetHiddenSize,
			NormBeforeResidual: &notBefore, VLLMAux: draft.VLLMAuxIDs(c.AuxLayers), TorchDType: dtype, SpecForge: info,
			FCNorm: c.FCNorm, NormOutput: c.NormOutput,
		}
	}
	bos := c.BOS
	cfg := &SGLangConfig{LayerConfig: layer, Architectures: []string{"LlamaForCausalLMEagle3"}, DraftVocabSize: c.DraftVocabSize,
		TorchDType: dtype, Eagle: &EagleConfig{AuxLayers: c.AuxLayers, UseAuxHiddenState: true}, SpecForge: info,
		FCNorm: c.FCNorm, NormOutput: c.NormOutput}
	cfg.BOS = &bos
	if len(c.EOS) == 1 {
		cfg.EOS, _ = json.Marshal(c.EOS[0])
	} else if len(c.EOS) > 1 {
		cfg.EOS, _ = json.Marshal(c.EOS)
	}
	if c.TargetHiddenSize != c.HiddenSize {
		cfg.TargetHiddenSize = c.TargetHiddenSize
	}
	if f == VLLM {
		// Written even for the default layers, so that readers falling back to eagle_config never apply the
		// wrong convention.
		cfg.VLLMAux = draft.VLLMAuxIDs(c.AuxLayers)
	}
	return cfg
}

// rawOrNull writes an absent rope_scaling as null, as LlamaConfig does.
func rawOrNull(r json.RawMessage) json.RawMessage {
	if len(r) == 0 {
		return json.RawMessage("null")
	}
	return r
}
