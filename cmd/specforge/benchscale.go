package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/backend/auto"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/scalebench"
)

// jobRunner runs bench jobs in fresh child processes (this binary's hidden "bench job"), or in this process.
func jobRunner(inProcess bool, log io.Writer) (scalebench.Runner, error) {
	if inProcess {
		return scalebench.InProcess(), nil
	}
	exe, err := os.Executable()
	if err != nil {
		return scalebench.Runner{}, fmt.Errorf("find this binary to run the phases in child processes (or pass --in-process): %w", err)
	}
	return scalebench.Child([]string{exe, "bench", "job"}, log), nil
}

func isolation(isolated bool) string {
	if isolated {
		return "each in a fresh child process: the peak RSS is the phase's own"
	}
	return "one after the other in this process: each peak RSS is the process's high-water mark so far"
}

func writeJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(path, append(raw, '\n'))
}

func benchScaleCommand() *cobra.Command {
	o := scalebench.DefaultScaleOptions()
	var dtype, out string
	var shardGB float64
	var keep, inProcess bool
	cmd := &cobra.Command{
		Use:   "scale [--dtype bf16|f32] [--dir DIR --keep] [--layers 32 --hidden 4096 ...] [--tokens 2048 --seq 512]",
		Short: "Write a random Llama-3.1-8B-shaped checkpoint, then measure loading it, gen-hidden and an online training step",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch dtype {
			case "bf16":
				o.DType = safetensors.BF16
			case "f32":
				o.DType = safetensors.F32
			default:
				return fmt.Errorf("--dtype %q: want bf16 or f32", dtype)
			}
			o.ShardBytes = int64(shardGB * 1e9)
			w, logw := cmd.OutOrStdout(), cmd.ErrOrStderr()
			dir, err := benchDir(o.Dir)
			if err != nil {
				return err
			}
			o.Dir = dir
			if !keep {
				defer os.RemoveAll(dir)
				removeOnSignal(dir)
			}
			run, err := jobRunner(inProcess, logw)
			if err != nil {
				return err
			}
			s := o.Shape
			fmt.Fprintf(w, "backend: %s\n", auto.Default().Name())
			fmt.Fprintf(w, "target: Llama, %d layers, hidden %d, intermediate %d, %d/%d heads of %d, vocabulary %d, %s weights\n",
				s.Layers, s.Hidden, s.Intermediate, s.Heads, s.KVHeads, s.HeadDim, s.Vocab, o.DType)
			fmt.Fprintf(w, "phases: %s\n", isolation(run.Isolated))
			rep, err := scalebench.Scale(o, run, logw)
			if err != nil {
				return err
			}
			printScale(w, rep)
			if keep {
				fmt.Fprintf(w, "kept: %s\n", dir)
			}
			return writeJSON(out, rep)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", "", "folder to write into: new or empty (default: a new temporary folder)")
	f.BoolVar(&keep, "keep", false, "keep the folder (checkpoint, token ids, hidden states) afterwards")
	f.StringVar(&dtype, "dtype", "bf16", "checkpoint weights: bf16 or f32")
	f.Float64Var(&shardGB, "shard-gb", 5, "shard size in GB")
	f.IntVar(&o.Shape.Layers, "layers", o.Shape.Layers, "decoder layers")
	f.IntVar(&o.Shape.Hidden, "hidden", o.Shape.Hidden, "hidden size")
	f.IntVar(&o.Shape.Intermediate, "intermediate", o.Shape.Intermediate, "MLP intermediate size")
	f.IntVar(&o.Shape.Heads, "heads", o.Shape.Heads, "attention heads")
	f.IntVar(&o.Shape.KVHeads, "kv-heads", o.Shape.KVHeads, "key/value heads")
	f.IntVar(&o.Shape.HeadDim, "head-dim", o.Shape.HeadDim, "head dimension")
	f.IntVar(&o.Shape.Vocab, "vocab", o.Shape.Vocab, "vocabulary size")
	f.IntVar(&o.Tokens, "tokens", o.Tokens, "random token ids gen-hidden runs over")
	f.IntVar(&o.Seq, "seq", o.Seq, "tokens per sequence")
	f.IntVar(&o.GenBatch, "gen-batch", o.GenBatch, "sequences per target forward in gen-hidden")
	f.IntVar(&o.TrainBatch, "train-batch", o.TrainBatch, "sequences in the training step")
	f.IntVar(&o.DraftVocab, "draft-vocab", o.DraftVocab, "draft vocabulary size")
	f.StringVar(&o.Precision, "precision", o.Precision, "precision of the draft's products: bf16 or f32")
	f.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the weights and token ids")
	f.BoolVar(&inProcess, "in-process", false, "run the phases in this process, one after the other, instead of one child process each")
	f.StringVar(&out, "out", "", "also write the report as JSON to this file")
	return cmd
}

// benchDir is the folder a scale run writes into: dir when it is new or empty, else a new temporary one.
func benchDir(dir string) (string, error) {
	if dir == "" {
		return os.MkdirTemp("", "specforge-scale-*")
	}
	entries, err := os.ReadDir(dir)
	if err == nil && len(entries) > 0 {
		return "", fmt.Errorf("--dir %s is not empty: the run removes it afterwards, so it must be new or empty", dir)
	}
	return dir, os.MkdirAll(dir, 0o755)
}

// removeOnSignal removes dir when the run is interrupted, so that Ctrl-C does not leave a 16 GB folder behind.
func removeOnSignal(dir string) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-c
		os.RemoveAll(dir)
		fmt.Fprintf(os.Stderr, "specforge: interrupted; removed %s\n", dir)
		os.Exit(130)
	}()
}

