package train

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/specforge/specforge/internal/checkpoint"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/mpi"
)

// Data parallelism: every rank holds the draft and trains on a disjoint slice of each global batch (the
// loader's batch is ranks x train.batch_size samples). Each rank weights its gradient by its share of the
// global batch's padded rows, so that the sum over ranks (an all-reduce before clipping) is the gradient a
// single process computes on the whole batch, up to the order of float32 summation. Rank 0 alone writes the
// metrics, checkpoints and the exported draft; every collective sits at a point all ranks reach in the same
// order.

// rank0 reports whether this process writes the run's files.
func (t *Trainer) rank0() bool { return t.comm.Rank() == 0 }

// share is this rank's contiguous slice of a global batch's sample indices.
func (t *Trainer) share(idx []int) []int {
	n, r := t.comm.Size(), t.comm.Rank()
	if n == 1 {
		return idx
	}
	return idx[r*len(idx)/n : (r+1)*len(idx)/n]
}

// weight is the share of this rank's batch b (nil: no samples) in the loss of the global batch: its B*T
// padded rows over those of all the ranks' samples padded to the longest. The KL's per-batch normalisation
// (1/(B*T)) is then that of the global batch. On one process it is exactly 1.
func (t *Trainer) weight(b *draft.Batch) (float64, error) {
	var bt [2]int
	if b != nil {
		bt = [2]int{b.B, b.T}
	}
	if t.comm.Size() == 1 {
		return 1, nil
	}
	var msg [16]byte
	binary.LittleEndian.PutUint64(msg[:], uint64(bt[0]))
	binary.LittleEndian.PutUint64(msg[8:], uint64(bt[1]))
	all, err := t.comm.Allgather(msg[:])
	if err != nil {
		return 0, fmt.Errorf("gather batch shapes: %w", err)
	}
	rows, longest := 0, 0
	for _, m := range all {
		rows += int(binary.LittleEndian.Uint64(m))
		longest = max(longest, int(binary.LittleEndian.Uint64(m[8:])))
	}
	if rows == 0 || longest == 0 {
		return 0, nil
	}
	return float64(bt[0]*bt[1]) / float64(rows*longest), nil
}

// sumRanks adds the ranks' step metrics and, with grads, sums their gradients (the rank-weighted ones of
// weight, so the sum is the global batch's gradient).
func (t *Trainer) sumRanks(rec *Record, correct, denom []int, grads [][]float32) error {
	if t.comm.Size() == 1 {
		return nil
	}
	K := len(rec.PLoss)
	v := make([]float64, 0, 4*K+2)
	v = append(append(v, rec.PLoss...), rec.Alpha...)
	for k := range K {
		v = append(v, float64(correct[k]), float64(denom[k]))
	}
	v = append(v, rec.Loss, float64(rec.Tokens))
	if err := t.comm.AllreduceF64(v, mpi.Sum); err != nil {
		return fmt.Errorf("sum the step's metrics over the ranks: %w", err)
	}
	copy(rec.PLoss, v[:K])
	copy(rec.Alpha, v[K:2*K])
	for k := range K {
		correct[k], denom[k] = int(v[2*K+2*k]), int(v[2*K+2*k+1])
	}
	rec.Loss, rec.Tokens = v[4*K], int(v[4*K+1])
	for _, g := range grads {
		if t.sharded() {
			break // update reduce-scatters them
		}
		if err := t.comm.AllreduceF32(g); err != nil {
			return fmt.Errorf("sum the gradients over the ranks: %w", err)
		}
	}
	return nil
}

// agreeStop makes the ranks take the same decision to stop and to save after a step: a signal or the
// save_minutes clock may reach one rank and not the others, and a rank that leaves the loop alone would
// leave the others waiting in the next step's collectives.
func (t *Trainer) agreeStop(stop, save bool) (bool, bool, error) {
	if t.comm.Size() == 1 {
		return stop, save, nil
	}
	v := []float64{b2f(stop), b2f(save)}
	if err := t.comm.AllreduceF64(v, mpi.Max); err != nil {
		return false, false, fmt.Errorf("agree on stopping: %w", err)
	}
	return v[0] > 0, v[1] > 0, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// shareOutcome tells every rank whether rank 0's err (what it did alone: a checkpoint) failed, so that
// all stop together.
func (t *Trainer) shareOutcome(what string, err error) error {
	if t.comm.Size() == 1 {
		return err
	}
	flag := []byte{0}
	if err != nil {
		flag[0] = 1
	}
	if berr := t.comm.Bcast(flag, 0); berr != nil {
		return fmt.Errorf("%s: %w", what, berr)
	}
	if err == nil && flag[0] == 1 {
		return fmt.Errorf("%s failed on rank 0 (its log says why)", what)
	}
	return err
}

// broadcastF64 gives every rank rank 0's x (what rank 0 alone measures: the acceptance length).
func (t *Trainer) broadcastF64(x float64) (float64, error) {
	if t.comm.Size() == 1 {
		return x, nil
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], math.Float64bits(x))
	if err := t.comm.Bcast(b[:], 0); err != nil {
		return 0, err
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b[:])), nil
}

