package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/model"
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
	// RescueDir, when set, receives the draft (SGLang layout, float32) if a checkpoint cannot be written (a full
	// disk), so that a failing run still leaves its weights; best on another disk.
	RescueDir string `yaml:"rescue_dir"`
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
	// Loss of each unrolled step: "kl" (EAGLE-3's), or an LK loss that targets the acceptance rate
	// (arXiv 2602.23881): "lk_lambda" (LKKLScale*exp(-LKKLDecay*alpha) of KL, the rest 1-alpha) or
	// "lk_alpha" (-log alpha).
	Loss      string  `yaml:"loss"`
	LKKLScale float64 `yaml:"lk_kl_scale"`
	LKKLDecay float64 `yaml:"lk_kl_decay"`
	// Precision of the draft's matrix products: "bf16" (operands rounded to bf16, float32 accumulation;
	// float32 master weights, norms, attention, loss and optimiser) or "f32".
	Precision string `yaml:"precision"`
	Seed      uint64 `yaml:"seed"`
	// Intervals in optimiser steps (0: only at the end).
	LogInterval  int `yaml:"log_interval"`
	EvalInterval int `yaml:"eval_interval"`
	// SaveInterval is the checkpoint interval in steps; 0 (the default) saves after every tenth of the
	// run, so a killed run loses at most a tenth of its work.
	SaveInterval int `yaml:"save_interval"`
	// SaveMinutes also saves when that long has passed since the last checkpoint (0: never), so a long run
	// whose tenth takes hours loses little when killed.
	SaveMinutes float64 `yaml:"save_minutes"`
	// KeepCheckpoints is how many recent checkpoints stay besides the best one.
	KeepCheckpoints int `yaml:"keep_checkpoints"`
	// EvalBatches bounds an evaluation (0: the whole eval split).
	EvalBatches int `yaml:"eval_batches"`
	// EvalAcceptancePrompts held-out prompts are decoded speculatively (a chain of EvalAcceptanceSteps) at
	// each evaluation, to report the real acceptance length beside the simulated one (online training only).
	EvalAcceptancePrompts int `yaml:"eval_acceptance_prompts"`
	EvalAcceptanceSteps   int `yaml:"eval_acceptance_steps"`
	EvalAcceptanceTokens  int `yaml:"eval_acceptance_tokens"`
	// ReportTo lists where metrics go: "jsonl" (metrics.jsonl, always: resume and metrics.png read it) and
	// "tensorboard" (event files under output_dir/tensorboard).
	ReportTo StringList `yaml:"report_to"`
	// Resume: "auto" continues from the latest checkpoint in output_dir if there is one, "never" starts
	// afresh, anything else is the checkpoint folder to continue from.
	Resume string `yaml:"resume"`
	// CollectiveTimeout bounds, in seconds, each collective of a data-parallel run (mpirun, srun): a rank
	// that waits longer for the others aborts the job, as MPI itself would wait forever on a stuck rank.
	// 0 waits forever.
	CollectiveTimeout float64 `yaml:"collective_timeout"`
	// ShardOptimizer keeps on each rank of a data-parallel run the AdamW moments of its part of every
	// parameter only (ZeRO stage 1): gradients are reduce-scattered, each rank updates its part, and the
	// weights are all-gathered.
	ShardOptimizer bool `yaml:"shard_optimizer"`
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
	// NumLayers is the number of decoder layers (0: one, EAGLE-3's). The first reads [embed; h], later
	// ones the residual stream of the one before, as vLLM's llama_eagle3 serves them; SGLang serves one.
	NumLayers int `yaml:"num_layers"`
	// FCNorm and NormOutput are EAGLE-3.1's options: an RMSNorm on each aux hidden state before fc, and
	// the final norm of each step's output fed to the next step (see the README).
	FCNorm     bool `yaml:"fc_norm"`
	NormOutput bool `yaml:"norm_output"`
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
	Tokenizer string `yaml:"tokenizer"`
	MaxLength int    `yaml:"max_length"`
	// Packing puts several samples in each batch row (up to MaxLength tokens), each attending only to
	// itself with positions from 0, so that short samples do not train mostly padding. A step still trains
	// train.batch_size samples: epochs, schedule and resume are as without it.
	Packing           bool   `yaml:"packing"`
	Shuffle           bool   `yaml:"shuffle"`
	Seed              uint64 `yaml:"seed"`
	TrainOnlyLastTurn bool   `yaml:"train_only_last_turn"`
	// KeepReasoning keeps reasoning_content/thinking in assistant turns ("auto": when the template trains
	// on thinking).
	KeepReasoning string `yaml:"keep_reasoning"`
	CacheDir      string `yaml:"cache_dir"`
	Workers       int    `yaml:"workers"`
	// MaxLineBytes bounds one record (a JSONL line, a JSON array element, a parquet row's values): longer
	// ones are rejected unparsed and counted.
	MaxLineBytes int `yaml:"max_line_bytes"`
	// Regenerate, when From is set, makes the training data by letting the target continue openings, or an
	// OpenAI-compatible server answer the conversations of From.
	Regenerate RegenerateConfig `yaml:"regenerate"`
	// HiddenStates, when set, trains offline from the shards gen-hidden wrote there (train/ and eval/), or,
	// as grpc://host:port[,host:port...], from capture servers.
	HiddenStates string `yaml:"hidden_states"`
	// Capture says how a trainer reaches capture servers (data.hidden_states: grpc://...).
	Capture CaptureConfig `yaml:"capture"`
}

