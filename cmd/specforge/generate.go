package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/specforge/specforge/internal/generate"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/pipeline"
)

func generateCommand() *cobra.Command {
	var (
		modelDir  string
		draftDir  string
		prompt    string
		promptIDs string
		showIDs   bool
		maxNew    int
		sampling  generate.SamplingParams
		df        decodingFlags
	)
	cmd := &cobra.Command{
		Use:   "generate --model DIR [--prompt TEXT | --prompt-ids IDS]",
		Short: "Generate tokens with a target model (greedy or sampled) and report tokens/s",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sampling.Validate(); err != nil {
				return err
			}
			if maxNew <= 0 {
				return fmt.Errorf("--max-new-tokens must be positive, got %d", maxNew)
			}
			if prompt != "" && promptIDs != "" {
				return fmt.Errorf("give --prompt or --prompt-ids, not both")
			}
			dec, err := pipeline.LoadDecoding(modelDir, draftDir, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer dec.Close()
			m, tok := dec.Target, dec.Tokenizer
			warnUnused(cmd, m)
			var ids []int32
			switch {
			case prompt != "":
				if tok == nil {
					return fmt.Errorf("%s has no tokenizer.json: give the prompt as --prompt-ids", modelDir)
				}
				if ids, err = tok.Encode(prompt, true); err != nil {
					return fmt.Errorf("--prompt: %w", err)
				}
			default:
				if ids, err = parseIDs(promptIDs, m.Config.VocabSize); err != nil {
					return fmt.Errorf("--prompt-ids: %w", err)
				}
			}
			if len(ids) == 0 {
				ids = []int32{int32(m.Config.BOSTokenID)}
			}
			var tokens []int32
			var report string
			if dec.Draft != nil {
				o := df.options(maxNew, sampling, m.Config.EOSTokenIDs)
				if err := o.Validate(); err != nil {
					return err
				}
				out, st, err := dec.Decoder().Generate(cmd.Context(), ids, o)
				if err != nil {
					return err
				}
				tokens = out
				report = fmt.Sprintf("speculative (%s): %d tokens in %.1f ms, %.1f tokens/s, acceptance length %.2f over %d verifications",
					df.describe(), len(out), st.Elapsed.Seconds()*1000, float64(len(out))/st.Elapsed.Seconds(), st.AcceptanceLength(), st.Rounds)
			} else {
				res, err := generate.Generate(cmd.Context(), m, ids, generate.Options{
					MaxNewTokens: maxNew, Sampling: sampling, StopIDs: m.Config.EOSTokenIDs,
				})
				if err != nil {
					return err
				}
				tokens = res.Tokens
				report = fmt.Sprintf("prefill: %d tokens in %.1f ms; decode: %d tokens at %.1f tokens/s",
					len(ids), res.PrefillTime.Seconds()*1000, len(res.Tokens), res.DecodeTokensPerSecond())
			}
			out := cmd.OutOrStdout()
			if tok == nil || showIDs {
				fmt.Fprintln(out, joinIDs(tokens))
			} else {
				// Decoding the whole sequence keeps the space between prompt and continuation.
				text, err := tok.Decode(append(ids, tokens...), true)
				if err != nil {
					return err
				}
				fmt.Fprintln(out, text)
			}
			fmt.Fprintln(cmd.ErrOrStderr(), report)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelDir, "model", "", "Hugging Face model folder (config.json + safetensors)")
	f.StringVar(&draftDir, "draft", "", "EAGLE-3 draft (any layout export reads): decode speculatively")
	f.StringVar(&prompt, "prompt", "", "prompt text, tokenized with the model's tokenizer.json (BOS added as the tokenizer says)")
	f.StringVar(&promptIDs, "prompt-ids", "", "prompt as token ids separated by spaces or commas (default: the BOS token)")
	f.BoolVar(&showIDs, "ids", false, "print token ids instead of text")
	f.IntVar(&maxNew, "max-new-tokens", 64, "tokens to generate")
	f.Float64Var(&sampling.Temperature, "temperature", 0, "sampling temperature (0 = greedy)")
	f.Float64Var(&sampling.TopP, "top-p", 1, "nucleus sampling: keep the most likely tokens up to this probability")
	f.IntVar(&sampling.TopK, "top-k", 0, "keep only the k most likely tokens (0 = all)")
	f.Uint64Var(&sampling.Seed, "seed", 0, "random seed for sampling")
	df.register(cmd)
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
func parseIDs(s string, vocab int) ([]int32, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
	ids := make([]int32, 0, len(fields))
	for _, f := range fields {
		id, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a token id", f)
		}
		if id < 0 || id >= vocab {
			return nil, fmt.Errorf("token id %d is outside the vocabulary [0, %d)", id, vocab)
		}
		ids = append(ids, int32(id))
	}
	return ids, nil
}

func joinIDs(ids []int32) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.Itoa(int(id))
	}
	return strings.Join(parts, " ")
}
