package train

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/rope"
	"github.com/specforge/specforge/internal/tensor"
	"github.com/specforge/specforge/internal/vocab"
)

type randomWeights struct{ r *rand.Rand }

func (s randomWeights) Get(name string, optional bool, shape ...int) (tensor.Tensor, error) {
	n := 1
	for _, d := range shape {
		n *= d
	}
	w := make([]float32, n)
	std := 1 / math.Sqrt(float64(shape[len(shape)-1]))
	for i := range w {
		if strings.HasSuffix(name, "norm.weight") {
			w[i] = 1
		} else {
			w[i] = float32(s.r.NormFloat64() * std)
		}
	}
	return tensor.FromF32(w, shape...), nil
}

// BenchmarkOnlineVsOffline trains the same draft online (the target runs every batch) and offline (from
// bf16 shards) for an 8-layer, 512-wide random Llama target with a 32000-token vocabulary, reporting the
// training tokens/s of each mode.
func BenchmarkOnlineVsOffline(b *testing.B) {
	rc, _ := rope.ParseScaling(nil, 10000, 64, 4096)
	tc := &model.Config{Architecture: "LlamaForCausalLM", VocabSize: 32000, HiddenSize: 512, IntermediateSize: 1376,
		NumLayers: 8, NumHeads: 8, NumKVHeads: 4, HeadDim: 64, RMSNormEps: 1e-5, Rope: rc, MaxPositionEmbeddings: 4096}
	target, err := model.New(tc, randomWeights{rand.New(rand.NewPCG(1, 2))})
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	var samples []*dataset.Tokenized
	for i := 0; i < 16; i++ {
		s := &dataset.Tokenized{IDs: make([]int32, 256), LossMask: make([]uint8, 256)}
		for t := range s.IDs {
			s.IDs[t], s.LossMask[t] = int32(r.IntN(32000)), 1
		}
		samples = append(samples, s)
	}
	dir := b.TempDir()
	path := filepath.Join(dir, "train.safetensors")
	if err := dataset.WriteTokenized(path, samples, nil); err != nil {
		b.Fatal(err)
	}
	data, err := dataset.OpenTokenized(path)
	if err != nil {
		b.Fatal(err)
	}
	defer data.Close()
	counts, _ := data.CountLossTokens(32000)
	m, _ := vocab.Build(counts.Counts, 8000, nil)
	dc := draft.FromTarget(tc, nil, 8000)
	newTrainer := func(src BatchSource) *Trainer {
		w := draft.NewWeights(&dc)
		w.Init(&dc, 1, 0.02)
		d, _ := draft.New(dc, target.Embed, m, w)
		cfg := config.Defaults().Train
		cfg.MaxSteps, cfg.BatchSize, cfg.OutputDir, cfg.LogInterval = 4, 2, b.TempDir(), 1
		return NewTrainer(Options{Config: cfg, Draft: d, Train: src})
	}
	if _, err := hidden.Generate(hidden.GenOptions{Target: target, AuxLayers: dc.AuxLayers, Data: data, DataKey: "bench",
		Out: filepath.Join(dir, "hidden"), DType: tensor.BF16, SamplesPerShard: 8, Batch: 2}); err != nil {
		b.Fatal(err)
	}
	store, err := hidden.Open(filepath.Join(dir, "hidden"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	for _, mode := range []string{"online", "offline"} {
		b.Run(mode, func(b *testing.B) {
			var src BatchSource = &Online{Target: target, Data: data, AuxLayers: dc.AuxLayers, Used: m.Used}
			if mode == "offline" {
				src = &Offline{Store: store, Head: &target.Head, Used: m.Used}
			}
			tokens := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tr := newTrainer(src)
				if err := tr.Run(context.Background()); err != nil {
					b.Fatal(err)
				}
				for _, rec := range tr.History() {
					tokens += rec.Tokens
				}
			}
			b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(store.Manifest.BytesPerToken, "stored_bytes/token")
		})
	}
}