// CaptureConfig secures and bounds a trainer's connections to capture servers.
type CaptureConfig struct {
	// CA, when set, connects over TLS, trusting servers whose certificates it signed; Cert and Key are the
	// trainer's own certificate for servers that require one (mutual TLS). PEM files.
	CA         string `yaml:"ca"`
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	ServerName string `yaml:"server_name"` // the name the servers' certificates hold (default: each host)
	// TimeoutS is how long a sample may go unanswered by every server before the run fails.
	TimeoutS float64 `yaml:"timeout_s"`
	// Window bounds the samples asked for and not yet answered.
	Window int `yaml:"window"`
}

// RegenerateConfig asks the target to write its own training data (SpecForge's regeneration recipe): the
// first OpeningTokens tokens of each paragraph of From, continued for MaxNewTokens tokens. With Server set,
// From is a chat or prompt/completion data file instead, and the server at that URL answers it.
type RegenerateConfig struct {
	From          string  `yaml:"from"`
	OpeningTokens int     `yaml:"opening_tokens"`
	MaxNewTokens  int     `yaml:"max_new_tokens"`
	Limit         int     `yaml:"limit"`
	Batch         int     `yaml:"batch"`
	Temperature   float64 `yaml:"temperature"`
	Seed          uint64  `yaml:"seed"`
	// Server is the API root of an OpenAI-compatible server (SGLang, vLLM, llama.cpp, ollama, a hosted
	// API, specforge serve), e.g. http://localhost:30000/v1; one without a path gets /v1.
	Server string `yaml:"server"`
	Model  string `yaml:"model"`
	// APIKeyEnv names the environment variable that holds the API key (the key itself is never in a file);
	// empty: no key is sent.
	APIKeyEnv   string `yaml:"api_key_env"`
	Concurrency int    `yaml:"concurrency"`
	// MaxTokens bounds each answer of the server.
	MaxTokens int `yaml:"max_tokens"`
	// TopP is sent when above 0.
	TopP float64 `yaml:"top_p"`
	// Timeout of one request attempt, in seconds.
	Timeout float64 `yaml:"timeout"`
}

