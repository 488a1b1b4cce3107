package scalebench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/safetensors"
)

// tiny is a Llama shape small enough for the test suite.
func tiny() Shape {
	return Shape{Layers: 4, Hidden: 64, Intermediate: 160, Heads: 4, KVHeads: 2, HeadDim: 16, Vocab: 512, RopeTheta: 500000}
}

func TestWriteCheckpointShards(t *testing.T) {
	for _, dt := range []safetensors.DType{safetensors.BF16, safetensors.F32} {
		t.Run(string(dt), func(t *testing.T) {
			s := tiny()
			dir := t.TempDir()
			// Shards of 100 KB: the embedding (64 KB in bf16) and lm_head cannot share one.
			info, err := WriteCheckpoint(CheckpointOptions{Dir: dir, Shape: s, DType: dt, ShardBytes: 100_000, Seed: 3})
			if err != nil {
				t.Fatal(err)
			}
			if want := s.Params() * int64(dt.Size()); info.Bytes != want {
				t.Errorf("%d bytes, want %d", info.Bytes, want)
			}
			if len(info.Shards) < 3 {
				t.Errorf("%d shards, want several of at most 100 KB", len(info.Shards))
			}
			raw, err := os.ReadFile(filepath.Join(dir, safetensors.IndexFile))
			if err != nil {
				t.Fatal(err)
			}
			var index struct {
				Metadata struct {
					TotalSize int64 `json:"total_size"`
				} `json:"metadata"`
				WeightMap map[string]string `json:"weight_map"`
			}
			if err := json.Unmarshal(raw, &index); err != nil {
				t.Fatal(err)
			}
			if index.Metadata.TotalSize != info.Bytes || len(index.WeightMap) != len(s.tensors()) {
				t.Errorf("index: total_size %d, %d tensors; want %d, %d", index.Metadata.TotalSize, len(index.WeightMap), info.Bytes, len(s.tensors()))
			}
			perShard := map[string]int{}
			for _, shard := range index.WeightMap {
				perShard[shard]++
			}
			for i, name := range info.Shards {
				if want := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(info.Shards)); name != want {
					t.Errorf("shard %d is named %s, want %s", i, name, want)
				}
				fi, err := os.Stat(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				// A tensor larger than a shard gets one of its own; the header comes on top of the data.
				if fi.Size() > 100_000+4096 && perShard[name] != 1 {
					t.Errorf("%s has %d bytes in %d tensors, more than a shard's 100 KB", name, fi.Size(), perShard[name])
				}
			}
			ckpt, err := safetensors.OpenCheckpoint(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer ckpt.Close()
			for _, spec := range s.tensors() {
				x, err := ckpt.Tensor(spec.name)
				if err != nil {
					t.Fatal(err)
				}
				if x.DType != dt || !slices.Equal(x.Shape, spec.shape) {
					t.Errorf("%s: %s %v, want %s %v", spec.name, x.DType, x.Shape, dt, spec.shape)
				}
				v, err := x.Float32()
				if err != nil {
					t.Fatal(err)
				}
				var sum, sq float64
				for _, f := range v {
					sum += float64(f)
					sq += float64(f) * float64(f)
				}
				mean, std := sum/float64(len(v)), math.Sqrt(sq/float64(len(v))-sum*sum/float64(len(v)*len(v)))
				if spec.norm && (mean != 1 || std > 1e-6) {
					t.Errorf("%s: mean %g std %g, want the ones of a norm", spec.name, mean, std)
				}
				if !spec.norm && (math.Abs(mean) > 0.003 || math.Abs(std-initStd) > 0.002) {
					t.Errorf("%s: mean %g std %g, want 0 and %g", spec.name, mean, std, initStd)
				}
			}
			cfg, err := model.LoadConfig(dir)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.NumLayers != s.Layers || cfg.HiddenSize != s.Hidden || cfg.Rope.Type != "llama3" || cfg.TieWordEmbeddings {
				t.Errorf("config.json: %+v", cfg)
			}
		})
	}
}

func TestScaleTiny(t *testing.T) {
	o := DefaultScaleOptions()
	o.Dir, o.Shape, o.Tokens, o.Seq, o.GenBatch, o.TrainBatch, o.DraftVocab = t.TempDir(), tiny(), 200, 64, 2, 2, 128
	rep, err := Scale(o, InProcess(), testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Checkpoint.Bytes != o.Shape.Params()*2 || rep.Isolated {
		t.Errorf("checkpoint %d bytes (want %d), isolated %v", rep.Checkpoint.Bytes, o.Shape.Params()*2, rep.Isolated)
	}
	for _, r := range []*Result{rep.Load, rep.GenHidden, rep.Train} {
		if r.Seconds <= 0 || r.PeakRSSMiB <= 0 || r.Backend == "" || r.PeakRSSMiB > rep.PeakRSSMiB {
			t.Errorf("%s: %+v (overall peak %.0f MiB)", r.Kind, r, rep.PeakRSSMiB)
		}
	}
	if rep.GenHidden.Tokens != o.Tokens || rep.GenHidden.TokensPerS <= 0 || rep.GenHidden.OutBytes <= 0 {
		t.Errorf("gen-hidden: %+v, want %d tokens", rep.GenHidden, o.Tokens)
	}
	// Two sequences of 64 tokens; ln(128) bounds a random draft's loss per step from below.
	if rep.Train.Tokens != 2*o.Seq || math.IsNaN(rep.Train.Loss) || rep.Train.Loss < 1 {
		t.Errorf("train: %+v, want %d tokens and a finite loss", rep.Train, 2*o.Seq)
	}
	m, err := hidden.ReadManifest(filepath.Join(o.Dir, "hidden"))
	if err != nil {
		t.Fatal(err)
	}
	if !m.Complete || m.Samples != 4 || m.Target.NumLayers != o.Shape.Layers {
		t.Errorf("hidden manifest: %+v", m)
	}
}

func TestTrainMemoryTiny(t *testing.T) {
	s := DraftShape{Hidden: 64, Intermediate: 160, Heads: 4, KVHeads: 2, HeadDim: 16, Vocab: 512, DraftVocab: 128, TTTLength: 3}
	rows, err := TrainMemory(s, []int{32, 64}, 1, InProcess(), testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		if r.Seconds <= 0 || r.PeakRSSMiB <= 0 || r.TokensPerS <= 0 || math.IsNaN(r.Loss) || r.Tokens != r.T {
			t.Errorf("T=%d: %+v", r.T, r.Result)
		}
	}
	// In one process the peak only grows, but Linux reads VmHWM as max(recorded peak, current RSS) with the
	// current RSS summed from per-CPU counters that lag by a few pages, so a later reading may be a little lower.
	if rows[0].GrowthPerDoubling != 0 || rows[1].GrowthPerDoubling < 0.99 {
		t.Errorf("growth per doubling %g, %g: want 0 for the first row, at least 0.99 after", rows[0].GrowthPerDoubling, rows[1].GrowthPerDoubling)
	}
}

func TestBadOptions(t *testing.T) {
	o := DefaultScaleOptions()
	o.Dir = t.TempDir()
	for _, c := range []struct {
		name string
		set  func(*ScaleOptions)
	}{
		{"heads not a multiple of kv heads", func(o *ScaleOptions) { o.Shape.KVHeads = 3 }},
		{"no tokens", func(o *ScaleOptions) { o.Tokens = 0 }},
		{"train batch beyond the data", func(o *ScaleOptions) { o.TrainBatch = 5 }},
		{"f16", func(o *ScaleOptions) { o.DType = safetensors.F16; o.Shape = tiny() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := o
			c.set(&bad)
			if _, err := Scale(bad, InProcess(), testLog{t}); err == nil {
				t.Error("no error")
			}
		})
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
