package draft

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/batch"
	"github.com/specforge/specforge/internal/vocab"
)

// randomDraft is a small random draft whose draft vocabulary leaves a quarter of the target's out, so that
// some teacher rows are masked; edit changes its configuration (a draftVariants entry).
func randomDraft(t *testing.T, seed uint64, edit func(*Config)) *Draft {
	t.Helper()
	const V, Vd = 64, 48
	cfg := Config{HiddenSize: 32, IntermediateSize: 64, NumHeads: 4, NumKVHeads: 2, HeadDim: 8, VocabSize: V,
		DraftVocabSize: Vd, TargetHiddenSize: 16, RMSNormEps: 1e-6, RopeTheta: 10000, MaxPositions: 256,
		AuxLayers: []int{1, 1, 1}}
	edit(&cfg)
	w := NewWeights(&cfg)
	w.Init(&cfg, seed, 0.2)
	r := rand.New(rand.NewPCG(seed, 1))
	t2d := make([]bool, V)
	for _, j := range r.Perm(V)[:Vd] {
		t2d[j] = true
	}
	var d2t []int64
	for j, in := range t2d {
		if in {
			d2t = append(d2t, int64(j-len(d2t)))
		}
	}
	m, err := vocab.FromD2T(d2t, V)
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, RandomEmbedding(V, cfg.HiddenSize, seed+1, 1), m, w)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// randomBatch is an unpacked batch of samples of the given lengths (row r = sample r, right-padded) with
// random ids, loss masks, aux states and teacher; the padding has random aux and teacher rows too, which
// no sample may learn from.
func randomBatch(t *testing.T, d *Draft, lens []int, seed uint64) *Batch {
	t.Helper()
	c := &d.Config
	r := rand.New(rand.NewPCG(seed, 2))
	p := batch.New(lens)
	N := p.B * p.T
	b := &Batch{Tokens: *p, Aux: make([]float32, N*c.AuxWidth()), Teacher: NewTeacher(N, c.DraftVocabSize)}
	for s, n := range lens {
		for i := range n {
			b.IDs[s*p.T+i] = int32(1 + r.IntN(c.VocabSize-1))
			b.LossMask[s*p.T+i] = i > 0 && r.Float64() < 0.8
		}
	}
	for i := range b.Aux {
		b.Aux[i] = float32(r.NormFloat64())
	}
	logits := make([]float32, N*c.VocabSize)
	for i := range logits {
		logits[i] = float32(2 * r.NormFloat64())
	}
	b.Teacher.SetRows(0, logits, N, c.VocabSize, d.Vocab.Used)
	return b
}

