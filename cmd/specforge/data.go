package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/specforge/specforge/internal/chat"
	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/progress"
	"github.com/specforge/specforge/internal/tokenizer"
	"github.com/specforge/specforge/internal/vocab"
)

// configFlags are the flags every configured command takes: --config and --set.
type configFlags struct {
	path      string
	overrides []string
}

func (f *configFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.path, "config", "", "YAML configuration file")
	cmd.Flags().StringArrayVar(&f.overrides, "set", nil, "override a setting: key=value (repeatable), e.g. data.max_length=1024")
}

// load reads the configuration; shortcut flags given on the command line become overrides.
func (f *configFlags) load(cmd *cobra.Command, shortcuts map[string]string) (*config.Run, error) {
	overrides := append([]string(nil), f.overrides...)
	for flag, key := range shortcuts {
		if cmd.Flags().Changed(flag) {
			v, _ := cmd.Flags().GetString(flag)
			overrides = append(overrides, key+"="+v)
		}
	}
	return config.LoadRun(f.path, overrides)
}

// preparedData is a dataset ready for training, with the tokenizer that made it.
type preparedData struct {
	*dataset.Prepared
	Tokenizer *tokenizer.Tokenizer
}

// prepareData tokenizes the configured data into the cache (or finds it there), reporting progress on w.
func prepareData(cfg *config.Run, w io.Writer) (*preparedData, error) {
	d := cfg.Data
	if len(d.Train) == 0 {
		return nil, fmt.Errorf("no training data: set data.train (a JSONL, JSON or parquet file)")
	}
	tokDir := d.Tokenizer
	if tokDir == "" {
		tokDir = cfg.Target.Path
	}
	if tokDir == "" {
		return nil, fmt.Errorf("no tokenizer: set target.path (a Hugging Face model folder) or data.tokenizer")
	}
	tok, err := tokenizer.Load(tokDir)
	if err != nil {
		return nil, err
	}
	opt := dataset.PrepareOptions{
		Train: d.Train, Eval: d.Eval, EvalFraction: d.EvalFraction,
		Schema:     dataset.SchemaOptions{Format: dataset.Format(d.Format), TextField: d.TextField, PromptField: d.PromptField, CompletionField: d.CompletionField},
		Tokenizing: dataset.Tokenizing{Tokenizer: tok, MaxLength: d.MaxLength, TrainOnlyLastTurn: d.TrainOnlyLastTurn},
		Shuffle:    d.Shuffle, Seed: d.Seed, Workers: d.Workers, CacheDir: d.CacheDir,
	}
	for _, name := range []string{"tokenizer.json", "tokenizer.json.gz", "tokenizer_config.json"} {
		if raw, err := os.ReadFile(filepath.Join(tokDir, name)); err == nil {
			opt.KeyParts = append(opt.KeyParts, raw)
		}
	}
	if d.ChatTemplate != "" {
		tmpl, err := chat.Lookup(d.ChatTemplate)
		if err != nil {
			return nil, fmt.Errorf("data.chat_template: %w", err)
		}
		opt.Template = &tmpl
		opt.Schema.KeepReasoning = d.KeepReasoning == "true" || d.KeepReasoning == "auto" && tmpl.Thinking
		src, bos, eos, ok, err := chat.TokenizerTemplate(tokDir)
		if err != nil {
			return nil, err
		}
		if ok {
			if opt.Renderer, err = chat.NewJinjaRenderer(src, bos, eos); err != nil {
				return nil, fmt.Errorf("%s: %w", filepath.Join(tokDir, "tokenizer_config.json"), err)
			}
		} else {
			opt.Renderer = chat.HeaderRenderer{Template: tmpl, BOS: bos}
		}
	}
	total := int64(0)
	var bar *progress.Reporter
	opt.Progress = func(done, n int) {
		if bar == nil {
			total = int64(n)
			bar = progress.New(total, "prepare")
		}
		bar.Set(int64(done), "")
	}
	p, err := dataset.Prepare(opt)
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return nil, err
	}
	return &preparedData{Prepared: p, Tokenizer: tok}, nil
}

