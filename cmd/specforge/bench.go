package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/generate"
	"github.com/specforge/specforge/internal/pipeline"
	"github.com/specforge/specforge/internal/specdecode"
)

// decodingFlags are the speculative-decoding settings shared by bench and generate.
type decodingFlags struct {
	steps, depth, topK, draftTokens int
	minProb                         float64
}

func (f *decodingFlags) register(cmd *cobra.Command) {
	cmd.Flags().IntVar(&f.steps, "steps", 5, "chain drafting: draft tokens per target verification")
	cmd.Flags().Float64Var(&f.minProb, "min-draft-prob", 0, "chain drafting: stop the chain after a token the draft gives less than this probability (0: always draft --steps)")
	cmd.Flags().IntVar(&f.depth, "depth", 0, "tree drafting: drafting steps (0: use a chain)")
	cmd.Flags().IntVar(&f.topK, "topk", 8, "tree drafting: candidates kept per step")
	cmd.Flags().IntVar(&f.draftTokens, "draft-tokens", 32, "tree drafting: tokens verified per round, the newest included")
}

func (f *decodingFlags) options(maxNew int, s generate.SamplingParams, stop []int) specdecode.Options {
	o := specdecode.Options{MaxNewTokens: maxNew, Sampling: s, StopIDs: stop}
	if f.depth > 0 {
		o.Depth, o.TopK, o.DraftTokens = f.depth, f.topK, f.draftTokens
	} else {
		o.Steps, o.MinDraftProb = f.steps, f.minProb
	}
	return o
}

func (f *decodingFlags) describe() string {
	if f.depth > 0 {
		return fmt.Sprintf("tree of depth %d, top-%d, %d draft tokens", f.depth, f.topK, f.draftTokens)
	}
	if f.minProb > 0 {
		return fmt.Sprintf("chain of up to %d steps (while the draft's probability is at least %g)", f.steps, f.minProb)
	}
	return fmt.Sprintf("chain of %d steps", f.steps)
}

func sharedDatasets() string {
	if d := os.Getenv("SPECFORGE_SHARED"); d != "" {
		return filepath.Join(d, "assets", "datasets")
	}
	return filepath.Join("..", "shared", "assets", "datasets")
}

func benchCommand() *cobra.Command {
	var (
		targetDir, draftDir, ds, out, datasets string
		cpuProfile                             string
		n, skip, maxNew, promptTokens, warmup  int
		noTemplate                             bool
		sampling                               generate.SamplingParams
		df                                     decodingFlags
	)
	cmd := &cobra.Command{
		Use:   "bench --target DIR --draft DIR --dataset mtbench|gsm8k|humaneval|math500|specbench|FILE",
		Short: "Measure a draft's acceptance length and speed-up with speculative decoding",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range []struct {
				name     string
				v, least int
			}{{"--num-prompts", n, 1}, {"--skip", skip, 0}, {"--warmup", warmup, 0}, {"--max-new-tokens", maxNew, 1}, {"--prompt-tokens", promptTokens, 0}} {
				if f.v < f.least {
					return fmt.Errorf("bench: %s must be at least %d, got %d", f.name, f.least, f.v)
				}
			}
			if err := sampling.Validate(); err != nil {
				return err
			}
			dec, err := pipeline.LoadDecoding(targetDir, draftDir, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer dec.Close()
			if dec.Tokenizer == nil {
				return fmt.Errorf("%s has no tokenizer.json: bench needs it to encode prompts", targetDir)
			}
			texts, err := specdecode.LoadPrompts(ds, datasets, skip, n+warmup)
			if err != nil {
				return err
			}
			prompts, err := dec.EncodePrompts(texts, !noTemplate, promptTokens)
			if err != nil {
				return err
			}
			o := df.options(maxNew, sampling, dec.Target.Config.EOSTokenIDs)
			if err := o.Validate(); err != nil {
				return err
			}
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			res, err := specdecode.Bench(cmd.Context(), dec.Decoder(), prompts, o, warmup)
			if errors.Is(err, context.Canceled) {
				return fmt.Errorf("%w; no result written", err)
			}
			if err != nil {
				return err
			}
			printBench(cmd.OutOrStdout(), ds, df.describe(), sampling.Temperature, maxNew, res)
			raw, _ := json.MarshalIndent(map[string]any{"dataset": ds, "target": targetDir, "draft": draftDir, "decoding": df.describe(),
				"temperature": sampling.Temperature, "max_new_tokens": maxNew, "result": res}, "", "  ")
			if err := atomicfile.WriteBytes(out, append(raw, '\n')); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "result: %s\n", out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&targetDir, "target", "", "target model folder")
	f.StringVar(&draftDir, "draft", "", "draft folder: an SGLang, vLLM or speculators export, or a specforge checkpoint")
	f.StringVar(&ds, "dataset", "mtbench", "mtbench, gsm8k, humaneval, math500, specbench, or a file (.txt paragraphs, or JSONL/JSON/parquet rows)")
	f.StringVar(&datasets, "datasets-dir", sharedDatasets(), "folder of the named benchmarks")
	f.IntVar(&n, "num-prompts", 20, "prompts to decode")
	f.IntVar(&skip, "skip", 0, "skip the dataset's first prompts (held out: training saw them)")
	f.IntVar(&warmup, "warmup", 1, "untimed prompts run first")
	f.IntVar(&maxNew, "max-new-tokens", 128, "tokens to generate per prompt")
	f.IntVar(&promptTokens, "prompt-tokens", 0, "truncate each encoded prompt to this many tokens (0: keep all)")
	f.BoolVar(&noTemplate, "no-chat-template", false, "encode prompts as plain text even when the tokenizer has a chat template")
	f.Float64Var(&sampling.Temperature, "temperature", 0, "sampling temperature (0: greedy)")
	f.Uint64Var(&sampling.Seed, "seed", 0, "sampling seed")
	f.StringVar(&out, "out", "bench_result.json", "JSON result file")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the benchmark to this file (go tool pprof)")
	df.register(cmd)
	cmd.MarkFlagRequired("target")
	cmd.MarkFlagRequired("draft")
	cmd.AddCommand(benchScaleCommand(), benchTrainMemoryCommand(), benchJobCommand(), benchCommCommand())
	return cmd
}

func printBench(w io.Writer, ds, decoding string, temperature float64, maxNew int, r *specdecode.BenchResult) {
	fmt.Fprintf(w, "benchmark %s: %d prompts, %s, temperature %g, up to %d new tokens\n", ds, r.Prompts, decoding, temperature, maxNew)
	var pos []string
	for i, a := range r.PositionAcceptance {
		pos = append(pos, fmt.Sprintf("%d: %.2f", i+1, a))
	}
	rows := [][2]string{
		{"acceptance length", fmt.Sprintf("%.2f tokens per target verification (%d tokens, %d verifications)", r.AcceptanceLength, r.Tokens, r.Rounds)},
		{"acceptance by depth", strings.Join(pos, "  ")},
		{"target only", fmt.Sprintf("%.1f tokens/s", r.TargetTokensPerS)},
		{"speculative", fmt.Sprintf("%.1f tokens/s", r.SpecTokensPerS)},
		{"speed-up", fmt.Sprintf("%.2fx", r.Speedup)},
	}
	if temperature == 0 {
		rows = append(rows, [2]string{"greedy outputs equal", fmt.Sprintf("%d of %d", r.Prompts-r.Mismatches, r.Prompts)})
	}
	for _, row := range rows {
		fmt.Fprintf(w, "  %-22s %s\n", row[0], row[1])
	}
}

// startCPUProfile profiles the process into path until the returned function is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile %s: %w", path, err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
