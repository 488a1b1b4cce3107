package scalebench

import (
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/memstat"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/pipeline"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/tensor"
	"github.com/specforge/specforge/internal/train"
	"github.com/specforge/specforge/internal/vocab"
)

// ScaleOptions configure Scale. The folder gets the checkpoint (target/), the random token ids
// (data.safetensors) and gen-hidden's shards (hidden/).
type ScaleOptions struct {
	Dir        string            `json:"dir"`
	Shape      Shape             `json:"shape"`
	DType      safetensors.DType `json:"dtype"`
	ShardBytes int64             `json:"shard_bytes"`
	Seed       uint64            `json:"seed"`
	Tokens     int               `json:"tokens"`      // random token ids, in sequences of Seq
	Seq        int               `json:"seq"`         // tokens per sequence
	GenBatch   int               `json:"gen_batch"`   // sequences per target forward in gen-hidden
	TrainBatch int               `json:"train_batch"` // sequences in the training step
	DraftVocab int               `json:"draft_vocab"`
	Precision  string            `json:"precision"` // of the draft's products (train.precision)
}

// DefaultScaleOptions are the 8B run: 2,048 tokens in sequences of 512, bf16 shards of about 5 GB.
func DefaultScaleOptions() ScaleOptions {
	return ScaleOptions{Shape: Llama8B(), DType: safetensors.BF16, ShardBytes: 5e9, Seed: 1, Tokens: 2048, Seq: 512,
		GenBatch: 4, TrainBatch: 1, DraftVocab: 32000, Precision: config.Defaults().Train.Precision}
}

func (o *ScaleOptions) targetDir() string { return filepath.Join(o.Dir, "target") }
func (o *ScaleOptions) dataPath() string  { return filepath.Join(o.Dir, "data.safetensors") }
func (o *ScaleOptions) hiddenDir() string { return filepath.Join(o.Dir, "hidden") }

func (o *ScaleOptions) validate() error {
	if o.Tokens <= 0 || o.Seq <= 0 || o.GenBatch <= 0 || o.TrainBatch <= 0 || o.DraftVocab <= 0 {
		return fmt.Errorf("tokens (%d), seq (%d), gen batch (%d), train batch (%d) and draft vocab (%d) must be positive",
			o.Tokens, o.Seq, o.GenBatch, o.TrainBatch, o.DraftVocab)
	}
	if o.TrainBatch > o.sequences() {
		return fmt.Errorf("train batch %d is more than the %d sequences of %d tokens", o.TrainBatch, o.sequences(), o.Tokens)
	}
	return o.Shape.Validate()
}

func (o *ScaleOptions) sequences() int { return (o.Tokens + o.Seq - 1) / o.Seq }

// ScaleReport is what Scale measured.
type ScaleReport struct {
	Options    ScaleOptions    `json:"options"`
	Params     int64           `json:"params"`
	Isolated   bool            `json:"isolated"` // every phase in a fresh process
	Checkpoint *CheckpointInfo `json:"checkpoint"`
	// DataSeconds is the time taken to write the random token ids.
	DataSeconds float64 `json:"data_seconds"`
	Load        *Result `json:"load"`
	GenHidden   *Result `json:"gen_hidden"`
	Train       *Result `json:"train"`
	// PeakRSSMiB is the largest peak of the phases (the writing process's own is apart, in WritePeakRSSMiB).
	PeakRSSMiB      float64 `json:"peak_rss_mib"`
	WritePeakRSSMiB float64 `json:"write_peak_rss_mib"`
}

