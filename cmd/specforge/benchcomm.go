package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/mpi"
	"github.com/specforge/specforge/internal/scalebench"
)

// benchCommCommand prints what data-parallel training moves per step for a draft shape (the 8B-shaped
// draft by default) and the memory each rank holds, and, launched on several ranks, times the all-reduce
// and the reduce-scatter + all-gather of that gradient.
func benchCommCommand() *cobra.Command {
	s := scalebench.Draft1B()
	s.Hidden, s.Intermediate, s.Heads, s.KVHeads, s.HeadDim, s.Vocab = 4096, 14336, 32, 8, 128, 128256 // Llama-3.1-8B's draft
	var iters int
	cmd := &cobra.Command{
		Use:   "comm [--hidden 4096 ...] [--iters 3]   (mpirun -np N specforge bench comm to time the collectives)",
		Short: "Bytes all-reduced per training step of a draft, per-rank memory with and without train.shard_optimizer, and the collectives' time on the ranks it runs on",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			comm, err := mpi.World()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if comm.Rank() != 0 {
				w = io.Discard
			}
			c := draft.Config{HiddenSize: s.Hidden, IntermediateSize: s.Intermediate, NumHeads: s.Heads, NumKVHeads: s.KVHeads, HeadDim: s.HeadDim,
				VocabSize: s.Vocab, DraftVocabSize: s.DraftVocab, TargetHiddenSize: s.Hidden, AuxLayers: []int{1, 1, 1}}
			var sizes []int
			var params int64
			for _, p := range (&draft.Weights{}).Params(&c) {
				n := 1
				for _, d := range p.Shape {
					n *= d
				}
				sizes, params = append(sizes, n), params+int64(n)
			}
			bytes := 4 * float64(params)
			fmt.Fprintf(w, "draft: hidden %d, intermediate %d, %d/%d heads of %d, draft vocabulary %d: %.1fM trained parameters\n",
				s.Hidden, s.Intermediate, s.Heads, s.KVHeads, s.HeadDim, s.DraftVocab, float64(params)/1e6)
			fmt.Fprintf(w, "gradient all-reduced per optimiser step: %.2f GB (float32)\n", bytes/1e9)
			fmt.Fprintf(w, "ring all-reduce (or reduce-scatter + all-gather): each rank sends and receives 2(N-1)/N x %.2f GB\n", bytes/1e9)
			fmt.Fprintf(w, "  %5s  %14s  %14s\n", "ranks", "at 10 Gbit/s", "at 100 Gbit/s")
			for _, n := range []int{2, 4, 8, 64} {
				moved := 2 * float64(n-1) / float64(n) * bytes
				fmt.Fprintf(w, "  %5d  %12.2f s  %12.3f s\n", n, moved/(10e9/8), moved/(100e9/8))
			}
			fmt.Fprintf(w, "per-rank training state (float32 weights, gradients, AdamW moments; the frozen embedding not counted):\n")
			fmt.Fprintf(w, "  %5s  %14s  %22s\n", "ranks", "unsharded MiB", "shard_optimizer MiB")
			for _, n := range []int{1, 2, 4} {
				moments, scratch := 0, 0
				for _, sz := range sizes {
					lo, hi := mpi.Part(sz, 0, n)
					moments += 2 * (hi - lo)
					if n > 1 {
						scratch = max(scratch, hi-lo)
					}
				}
				fmt.Fprintf(w, "  %5d  %14.0f  %22.0f\n", n, 16*float64(params)/(1<<20), (8*float64(params)+4*float64(moments+scratch))/(1<<20))
			}
			if comm.Size() == 1 {
				fmt.Fprintf(w, "one process: launch with mpirun -np N (a build with -tags mpi) to time the collectives\n")
				return nil
			}
			grads := make([][]float32, len(sizes))
			for k, n := range sizes {
				grads[k] = make([]float32, n)
			}
			largest := 0
			for _, n := range sizes {
				largest = max(largest, n)
			}
			scratch := make([]float32, largest)
			for _, mode := range []string{"all-reduce", "reduce-scatter + all-gather"} {
				var best time.Duration
				for i := range iters {
					start := time.Now()
					for _, g := range grads {
						if mode == "all-reduce" {
							err = comm.AllreduceF32(g)
						} else {
							lo, hi := mpi.Part(len(g), comm.Rank(), comm.Size())
							if err = comm.ReduceScatterF32(g, scratch[:hi-lo]); err == nil {
								err = comm.AllgatherF32(g)
							}
						}
						if err != nil {
							return err
						}
					}
					if d := time.Since(start); i == 0 || d < best {
						best = d
					}
				}
				bus := 2 * float64(comm.Size()-1) / float64(comm.Size()) * bytes / best.Seconds()
				fmt.Fprintf(w, "measured on %d ranks here, %s of the gradient: %.2f s (best of %d), %.2f GB/s per rank\n", comm.Size(), mode, best.Seconds(), iters, bus/1e9)
			}
			return nil
		},
	}
	f := cmd.Flags()
	draftShapeFlags(cmd, &s)
	f.IntVar(&iters, "iters", 3, "timed repetitions of each collective")
	return cmd
}
