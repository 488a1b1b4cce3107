package config

import (
	"fmt"
	"math"

	"gopkg.in/yaml.v3"

	"github.com/specforge/specforge/internal/draft"
)

// Run is the configuration of a specforge run: the target, the data and (for training) the draft and the
// optimisation. Every field has a default that works; see Defaults.
type Run struct {
	Target TargetConfig `yaml:"target"`
	Data   DataConfig   `yaml:"data"`
	Draft  DraftConfig  `yaml:"draft"`
	Train  TrainConfig  `yaml:"train"`
}

// TrainConfig drives the optimisation.
type TrainConfig struct {
	OutputDir string `yaml:"output_dir"`
	// Epochs over the training split, unless MaxSteps (optimiser steps) is set.
	Epochs    int `yaml:"epochs"`
	MaxSteps  int `yaml:"max_steps"`
	BatchSize int `yaml:"batch_size"`
	// GradAccum batches are summed into each optimiser step.
	GradAccum   int     `yaml:"grad_accum"`
	LR          float64 `yaml:"lr"`
	WarmupRatio float64 `yaml:"warmup_ratio"`
	MaxGradNorm float64 `yaml:"max_grad_norm"`
	WeightDecay float64 `yaml:"weight_decay"`
	// TTTLength is K, the unrolled draft steps per position.
	TTTLength int `yaml:"ttt_length"`
	// Precision of the draft's matrix products: "bf16" (operands rounded to bf16, float32 accumulation;
	// float32 master weights, norms, attention, loss and optimiser) or "f32".
	Precision string `yaml:"precision"`
	Seed      uint64 `yaml:"seed"`
	// Intervals in optimiser steps (0: only at the end).
	LogInterval  int `yaml:"log_interval"`
	EvalInterval int `yaml:"eval_interval"`
	SaveInterval int `yaml:"save_interval"`
	// KeepCheckpoints is how many recent checkpoints stay besides the best one.
	KeepCheckpoints int `yaml:"keep_checkpoints"`
	// EvalBatches bounds an evaluation (0: the whole eval split).
	EvalBatches int `yaml:"eval_batches"`
	// EvalAcceptancePrompts held-out prompts are decoded speculatively (a chain of EvalAcceptanceSteps) at
	// each evaluation, to report the real acceptance length beside the simulated one (online training only).
	EvalAcceptancePrompts int `yaml:"eval_acceptance_prompts"`
	EvalAcceptanceSteps   int `yaml:"eval_acceptance_steps"`
	EvalAcceptanceTokens  int `yaml:"eval_acceptance_tokens"`
	// Resume: "auto" continues from the latest checkpoint in output_dir if there is one, "never" starts
	// afresh, anything else is the checkpoint folder to continue from.
	Resume string `yaml:"resume"`
}

// DraftConfig shapes the EAGLE-3 draft.
type DraftConfig struct {
	// VocabSize is the draft vocabulary (default 32000, capped at the target's).
	VocabSize int `yaml:"vocab_size"`
	// KeepSpecialTokens and KeepByteTokens put the tokenizer's special tokens and its 256 byte tokens in the
	// draft vocabulary whatever their frequency (frequency-only pruning hurts rarely seen languages).
	KeepSpecialTokens bool `yaml:"keep_special_tokens"`
	KeepByteTokens    bool `yaml:"keep_byte_tokens"`
	// Shape overrides; 0 takes the target's value.
	HiddenSize       int `yaml:"hidden_size"`
	IntermediateSize int `yaml:"intermediate_size"`
	NumHeads         int `yaml:"num_attention_heads"`
	NumKVHeads       int `yaml:"num_key_value_heads"`
	HeadDim          int `yaml:"head_dim"`
	// AuxLayers overrides the target layers read, counted as AuxLayerConvention says.
	AuxLayers []int `yaml:"aux_layers"`
	// AuxLayerConvention is how AuxLayers count: "sglang" (the default: id i is the output of 0-based
	// decoder layer i, as in SGLang's eagle_config) or "vllm" (id k is the input of layer k, the output of
	// layer k-1, as in vLLM's top-level eagle_aux_hidden_state_layer_ids).
	AuxLayerConvention string  `yaml:"aux_layer_convention"`
	InitStd            float64 `yaml:"init_std"`
	// Checkpoint warm-starts training from an existing head: an SGLang, vLLM or speculators export, or a
	// specforge checkpoint. Its shape, aux layers, vocabulary mapping and weights are used (the shape and
	// vocabulary settings above must agree or stay unset); the optimiser and schedule start afresh.
	Checkpoint string `yaml:"checkpoint"`
}

