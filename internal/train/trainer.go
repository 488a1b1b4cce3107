package train

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/optim"
	"github.com/specforge/specforge/internal/progress"
)

// Trainer trains one draft.
type Trainer struct {
	Cfg   config.TrainConfig
	Draft *draft.Draft
	Train BatchSource
	Eval  BatchSource // nil: no evaluation
	// Log receives human-readable lines; nil discards them.
	Log io.Writer
	// AcceptanceLength, if set, measures the real acceptance length of the current draft (speculative
	// decoding of held-out prompts); evaluations report it.
	AcceptanceLength func(d *draft.Draft) (float64, error)

	Opt        *optim.AdamW
	Loader     *Loader
	Step       int // optimiser steps done
	TotalSteps int
	Best       float64 // best simulated acceptance length seen at a checkpoint
	BestStep   int

	grad    draft.Weights
	ws      draft.Workspace
	metrics *os.File
	History []Record
}

// Record is one line of the metrics log.
type Record struct {
	Step      int       `json:"step"`
	Split     string    `json:"split"`
	Epoch     int       `json:"epoch"`
	LR        float64   `json:"lr,omitempty"`
	Loss      float64   `json:"loss"`
	PLoss     []float64 `json:"-"` // logged as ploss_0 .. ploss_{K-1}
	Acc       []float64 `json:"-"` // logged as acc_0 .. acc_{K-1}
	SimAccLen float64   `json:"simulated_acceptance_length"`
	// AcceptanceLength is the measured tokens per target verification (eval records, online training).
	AcceptanceLength float64 `json:"acceptance_length,omitempty"`
	GradNorm         float64 `json:"grad_norm,omitempty"`
	Tokens           int     `json:"tokens"`
	TokensPerS       float64 `json:"tokens_per_s,omitempty"`
	ElapsedS         float64 `json:"elapsed_s"`
}

type recordFields Record