// TestPackLayout checks Pack's layout: every sample once, whole and in one row, rows no longer than maxLen
// unless they hold one longer sample, T the longest row, Starts and Lens those of the samples, and the
// tokens, masks, aux and teacher rows carried.
func TestPackLayout(t *testing.T) {
	d := randomDraft(t, 1, func(*Config) {})
	aw, vd := d.Config.AuxWidth(), d.Config.DraftVocabSize
	for _, c := range []struct {
		lens         []int
		maxLen, rows int
	}{
		{[]int{13, 5, 9, 17, 3}, 24, 3},        // rows 17+5, 13+9, 3
		{[]int{4, 4, 4, 4}, 8, 2},              // ties: samples in order
		{[]int{30, 6, 2}, 16, 2},               // 30 alone in its row, longer than maxLen
		{[]int{5, 7}, 256, 1},                  // T is 12, not 256
		{[]int{8, 0, 3}, 8, 2},                 // an empty sample
		{[]int{10, 10, 10, 10, 10, 10}, 10, 6}, // full rows, no padding
	} {
		t.Run(fmt.Sprint(c.lens, c.maxLen), func(t *testing.T) {
			b := randomBatch(t, d, c.lens, 3)
			p, err := Pack(b, c.maxLen)
			if err != nil {
				t.Fatal(err)
			}
			if p.B != c.rows || len(p.Lens) != p.B || len(p.Starts) != p.B*p.T {
				t.Fatalf("%d rows (%d lens, %d starts) of %d, want %d rows", p.B, len(p.Lens), len(p.Starts), p.T, c.rows)
			}
			if p.T != slices.Max(p.Lens) {
				t.Errorf("T %d, rows used %v", p.T, p.Lens)
			}
			seen := make([]bool, len(c.lens))
			for r := range p.B {
				used := p.Lens[r]
				if used > c.maxLen && used != slices.Max(c.lens) {
					t.Errorf("row %d holds %d tokens, over %d", r, used, c.maxLen)
				}
				for i := used; i < p.T; i++ {
					if j := r*p.T + i; p.AttentionMask[j] || p.LossMask[j] || p.IDs[j] != 0 || p.Starts[j] != int32(used) {
						t.Errorf("row %d padding at %d: real %v, loss %v, id %d, start %d", r, i, p.AttentionMask[j], p.LossMask[j], p.IDs[j], p.Starts[j])
					}
				}
				// Walk the row's samples: each is a run of one start, and must be a sample, whole.
				for off := 0; off < used; {
					n := 0
					for off+n < used && p.Starts[r*p.T+off+n] == int32(off) {
						n++
					}
					if n == 0 {
						t.Fatalf("row %d: start %d at %d", r, p.Starts[r*p.T+off], off)
					}
					s := findSample(b, seen, p, r, off, n, aw, vd)
					if s < 0 {
						t.Fatalf("row %d: tokens [%d, %d) are no sample", r, off, off+n)
					}
					seen[s] = true
					off += n
				}
			}
			for s, ok := range seen {
				if !ok && c.lens[s] > 0 {
					t.Errorf("sample %d (%d tokens) is not in the packed batch", s, c.lens[s])
				}
			}
		})
	}
}

// findSample returns the unseen sample of b whose every token, mask, aux and teacher row equals the packed
// row r's [off, off+n), or -1.
func findSample(b *Batch, seen []bool, p *Batch, r, off, n, aw, vd int) int {
	dst := r*p.T + off
	for s, sn := range b.Lens {
		src := s * b.T
		if seen[s] || sn != n ||
			!slices.Equal(b.IDs[src:src+n], p.IDs[dst:dst+n]) ||
			!slices.Equal(b.LossMask[src:src+n], p.LossMask[dst:dst+n]) ||
			!slices.Equal(b.AttentionMask[src:src+n], p.AttentionMask[dst:dst+n]) ||
			!slices.Equal(b.Aux[src*aw:(src+n)*aw], p.Aux[dst*aw:(dst+n)*aw]) ||
			!slices.Equal(b.Teacher.P[src*vd:(src+n)*vd], p.Teacher.P[dst*vd:(dst+n)*vd]) ||
			!slices.Equal(b.Teacher.Argmax[src:src+n], p.Teacher.Argmax[dst:dst+n]) ||
			!slices.Equal(b.Teacher.TargetID[src:src+n], p.Teacher.TargetID[dst:dst+n]) {
			continue
		}
		return s
	}
	return -1
}

