package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/mpi"
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
	// Part of Parts > 1 writes only its share of the shards (--shard, for jobs launched independently); the
	// part that finishes last writes the merged manifest. Under mpirun or srun the ranks are the parts.
	Part, Parts int
}

// HiddenSplit is one shard set written by GenerateHidden.
type HiddenSplit struct {
	Name     string // train or eval
	Manifest *hidden.Manifest
	Seconds  float64
	// Pending is set when Manifest is this part's and other parts are still to finish.
	Pending bool
}

// HiddenRun is a gen-hidden run ready to start: the target is loaded and the data prepared.
type HiddenRun struct {
	cfg    *config.Run
	o      HiddenOptions
	target *model.Model
	aux    []int
	data   *Data
	log    io.Writer // progress
	comm   mpi.Comm
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
	comm, err := joinWorld(cfg)
	if err != nil {
		return nil, err
	}
	if n := comm.Size(); n > 1 {
		if o.Parts > 1 {
			return nil, fmt.Errorf("--shard %d/%d under mpirun or srun: the %d ranks already split the work; use one or the other", o.Part, o.Parts, n)
		}
		o.Part, o.Parts = comm.Rank(), n
		if comm.Rank() != 0 {
			log = io.Discard // rank 0 reports for all
		}
	}
	if o.Parts > 1 && (o.Part < 0 || o.Part >= o.Parts) {
		return nil, fmt.Errorf("--shard %d/%d: want i/N with 0 <= i < N", o.Part, o.Parts)
	}
	target, dc, _, p, err := loadOnline(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	if comm.Size() > 1 {
		fields, err := settings(cfg)
		if err != nil {
			return nil, err
		}
		fields["--out"], fields["--dtype"] = o.Out, o.DType.ShortName()
		fields["--samples-per-shard"], fields["--batch"] = fmt.Sprint(o.SamplesPerShard), fmt.Sprint(o.Batch)
		fields["prepared data (cache key)"] = p.Key
		fields["aux layers"] = fmt.Sprint(dc.AuxLayers)
		prev := comm.SetTimeout(0) // the ranks load the target and data at their own pace
		err = mpi.Agree(comm, fields)
		comm.SetTimeout(prev)
		if err != nil {
			return nil, err
		}
	}
	return &HiddenRun{cfg: cfg, o: o, target: target, aux: dc.AuxLayers, data: p, log: log, comm: comm}, nil
}

// Rank is this process's rank under mpirun or srun (0 alone reports).
func (r *HiddenRun) Rank() int { return r.comm.Rank() }

// Generate runs the target once over the prepared data and stores, per split, what offline training reads:
// the aux hidden states and the final hidden states. done is called after each split. Cancelling ctx stops
// after the current shard, and the next run resumes there; the error then says so.
func (r *HiddenRun) Generate(ctx context.Context, done func(HiddenSplit)) error {
	cfg, o, target, p := r.cfg, r.o, r.target, r.data
	lockDir := o.Out
	if o.Parts > 1 { // each part holds its own share of the folder
		lockDir = filepath.Join(o.Out, ".parts", fmt.Sprintf("%d-of-%d", o.Part, o.Parts))
	}
	lock, err := runlock.Acquire(lockDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	splits := []struct{ name, path string }{{"train", p.TrainPath()}}
	if p.Eval.Samples > 0 {
		splits = append(splits, struct{ name, path string }{"eval", p.EvalPath()})
	}
	for _, split := range splits {
		// Holding the folder, its temporary shards are a killed run's (a part leaves them to Merge: the other
		// parts' may be live).
		if o.Parts <= 1 {
			if _, err := atomicfile.RemoveStale(filepath.Join(o.Out, split.name)); err != nil {
				return err
			}
		}
		data, err := dataset.OpenTokenized(split.path)
		if err != nil {
			return err
		}
		label, total := "gen-hidden "+split.name, data.Len()
		if o.Parts > 1 {
			label += fmt.Sprintf(" part %d/%d", o.Part, o.Parts)
			total = hidden.PartSamples(data.Len(), o.SamplesPerShard, o.Part, o.Parts)
		}
		bar := progress.For(r.log, int64(total), label)
		start := time.Now()
		m, err := hidden.Generate(hidden.GenOptions{
			Target: target, TargetPath: cfg.Target.Path, AuxLayers: r.aux, Data: data, DataPath: split.path,
			DataKey: p.Key, Out: filepath.Join(o.Out, split.name), DType: o.DType, SamplesPerShard: o.SamplesPerShard, Batch: o.Batch,
			Stop: func() bool { return ctx.Err() != nil }, Progress: func(done, total int) { bar.Set(int64(done), "") },
			Part: o.Part, Parts: o.Parts,
		})
		bar.Finish()
		data.Close()
		if err != nil {
			return err
		}
		if !m.Complete {
			done(HiddenSplit{Name: split.name, Manifest: m, Seconds: time.Since(start).Seconds(), Pending: o.Parts > 1})
			return fmt.Errorf("interrupted after %d shards; run the same command again to resume", len(m.Shards))
		}
		merged, err := r.merge(filepath.Join(o.Out, split.name))
		if err != nil {
			return err
		}
		if merged != nil {
			m = merged
		}
		done(HiddenSplit{Name: split.name, Manifest: m, Seconds: time.Since(start).Seconds(), Pending: merged == nil && o.Parts > 1})
	}
	return nil
}

// merge writes the manifest of a split generation's folder dir once every part is done (nil while some
// are not). Under MPI the ranks wait for each other and rank 0 merges.
func (r *HiddenRun) merge(dir string) (*hidden.Manifest, error) {
	if r.o.Parts <= 1 {
		return nil, nil
	}
	if r.comm.Size() > 1 {
		// The ranks finish their parts at their own pace: no watchdog on this wait.
		prev := r.comm.SetTimeout(0)
		_, err := r.comm.Allgather(nil)
		r.comm.SetTimeout(prev)
		if err != nil {
			return nil, fmt.Errorf("wait for the other ranks' shards: %w", err)
		}
		var m *hidden.Manifest
		if r.comm.Rank() == 0 {
			if m, err = hidden.Merge(dir, r.o.Parts); err == nil && m == nil {
				err = fmt.Errorf("%s: a rank's part is missing or incomplete after all ranks finished", dir)
			}
		}
		return m, errors.Join(err, r.comm.Bcast([]byte{0}, 0)) // the others wait for the manifest
	}
	return hidden.Merge(dir, r.o.Parts)
}
