package train

import (
	"fmt"
	"slices"

	"github.com/specforge/specforge/internal/checkpoint"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/mpi"
	"github.com/specforge/specforge/internal/optim"
)

// Optimiser-state sharding (train.shard_optimizer, ZeRO stage 1): rank r keeps the AdamW moments of part r
// of every parameter (mpi.Part), so that each rank holds 8/N bytes of moments per parameter instead of 8.
// The gradients are reduce-scattered instead of all-reduced, each rank clips (with the global norm) and
// updates its part, and the parts of the weights are all-gathered. Checkpoints keep the whole moments, as
// without sharding, so that a run resumes on any world size: rank 0 gathers them to write one.

// sharded reports whether this rank keeps only its part of the optimiser state.
func (t *Trainer) sharded() bool { return t.cfg.ShardOptimizer && t.comm.Size() > 1 }

// optimizerParts are the sizes of the moments this rank keeps for parameters of the given sizes.
func (t *Trainer) optimizerParts(sizes []int) []int {
	if !t.sharded() {
		return sizes
	}
	out := make([]int, len(sizes))
	for k, n := range sizes {
		lo, hi := mpi.Part(n, t.comm.Rank(), t.comm.Size())
		out[k] = hi - lo
	}
	return out
}

// update clips the summed gradients to train.max_grad_norm and takes the AdamW step; it returns the norm
// before clipping. Sharded, grads are each rank's own and are summed here, part by part.
func (t *Trainer) update(grads [][]float32, lr float64) (float64, error) {
	params := t.draft.W.Slices(&t.draft.Config)
	if !t.sharded() {
		norm, _ := optim.ClipGradNorm(grads, t.cfg.MaxGradNorm)
		t.opt.Update(params, grads, lr)
		return norm, nil
	}
	r, n := t.comm.Rank(), t.comm.Size()
	gp, pp := make([][]float32, len(grads)), make([][]float32, len(grads))
	for k, g := range grads {
		lo, hi := mpi.Part(len(g), r, n)
		t.scratch = slices.Grow(t.scratch[:0], hi-lo)[:hi-lo]
		if err := t.comm.ReduceScatterF32(g, t.scratch); err != nil {
			return 0, fmt.Errorf("sum the gradients over the ranks: %w", err)
		}
		copy(g[lo:hi], t.scratch)
		gp[k], pp[k] = g[lo:hi], params[k][lo:hi]
	}
	sq := []float64{optim.SumSquares(gp)}
	if err := t.comm.AllreduceF64(sq, mpi.Sum); err != nil {
		return 0, fmt.Errorf("sum the gradient norm over the ranks: %w", err)
	}
	norm, _ := optim.ClipGradNormOf(gp, sq[0], t.cfg.MaxGradNorm)
	t.opt.Update(pp, gp, lr)
	for _, p := range params {
		if err := t.comm.AllgatherF32(p); err != nil {
			return 0, fmt.Errorf("gather the updated weights: %w", err)
		}
	}
	return norm, nil
}

// fullMoments are the whole AdamW moments on rank 0 (gathered from the ranks' parts when sharded; the
// other ranks get none), for a checkpoint.
func (t *Trainer) fullMoments() (checkpoint.Moments, error) {
	if !t.sharded() {
		return checkpoint.Moments{M: t.opt.M, V: t.opt.V}, nil
	}
	var mom checkpoint.Moments
	for k, s := range t.draft.W.Slices(&t.draft.Config) {
		for _, mv := range []struct {
			part []float32
			all  *[][]float32
		}{{t.opt.M[k], &mom.M}, {t.opt.V[k], &mom.V}} {
			buf := mv.part
			if t.rank0() {
				buf = make([]float32, len(s))
				copy(buf, mv.part) // rank 0's part is the first
			}
			if err := t.comm.GatherF32(buf, len(s), 0); err != nil {
				return mom, fmt.Errorf("gather the optimiser state: %w", err)
			}
			*mv.all = append(*mv.all, buf)
		}
	}
	return mom, nil
}

// readMoments loads a checkpoint's moments, keeping this rank's parts when sharded.
func (t *Trainer) readMoments(dir string, params []draft.Param) error {
	if !t.sharded() {
		return checkpoint.ReadMoments(dir, params, checkpoint.Moments{M: t.opt.M, V: t.opt.V})
	}
	full := checkpoint.Moments{}
	for _, p := range params {
		full.M, full.V = append(full.M, make([]float32, len(*p.Data))), append(full.V, make([]float32, len(*p.Data)))
	}
	if err := checkpoint.ReadMoments(dir, params, full); err != nil {
		return err
	}
	for k := range params {
		lo, hi := mpi.Part(len(full.M[k]), t.comm.Rank(), t.comm.Size())
		copy(t.opt.M[k], full.M[k][lo:hi])
		copy(t.opt.V[k], full.V[k][lo:hi])
	}
	return nil
}