func TestPackRefuses(t *testing.T) {
	d := randomDraft(t, 1, func(*Config) {})
	b := randomBatch(t, d, []int{3, 5}, 1)
	packed, err := Pack(b, 8)
	if err != nil {
		t.Fatal(err)
	}
	noLens := *b
	noLens.Lens = nil
	long := *b
	long.Lens = []int{3, 6}
	for _, c := range []struct {
		name   string
		b      *Batch
		maxLen int
		want   string
	}{
		{"zero row length", b, 0, "row length 0"},
		{"packed twice", packed, 8, "packed already"},
		{"no lengths", &noLens, 8, "0 sample lengths for 2 rows"},
		{"sample past T", &long, 8, "sample 1 has 6 tokens, want 0 to 5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Pack(c.b, c.maxLen); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}

// TestPackedTTTEqualsUnpacked trains a packed batch and the unpacked one it came from: the KL's sums
// (loss times the batch's B*T, which differ), the LK losses (per trained row), acceptance, the metrics'
// counts and the gradients (times B*T for the KL) must agree to float32 rounding, for K=3.
func TestPackedTTTEqualsUnpacked(t *testing.T) {
	const K = 3
	for _, v := range []int{0, len(draftVariants) - 1} { // the default draft, and the one with every option
		d := randomDraft(t, 7, draftVariants[v].edit)
		for _, c := range []struct {
			lens   []int
			maxLen int
		}{
			{[]int{13, 5, 9, 17, 3}, 24},
			{[]int{20, 2, 11}, 16},
			{[]int{6, 6, 6, 6}, 12},
		} {
			for _, kind := range []LossKind{LossKL, LossLKAlpha} {
				t.Run(fmt.Sprint(draftVariants[v].name, kind, c.lens), func(t *testing.T) {
					b := randomBatch(t, d, c.lens, 11)
					p, err := Pack(b, c.maxLen)
					if err != nil {
						t.Fatal(err)
					}
					if p.B >= b.B {
						t.Fatalf("packing %v into rows of %d left %d rows", c.lens, c.maxLen, p.B)
					}
					gu, gp := NewWeights(&d.Config), NewWeights(&d.Config)
					mu, err := d.TTT(b, K, &gu, &Workspace{Loss: Loss{Kind: kind}}, 1)
					if err != nil {
						t.Fatal(err)
					}
					wp := &Workspace{Loss: Loss{Kind: kind}}
					mp, err := d.TTT(p, K, &gp, wp, 1)
					if err != nil {
						t.Fatal(err)
					}
					// RoPE scores depend on differences of positions only, so the losses cannot tell whether
					// positions restart per sample: check them directly (a sample's token i at step k is at i+k).
					for k := range K {
						for i, pos := range wp.steps[k].positions {
							if want := int32(i%p.T) - p.Starts[i] + int32(k); p.AttentionMask[i] && pos != want {
								t.Fatalf("step %d: token %d of row %d at position %d, want %d", k, i%p.T, i/p.T, pos, want)
							}
						}
					}
					nu, np := float64(b.B*b.T), float64(p.B*p.T)
					scale := [2]float64{1, 1} // of the loss and gradients: unpacked, packed
					if kind == LossKL {
						scale = [2]float64{nu, np}
					}
					for k := range K {
						closeRel(t, fmt.Sprintf("loss[%d]", k), mp.Loss[k]*scale[1], mu.Loss[k]*scale[0])
						closeRel(t, fmt.Sprintf("kl[%d]", k), mp.KL[k]*np, mu.KL[k]*nu)
						closeRel(t, fmt.Sprintf("alpha[%d]", k), mp.Alpha[k], mu.Alpha[k])
						if mp.Correct[k] != mu.Correct[k] || mp.Denom[k] != mu.Denom[k] {
							t.Errorf("step %d: correct %d of %d, unpacked %d of %d", k, mp.Correct[k], mp.Denom[k], mu.Correct[k], mu.Denom[k])
						}
					}
					if mu.Denom[K-1] == 0 || mu.KL[K-1] == 0 {
						t.Fatalf("step %d trains nothing: %+v", K-1, mu)
					}
					pu := gu.Params(&d.Config)
					for i, q := range gp.Params(&d.Config) {
						var worst, norm float64
						for j, g := range *q.Data {
							want := float64((*pu[i].Data)[j]) * scale[0]
							worst = max(worst, math.Abs(float64(g)*scale[1]-want))
							norm = max(norm, math.Abs(want))
						}
						if norm == 0 || worst > 1e-5*norm {
							t.Errorf("grad.%s: max |diff| %g of max %g", q.Name, worst, norm)
						}
					}
				})
			}
		}
	}
}

func closeRel(t *testing.T, name string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-5*math.Abs(want) || math.IsNaN(got) {
		t.Errorf("%s: packed %v, unpacked %v", name, got, want)
	}
}
