package train

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/export"
	"github.com/specforge/specforge/internal/mpi"
	"github.com/specforge/specforge/internal/optim"
	"github.com/specforge/specforge/internal/progress"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/tensor"
	"github.com/specforge/specforge/internal/tensorboard"
)

// Options is what a Trainer is built from.
type Options struct {
	Config config.TrainConfig
	Draft  *draft.Draft
	Train  BatchSource
	Eval   BatchSource // nil: no evaluation
	// PackLength, when positive, packs every batch the sources yield into rows of at most that many tokens
	// (draft.Pack; data.packing, at data.max_length). The samples of a step stay those of the loader.
	PackLength int
	// Log receives human-readable lines and the progress bar; nil discards them.
	Log io.Writer
	// AcceptanceLength, if set, measures the real acceptance length of the current draft (speculative
	// decoding of held-out prompts); evaluations report it.
	AcceptanceLength func(d *draft.Draft) (float64, error)
	// Comm is the data-parallel world this trainer is one rank of (parallel.go); nil is a single process.
	Comm mpi.Comm
}

// Trainer trains one draft. Its state changes only through its methods, so that a checkpoint captures all of
// it.
type Trainer struct {
	cfg        config.TrainConfig
	draft      *draft.Draft
	train      BatchSource
	eval       BatchSource
	packLength int
	log        io.Writer
	acceptance func(d *draft.Draft) (float64, error)
	comm       mpi.Comm

	opt        *optim.AdamW
	loader     *Loader
	step       int // optimiser steps done
	totalSteps int
	best       float64 // best simulated acceptance length seen at a checkpoint
	bestStep   int

	grad    draft.Weights
	scratch []float32 // a rank's part of a gradient (zero.go)
	ws      draft.Workspace
	metrics *os.File
	tb      *tensorboard.Writer // nil unless train.report_to lists tensorboard
	history []Record
}

// realTokens counts a batch's tokens, padding left out.
func realTokens(b *draft.Batch) int {
	n := 0
	for _, m := range b.AttentionMask {
		if m {
			n++
		}
	}
	return n
}

// NewTrainer prepares a run with a new optimiser (Resume continues from a checkpoint).
func NewTrainer(o Options) *Trainer {
	cfg, d := o.Config, o.Draft
	t := &Trainer{cfg: cfg, draft: d, train: o.Train, eval: o.Eval, packLength: o.PackLength, log: o.Log, acceptance: o.AcceptanceLength, comm: o.Comm}
	if t.comm == nil {
		t.comm = mpi.Single{}
	}
	var sizes []int
	for _, s := range d.W.Slices(&d.Config) {
		sizes = append(sizes, len(s))
	}
	t.opt = optim.NewAdamWOn(d.Backend(), t.optimizerParts(sizes), 0.9, 0.999, 1e-8, cfg.WeightDecay)
	t.loader = NewLoader(o.Train.Len(), t.comm.Size()*cfg.BatchSize, cfg.Seed) // the global batch
	t.totalSteps = cfg.MaxSteps
	if t.totalSteps <= 0 {
		t.totalSteps = (cfg.Epochs*t.loader.BatchesPerEpoch() + cfg.GradAccum - 1) / cfg.GradAccum
	}
	t.grad = draft.NewWeights(&d.Config)
	t.ws.Precision = Precision(cfg.Precision)
	t.ws.Loss = draft.Loss{Kind: draft.LossKind(cfg.Loss), KLScale: cfg.LKKLScale, KLDecay: cfg.LKKLDecay}
	t.best = math.Inf(-1)
	return t
}

// Precision maps train.precision ("bf16", "f32"; empty means f32) to the dtype of the draft's products.
func Precision(name string) tensor.DType {
	if name == "bf16" {
		return tensor.BF16
	}
	return tensor.F32
}

// Step is the number of optimiser steps done.
func (t *Trainer) Step() int { return t.step }