func printScale(w io.Writer, r *scalebench.ScaleReport) {
	c := r.Checkpoint
	fileMiB := float64(c.Bytes) / (1 << 20)
	rows := [][2]string{
		{"parameters", fmt.Sprintf("%.2fB", float64(r.Params)/1e9)},
		{"checkpoint write", fmt.Sprintf("%.2f GB in %d shards, %.1f s (%.0f MB/s), writer peak RSS %.0f MiB",
			float64(c.Bytes)/1e9, len(c.Shards), c.Seconds, float64(c.Bytes)/1e6/c.Seconds, r.WritePeakRSSMiB)},
		{"load", fmt.Sprintf("%.1f s, peak RSS %.0f MiB (%.2fx the checkpoint's %.0f MiB)", r.Load.Seconds, r.Load.PeakRSSMiB, r.Load.PeakRSSMiB/fileMiB, fileMiB)},
		{"gen-hidden", fmt.Sprintf("%d tokens in %.1f s: %.1f tokens/s (load %.1f s apart), peak RSS %.0f MiB, %.1f MB of shards",
			r.GenHidden.Tokens, r.GenHidden.Seconds, r.GenHidden.TokensPerS, r.GenHidden.LoadSeconds, r.GenHidden.PeakRSSMiB, float64(r.GenHidden.OutBytes)/1e6)},
		{"train (1 step)", fmt.Sprintf("%d tokens in %.1f s: %.1f tokens/s (online: target forward included), loss %.3f, peak RSS %.0f MiB",
			r.Train.Tokens, r.Train.Seconds, r.Train.TokensPerS, r.Train.Loss, r.Train.PeakRSSMiB)},
		{"draft", fmt.Sprintf("%.0fM float32 parameters: %.0f MiB with gradients and AdamW moments", float64(r.Train.DraftParams)/1e6, float64(16*r.Train.DraftParams)/(1<<20))},
		{"peak RSS overall", fmt.Sprintf("%.0f MiB", r.PeakRSSMiB)},
	}
	for _, row := range rows {
		fmt.Fprintf(w, "  %-17s %s\n", row[0], row[1])
	}
}