// OutputAuxLayers returns AuxLayers converted to the "output of layer i" convention specforge uses inside.
func (d *DraftConfig) OutputAuxLayers() ([]int, error) {
	switch d.AuxLayerConvention {
	case "", "sglang":
		return d.AuxLayers, nil
	case "vllm":
		out, err := draft.FromVLLMAuxIDs(d.AuxLayers)
		if err != nil {
			return nil, fmt.Errorf("draft.aux_layers: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("draft.aux_layer_convention %q: want sglang (output of 0-based layer i) or vllm (input of layer k)", d.AuxLayerConvention)
}

// TargetConfig names the target model.
type TargetConfig struct {
	Path string `yaml:"path"` // Hugging Face model folder
}

// DataConfig says what to train on and how to tokenize it.
type DataConfig struct {
	Train StringList `yaml:"train"` // data files (JSONL, JSON, parquet; gzip accepted)
	Eval  StringList `yaml:"eval"`  // eval files; else EvalFraction of the training rows
	// EvalFraction of the shuffled training rows forms the eval split when Eval is empty.
	EvalFraction float64 `yaml:"eval_fraction"`
	// Format: auto, chat, preformatted, text or completion.
	Format          string `yaml:"format"`
	TextField       string `yaml:"text_field"`
	PromptField     string `yaml:"prompt_field"`
	CompletionField string `yaml:"completion_field"`
	// ChatTemplate names the template whose headers delimit assistant turns (llama3, qwen, qwen3-instruct,
	// ...). Chats are rendered with the tokenizer's Jinja chat_template when it has one, else with the
	// template's headers.
	ChatTemplate string `yaml:"chat_template"`
	// Tokenizer is the folder with tokenizer.json (default: the target's).
	Tokenizer         string `yaml:"tokenizer"`
	MaxLength         int    `yaml:"max_length"`
	Shuffle           bool   `yaml:"shuffle"`
	Seed              uint64 `yaml:"seed"`
	TrainOnlyLastTurn bool   `yaml:"train_only_last_turn"`
	// KeepReasoning keeps reasoning_content/thinking in assistant turns ("auto": when the template trains
	// on thinking).
	KeepReasoning string `yaml:"keep_reasoning"`
	CacheDir      string `yaml:"cache_dir"`
	Workers       int    `yaml:"workers"`
	// Regenerate, when From is set, makes the training data by letting the target continue openings.
	Regenerate RegenerateConfig `yaml:"regenerate"`
	// HiddenStates, when set, trains offline from the shards gen-hidden wrote there (train/ and eval/).
	HiddenStates string `yaml:"hidden_states"`
}

// RegenerateConfig asks the target to write its own training data (SpecForge's regeneration recipe): the
// first OpeningTokens tokens of each paragraph of From, continued for MaxNewTokens tokens.
type RegenerateConfig struct {
	From          string  `yaml:"from"`
	OpeningTokens int     `yaml:"opening_tokens"`
	MaxNewTokens  int     `yaml:"max_new_tokens"`
	Limit         int     `yaml:"limit"`
	Batch         int     `yaml:"batch"`
	Temperature   float64 `yaml:"temperature"`
	Seed          uint64  `yaml:"seed"`
}

// Defaults returns the configuration used where a file says nothing.
func Defaults() Run {
	return Run{
		Data: DataConfig{
			Format: "auto", MaxLength: 2048, Shuffle: true, Seed: 42, KeepReasoning: "auto",
			CacheDir:   "cache",
			Regenerate: RegenerateConfig{OpeningTokens: 8, MaxNewTokens: 128, Batch: 64},
		},
		Draft: DraftConfig{VocabSize: 32000, InitStd: 0.02},
		Train: TrainConfig{
			OutputDir: "runs/draft", Epochs: 10, BatchSize: 1, GradAccum: 1, LR: 1e-4, WarmupRatio: 0.015,
			MaxGradNorm: 0.5, TTTLength: 7, Precision: "bf16", LogInterval: 10, KeepCheckpoints: 2, Resume: "auto",
			EvalAcceptancePrompts: 8, EvalAcceptanceSteps: 5, EvalAcceptanceTokens: 64,
		},
	}
}

// LoadRun reads a run configuration over the defaults.
func LoadRun(path string, overrides []string) (*Run, error) {
	r := Defaults()
	if err := Load(path, overrides, &r); err != nil {
		return nil, err
	}
	return &r, r.Validate()
}

// Validate checks values that have no meaning.
func (r *Run) Validate() error {
	d := &r.Data
	switch d.Format {
	case "auto", "chat", "preformatted", "text", "completion":
	default:
		return fmt.Errorf("data.format %q is not one of auto, chat, preformatted, text, completion", d.Format)
	}
	switch d.KeepReasoning {
	case "auto", "true", "false":
	default:
		return fmt.Errorf("data.keep_reasoning %q is not one of auto, true, false", d.KeepReasoning)
	}
	if d.MaxLength <= 1 {
		return fmt.Errorf("data.max_length must be at least 2, got %d", d.MaxLength)
	}
	if !(d.EvalFraction >= 0 && d.EvalFraction < 1) { // NaN fails too
		return fmt.Errorf("data.eval_fraction must be in [0, 1), got %g", d.EvalFraction)
	}
	if g := d.Regenerate; g.From != "" {
		switch {
		case g.OpeningTokens < 1:
			return fmt.Errorf("data.regenerate.opening_tokens must be positive, got %d", g.OpeningTokens)
		case g.MaxNewTokens < 1:
			return fmt.Errorf("data.regenerate.max_new_tokens must be positive, got %d", g.MaxNewTokens)
		case g.Limit < 0:
			return fmt.Errorf("data.regenerate.limit must not be negative, got %d", g.Limit)
		case g.Batch < 1:
			return fmt.Errorf("data.regenerate.batch must be positive, got %d", g.Batch)
		case !(g.Temperature >= 0) || math.IsInf(g.Temperature, 1):
			return fmt.Errorf("data.regenerate.temperature must be a finite number >= 0, got %g", g.Temperature)
		}
	}
	if r.Draft.VocabSize <= 0 {
		return fmt.Errorf("draft.vocab_size must be positive, got %d", r.Draft.VocabSize)
	}
	t := &r.Train
	switch {
	case t.BatchSize <= 0:
		return fmt.Errorf("train.batch_size must be positive, got %d", t.BatchSize)
	case t.GradAccum <= 0:
		return fmt.Errorf("train.grad_accum must be positive, got %d", t.GradAccum)
	case !(t.LR > 0) || math.IsInf(t.LR, 1):
		return fmt.Errorf("train.lr must be positive, got %g", t.LR)
	case t.TTTLength <= 0:
		return fmt.Errorf("train.ttt_length must be positive, got %d", t.TTTLength)
	case t.Precision != "bf16" && t.Precision != "f32":
		return fmt.Errorf("train.precision %q is not one of bf16, f32", t.Precision)
	case t.Epochs <= 0 && t.MaxSteps <= 0:
		return fmt.Errorf("train.epochs or train.max_steps must be positive")
	case !(t.WarmupRatio >= 0 && t.WarmupRatio < 1):
		return fmt.Errorf("train.warmup_ratio must be in [0, 1), got %g", t.WarmupRatio)
	case !(t.MaxGradNorm > 0) || math.IsInf(t.MaxGradNorm, 1):
		return fmt.Errorf("train.max_grad_norm must be a finite positive number, got %g", t.MaxGradNorm)
	case !(t.WeightDecay >= 0) || math.IsInf(t.WeightDecay, 1):
		return fmt.Errorf("train.weight_decay must be a finite number >= 0, got %g", t.WeightDecay)
	case t.KeepCheckpoints < 0:
		return fmt.Errorf("train.keep_checkpoints must not be negative, got %d", t.KeepCheckpoints)
	}
	return nil
}

// StringList accepts one string or a list of strings.
type StringList []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = []string{n.Value}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*s = list
	return nil
}