// WorldSize is the number of ranks training together.
func (t *Trainer) WorldSize() int { return t.comm.Size() }

// Fingerprint is what every rank must agree on before training: the step and data position it starts
// from, the sizes of its splits and digests of its draft vocabulary and weights (a rank on other data or
// resumed from another checkpoint differs there).
func (t *Trainer) Fingerprint() map[string]string {
	c := &t.draft.Config
	h := sha256.New()
	buf := make([]byte, 0, 1<<18)
	for _, s := range t.draft.W.Slices(c) {
		for _, x := range s {
			if buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x)); len(buf) == cap(buf) {
				h.Write(buf)
				buf = buf[:0]
			}
		}
	}
	h.Write(buf)
	weights := hex.EncodeToString(h.Sum(nil))
	h.Reset()
	for _, id := range t.draft.Vocab.D2T {
		fmt.Fprintf(h, "%d,", id)
	}
	f := map[string]string{
		"start step (resumed checkpoint)":             fmt.Sprint(t.step),
		"data position (epoch, sample)":               fmt.Sprintf("%d, %d", t.loader.Epoch, t.loader.Pos),
		"training samples":                            fmt.Sprint(t.train.Len()),
		"draft vocabulary (sha256 of its target ids)": hex.EncodeToString(h.Sum(nil)),
		"draft weights (sha256)":                      weights,
	}
	if t.eval != nil {
		f["eval samples"] = fmt.Sprint(t.eval.Len())
	}
	return f
}

// openLogs opens the metrics log (rank 0: the others write nothing).
func (t *Trainer) openLogs() error {
	if !t.rank0() {
		return nil
	}
	if err := os.MkdirAll(t.cfg.OutputDir, 0o755); err != nil {
		return fmt.Errorf("create output folder: %w", err)
	}
	var err error
	if t.metrics, err = os.OpenFile(filepath.Join(t.cfg.OutputDir, "metrics.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
		return fmt.Errorf("open metrics log: %w", err)
	}
	return nil
}

// rates formats a throughput of all ranks together in unit: with several ranks, also per rank.
func (t *Trainer) rates(total float64, unit string) string {
	if n := t.comm.Size(); n > 1 {
		return fmt.Sprintf("%.0f %s on %d ranks, %.0f per rank", total, unit, n, total/float64(n))
	}
	return fmt.Sprintf("%.0f %s", total, unit)
}

// sameBatches checks that resuming from checkpoint dir (state st) sees the data in the order it was
// trained in: the same seed, and the same batch size on the same world size, or on another world size the
// same global batch.
func (t *Trainer) sameBatches(dir string, st *checkpoint.State) error {
	if st.Seed != t.cfg.Seed {
		return fmt.Errorf("resume: checkpoint %s was trained with seed %d, this run has %d", dir, st.Seed, t.cfg.Seed)
	}
	world := max(st.WorldSize, 1)
	if world == t.comm.Size() {
		if st.BatchSize != t.cfg.BatchSize {
			return fmt.Errorf("resume: checkpoint %s was trained with batch size %d, this run has %d", dir, st.BatchSize, t.cfg.BatchSize)
		}
		return nil
	}
	accum := st.GradAccum
	if accum == 0 {
		accum = t.cfg.GradAccum // a checkpoint from before grad_accum was recorded: the run's own
	}
	was, now := world*st.BatchSize*accum, t.comm.Size()*t.cfg.BatchSize*t.cfg.GradAccum
	if was != now {
		return fmt.Errorf("resume: checkpoint %s was trained on %d ranks x batch size %d x grad accum %d = %d samples per step, this run has %d x %d x %d = %d: set train.batch_size or train.grad_accum to keep the global batch",
			dir, world, st.BatchSize, accum, was, t.comm.Size(), t.cfg.BatchSize, t.cfg.GradAccum, now)
	}
	t.logf("resuming a run of %d ranks x batch size %d x grad accum %d on %d x %d x %d: the same %d samples per step from the same data position (with the same world size x batch size, the same updates up to float32 summation order)",
		world, st.BatchSize, accum, t.comm.Size(), t.cfg.BatchSize, t.cfg.GradAccum, now)
	return nil
}