// Defaults returns the configuration used where a file says nothing.
func Defaults() Run {
	return Run{
		Data: DataConfig{
			Format: "auto", MaxLength: 2048, Shuffle: true, Seed: 42, KeepReasoning: "auto",
			CacheDir: "cache", MaxLineBytes: dataset.DefaultMaxRowBytes, Capture: CaptureConfig{TimeoutS: 120, Window: 128},
			Regenerate: RegenerateConfig{OpeningTokens: 8, MaxNewTokens: 128, Batch: 64, Concurrency: 64, MaxTokens: 4096, Timeout: 600},
		},
		Draft: DraftConfig{VocabSize: 32000, InitStd: 0.02},
		Train: TrainConfig{
			OutputDir: "runs/draft", Epochs: 10, BatchSize: 1, GradAccum: 1, LR: 1e-4, WarmupRatio: 0.015,
			MaxGradNorm: 0.5, TTTLength: 7, Loss: "kl", LKKLScale: 1, LKKLDecay: 1, Precision: "bf16", LogInterval: 10, SaveMinutes: 30, KeepCheckpoints: 2, Resume: "auto", ReportTo: StringList{"jsonl"},
			CollectiveTimeout:     600,
			EvalAcceptancePrompts: 8, EvalAcceptanceSteps: 5, EvalAcceptanceTokens: 64,
		},
	}
}

// LoadRun reads a run configuration over the defaults. A value out of its range is reported at its line.
func LoadRun(path string, overrides []string) (*Run, error) {
	r := Defaults()
	src, err := load(path, overrides, &r)
	if err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return nil, fmt.Errorf("%s: %w", src.Where(fe.Key), err)
		}
		return nil, err
	}
	return &r, nil
}

// FieldError is a setting whose value has no meaning.
type FieldError struct {
	Key string // dotted, e.g. train.lr
	Msg string
}

func (e *FieldError) Error() string { return e.Key + " " + e.Msg }

// Ranges of the numeric settings. The upper bounds are far above any real run and exist so that a typo
// (1e12 for 1e2) is an error at load instead of an allocation that takes the machine's memory.
const (
	// maxTokens bounds lengths in tokens: 1M is past the longest context of today's targets.
	maxTokens = 1 << 20
	// maxTTTLength bounds train.ttt_length: EAGLE-3 unrolls 7 steps and memory grows with every step.
	maxTTTLength = 64
	// maxBatch bounds batch sizes and gradient accumulation (each batch's activations are in memory).
	maxBatch = 1 << 16
	// maxCount bounds other counts (epochs, intervals, prompts, rows): ~1e9.
	maxCount = 1 << 30
	// maxWorkers bounds data.workers: goroutines beyond the cores only cost memory.
	maxWorkers = 4096
	// maxLayerID bounds aux layer ids: no target has 64K layers.
	maxLayerID = 1 << 16
	// maxLineBytes bounds data.max_line_bytes: a record decodes to about 10x its bytes.
	maxLineBytes = 1 << 30
)