// MarshalJSON writes the per-step metrics as ploss_k and acc_k keys, as SpecForge names them.
func (r Record) MarshalJSON() ([]byte, error) {
	base, err := json.Marshal(recordFields(r))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(base, &m); err != nil {
		return nil, err
	}
	for k := range r.PLoss {
		m[fmt.Sprintf("ploss_%d", k)] = r.PLoss[k]
		m[fmt.Sprintf("acc_%d", k)] = r.Acc[k]
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Record) UnmarshalJSON(data []byte) error {
	if err := json.Unmarshal(data, (*recordFields)(r)); err != nil {
		return err
	}
	var m map[string]float64
	json.Unmarshal(data, &m) // non-numeric fields are skipped
	r.PLoss, r.Acc = nil, nil
	for k := 0; ; k++ {
		p, ok := m[fmt.Sprintf("ploss_%d", k)]
		a, ok2 := m[fmt.Sprintf("acc_%d", k)]
		if !ok || !ok2 {
			return nil
		}
		r.PLoss, r.Acc = append(r.PLoss, p), append(r.Acc, a)
	}
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
func NewTrainer(cfg config.TrainConfig, d *draft.Draft, trainSrc, evalSrc BatchSource, log io.Writer) *Trainer {
	t := &Trainer{Cfg: cfg, Draft: d, Train: trainSrc, Eval: evalSrc, Log: log}
	var sizes []int
	for _, s := range d.W.Slices(&d.Config) {
		sizes = append(sizes, len(s))
	}
	t.Opt = optim.NewAdamW(sizes, 0.9, 0.999, 1e-8, cfg.WeightDecay)
	t.Loader = NewLoader(trainSrc.Len(), cfg.BatchSize, cfg.Seed)
	t.TotalSteps = cfg.MaxSteps
	if t.TotalSteps <= 0 {
		t.TotalSteps = (cfg.Epochs*t.Loader.BatchesPerEpoch() + cfg.GradAccum - 1) / cfg.GradAccum
	}
	t.grad = draft.NewWeights(&d.Config)
	t.Best = math.Inf(-1)
	return t
}

func (t *Trainer) logf(format string, args ...any) {
	if t.Log != nil {
		fmt.Fprintf(t.Log, format+"\n", args...)
	}
}

// TrainStep runs one optimiser step (GradAccum batches) and returns its record.
func (t *Trainer) TrainStep() (*Record, error) {
	c := &t.Draft.Config
	K := t.Cfg.TTTLength
	t.grad.Zero(c)
	rec := &Record{Step: t.Step + 1, Split: "train", PLoss: make([]float64, K), Acc: make([]float64, K)}
	correct, denom := make([]int, K), make([]int, K)
	for a := 0; a < t.Cfg.GradAccum; a++ {
		idx := t.Loader.Next()
		if pf, ok := t.Train.(Prefetcher); ok {
			pf.Prefetch(t.Loader.Peek())
		}
		b, err := t.Train.Batch(idx)
		if err != nil {
			return nil, err
		}
		met, err := t.Draft.TTT(b, K, &t.grad, &t.ws, 1/float64(t.Cfg.GradAccum))
		if err != nil {
			return nil, err
		}
		for k := 0; k < K; k++ {
			rec.PLoss[k] += met.Loss[k] / float64(t.Cfg.GradAccum)
			correct[k] += met.Correct[k]
			denom[k] += met.Denom[k]
		}
		rec.Loss += met.Total / float64(t.Cfg.GradAccum)
		rec.Tokens += realTokens(b)
	}
	fillAcc(rec, correct, denom)
	grads := t.grad.Slices(c)
	rec.GradNorm, _ = optim.ClipGradNorm(grads, t.Cfg.MaxGradNorm)
	rec.LR = optim.CosineWarmup(t.Step, t.TotalSteps, t.Cfg.WarmupRatio, t.Cfg.LR)
	t.Opt.Update(t.Draft.W.Slices(c), grads, rec.LR)
	t.Step++
	rec.Epoch = t.Loader.Epoch
	return rec, nil
}

func fillAcc(rec *Record, correct, denom []int) {
	for k := range rec.Acc {
		rec.Acc[k] = float64(correct[k]) / math.Max(float64(denom[k]), 1e-6)
	}
	m := draft.Metrics{Acc: rec.Acc}
	rec.SimAccLen = m.SimulatedAcceptanceLength()
}

// Evaluate runs the TTT forward over the eval split (at most EvalBatches batches, in order).
func (t *Trainer) Evaluate() (*Record, error) {
	if t.Eval == nil || t.Eval.Len() == 0 {
		return nil, nil
	}
	K := t.Cfg.TTTLength
	rec := &Record{Step: t.Step, Split: "eval", Epoch: t.Loader.Epoch, PLoss: make([]float64, K), Acc: make([]float64, K)}
	correct, denom := make([]int, K), make([]int, K)
	batches := 0
	for lo := 0; lo < t.Eval.Len(); lo += t.Cfg.BatchSize {
		if t.Cfg.EvalBatches > 0 && batches == t.Cfg.EvalBatches {
			break
		}
		var idx []int
		for i := lo; i < min(lo+t.Cfg.BatchSize, t.Eval.Len()); i++ {
			idx = append(idx, i)
		}
		b, err := t.Eval.Batch(idx)
		if err != nil {
			return nil, err
		}
		met, err := t.Draft.TTT(b, K, nil, &t.ws, 1)
		if err != nil {
			return nil, err
		}
		for k := 0; k < K; k++ {
			rec.PLoss[k] += met.Loss[k]
			correct[k] += met.Correct[k]
			denom[k] += met.Denom[k]
		}
		rec.Loss += met.Total
		rec.Tokens += realTokens(b)
		batches++
	}
	for k := range rec.PLoss {
		rec.PLoss[k] /= float64(batches)
	}
	rec.Loss /= float64(batches)
	fillAcc(rec, correct, denom)
	if t.AcceptanceLength != nil {
		var err error
		if rec.AcceptanceLength, err = t.AcceptanceLength(t.Draft); err != nil {
			return nil, fmt.Errorf("evaluate acceptance length: %w", err)
		}
	}
	return rec, nil
}

// Run trains to TotalSteps, evaluating, logging and checkpointing at the configured intervals. SIGINT or
// SIGTERM stop it after the current step with a checkpoint, from which the run resumes exactly.
func (t *Trainer) Run() error {
	if err := os.MkdirAll(t.Cfg.OutputDir, 0o755); err != nil {
		return fmt.Errorf("create output folder: %w", err)
	}
	metricsPath := filepath.Join(t.Cfg.OutputDir, "metrics.jsonl")
	var err error
	if t.metrics, err = os.OpenFile(metricsPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
		return fmt.Errorf("open metrics log: %w", err)
	}
	defer t.metrics.Close()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(stop)

	var bar *progress.Reporter
	if t.Log != nil {
		bar = progress.New(int64(t.TotalSteps), "train")
		defer bar.Finish()
	}
	start := time.Now()
	startStep := t.Step
	var tokens int
	for t.Step < t.TotalSteps {
		stepStart := time.Now()
		rec, err := t.TrainStep()
		if err != nil {
			return err
		}
		tokens += rec.Tokens
		rec.TokensPerS = float64(rec.Tokens) / time.Since(stepStart).Seconds()
		rec.ElapsedS = time.Since(start).Seconds()
		if t.Cfg.LogInterval > 0 && t.Step%t.Cfg.LogInterval == 0 || t.Step == t.TotalSteps {
			if err := t.record(rec); err != nil {
				return err
			}
		}
		if bar != nil {
			rate := float64(tokens) / time.Since(start).Seconds()
			bar.Set(int64(t.Step), fmt.Sprintf("loss %.3f acc0 %.3f sim-len %.2f %.0f tok/s", rec.Loss, rec.Acc[0], rec.SimAccLen, rate))
		}
		last := t.Step == t.TotalSteps
		interrupted := false
		select {
		case <-stop:
			interrupted = true
		default:
		}
		if t.Cfg.EvalInterval > 0 && t.Step%t.Cfg.EvalInterval == 0 || last {
			if ev, err := t.Evaluate(); err != nil {
				return err
			} else if ev != nil {
				ev.ElapsedS = time.Since(start).Seconds()
				if err := t.record(ev); err != nil {
					return err
				}
				line := fmt.Sprintf("step %d eval: loss %.4f acc %s simulated acceptance length %.3f", t.Step, ev.Loss, fmtAcc(ev.Acc), ev.SimAccLen)
				if ev.AcceptanceLength > 0 {
					line += fmt.Sprintf(", measured acceptance length %.3f (tokens per target verification)", ev.AcceptanceLength)
				}
				t.logf("%s", line)
			}
		}
		if t.Cfg.SaveInterval > 0 && t.Step%t.Cfg.SaveInterval == 0 || last || interrupted {
			if err := t.Save(); err != nil {
				return err
			}
		}
		if interrupted {
			t.logf("interrupted at step %d; checkpoint saved, run again to resume", t.Step)
			return ErrInterrupted
		}
	}
	t.logf("trained %d steps in %.1f s (%.0f tokens/s)", t.Step-startStep, time.Since(start).Seconds(), float64(tokens)/time.Since(start).Seconds())
	return nil
}

// Prefetcher is a BatchSource that can start reading a batch before it is asked for.
type Prefetcher interface {
	Prefetch(idx []int)
}

// ErrInterrupted reports a run stopped by a signal after saving a checkpoint.
var ErrInterrupted = fmt.Errorf("training interrupted")

func (t *Trainer) record(rec *Record) error {
	t.History = append(t.History, *rec)
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := t.metrics.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	return nil
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
	for i := len(t.History) - 1; i >= 0; i-- {
		if t.Eval == nil || t.History[i].Split == "eval" {
			return &t.History[i]
		}
	}
	return nil
}