// chooseVocab picks the draft vocabulary from loss-token counts, keeping the tokenizer's special and byte
// tokens when asked (tok may be nil when there is no tokenizer at hand).
func chooseVocab(counts []int64, tok *tokenizer.Tokenizer, dc config.DraftConfig) (*vocab.Mapping, error) {
	size := min(dc.VocabSize, len(counts))
	var always []int
	if tok != nil && dc.KeepSpecialTokens {
		for _, id := range tok.SpecialIDs() {
			if int(id) < len(counts) {
				always = append(always, int(id))
			}
		}
	}
	if tok != nil && dc.KeepByteTokens {
		for _, id := range tok.ByteTokenIDs() {
			always = append(always, int(id))
		}
	}
	return vocab.Build(counts, size, always)
}

// buildVocab chooses the draft vocabulary from the training split and writes it into the cache folder.
func buildVocab(p *preparedData, targetVocab int, dc config.DraftConfig) (*vocab.Mapping, string, error) {
	f, err := dataset.OpenTokenized(p.TrainPath())
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	counts, err := f.CountLossTokens(targetVocab)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", p.TrainPath(), err)
	}
	m, err := chooseVocab(counts.Counts, p.Tokenizer, dc)
	if err != nil {
		return nil, "", err
	}
	path := filepath.Join(p.Dir, fmt.Sprintf("vocab_%d_s%v_b%v.safetensors", len(m.Used), dc.KeepSpecialTokens, dc.KeepByteTokens))
	return m, path, m.Write(path)
}

func prepareDataCommand() *cobra.Command {
	var cf configFlags
	cmd := &cobra.Command{
		Use:   "prepare-data --config run.yaml | --target DIR --data FILE --chat-template NAME",
		Short: "Tokenize conversations into a cached training dataset with loss masks, and build the draft vocabulary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := cf.load(cmd, map[string]string{"target": "target.path", "data": "data.train", "chat-template": "data.chat_template",
				"max-length": "data.max_length", "cache-dir": "data.cache_dir", "draft-vocab-size": "draft.vocab_size"})
			if err != nil {
				return err
			}
			p, err := prepareData(cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if p.FromCache {
				fmt.Fprintf(out, "dataset already prepared (cache key %s)\n", p.Key)
			}
			printStats(out, "train", p.Train)
			if p.Eval.Rows > 0 {
				printStats(out, "eval", p.Eval)
			}
			if !p.FromCache {
				rows := p.Train.Rows + p.Eval.Rows
				tokens := p.Train.Tokens + p.Eval.Tokens
				fmt.Fprintf(out, "prepared in %.2f s: %.0f rows/s, %.0f tokens/s\n", p.Seconds, float64(rows)/p.Seconds, float64(tokens)/p.Seconds)
			}
			targetVocab := p.Tokenizer.VocabSize()
			if cfg.Target.Path != "" {
				if mc, err := model.LoadConfig(cfg.Target.Path); err == nil {
					targetVocab = mc.VocabSize
				}
			}
			m, path, err := buildVocab(p, targetVocab, cfg.Draft)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "draft vocabulary: %d of %d target tokens -> %s\n", len(m.Used), targetVocab, path)
			fmt.Fprintf(out, "dataset: %s\n", p.Dir)
			return nil
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.String("target", "", "target model folder (target.path)")
	f.String("data", "", "training data file (data.train)")
	f.String("chat-template", "", "named chat template for loss masks: "+strings.Join(chat.TemplateNames(), ", ")+" (data.chat_template)")
	f.String("max-length", "", "truncate samples to this many tokens (data.max_length)")
	f.String("cache-dir", "", "where prepared datasets are cached (data.cache_dir)")
	f.String("draft-vocab-size", "", "draft vocabulary size (draft.vocab_size)")
	return cmd
}

func printStats(w io.Writer, split string, s dataset.Stats) {
	fmt.Fprintf(w, "%s: %d rows -> %d samples, %d tokens, %d loss tokens (%.1f%%), %d truncated, %d cut at a role-order violation\n",
		split, s.Rows, s.Samples, s.Tokens, s.LossTokens, 100*float64(s.LossTokens)/float64(max(s.Tokens, 1)), s.Truncated, s.RoleViolations)
	for _, reason := range s.RejectedReasons() {
		fmt.Fprintf(w, "  rejected %d: %s (first: %s)\n", s.Rejected[reason], reason, s.Examples[reason])
	}
}
