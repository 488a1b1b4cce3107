package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/specforge/specforge/internal/pipeline"
)

func trainCommand() *cobra.Command {
	var cf configFlags
	cmd := &cobra.Command{
		Use:   "train --config run.yaml [--set key=value ...]",
		Short: "Train an EAGLE-3 draft for a target model (online: the target runs on every batch)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := cf.load(cmd, map[string]string{"target": "target.path", "data": "data.train", "output": "train.output_dir"})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			run, err := pipeline.New(cmd.Context(), cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if run.Rank() != 0 {
				out = io.Discard // rank 0 reports for all
			}
			if n := run.WorldSize(); n > 1 {
				fmt.Fprintf(out, "data parallel on %d ranks (MPI): global batch %d ranks x %d x grad accum %d = %d samples per step\n",
					n, n, cfg.Train.BatchSize, cfg.Train.GradAccum, n*cfg.Train.BatchSize*cfg.Train.GradAccum)
			}
			if s := run.TrainStats(); s != nil {
				printStats(out, "train", *s)
			}
			dc := run.DraftConfig()
			fmt.Fprintf(out, "training a draft (hidden %d, %d/%d heads, intermediate %d, draft vocabulary %d) for %d steps, %s, aux layers %v\n",
				dc.HiddenSize, dc.NumHeads, dc.NumKVHeads, dc.IntermediateSize, dc.DraftVocabSize, run.TotalSteps(), run.Mode(), dc.AuxLayers)
			// Ctrl-C or SIGTERM while training stops after the current step with a checkpoint to resume from.
			res, err := run.Train(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "draft: %s\nsimulated acceptance length (eval, drafted tokens accepted per target step, bonus token not counted): %.3f\n", res.DraftDir, res.SimAccLen)
			if res.AcceptanceLength > 0 {
				fmt.Fprintf(out, "measured acceptance length (chain of %d, held-out prompts, tokens per target verification): %.3f\n", cfg.Train.EvalAcceptanceSteps, res.AcceptanceLength)
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().String("target", "", "target model folder (target.path)")
	cmd.Flags().String("data", "", "training data file (data.train)")
	cmd.Flags().String("output", "", "run folder for checkpoints, metrics and the draft (train.output_dir)")
	return cmd
}
