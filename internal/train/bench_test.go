package train

import (
	"math/rand/v2"
	"testing"

	"github.com/specforge/specforge/internal/batch"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/memstat"
	"github.com/specforge/specforge/internal/optim"
	"github.com/specforge/specforge/internal/tensor"
	"github.com/specforge/specforge/internal/vocab"
)

// benchShapes are the draft shapes of ../shared/bench/bench.py (draft_small, draft_1b).
var benchShapes = []struct {
	name                          string
	H, heads, kv, hd, I, V, Vd, T int
}{
	{"draft_small", 256, 4, 2, 64, 688, 32000, 8000, 512},
	{"draft_1b", 2048, 32, 8, 64, 8192, 128256, 32000, 1024},
}

// BenchmarkTrainStep times one online training step as the PyTorch peer does: teacher from random
// full-vocabulary target logits, the K=7 TTT forward and backward, clipping and AdamW. Reports tokens/s and
// the process's peak resident memory; run one shape per process (-bench 'TrainStep/draft_small$'). The
// _bf16 variants take the products in bf16, as the peer's draft_*_bf16 configurations (autocast) do.
func BenchmarkTrainStep(b *testing.B) {
	for _, s := range benchShapes {
		for _, p := range []struct {
			suffix    string
			precision tensor.DType
		}{{"", tensor.F32}, {"_bf16", tensor.BF16}} {
			b.Run(s.name+p.suffix, func(b *testing.B) {
				r := rand.New(rand.NewPCG(0, 0))
				cfg := draft.Config{HiddenSize: s.H, IntermediateSize: s.I, NumHeads: s.heads, NumKVHeads: s.kv, HeadDim: s.hd,
					VocabSize: s.V, DraftVocabSize: s.Vd, TargetHiddenSize: s.H, RMSNormEps: 1e-6, RopeTheta: 500000,
					MaxPositions: 2048, AuxLayers: []int{1, 1, 1}}
				d := randomDraft(b, cfg, r)
				m := d.Vocab
				T := s.T
				batch := &draft.Batch{Tokens: batch.Tokens{B: 1, T: T, IDs: make([]int32, T), LossMask: make([]bool, T), AttentionMask: make([]bool, T)},
					Aux: make([]float32, T*3*s.H), Teacher: draft.NewTeacher(T, s.Vd)}
				for i := 0; i < T; i++ {
					batch.IDs[i] = int32(r.IntN(s.V))
					batch.LossMask[i] = i >= T/4
					batch.AttentionMask[i] = true
				}
				for i := range batch.Aux {
					batch.Aux[i] = float32(r.NormFloat64())
				}
				logits := make([]float32, T*s.V) // the target's raw logits, as the peer draws them
				for i := range logits {
					logits[i] = float32(r.NormFloat64() * 2)
				}
				zeroRow := make([]float32, s.V)
				grad := draft.NewWeights(&cfg)
				var sizes []int
				for _, x := range grad.Slices(&cfg) {
					sizes = append(sizes, len(x))
				}
				opt := optim.NewAdamW(sizes, 0.9, 0.999, 1e-8, 0)
				ws := &draft.Workspace{Precision: p.precision}
				step := func() {
					// Teacher from the shifted logits, a chunk of rows at a time: row i learns row i+1, read
					// in place; the last row learns the zero row.
					chunk := max(1, teacherChunkValues/s.V)
					for lo := 0; lo < T-1; lo += chunk {
						n := min(chunk, T-1-lo)
						batch.Teacher.SetRows(lo, logits[(lo+1)*s.V:(lo+1+n)*s.V], n, s.V, m.Used)
					}
					batch.Teacher.SetRows(T-1, zeroRow, 1, s.V, m.Used)
					grad.Zero(&cfg)
					if _, err := d.TTT(batch, 7, &grad, ws, 1); err != nil {
						b.Fatal(err)
					}
					optim.ClipGradNorm(grad.Slices(&cfg), 0.5)
					opt.Update(d.W.Slices(&cfg), grad.Slices(&cfg), 1e-4)
				}
				step() // warm-up
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					step()
				}
				b.ReportMetric(float64(T*b.N)/b.Elapsed().Seconds(), "tokens/s")
				b.ReportMetric(memstat.PeakRSSMiB(), "peakRSS_MiB")
			})
		}
	}
}

// randomDraft is a draft of shape cfg with initialised weights, a random embedding and a random draft
// vocabulary drawn with r.
func randomDraft(b *testing.B, cfg draft.Config, r *rand.Rand) *draft.Draft {
	w := draft.NewWeights(&cfg)
	w.Init(&cfg, 1, 0.02)
	embed := draft.RandomEmbedding(cfg.VocabSize, cfg.HiddenSize, 2, 1)
	t2d := make([]bool, cfg.VocabSize)
	for _, j := range r.Perm(cfg.VocabSize)[:cfg.DraftVocabSize] {
		t2d[j] = true
	}
	var d2t []int64
	for j, in := range t2d {
		if in {
			d2t = append(d2t, int64(j-len(d2t)))
		}
	}
	m, err := vocab.FromD2T(d2t, cfg.VocabSize)
	if err != nil {
		b.Fatal(err)
	}
	d, err := draft.New(cfg, embed, m, w)
	if err != nil {
		b.Fatal(err)
	}
	return d
}