// TotalSteps is the number of optimiser steps the run trains to.
func (t *Trainer) TotalSteps() int { return t.totalSteps }

// History is the metrics logged so far (with a resumed run's earlier ones); the caller must not modify it.
func (t *Trainer) History() []Record { return t.history }

func (t *Trainer) logf(format string, args ...any) {
	if t.log != nil {
		fmt.Fprintf(t.log, format+"\n", args...)
	}
}

// TrainStep runs one optimiser step (GradAccum batches) and returns its record.
func (t *Trainer) TrainStep() (*Record, error) {
	c := &t.draft.Config
	K := t.cfg.TTTLength
	t.grad.Zero(c)
	rec := &Record{Step: t.step + 1, Split: "train", PLoss: make([]float64, K), Acc: make([]float64, K), Alpha: make([]float64, K)}
	correct, denom := make([]int, K), make([]int, K)
	for a := 0; a < t.cfg.GradAccum; a++ {
		idx := t.share(t.loader.Next())
		if pf, ok := t.train.(Prefetcher); ok {
			pf.Prefetch(t.share(t.loader.Peek()))
		}
		var b *draft.Batch
		var err error
		if len(idx) > 0 { // a rank's slice of an epoch's short last batch may be empty
			if b, err = t.batch(t.train, idx); err != nil {
				return nil, err
			}
		}
		w, err := t.weight(b)
		if err != nil {
			return nil, err
		}
		if b == nil {
			continue
		}
		met, err := t.draft.TTT(b, K, &t.grad, &t.ws, w/float64(t.cfg.GradAccum))
		if err != nil {
			return nil, err
		}
		for k := 0; k < K; k++ {
			rec.PLoss[k] += w * met.Loss[k] / float64(t.cfg.GradAccum)
			rec.Alpha[k] += w * met.Alpha[k] / float64(t.cfg.GradAccum)
			correct[k] += met.Correct[k]
			denom[k] += met.Denom[k]
		}
		rec.Loss += w * met.Total / float64(t.cfg.GradAccum)
		rec.Tokens += realTokens(b)
	}
	grads := t.grad.Slices(c)
	if err := t.sumRanks(rec, correct, denom, grads); err != nil {
		return nil, err
	}
	fillAcc(rec, correct, denom)
	rec.LR = optim.CosineWarmup(t.step, t.totalSteps, t.cfg.WarmupRatio, t.cfg.LR)
	var err error
	if rec.GradNorm, err = t.update(grads, rec.LR); err != nil {
		return nil, err
	}
	t.step++
	rec.Epoch = t.loader.Epoch
	return rec, nil
}

func fillAcc(rec *Record, correct, denom []int) {
	for k := range rec.Acc {
		rec.Acc[k] = float64(correct[k]) / math.Max(float64(denom[k]), 1e-6)
	}
	m := draft.Metrics{Acc: rec.Acc}
	rec.SimAccLen = m.SimulatedAcceptanceLength()
}

// batch is the batch of samples idx from src, packed when the run packs.
func (t *Trainer) batch(src BatchSource, idx []int) (*draft.Batch, error) {
	b, err := src.Batch(idx)
	if err != nil || t.packLength <= 0 {
		return b, err
	}
	return draft.Pack(b, t.packLength)
}

