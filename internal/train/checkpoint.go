package train

import (
	"fmt"
	"math"
	"path/filepath"

	"github.com/specforge/specforge/internal/checkpoint"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/export"
	"github.com/specforge/specforge/internal/safetensors"
)

// Save writes a checkpoint of the current state and removes old ones, keeping the last KeepCheckpoints and
// the best by simulated acceptance length. Rank 0 writes it; every rank returns its outcome.
func (t *Trainer) Save() error {
	mom, err := t.fullMoments()
	if err == nil && t.rank0() {
		err = t.save(mom)
	}
	return t.shareOutcome(fmt.Sprintf("save the checkpoint of step %d", t.step), err)
}

func (t *Trainer) save(mom checkpoint.Moments) error {
	// Only a metric measured at this very step ranks the checkpoint: one from an earlier evaluation belongs
	// to other weights.
	if r := t.lastMetric(); r != nil && r.Step == t.step && (r.SimAccLen > t.best || t.bestStep == 0) {
		t.best, t.bestStep = r.SimAccLen, t.step
	}
	d := t.draft
	st := checkpoint.State{Step: t.step, TotalSteps: t.totalSteps, LoaderEpoch: t.loader.Epoch, LoaderPos: t.loader.Pos,
		OptimizerStep: t.opt.Step, Best: finite(t.best), BestStep: t.bestStep, Seed: t.cfg.Seed, BatchSize: t.cfg.BatchSize,
		WorldSize: t.comm.Size(), GradAccum: t.cfg.GradAccum, Draft: &d.Config}
	dir, err := checkpoint.Save(t.cfg.OutputDir, st, export.Tensors(d, export.SGLang, safetensors.F32), d.W.Params(&d.Config), mom)
	if err != nil {
		return err
	}
	t.logf("saved checkpoint %s", dir)
	return checkpoint.Prune(t.cfg.OutputDir, t.cfg.KeepCheckpoints, t.bestStep)
}

func finite(x float64) float64 {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return 0
	}
	return x
}

// ResumeLatest resumes from the newest checkpoint of runDir that loads, saying which it skipped: a
// checkpoint damaged after it was published (a bad disk, a hand-edited file) costs the steps since the one
// before, not the run. A run folder without checkpoints is a fresh start.
func (t *Trainer) ResumeLatest(runDir string) error {
	all, err := checkpoint.List(runDir)
	if err != nil {
		return err
	}
	var first error
	for i := len(all) - 1; i >= 0; i-- {
		err := t.Resume(all[i])
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
		if i > 0 {
			t.logf("checkpoint %s does not load (%v); trying the one before", all[i], err)
		}
	}
	return first
}

// Resume restores the trainer from a checkpoint folder: weights, optimiser moments, step, data position and
// best metric. The run's seed must match the checkpoint's, or the data order would differ, and so must its
// batch size, unless the world size changed: then its global batch (world size x batch size x grad accum)
// must be the checkpoint's, and training goes on from the same sample of the data.
func (t *Trainer) Resume(dir string) error {
	st, err := checkpoint.ReadState(dir)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if st.LoaderPos > t.loader.n {
		return fmt.Errorf("resume: checkpoint %s is at sample %d of an epoch of %d: it belongs to other data", dir, st.LoaderPos, t.loader.n)
	}
	if err := t.sameBatches(dir, st); err != nil {
		return err
	}
	c := &t.draft.Config
	if st.Draft.HiddenSize != c.HiddenSize || st.Draft.DraftVocabSize != c.DraftVocabSize || st.Draft.IntermediateSize != c.IntermediateSize ||
		st.Draft.Layers() != c.Layers() || st.Draft.FCNorm != c.FCNorm || st.Draft.NormOutput != c.NormOutput {
		return fmt.Errorf("resume: checkpoint %s holds a draft of another shape", dir)
	}
	f, err := checkpoint.OpenWeights(dir)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	w, err := draft.LoadWeights(c, f)
	f.Close()
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if err := t.readMoments(dir, w.Params(c)); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	t.draft.W = w
	t.opt.Step = st.OptimizerStep
	t.step, t.loader.Epoch, t.loader.Pos = st.Step, st.LoaderEpoch, st.LoaderPos
	t.best, t.bestStep = st.Best, st.BestStep
	if st.TotalSteps != t.totalSteps {
		t.logf("warning: the checkpoint planned %d steps, this run plans %d: the learning-rate schedule changes", st.TotalSteps, t.totalSteps)
	}
	// Metrics logged after the checkpoint belong to steps that will run again: drop them.
	metricsPath := filepath.Join(t.cfg.OutputDir, "metrics.jsonl")
	t.history = readHistory(metricsPath, st.Step)
	if !t.rank0() {
		return nil
	}
	if err := writeHistory(metricsPath, t.history); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	t.logf("resumed from %s at step %d", dir, st.Step)
	return nil
}