// Validate checks every setting against its range (NaN and infinities refused); errors are *FieldError.
func (r *Run) Validate() error {
	d, g, dr, t := &r.Data, &r.Data.Regenerate, &r.Draft, &r.Train
	switch d.Format {
	case "auto", "chat", "preformatted", "text", "completion":
	default:
		return &FieldError{"data.format", fmt.Sprintf("%q is not one of auto, chat, preformatted, text, completion", d.Format)}
	}
	switch d.KeepReasoning {
	case "auto", "true", "false":
	default:
		return &FieldError{"data.keep_reasoning", fmt.Sprintf("%q is not one of auto, true, false", d.KeepReasoning)}
	}
	if err := (draft.Loss{Kind: draft.LossKind(t.Loss)}).Check(); err != nil || t.Loss == "" {
		return &FieldError{"train.loss", fmt.Sprintf("%q is not one of kl, lk_lambda, lk_alpha", t.Loss)}
	}
	if t.Precision != "bf16" && t.Precision != "f32" {
		return &FieldError{"train.precision", fmt.Sprintf("%q is not one of bf16, f32", t.Precision)}
	}
	if err := checkReportTo(t.ReportTo); err != nil {
		return err
	}
	if err := checkServer(g); err != nil {
		return err
	}
	if !(d.Capture.TimeoutS > 0 && d.Capture.TimeoutS <= 86400) {
		return &FieldError{"data.capture.timeout_s", fmt.Sprintf("%v is not between 0 (excluded) and 86400 seconds", d.Capture.TimeoutS)}
	}
	ints := []struct {
		key     string
		v       int
		lo, hi  int
		enabled bool
	}{
		{"data.max_length", d.MaxLength, 2, maxTokens, true},
		{"data.workers", d.Workers, 0, maxWorkers, true},
		{"data.max_line_bytes", d.MaxLineBytes, 1, maxLineBytes, true},
		{"data.regenerate.opening_tokens", g.OpeningTokens, 1, maxTokens, g.From != ""},
		{"data.regenerate.max_new_tokens", g.MaxNewTokens, 1, maxTokens, g.From != ""},
		{"data.regenerate.limit", g.Limit, 0, maxCount, g.From != ""},
		{"data.regenerate.batch", g.Batch, 1, maxBatch, g.From != ""},
		{"data.regenerate.concurrency", g.Concurrency, 1, maxWorkers, g.Server != ""},
		{"data.regenerate.max_tokens", g.MaxTokens, 1, maxTokens, g.Server != ""},
		{"data.capture.window", d.Capture.Window, 1, maxCount, true},
		// A draft is a model layer: the limits on model configs (model.Max*) hold for it, so a draft that
		// trains also exports and loads.
		{"draft.vocab_size", dr.VocabSize, 1, model.MaxVocabSize, true},
		{"draft.hidden_size", dr.HiddenSize, 0, model.MaxHiddenSize, true},
		{"draft.intermediate_size", dr.IntermediateSize, 0, model.MaxIntermediateSize, true},
		{"draft.num_attention_heads", dr.NumHeads, 0, model.MaxHeads, true},
		{"draft.num_key_value_heads", dr.NumKVHeads, 0, model.MaxHeads, true},
		{"draft.head_dim", dr.HeadDim, 0, model.MaxHeadDim, true},
		{"draft.num_layers", dr.NumLayers, 0, model.MaxLayers, true},
		{"train.epochs", t.Epochs, 0, maxCount, true},
		{"train.max_steps", t.MaxSteps, 0, maxCount, true},
		{"train.batch_size", t.BatchSize, 1, maxBatch, true},
		{"train.grad_accum", t.GradAccum, 1, maxBatch, true},
		{"train.ttt_length", t.TTTLength, 1, maxTTTLength, true},
		{"train.log_interval", t.LogInterval, 0, maxCount, true},
		{"train.eval_interval", t.EvalInterval, 0, maxCount, true},
		{"train.save_interval", t.SaveInterval, 0, maxCount, true},
		{"train.keep_checkpoints", t.KeepCheckpoints, 0, maxCount, true},
		{"train.eval_batches", t.EvalBatches, 0, maxCount, true},
		{"train.eval_acceptance_prompts", t.EvalAcceptancePrompts, 0, maxCount, true},
		{"train.eval_acceptance_steps", t.EvalAcceptanceSteps, 0, maxTTTLength, true},
		{"train.eval_acceptance_tokens", t.EvalAcceptanceTokens, 0, maxTokens, true},
	}
	for _, c := range ints {
		if c.enabled && (c.v < c.lo || c.v > c.hi) {
			return &FieldError{c.key, fmt.Sprintf("must be between %d and %d, got %d", c.lo, c.hi, c.v)}
		}
	}
	for i, id := range dr.AuxLayers {
		if id < 0 || id >= maxLayerID {
			return &FieldError{"draft.aux_layers", fmt.Sprintf("entry %d must be between 0 and %d, got %d", i, maxLayerID-1, id)}
		}
	}
	floats := []struct {
		key            string
		v              float64
		lo, hi         float64
		openLo, openHi bool
		enabled        bool
	}{
		{"data.eval_fraction", d.EvalFraction, 0, 1, false, true, true},
		{"data.regenerate.temperature", g.Temperature, 0, 100, false, false, g.From != ""},
		{"data.regenerate.top_p", g.TopP, 0, 1, false, false, g.Server != ""},
		{"data.regenerate.timeout", g.Timeout, 0, 86400, true, false, g.Server != ""},
		{"draft.init_std", dr.InitStd, 0, 1, true, false, true},
		{"train.lr", t.LR, 0, 10, true, false, true},
		{"train.warmup_ratio", t.WarmupRatio, 0, 1, false, true, true},
		{"train.max_grad_norm", t.MaxGradNorm, 0, 1e6, true, false, true},
		{"train.weight_decay", t.WeightDecay, 0, 10, false, false, true},
		{"train.lk_kl_scale", t.LKKLScale, 0, 10, false, false, true},
		{"train.lk_kl_decay", t.LKKLDecay, 0, 100, false, false, true},
		{"train.save_minutes", t.SaveMinutes, 0, 1e6, false, false, true},
		{"train.collective_timeout", t.CollectiveTimeout, 0, 1e7, false, false, true},
	}
	for _, c := range floats {
		low := c.v > c.lo || !c.openLo && c.v == c.lo
		high := c.v < c.hi || !c.openHi && c.v == c.hi
		if c.enabled && !(low && high) { // NaN fails both
			left, right := "[", "]"
			if c.openLo {
				left = "("
			}
			if c.openHi {
				right = ")"
			}
			return &FieldError{c.key, fmt.Sprintf("must be in %s%g, %g%s, got %g", left, c.lo, c.hi, right, c.v)}
		}
	}
	if t.Epochs == 0 && t.MaxSteps == 0 {
		return &FieldError{"train.epochs", "or train.max_steps must be positive"}
	}
	return nil
}