// Evaluate runs the TTT forward over the eval split (at most EvalBatches batches, in order).
func (t *Trainer) Evaluate() (*Record, error) {
	if t.eval == nil || t.eval.Len() == 0 {
		return nil, nil
	}
	K := t.cfg.TTTLength
	rec := &Record{Step: t.step, Split: "eval", Epoch: t.loader.Epoch, PLoss: make([]float64, K), Acc: make([]float64, K), Alpha: make([]float64, K)}
	correct, denom := make([]int, K), make([]int, K)
	batches := 0
	size := t.comm.Size() * t.cfg.BatchSize // the global batch, each rank its slice
	for lo := 0; lo < t.eval.Len(); lo += size {
		if t.cfg.EvalBatches > 0 && batches == t.cfg.EvalBatches {
			break
		}
		var idx []int
		for i := lo; i < min(lo+size, t.eval.Len()); i++ {
			idx = append(idx, i)
		}
		batches++
		var b *draft.Batch
		var err error
		if idx = t.share(idx); len(idx) > 0 {
			if b, err = t.batch(t.eval, idx); err != nil {
				return nil, err
			}
		}
		w, err := t.weight(b)
		if err != nil {
			return nil, err
		}
		if b == nil {
			continue
		}
		met, err := t.draft.TTT(b, K, nil, &t.ws, 1)
		if err != nil {
			return nil, err
		}
		for k := 0; k < K; k++ {
			rec.PLoss[k] += w * met.Loss[k]
			rec.Alpha[k] += w * met.Alpha[k]
			correct[k] += met.Correct[k]
			denom[k] += met.Denom[k]
		}
		rec.Loss += w * met.Total
		rec.Tokens += realTokens(b)
	}
	if err := t.sumRanks(rec, correct, denom, nil); err != nil {
		return nil, err
	}
	for k := range rec.PLoss {
		rec.PLoss[k] /= float64(batches)
		rec.Alpha[k] /= float64(batches)
	}
	rec.Loss /= float64(batches)
	fillAcc(rec, correct, denom)
	if t.acceptance != nil {
		var err error
		if t.rank0() { // the ranks' drafts are the same
			rec.AcceptanceLength, err = t.acceptance(t.draft)
		}
		if err = t.shareOutcome("evaluate acceptance length", err); err != nil {
			return nil, fmt.Errorf("evaluate acceptance length: %w", err)
		}
		if rec.AcceptanceLength, err = t.broadcastF64(rec.AcceptanceLength); err != nil {
			return nil, fmt.Errorf("evaluate acceptance length: %w", err)
		}
	}
	return rec, nil
}

