package draft

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/specforge/specforge/internal/goldentest"
)

// draftVariants are the draft shapes beyond the goldens' (which hold the default one): each edits the
// first TTT case's configuration.
var draftVariants = []struct {
	name string
	edit func(*Config)
}{
	{"default", func(*Config) {}},
	{"fc_norm", func(c *Config) { c.FCNorm = true }},
	{"norm_output", func(c *Config) { c.NormOutput = true }},
	{"two layers", func(c *Config) { c.NumLayers = 2 }},
	{"three layers, fc_norm, norm_output", func(c *Config) { c.NumLayers, c.FCNorm, c.NormOutput = 3, true, true }},
}

// variantDraft is the first TTT case's draft with its configuration edited and every weight drawn afresh
// from seed, the norm weights around 1 rather than at 1 (so that their gradients are not special), and the
// case's batch.
func variantDraft(t *testing.T, edit func(*Config), seed uint64) (*Draft, *Batch, int) {
	t.Helper()
	c := goldentest.First(t, goldentest.TTT)
	g := loadGoldenDraft(t, c)
	cfg := g.Config
	edit(&cfg)
	w := NewWeights(&cfg)
	w.Init(&cfg, seed, 0.05)
	r := rand.New(rand.NewPCG(seed, 3))
	for _, p := range w.Params(&cfg) {
		if len(p.Shape) == 1 {
			for i := range *p.Data {
				(*p.Data)[i] = float32(1 + 0.2*r.NormFloat64())
			}
		}
	}
	// Queries and keys large enough for peaked attention, so that the gradients through the scores count.
	for i := range w.Layers {
		for _, x := range [][]float32{w.Layers[i].Wq, w.Layers[i].Wk} {
			for j := range x {
				x[j] *= 4
			}
		}
	}
	d, err := New(cfg, g.Embed, g.Vocab, w)
	if err != nil {
		t.Fatal(err)
	}
	var K int
	c.Hyper(t, "K", &K)
	return d, tttBatch(t, c, g), K
}

// TestTTTGradientsFiniteDifference checks the TTT backward of every draft variant against central
// differences of the total loss, in each tensor at the coordinates of its largest gradients (where the
// float32 loss's rounding is small against the difference).
func TestTTTGradientsFiniteDifference(t *testing.T) {
	for _, v := range draftVariants {
		t.Run(v.name, func(t *testing.T) {
			d, b, K := variantDraft(t, v.edit, 7)
			grad := NewWeights(&d.Config)
			if _, err := d.TTT(b, K, &grad, &Workspace{}, 1); err != nil {
				t.Fatal(err)
			}
			ws := &Workspace{}
			loss := func() float64 {
				m, err := d.TTT(b, K, nil, ws, 1)
				if err != nil {
					t.Fatal(err)
				}
				return m.Total
			}
			wp, gp := d.W.Params(&d.Config), grad.Params(&d.Config)
			for i, p := range wp {
				g := *gp[i].Data
				order := make([]int, len(g))
				for j := range order {
					order[j] = j
				}
				slices.SortFunc(order, func(a, b int) int { return cmp.Compare(math.Abs(float64(g[b])), math.Abs(float64(g[a]))) })
				for _, j := range order[:3] {
					x := &(*p.Data)[j]
					old := *x
					h := float32(2e-3) * max(1, abs32(old))
					*x = old + h
					up := loss()
					*x = old - h
					down := loss()
					*x = old
					fd := (up - down) / float64(2*h)
					if diff := math.Abs(fd - float64(g[j])); diff > 2e-2*math.Abs(float64(g[j]))+2e-4 {
						t.Errorf("%s[%d]: backward %.6g, finite difference %.6g", p.Name, j, g[j], fd)
					}
				}
			}
		})
	}
}

// TestSessionFollowsTTTVariants decodes the first row of the batch with a session and compares it with
// the TTT unroll's first step (the hidden state it feeds to the second) for every variant:
// decoding and training run the same draft.
func TestSessionFollowsTTTVariants(t *testing.T) {
	for _, v := range draftVariants {
		t.Run(v.name, func(t *testing.T) {
			d, b, K := variantDraft(t, v.edit, 11)
			ws := &Workspace{}
			if _, err := d.TTT(b, K, nil, ws, 1); err != nil {
				t.Fatal(err)
			}
			s, err := d.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			H, n := d.Config.HiddenSize, b.T-1
			ids, pos := make([]int32, n), make([]int32, n)
			for i := range ids {
				ids[i], pos[i] = b.IDs[i+1], int32(i)
			}
			out := s.Forward(ids, s.FC(b.Aux[:n*d.Config.AuxWidth()], n), pos, nil, 0)
			want := ws.steps[1].layers[0].h[:n*H]
			for i := range want {
				if diff := math.Abs(float64(out[i] - want[i])); diff > 1e-4*(1+math.Abs(float64(want[i]))) {
					t.Fatalf("row %d: session %g, TTT %g", i/H, out[i], want[i])
				}
			}
		})
	}
}