// envName is the shape of an environment variable's name: a value of another shape in api_key_env is
// most likely the key itself, which must not sit in a file.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// checkServer checks the settings of a regeneration by a server, when data.regenerate.server is set.
func checkServer(g *RegenerateConfig) error {
	if g.Server == "" {
		return nil
	}
	u, err := url.Parse(g.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &FieldError{"data.regenerate.server", fmt.Sprintf("%q is not an http:// or https:// URL with a host (e.g. http://localhost:30000/v1)", g.Server)}
	}
	if g.From == "" {
		return &FieldError{"data.regenerate.from", "must name the chat or prompt/completion file the server regenerates"}
	}
	if g.Model == "" {
		return &FieldError{"data.regenerate.model", "must name the model the server serves (its GET /v1/models lists them)"}
	}
	if g.APIKeyEnv != "" && !envName.MatchString(g.APIKeyEnv) {
		return &FieldError{"data.regenerate.api_key_env", "must be the name of an environment variable holding the key (e.g. OPENAI_API_KEY), never the key itself"}
	}
	return nil
}

// checkReportTo accepts train.report_to lists of jsonl and tensorboard that include jsonl.
func checkReportTo(list StringList) error {
	jsonl := false
	for i, r := range list {
		switch r {
		case "jsonl":
			jsonl = true
		case "tensorboard":
		default:
			return &FieldError{"train.report_to", fmt.Sprintf("entry %d: %q is not one of jsonl, tensorboard", i, r)}
		}
	}
	if !jsonl {
		return &FieldError{"train.report_to", fmt.Sprintf("%q lacks jsonl: metrics.jsonl is always written (resume and metrics.png read it)", []string(list))}
	}
	return nil
}

// Has reports whether the list holds s.
func (s StringList) Has(v string) bool { return slices.Contains(s, v) }

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