// Run trains to TotalSteps, evaluating, logging and checkpointing at the configured intervals. Cancelling ctx
// stops it after the current step with a checkpoint, from which the run resumes exactly, and Run returns
// ErrInterrupted.
func (t *Trainer) Run(ctx context.Context) error {
	if err := t.openLogs(); err != nil {
		return err
	}
	defer t.metrics.Close()
	var err error
	if t.cfg.ReportTo.Has("tensorboard") && t.rank0() {
		// A resumed run writes a new file whose first event tells TensorBoard to drop what an earlier file
		// logged after the checkpoint (metrics.jsonl is rewritten up to it the same way).
		if t.tb, err = tensorboard.Create(filepath.Join(t.cfg.OutputDir, "tensorboard"), t.step); err != nil {
			return err
		}
		defer func() { t.tb.Close(); t.tb = nil }()
	}

	var bar *progress.Reporter
	if t.log != nil {
		bar = progress.For(t.log, int64(t.totalSteps), "train")
		defer bar.Finish()
	}
	t.logf("draft products in %s on %s", t.ws.Precision, t.draft.Backend().Name())
	start := time.Now()
	startStep := t.step
	lastSave := start
	saveInterval := t.cfg.SaveInterval
	if saveInterval == 0 {
		saveInterval = max(1, (t.totalSteps+9)/10)
	}
	var tokens int
	for t.step < t.totalSteps {
		stepStart := time.Now()
		rec, err := t.TrainStep()
		if err != nil {
			return err
		}
		tokens += rec.Tokens
		rec.TokensPerS = float64(rec.Tokens) / time.Since(stepStart).Seconds()
		rec.ElapsedS = time.Since(start).Seconds()
		if t.cfg.LogInterval > 0 && t.step%t.cfg.LogInterval == 0 || t.step == t.totalSteps {
			if err := t.record(rec); err != nil {
				return err
			}
		}
		if bar != nil {
			rate := float64(tokens) / time.Since(start).Seconds()
			bar.Set(int64(t.step), fmt.Sprintf("loss %.3f acc0 %.3f sim-len %.2f %s", rec.Loss, rec.Acc[0], rec.SimAccLen, t.rates(rate, "tok/s")))
		}
		last := t.step == t.totalSteps
		interrupted, saveDue, err := t.agreeStop(ctx.Err() != nil, t.cfg.SaveMinutes > 0 && time.Since(lastSave).Minutes() >= t.cfg.SaveMinutes)
		if err != nil {
			return err
		}
		if t.cfg.EvalInterval > 0 && t.step%t.cfg.EvalInterval == 0 || last {
			if ev, err := t.Evaluate(); err != nil {
				return err
			} else if ev != nil {
				ev.ElapsedS = time.Since(start).Seconds()
				if err := t.record(ev); err != nil {
					return err
				}
				line := fmt.Sprintf("step %d eval: loss %.4f acc %s simulated acceptance length %.3f", t.step, ev.Loss, fmtAcc(ev.Acc), ev.SimAccLen)
				if ev.AcceptanceLength > 0 {
					line += fmt.Sprintf(", measured acceptance length %.3f (tokens per target verification)", ev.AcceptanceLength)
				}
				t.logf("%s", line)
			}
		}
		if t.step%saveInterval == 0 || saveDue || last || interrupted {
			if err := t.Save(); err != nil {
				err = fmt.Errorf("save the checkpoint of step %d (the run stops; the checkpoints saved before are kept): %w", t.step, err)
				if t.cfg.RescueDir != "" && t.rank0() { // in float32: the weights exactly
					if rerr := export.Write(t.cfg.RescueDir, t.draft, export.Served(t.draft), export.Options{DType: safetensors.F32}); rerr != nil {
						return fmt.Errorf("%w; writing the draft to train.rescue_dir failed too: %v", err, rerr)
					}
					return fmt.Errorf("%w; the draft of step %d is in %s (train.rescue_dir)", err, t.step, t.cfg.RescueDir)
				}
				return err
			}
			lastSave = time.Now()
		}
		if interrupted {
			t.logf("interrupted at step %d; checkpoint saved, run again to resume", t.step)
			return ErrInterrupted
		}
	}
	t.logf("trained %d steps in %.1f s (%s)", t.step-startStep, time.Since(start).Seconds(), t.rates(float64(tokens)/time.Since(start).Seconds(), "tokens/s"))
	return nil
}

// Prefetcher is a BatchSource that can start reading a batch before it is asked for.
type Prefetcher interface {
	Prefetch(idx []int)
}

// ErrInterrupted reports a run stopped by its context after saving a checkpoint.
var ErrInterrupted = fmt.Errorf("training interrupted")

func (t *Trainer) record(rec *Record) error {
	t.history = append(t.history, *rec)
	if !t.rank0() {
		return nil
	}
	if err := appendRecord(t.metrics, rec); err != nil {
		return err
	}
	if t.tb == nil {
		return nil
	}
	scalars, err := rec.scalars()
	if err != nil {
		return err
	}
	return t.tb.Scalars(rec.Step, scalars)
}

func fmtAcc(acc []float64) string {
	s := "["
	for i, a := range acc {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%.3f", a)
	}
	return s + "]"
}

// LastSimAccLen is the simulated acceptance length of the latest evaluation (or, without eval data, of the
// latest training step).
func (t *Trainer) LastSimAccLen() float64 {
	if r := t.lastMetric(); r != nil {
		return r.SimAccLen
	}
	return 0
}

// lastMetric is the latest record that ranks checkpoints: the latest evaluation, or without eval data the
// latest training record.
func (t *Trainer) lastMetric() *Record {
	for i := len(t.history) - 1; i >= 0; i-- {
		if t.eval == nil || t.history[i].Split == "eval" {
			return &t.history[i]
		}
	}
	return nil
}
