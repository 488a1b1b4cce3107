package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/specforge/specforge/internal/chat"
	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/pipeline"
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
			if err := pipeline.RegenerateFromServer(cmd.Context(), cfg, cmd.ErrOrStderr()); err != nil {
				return err
			}
			p, err := pipeline.PrepareData(cfg, cmd.ErrOrStderr())
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
			m, targetVocab, path, err := pipeline.PrepareVocab(cfg, p)
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
