package config

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// Run is the configuration of a specforge run: the target, the data and (for training) the draft and the
// optimisation. Every field has a default that works; see Defaults.
type Run struct {
	Target TargetConfig `yaml:"target"`
	Data   DataConfig   `yaml:"data"`
	Draft  DraftConfig  `yaml:"draft"`
}

// DraftConfig shapes the EAGLE-3 draft.
type DraftConfig struct {
	// VocabSize is the draft vocabulary (default 32000, capped at the target's).
	VocabSize int `yaml:"vocab_size"`
	// KeepSpecialTokens and KeepByteTokens put the tokenizer's special tokens and its 256 byte tokens in the
	// draft vocabulary whatever their frequency (frequency-only pruning hurts rarely seen languages).
	KeepSpecialTokens bool `yaml:"keep_special_tokens"`
	KeepByteTokens    bool `yaml:"keep_byte_tokens"`
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
}

// Defaults returns the configuration used where a file says nothing.
func Defaults() Run {
	return Run{
		Data: DataConfig{
			Format: "auto", MaxLength: 2048, Shuffle: true, Seed: 42, KeepReasoning: "auto",
			CacheDir: "cache",
		},
		Draft: DraftConfig{VocabSize: 32000},
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
	if d.EvalFraction < 0 || d.EvalFraction >= 1 {
		return fmt.Errorf("data.eval_fraction must be in [0, 1), got %g", d.EvalFraction)
	}
	if r.Draft.VocabSize <= 0 {
		return fmt.Errorf("draft.vocab_size must be positive, got %d", r.Draft.VocabSize)
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
