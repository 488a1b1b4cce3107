package train

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/specforge/specforge/internal/batch"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/optim"
)

// packBenchBatches is how many different batches a packing benchmark cycles through.
const packBenchBatches = 3

// BenchmarkPacking times the draft's share of a training step (the K=7 TTT forward and backward in f32,
// clipping, AdamW, and draft.Pack when packed) on batches of two length mixes, padded and packed, and
// reports the real (non-padding) tokens per second and the padding's share of the positions trained.
// The target's forward and the teacher run on the padded batch either way, so they are left out:
//   - stories260k: the README's run (stories260K-shaped draft, batch_size 8, max_length 256) on its
//     regenerated data, every sample 209 tokens (BOS, 8 opening tokens, 200 new: measured on 400 greedy
//     continuations of the openings, none of which stopped early);
//   - sharegpt: a draft_small-shaped draft on a ShareGPT-like mix, lognormal lengths of median 300
//     (sigma 1, at least 16 tokens) capped at max_length 2048, batch_size 4.
//
// Run with -bench Packing -benchtime 3x (each op is one batch; the three batches differ).
func BenchmarkPacking(b *testing.B) {
	stories := draft.Config{HiddenSize: 64, IntermediateSize: 172, NumHeads: 8, NumKVHeads: 4, HeadDim: 8,
		VocabSize: 512, DraftVocabSize: 512, TargetHiddenSize: 64, RMSNormEps: 1e-5, RopeTheta: 10000,
		MaxPositions: 512, AuxLayers: []int{1, 1, 1}}
	small := draft.Config{HiddenSize: 256, IntermediateSize: 688, NumHeads: 4, NumKVHeads: 2, HeadDim: 64,
		VocabSize: 32000, DraftVocabSize: 8000, TargetHiddenSize: 256, RMSNormEps: 1e-6, RopeTheta: 500000,
		MaxPositions: 4096, AuxLayers: []int{1, 1, 1}}
	for _, c := range []struct {
		name          string
		cfg           draft.Config
		batch, maxLen int
		length        func(r *rand.Rand) int
	}{
		{"stories260k", stories, 8, 256, func(*rand.Rand) int { return 209 }},
		{"sharegpt", small, 4, 2048, func(r *rand.Rand) int {
			return min(2048, max(16, int(math.Round(300*math.Exp(r.NormFloat64())))))
		}},
	} {
		for _, packed := range []bool{false, true} {
			name := c.name + "/padded"
			if packed {
				name = c.name + "/packed"
			}
			b.Run(name, func(b *testing.B) {
				r := rand.New(rand.NewPCG(1, 2))
				d := randomDraft(b, c.cfg, r)
				var batches []*draft.Batch
				for range packBenchBatches {
					lens := make([]int, c.batch)
					for i := range lens {
						lens[i] = c.length(r)
					}
					batches = append(batches, benchBatch(d, lens, r))
				}
				grad := draft.NewWeights(&d.Config)
				var sizes []int
				for _, x := range grad.Slices(&d.Config) {
					sizes = append(sizes, len(x))
				}
				opt := optim.NewAdamW(sizes, 0.9, 0.999, 1e-8, 0)
				ws := &draft.Workspace{}
				var real, slots int
				step := func(bt *draft.Batch) {
					if packed {
						var err error
						if bt, err = draft.Pack(bt, c.maxLen); err != nil {
							b.Fatal(err)
						}
					}
					grad.Zero(&d.Config)
					if _, err := d.TTT(bt, 7, &grad, ws, 1); err != nil {
						b.Fatal(err)
					}
					optim.ClipGradNorm(grad.Slices(&d.Config), 0.5)
					opt.Update(d.W.Slices(&d.Config), grad.Slices(&d.Config), 1e-4)
					real += realTokens(bt)
					slots += bt.B * bt.T
				}
				step(batches[0]) // warm-up: the workspace grows
				real, slots = 0, 0
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					step(batches[i%len(batches)])
				}
				b.ReportMetric(float64(real)/b.Elapsed().Seconds(), "tokens/s")
				b.ReportMetric(100*(1-float64(real)/float64(slots)), "padding_%")
			})
		}
	}
}

// benchBatch is an unpacked batch of samples of the given lengths with random ids, aux states and teacher
// (softmax of random logits over the draft vocabulary, the target's choice in it), loss on all but the
// first token of each sample.
func benchBatch(d *draft.Draft, lens []int, r *rand.Rand) *draft.Batch {
	c := &d.Config
	p := batch.New(lens)
	N, vd := p.B*p.T, c.DraftVocabSize
	bt := &draft.Batch{Tokens: *p, Aux: make([]float32, N*c.AuxWidth()), Teacher: draft.NewTeacher(N, vd)}
	for s, n := range lens {
		for i := range n {
			bt.IDs[s*p.T+i] = int32(r.IntN(c.VocabSize))
			bt.LossMask[s*p.T+i] = i > 0
		}
	}
	for i := range bt.Aux {
		bt.Aux[i] = float32(r.NormFloat64())
	}
	for row := range N {
		pr := bt.Teacher.P[row*vd : (row+1)*vd]
		var sum float64
		best := 0
		for j := range pr {
			pr[j] = float32(math.Exp(2 * r.NormFloat64()))
			sum += float64(pr[j])
			if pr[j] > pr[best] {
				best = j
			}
		}
		for j := range pr {
			pr[j] = float32(float64(pr[j]) / sum)
		}
		bt.Teacher.Argmax[row], bt.Teacher.TargetID[row] = int32(best), int32(d.Vocab.Used[best])
	}
	return bt
}
