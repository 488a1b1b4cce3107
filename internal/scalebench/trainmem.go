package scalebench

import (
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/specforge/specforge/internal/batch"
	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/optim"
	"github.com/specforge/specforge/internal/train"
	"github.com/specforge/specforge/internal/vocab"
)

// DraftShape is the shape of a draft trained on random inputs.
type DraftShape struct {
	Hidden       int `json:"hidden"`
	Intermediate int `json:"intermediate"`
	Heads        int `json:"heads"`
	KVHeads      int `json:"kv_heads"`
	HeadDim      int `json:"head_dim"`
	Vocab        int `json:"vocab"`       // the target's
	DraftVocab   int `json:"draft_vocab"` // the draft's
	TTTLength    int `json:"ttt_length"`
	// Precision of the draft's products: "bf16" or "f32" (train.precision).
	Precision string `json:"precision"`
}

// Draft1B is the draft of a Llama-3.2-1B target: draft_1b of ../shared/bench/bench.py and of
// BenchmarkTrainStep (internal/train).
func Draft1B() DraftShape {
	return DraftShape{Hidden: 2048, Intermediate: 8192, Heads: 32, KVHeads: 8, HeadDim: 64, Vocab: 128256, DraftVocab: 32000, TTTLength: 7,
		Precision: config.Defaults().Train.Precision}
}

func (s DraftShape) config(T int) draft.Config {
	return draft.Config{HiddenSize: s.Hidden, IntermediateSize: s.Intermediate, NumHeads: s.Heads, NumKVHeads: s.KVHeads, HeadDim: s.HeadDim,
		VocabSize: s.Vocab, DraftVocabSize: s.DraftVocab, TargetHiddenSize: s.Hidden, RMSNormEps: 1e-6, RopeTheta: 500000,
		MaxPositions: max(2048, T+s.TTTLength), AuxLayers: []int{1, 1, 1}}
}

// teacherChunk bounds the random [rows, V] target logits made at once for the teacher, as online training
// bounds them (train.TeacherFromHidden).
const teacherChunk = 1 << 24

// runTrainStep times one training step of a draft on a random sequence of T tokens, as BenchmarkTrainStep
// does: teacher from random full-vocabulary logits (made outside the timed step, a chunk of rows at a time),
// the TTT forward and backward, clipping and AdamW.
func runTrainStep(s DraftShape, T int, seed uint64) (*Result, error) {
	cfg := s.config(T)
	if err := cfg.ValidateShape(); err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(seed, 0))
	w := draft.NewWeights(&cfg)
	w.Init(&cfg, seed+1, 0.02)
	embed := draft.RandomEmbedding(s.Vocab, s.Hidden, seed+2, 1)
	counts := make([]int64, s.Vocab)
	for _, j := range r.Perm(s.Vocab)[:s.DraftVocab] {
		counts[j] = 1
	}
	m, err := vocab.Build(counts, s.DraftVocab, nil)
	if err != nil {
		return nil, err
	}
	d, err := draft.New(cfg, embed, m, w)
	if err != nil {
		return nil, err
	}
	batch := &draft.Batch{Tokens: batch.Tokens{B: 1, T: T, IDs: make([]int32, T), LossMask: make([]bool, T), AttentionMask: make([]bool, T)},
		Aux: make([]float32, T*3*s.Hidden), Teacher: draft.NewTeacher(T, s.DraftVocab)}
	for i := 0; i < T; i++ {
		batch.IDs[i] = int32(r.IntN(s.Vocab))
		batch.LossMask[i] = i >= T/4
		batch.AttentionMask[i] = true
	}
	for i := range batch.Aux {
		batch.Aux[i] = float32(r.NormFloat64())
	}
	randomTeacher(batch.Teacher, r, T, s.Vocab, m.Used)
	grad := draft.NewWeights(&cfg)
	var sizes []int
	for _, x := range grad.Slices(&cfg) {
		sizes = append(sizes, len(x))
	}
	opt := optim.NewAdamW(sizes, 0.9, 0.999, 1e-8, 0)
	start := time.Now()
	met, err := d.TTT(batch, s.TTTLength, &grad, &draft.Workspace{Precision: train.Precision(s.Precision)}, 1)
	if err != nil {
		return nil, err
	}
	optim.ClipGradNorm(grad.Slices(&cfg), 0.5)
	opt.Update(d.W.Slices(&cfg), grad.Slices(&cfg), 1e-4)
	return &Result{Seconds: time.Since(start).Seconds(), Tokens: T, Loss: met.Total, DraftParams: params(d.W.Slices(&cfg))}, nil
}

func params(slices [][]float32) int64 {
	var n int64
	for _, s := range slices {
		n += int64(len(s))
	}
	return n
}

// randomTeacher fills the teacher of T rows from random target logits over a vocabulary of v tokens, a chunk
// of rows at a time.
func randomTeacher(tc *draft.Teacher, r *rand.Rand, T, v int, used []int64) {
	rows := max(1, teacherChunk/v)
	logits := make([]float32, rows*v)
	for lo := 0; lo < T; lo += rows {
		n := min(rows, T-lo)
		for i := range logits[:n*v] {
			logits[i] = float32(r.NormFloat64() * 2)
		}
		tc.SetRows(lo, logits, n, v, used)
	}
}

// TrainMemoryRow is one sequence length's step.
type TrainMemoryRow struct {
	T int `json:"t"`
	*Result
	// GrowthPerDoubling is PeakRSSMiB over the previous row's when T is twice the previous T, else 0.
	GrowthPerDoubling float64 `json:"growth_per_doubling,omitempty"`
	// MiBPer1kTokens is the peak's increase over the previous row's per 1,024 more tokens (0 for the first).
	MiBPer1kTokens float64 `json:"mib_per_1k_tokens,omitempty"`
}

// TrainMemory runs one training step of the draft at each sequence length with run, reporting each row on
// log as it ends.
func TrainMemory(s DraftShape, seqLens []int, seed uint64, run Runner, log io.Writer) ([]TrainMemoryRow, error) {
	var rows []TrainMemoryRow
	for i, T := range seqLens {
		if T <= 1 {
			return nil, fmt.Errorf("sequence length %d: want at least 2", T)
		}
		res, err := run.Run(Job{Kind: JobTrainStep, Draft: &s, T: T, Seed: seed})
		if err != nil {
			return rows, fmt.Errorf("T=%d: %w", T, err)
		}
		row := TrainMemoryRow{T: T, Result: res}
		if i > 0 {
			prev := rows[i-1]
			if T == 2*prev.T && prev.PeakRSSMiB > 0 {
				row.GrowthPerDoubling = res.PeakRSSMiB / prev.PeakRSSMiB
			}
			row.MiBPer1kTokens = (res.PeakRSSMiB - prev.PeakRSSMiB) / float64(T-prev.T) * 1024
		}
		rows = append(rows, row)
		fmt.Fprintf(log, "  T=%d: %.1f s, peak RSS %.0f MiB\n", T, res.Seconds, res.PeakRSSMiB)
	}
	return rows, nil
}