func benchTrainMemoryCommand() *cobra.Command {
	s := scalebench.Draft1B()
	var seqLens []int
	var seed uint64
	var inProcess bool
	var out string
	cmd := &cobra.Command{
		Use:   "train-memory [--seq-lens 1024,2048,4096,8192] [--hidden 2048 ...]",
		Short: "Measure peak RSS and time of one draft training step (the 1B-shaped draft by default) per sequence length",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w := cmd.OutOrStdout()
			run, err := jobRunner(inProcess, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "backend: %s\n", auto.Default().Name())
			fmt.Fprintf(w, "draft: hidden %d, intermediate %d, %d/%d heads of %d, vocabulary %d of %d, K=%d; batch of 1 sequence\n",
				s.Hidden, s.Intermediate, s.Heads, s.KVHeads, s.HeadDim, s.DraftVocab, s.Vocab, s.TTTLength)
			fmt.Fprintf(w, "steps: %s\n", isolation(run.Isolated))
			rows, err := scalebench.TrainMemory(s, seqLens, seed, run, cmd.ErrOrStderr())
			if len(rows) > 0 {
				p := rows[0].DraftParams
				fmt.Fprintf(w, "draft parameters: %.0fM: %.0f MiB as float32 weights, gradients and AdamW moments\n", float64(p)/1e6, float64(16*p)/(1<<20))
			}
			fmt.Fprintf(w, "  %6s  %13s  %9s  %9s  %18s  %15s\n", "T", "peak RSS MiB", "step s", "tokens/s", "growth per doubling", "MiB per 1k tokens")
			for _, r := range rows {
				growth, per := "", ""
				if r.GrowthPerDoubling > 0 {
					growth = fmt.Sprintf("%.2fx", r.GrowthPerDoubling)
				}
				if r.MiBPer1kTokens != 0 {
					per = fmt.Sprintf("%.0f", r.MiBPer1kTokens)
				}
				fmt.Fprintf(w, "  %6d  %13.0f  %9.1f  %9.1f  %18s  %15s\n", r.T, r.PeakRSSMiB, r.Seconds, r.TokensPerS, growth, per)
			}
			if err != nil {
				return err
			}
			return writeJSON(out, rows)
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&seqLens, "seq-lens", []int{1024, 2048, 4096, 8192}, "sequence lengths, one training step each")
	draftShapeFlags(cmd, &s)
	f.IntVar(&s.TTTLength, "ttt-length", s.TTTLength, "unrolled TTT steps K")
	f.StringVar(&s.Precision, "precision", s.Precision, "precision of the draft's products: bf16 or f32")
	f.Uint64Var(&seed, "seed", 1, "seed of the weights and inputs")
	f.BoolVar(&inProcess, "in-process", false, "run the steps in this process instead of one child process each (peak RSS then only grows)")
	f.StringVar(&out, "out", "", "also write the rows as JSON to this file")
	return cmd
}

// benchJobCommand is the child-process side of the bench subcommands: one job as JSON on stdin, its result
// as JSON on stdout.
func benchJobCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "job",
		Short:  "Run one measured phase read as JSON from standard input (the bench subcommands start it)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return scalebench.ServeJob(cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
}

// draftShapeFlags are the flags that give a draft's shape (bench train-memory, bench comm).
func draftShapeFlags(cmd *cobra.Command, s *scalebench.DraftShape) {
	f := cmd.Flags()
	f.IntVar(&s.Hidden, "hidden", s.Hidden, "draft hidden size (= the target's)")
	f.IntVar(&s.Intermediate, "intermediate", s.Intermediate, "draft MLP intermediate size")
	f.IntVar(&s.Heads, "heads", s.Heads, "attention heads")
	f.IntVar(&s.KVHeads, "kv-heads", s.KVHeads, "key/value heads")
	f.IntVar(&s.HeadDim, "head-dim", s.HeadDim, "head dimension")
	f.IntVar(&s.Vocab, "vocab", s.Vocab, "target vocabulary size")
	f.IntVar(&s.DraftVocab, "draft-vocab", s.DraftVocab, "draft vocabulary size")
}
