package pipeline

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/progress"
	"github.com/specforge/specforge/internal/runlock"
	"github.com/specforge/specforge/internal/tensor"
)

// HiddenOptions say where and how gen-hidden stores the hidden states.
type HiddenOptions struct {
	Out             string       // the train/ and eval/ shard sets go below it
	DType           tensor.DType // BF16, F16 or F32
	SamplesPerShard int
	Batch           int // samples per target forward
}

// HiddenSplit is one shard set written by GenerateHidden.
type HiddenSplit struct {
	Name     string // train or eval
	Manifest *hidden.Manifest
	Seconds  float64
}

// HiddenRun is a gen-hidden run ready to start: the target is loaded and the data prepared.
type HiddenRun struct {
	cfg    *config.Run
	o      HiddenOptions
	target *model.Model
	aux    []int
	data   *Data
	log    io.Writer // progress
}

// NewHidden loads the target, resolves the aux layers the draft would read and prepares the data (regenerated
// first when asked), reporting on log. Cancelling ctx stops the regeneration with an error wrapping ctx.Err().
func NewHidden(ctx context.Context, cfg *config.Run, o HiddenOptions, log io.Writer) (*HiddenRun, error) {
	if o.SamplesPerShard <= 0 || o.Batch <= 0 {
		return nil, fmt.Errorf("--samples-per-shard and --batch must be positive")
	}
	if cfg.Target.Path == "" {
		return nil, fmt.Errorf("no target: set target.path")
	}
	target, dc, _, p, err := loadOnline(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	return &HiddenRun{cfg: cfg, o: o, target: target, aux: dc.AuxLayers, data: p, log: log}, nil
}

// Generate runs the target once over the prepared data and stores, per split, what offline training reads:
// the aux hidden states and the final hidden states. done is called after each split. Cancelling ctx stops
// after the current shard, and the next run resumes there; the error then says so.
func (r *HiddenRun) Generate(ctx context.Context, done func(HiddenSplit)) error {
	cfg, o, target, p := r.cfg, r.o, r.target, r.data
	lock, err := runlock.Acquire(o.Out)
	if err != nil {
		return err
	}
	defer lock.Release()
	splits := []struct{ name, path string }{{"train", p.TrainPath()}}
	if p.Eval.Samples > 0 {
		splits = append(splits, struct{ name, path string }{"eval", p.EvalPath()})
	}
	for _, split := range splits {
		// Holding the folder, its temporary shards are a killed run's.
		if _, err := atomicfile.RemoveStale(filepath.Join(o.Out, split.name)); err != nil {
			return err
		}
		data, err := dataset.OpenTokenized(split.path)
		if err != nil {
			return err
		}
		bar := progress.For(r.log, int64(data.Len()), "gen-hidden "+split.name)
		start := time.Now()
		m, err := hidden.Generate(hidden.GenOptions{
			Target: target, TargetPath: cfg.Target.Path, AuxLayers: r.aux, Data: data, DataPath: split.path,
			DataKey: p.Key, Out: filepath.Join(o.Out, split.name), DType: o.DType, SamplesPerShard: o.SamplesPerShard, Batch: o.Batch,
			Stop: func() bool { return ctx.Err() != nil }, Progress: func(done, total int) { bar.Set(int64(done), "") },
		})
		bar.Finish()
		data.Close()
		if err != nil {
			return err
		}
		done(HiddenSplit{Name: split.name, Manifest: m, Seconds: time.Since(start).Seconds()})
		if !m.Complete {
			return fmt.Errorf("interrupted after %d shards; run the same command again to resume", len(m.Shards))
		}
	}
	return nil
}
