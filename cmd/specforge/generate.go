package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/specforge/specforge/internal/generate"
	"github.com/specforge/specforge/internal/model"
)

func generateCommand() *cobra.Command {
	var (
		modelDir  string
		promptIDs string
		maxNew    int
		sampling  generate.SamplingParams
	)
	cmd := &cobra.Command{
		Use:   "generate --model DIR [--prompt-ids IDS]",
		Short: "Generate tokens with a target model (greedy or sampled) and report tokens/s",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sampling.Validate(); err != nil {
				return err
			}
			if maxNew <= 0 {
				return fmt.Errorf("--max-new-tokens must be positive, got %d", maxNew)
			}
			m, err := model.Load(modelDir)
			if err != nil {
				return err
			}
			defer m.Close()
			warnUnused(cmd, m)
			prompt, err := parseIDs(promptIDs, m.Config.VocabSize)
			if err != nil {
				return fmt.Errorf("--prompt-ids: %w", err)
			}
			if len(prompt) == 0 {
				prompt = []int{m.Config.BOSTokenID}
			}
			res, err := generate.Generate(m, prompt, generate.Options{
				MaxNewTokens: maxNew, Sampling: sampling, StopIDs: m.Config.EOSTokenIDs,
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, joinIDs(res.Tokens))
			fmt.Fprintf(out, "prefill: %d tokens in %.1f ms; decode: %d tokens at %.1f tokens/s\n",
				len(prompt), res.PrefillTime.Seconds()*1000, len(res.Tokens), res.DecodeTokensPerSecond())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelDir, "model", "", "Hugging Face model folder (config.json + safetensors)")
	f.StringVar(&promptIDs, "prompt-ids", "", "prompt as token ids separated by spaces or commas (default: the BOS token)")
	f.IntVar(&maxNew, "max-new-tokens", 64, "tokens to generate")
	f.Float64Var(&sampling.Temperature, "temperature", 0, "sampling temperature (0 = greedy)")
	f.Float64Var(&sampling.TopP, "top-p", 1, "nucleus sampling: keep the most likely tokens up to this probability")
	f.IntVar(&sampling.TopK, "top-k", 0, "keep only the k most likely tokens (0 = all)")
	f.Uint64Var(&sampling.Seed, "seed", 0, "random seed for sampling")
	cmd.MarkFlagRequired("model")
	return cmd
}

func warnUnused(cmd *cobra.Command, m *model.Model) {
	if len(m.Unused) > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s: %d checkpoint tensors are not used by %s (first: %s)\n",
			m.Dir, len(m.Unused), m.Config.Architecture, m.Unused[0])
	}
}

// parseIDs reads token ids separated by spaces or commas and checks them against the vocabulary.
func parseIDs(s string, vocab int) ([]int, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
	ids := make([]int, 0, len(fields))
	for _, f := range fields {
		id, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a token id", f)
		}
		if id < 0 || id >= vocab {
			return nil, fmt.Errorf("token id %d is outside the vocabulary [0, %d)", id, vocab)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func joinIDs(ids []int) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.Itoa(id)
	}
	return strings.Join(parts, " ")
}