// Scale writes the random checkpoint and the token ids in this process, then runs the load, gen-hidden and
// train phases with run, reporting each as it ends on log.
func Scale(o ScaleOptions, run Runner, log io.Writer) (*ScaleReport, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	rep := &ScaleReport{Options: o, Params: o.Shape.Params(), Isolated: run.Isolated}
	fmt.Fprintf(log, "writing a random %s checkpoint of %.2fB parameters to %s\n", o.DType, float64(rep.Params)/1e9, o.targetDir())
	var err error
	rep.Checkpoint, err = WriteCheckpoint(CheckpointOptions{Dir: o.targetDir(), Shape: o.Shape, DType: o.DType, ShardBytes: o.ShardBytes, Seed: o.Seed})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "  %d shards, %.2f GB in %.1f s\n", len(rep.Checkpoint.Shards), float64(rep.Checkpoint.Bytes)/1e9, rep.Checkpoint.Seconds)
	start := time.Now()
	if err := writeTokens(&o); err != nil {
		return nil, err
	}
	rep.DataSeconds = time.Since(start).Seconds()
	rep.WritePeakRSSMiB = memstat.PeakRSSMiB()
	for _, ph := range []struct {
		kind string
		dst  **Result
	}{{JobLoad, &rep.Load}, {JobGenHidden, &rep.GenHidden}, {JobTrain, &rep.Train}} {
		r, err := run.Run(Job{Kind: ph.kind, Scale: &o})
		if err != nil {
			return nil, err
		}
		*ph.dst = r
		rep.PeakRSSMiB = max(rep.PeakRSSMiB, r.PeakRSSMiB)
		fmt.Fprintf(log, "  %s: %.1f s, peak RSS %.0f MiB\n", ph.kind, r.Seconds, r.PeakRSSMiB)
	}
	return rep, nil
}

// writeTokens stores the random token ids as a tokenized dataset, every token carrying loss.
func writeTokens(o *ScaleOptions) error {
	r := rand.New(rand.NewPCG(o.Seed, 1))
	var samples []*dataset.Tokenized
	for left := o.Tokens; left > 0; left -= o.Seq {
		n := min(left, o.Seq)
		s := &dataset.Tokenized{IDs: make([]int32, n), LossMask: make([]uint8, n)}
		for i := range s.IDs {
			s.IDs[i] = int32(r.IntN(o.Shape.Vocab))
			s.LossMask[i] = 1
		}
		samples = append(samples, s)
	}
	return dataset.WriteTokenized(o.dataPath(), samples, nil)
}

// runScalePhase loads the target and runs one phase on it: nothing more (load), gen-hidden over the token
// ids, or one online training step of the draft the pipeline derives from the target.
func runScalePhase(kind string, o *ScaleOptions) (*Result, error) {
	start := time.Now()
	target, err := model.Load(o.targetDir())
	if err != nil {
		return nil, err
	}
	defer target.Close()
	r := &Result{LoadSeconds: time.Since(start).Seconds()}
	if kind == JobLoad {
		r.Seconds = r.LoadSeconds
		return r, nil
	}
	cfg := config.Defaults()
	cfg.Target.Path = o.targetDir()
	cfg.Draft.VocabSize = o.DraftVocab
	cfg.Train.BatchSize, cfg.Train.MaxSteps, cfg.Train.Seed = o.TrainBatch, 1, o.Seed
	if o.Precision != "" {
		cfg.Train.Precision = o.Precision
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dc, _, err := pipeline.DraftConfig(&cfg, &target.Head)
	if err != nil {
		return nil, err
	}
	data, err := dataset.OpenTokenized(o.dataPath())
	if err != nil {
		return nil, err
	}
	defer data.Close()
	if kind == JobGenHidden {
		start = time.Now()
		m, err := hidden.Generate(hidden.GenOptions{Target: target, TargetPath: o.targetDir(), AuxLayers: dc.AuxLayers, Data: data,
			DataPath: o.dataPath(), DataKey: "scalebench", Out: o.hiddenDir(), DType: tensor.BF16, SamplesPerShard: 256, Batch: o.GenBatch})
		if err != nil {
			return nil, err
		}
		r.Seconds, r.Tokens, r.OutBytes = time.Since(start).Seconds(), int(m.Tokens), m.Bytes
		return r, nil
	}
	counts, err := data.CountLossTokens(target.Config.VocabSize)
	if err != nil {
		return nil, err
	}
	m, err := vocab.Build(counts.Counts, dc.DraftVocabSize, nil)
	if err != nil {
		return nil, err
	}
	w := draft.NewWeights(&dc)
	w.Init(&dc, cfg.Train.Seed, cfg.Draft.InitStd)
	d, err := draft.New(dc, target.Head.Embed, m, w)
	if err != nil {
		return nil, err
	}
	tr := train.NewTrainer(train.Options{Config: cfg.Train, Draft: d,
		Train: &train.Online{Target: target, Data: data, AuxLayers: dc.AuxLayers, Used: m.Used}})
	start = time.Now()
	rec, err := tr.TrainStep()
	if err != nil {
		return nil, err
	}
	r.Seconds, r.Tokens, r.Loss = time.Since(start).Seconds(), rec.Tokens, rec.Loss
	r.DraftParams = params(d.W.Slices(&dc))
	return r, nil
}
