package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/pipeline"
	"github.com/specforge/specforge/internal/tensor"
)

func genHiddenCommand() *cobra.Command {
	var cf configFlags
	var out, dtype, shard string
	var perShard, batch int
	cmd := &cobra.Command{
		Use:   "gen-hidden --config run.yaml --out DIR",
		Short: "Run the target once over the prepared data and store what offline training needs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := cf.load(cmd, map[string]string{"target": "target.path", "data": "data.train"})
			if err != nil {
				return err
			}
			d, err := tensor.ParseShortName(dtype)
			if err != nil {
				return fmt.Errorf("--%w", err) // --dtype "x": want ...
			}
			o := pipeline.HiddenOptions{Out: out, DType: d, SamplesPerShard: perShard, Batch: batch}
			if shard != "" {
				if o.Part, o.Parts, err = parseShard(shard); err != nil {
					return err
				}
			}
			run, err := pipeline.NewHidden(cmd.Context(), cfg, o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if run.Rank() != 0 {
				w = io.Discard // rank 0 reports for all
			}
			// Ctrl-C or SIGTERM while generating stops after the current shard; the next run resumes there.
			return run.Generate(cmd.Context(), func(s pipeline.HiddenSplit) {
				printManifest(w, s.Name, s.Manifest)
				fmt.Fprintf(w, "  generated in %.1f s\n", s.Seconds)
				if s.Pending {
					fmt.Fprintf(w, "  this part is done; the part that finishes last writes %s/manifest.json\n", s.Name)
				}
			})
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.String("target", "", "target model folder (target.path)")
	f.String("data", "", "training data file (data.train)")
	f.StringVar(&out, "out", "hidden", "output folder (train/ and eval/ shard sets)")
	f.StringVar(&dtype, "dtype", "bf16", "storage type: bf16, f16 or f32")
	f.IntVar(&perShard, "samples-per-shard", 256, "samples per shard file")
	f.IntVar(&batch, "batch", 4, "samples per target forward")
	f.StringVar(&shard, "shard", "", "i/N: write only part i (0-based) of N of the shards, for N jobs launched independently (mpirun or srun split the work by themselves)")
	cmd.MarkFlagRequired("out")
	return cmd
}

func printManifest(w io.Writer, name string, m *hidden.Manifest) {
	state := "complete"
	if !m.Complete {
		state = "incomplete"
	}
	fmt.Fprintf(w, "%s: %d shards (%s), %d samples, %d tokens, %s, %.1f bytes/token = %.2fx less than SpecForge's 8*H = %d\n",
		name, len(m.Shards), state, m.Samples, m.Tokens, m.DType.ShortName(), m.BytesPerToken,
		float64(m.ReferenceBytesPerToken)/max(m.BytesPerToken, 1e-9), m.ReferenceBytesPerToken)
	fmt.Fprintf(w, "  target %s (%s), aux layers %v (%s)\n", m.Target.Path, m.Target.Architecture, m.AuxLayers, m.AuxConvention)
}

func inspectCommand() *cobra.Command {
	var deep bool
	cmd := &cobra.Command{
		Use:   "inspect DIR",
		Short: "List and verify the hidden-state shards of DIR (a gen-hidden output or one of its splits)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dirs := []string{args[0]}
			if _, err := os.Stat(filepath.Join(args[0], "manifest.json")); err != nil {
				dirs = nil
				for _, split := range []string{"train", "eval"} {
					if _, err := os.Stat(filepath.Join(args[0], split, "manifest.json")); err == nil {
						dirs = append(dirs, filepath.Join(args[0], split))
					}
				}
				if len(dirs) == 0 {
					return fmt.Errorf("%s: no manifest.json here or in train/ or eval/", args[0])
				}
			}
			w := cmd.OutOrStdout()
			bad := 0
			for _, dir := range dirs {
				m, problems, err := hidden.Verify(dir, deep)
				if err != nil {
					return err
				}
				printManifest(w, dir, m)
				failed := map[string]string{}
				for _, p := range problems {
					failed[p.File] = p.Reason
				}
				for _, s := range m.Shards {
					status := "ok"
					if r, ok := failed[s.File]; ok {
						status = "FAILED: " + r
					}
					fmt.Fprintf(w, "  %s  samples %d-%d  %d tokens  %d bytes  sha256 %.12s  %s\n", s.File, s.FirstSample, s.FirstSample+s.Samples-1, s.Tokens, s.Bytes, s.SHA256, status)
				}
				bad += len(problems)
			}
			if bad > 0 {
				return fmt.Errorf("%d shards failed verification", bad)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&deep, "deep", false, "also decode every sample")
	return cmd
}

// parseShard reads --shard i/N.
func parseShard(s string) (int, int, error) {
	var i, n int
	if _, err := fmt.Sscanf(s, "%d/%d", &i, &n); err != nil || fmt.Sprintf("%d/%d", i, n) != s || n < 1 || i < 0 || i >= n {
		return 0, 0, fmt.Errorf("--shard %q: want i/N with 0 <= i < N, e.g. 0/4", s)
	}
	return i, n, nil
}
