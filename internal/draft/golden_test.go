package draft

import (
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/specforge/specforge/internal/batch"
	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/optim"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/tensor"
	"github.com/specforge/specforge/internal/vocab"
)

// loadGoldenDraft builds the draft of a TTT case from its manifest and draft_init.safetensors.
func loadGoldenDraft(t testing.TB, c *goldentest.Case) *Draft {
	cfg, w, f := loadGoldenWeights(t, c)
	defer f.Close()
	et, err := f.Tensor("embed_tokens.weight")
	if err != nil {
		t.Fatal(err)
	}
	values, err := et.Float32() // a copy: f is closed on return
	if err != nil {
		t.Fatal(err)
	}
	embed := tensor.FromF32(values, et.Shape...)
	dt, err := f.Tensor("d2t")
	if err != nil {
		t.Fatal(err)
	}
	d2t, err := dt.Int64()
	if err != nil {
		t.Fatal(err)
	}
	m, err := vocab.FromD2T(d2t, cfg.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, embed, m, w)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// loadGoldenWeights reads a case's draft configuration and the trainable weights of draft_init.safetensors,
// which it returns open.
func loadGoldenWeights(t testing.TB, c *goldentest.Case) (Config, Weights, *safetensors.File) {
	var cfg Config
	c.Hyper(t, "draft_config", &cfg)
	// The case gives the aux states, not the layers they come from: only their number (fc's input width over
	// the target's hidden size) matters.
	fc := c.Shape(t, "draft_init.safetensors", "fc.weight")
	cfg.AuxLayers = make([]int, fc[1]/cfg.TargetHiddenSize)
	f, err := safetensors.Open(filepath.Join(c.Dir, "draft_init.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := LoadWeights(&cfg, f)
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	return cfg, w, f
}

// goldenBatch turns a case's raw inputs (ids, masks, aux, unshifted target logits) into a batch.
func goldenBatch(t *testing.T, c *goldentest.Case, d *Draft, file string, logits []float64, aux []float64) *Batch {
	ids := c.Ints(t, file, "input_ids")
	lm := c.Ints(t, file, "loss_mask")
	am := c.Ints(t, file, "attention_mask")
	shape := c.Tensor(t, file, "input_ids").Shape
	B, T := shape[0], shape[1]
	b := &Batch{Tokens: batch.Tokens{B: B, T: T, IDs: make([]int32, B*T), LossMask: make([]bool, B*T), AttentionMask: make([]bool, B*T)},
		Aux: f32(aux), Teacher: NewTeacher(B*T, d.Config.DraftVocabSize)}
	for i := range ids {
		b.IDs[i], b.LossMask[i], b.AttentionMask[i] = int32(ids[i]), lm[i] == 1, am[i] == 1
	}
	V := d.Config.VocabSize
	shifted := make([]float32, B*T*V) // row t: logits at t+1; the last row stays zero
	for r := 0; r < B; r++ {
		for tt := 0; tt+1 < T; tt++ {
			for v := 0; v < V; v++ {
				shifted[(r*T+tt)*V+v] = float32(logits[(r*T+tt+1)*V+v])
			}
		}
	}
	for lo := 0; lo < B*T; lo += 7 { // in chunks, as a trainer with a large vocabulary does
		n := min(7, B*T-lo)
		b.Teacher.SetRows(lo, shifted[lo*V:(lo+n)*V], n, V, d.Vocab.Used)
	}
	return b
}

func f32(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

func exactInts(t *testing.T, name string, got []int, want []int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %v, want %v", name, got, want)
	}
	for i := range got {
		if int64(got[i]) != want[i] {
			t.Fatalf("%s: %v, want %v", name, got, want)
		}
	}
}

// stepHyper holds the hyper-parameters of a case's training step.
type stepHyper struct {
	K           int
	MaxGradNorm float64
	Betas       [2]float64
	Eps, WD     float64
}

func readStepHyper(t testing.TB, c *goldentest.Case) stepHyper {
	var h stepHyper
	c.Hyper(t, "K", &h.K)
	c.Hyper(t, "max_grad_norm", &h.MaxGradNorm)
	c.Hyper(t, "adam_betas", &h.Betas)
	c.Hyper(t, "adam_eps", &h.Eps)
	c.Hyper(t, "weight_decay", &h.WD)
	return h
}

func (h stepHyper) adamW(sizes []int) *optim.AdamW {
	return optim.NewAdamW(sizes, h.Betas[0], h.Betas[1], h.Eps, h.WD)
}

// step applies one AdamW step of the (clipped) gradients gs to d's weights and returns the optimiser.
func (h stepHyper) step(d *Draft, gs [][]float32, lr float64) *optim.AdamW {
	var sizes []int
	for _, s := range gs {
		sizes = append(sizes, len(s))
	}
	opt := h.adamW(sizes)
	opt.Update(d.W.Slices(&d.Config), gs, lr)
	return opt
}

// checkStep compares one TTT step (metrics, gradients, clip, AdamW) with a case's expected tensors, whose
// names carry prefix ("" or "step0.").
func checkStep(t *testing.T, c *goldentest.Case, d *Draft, b *Batch, prefix string, lr float64) *optim.AdamW {
	hp := readStepHyper(t, c)
	exp := "expected_f64.safetensors"
	pm := b.PositionMask(d.Vocab.T2D)
	pmInt := make([]int, len(pm))
	tid := make([]int, len(pm))
	for i := range pm {
		if pm[i] {
			pmInt[i] = 1
		}
		tid[i] = int(b.Teacher.TargetID[i])
	}
	exactInts(t, prefix+"position_mask", pmInt, c.Ints(t, exp, prefix+"position_mask"))
	exactInts(t, prefix+"target_ids", tid, c.Ints(t, exp, prefix+"target_ids"))
	c.Compare(t, exp, prefix+"target_p", b.Teacher.P, nil)

	grad := NewWeights(&d.Config)
	ws := &Workspace{}
	met, err := d.TTT(b, hp.K, &grad, ws, 1)
	if err != nil {
		t.Fatal(err)
	}
	c.Compare(t, exp, prefix+"loss", f32(met.Loss), nil)
	c.Compare(t, exp, prefix+"total_loss", []float32{float32(met.Total)}, nil)
	c.Compare(t, exp, prefix+"acc", f32(met.Acc), nil)
	c.Compare(t, exp, prefix+"simulated_acc_len", []float32{float32(met.SimulatedAcceptanceLength())}, nil)
	exactInts(t, prefix+"correct", met.Correct, c.Ints(t, exp, prefix+"correct"))
	exactInts(t, prefix+"denom", met.Denom, c.Ints(t, exp, prefix+"denom"))
	for _, p := range grad.Params(&d.Config) {
		c.Compare(t, exp, prefix+"grad."+p.Name, *p.Data, nil)
	}
	gs := grad.Slices(&d.Config)
	norm, coef := optim.ClipGradNorm(gs, hp.MaxGradNorm)
	c.Compare(t, exp, prefix+"grad_norm", []float32{float32(norm)}, nil)
	c.Compare(t, exp, prefix+"clip_coef", []float32{float32(coef)}, nil)
	opt := hp.step(d, gs, lr)
	for i, p := range d.W.Params(&d.Config) {
		c.Compare(t, exp, prefix+"updated."+p.Name, *p.Data, nil)
		c.Compare(t, exp, prefix+"adam_m."+p.Name, opt.M[i], nil)
		c.Compare(t, exp, prefix+"adam_v."+p.Name, opt.V[i], nil)
	}
	return opt
}

// tttBatch is the batch of a TTT case's inputs.
func tttBatch(t *testing.T, c *goldentest.Case, d *Draft) *Batch {
	return goldenBatch(t, c, d, "inputs.safetensors",
		c.Floats(t, "inputs.safetensors", "target_logits"), c.Floats(t, "inputs.safetensors", "aux_hidden"))
}

func TestGoldenTTT(t *testing.T) {
	goldentest.ForEach(t, goldentest.TTT, func(t *testing.T, c *goldentest.Case) {
		d := loadGoldenDraft(t, c)
		var lr float64
		c.Hyper(t, "lr", &lr)
		checkStep(t, c, d, tttBatch(t, c, d), "", lr)
	})
}

func TestGoldenTTTLossVariants(t *testing.T) {
	goldentest.ForEach(t, goldentest.TTTLoss, func(t *testing.T, c *goldentest.Case) {
		var lr float64
		c.Hyper(t, "lr", &lr)
		checkLossVariants(t, c, lr)
	})
}

// checkLossVariants replays a case's TTT step once per loss variant (hyper-parameter "variants", each
// named by its loss), from the same initial draft: per-step losses, KL and acceptance, the total, the
// gradients, their norm and the weights after clip + AdamW, under the names "<loss>.<tensor>".
func checkLossVariants(t *testing.T, c *goldentest.Case, lr float64) {
	var variants []struct {
		Loss    LossKind `json:"loss"`
		KLScale *float64 `json:"kl_scale"`
		KLDecay *float64 `json:"kl_decay"`
	}
	c.Hyper(t, "variants", &variants)
	hp := readStepHyper(t, c)
	exp := "expected_f64.safetensors"
	for _, v := range variants {
		t.Run(string(v.Loss), func(t *testing.T) {
			obj := Loss{Kind: v.Loss, KLScale: 1, KLDecay: 1}
			if v.KLScale != nil {
				obj.KLScale = *v.KLScale
			}
			if v.KLDecay != nil {
				obj.KLDecay = *v.KLDecay
			}
			d := loadGoldenDraft(t, c)
			grad, scratch := NewWeights(&d.Config), NewWeights(&d.Config)
			met, err := d.TTT(tttBatch(t, c, d), hp.K, &scratch, &Workspace{Loss: obj}, 1)
			if err != nil {
				t.Fatal(err)
			}
			// Evaluating alone (no gradient: lk_lambda then needs one pass, not two) gives the same metrics.
			losses := slices.Clone(met.Loss)
			eval, err := d.TTT(tttBatch(t, c, d), hp.K, nil, &Workspace{Loss: obj}, 1)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(eval.Loss, losses) {
				t.Errorf("evaluation losses %v, training's %v", eval.Loss, losses)
			}
			met, err = d.TTT(tttBatch(t, c, d), hp.K, &grad, &Workspace{Loss: obj}, 1)
			if err != nil {
				t.Fatal(err)
			}
			prefix := string(v.Loss) + "."
			c.Compare(t, exp, prefix+"loss", f32(met.Loss), nil)
			c.Compare(t, exp, prefix+"kl", f32(met.KL), nil)
			c.Compare(t, exp, prefix+"alpha", f32(met.Alpha), nil)
			c.Compare(t, exp, prefix+"total_loss", []float32{float32(met.Total)}, nil)
			for _, p := range grad.Params(&d.Config) {
				c.Compare(t, exp, prefix+"grad."+p.Name, *p.Data, nil)
			}
			gs := grad.Slices(&d.Config)
			norm, _ := optim.ClipGradNorm(gs, hp.MaxGradNorm)
			c.Compare(t, exp, prefix+"grad_norm", []float32{float32(norm)}, nil)
			hp.step(d, gs, lr)
			for _, p := range d.W.Params(&d.Config) {
				c.Compare(t, exp, prefix+"updated."+p.Name, *p.Data, nil)
			}
		})
	}
}

// TestOptimizerIsolation applies clip + AdamW to the golden gradients of every case that gives an
// optimiser-only test (the first step's, "step0.", in a multi-step case) and compares with the golden
// update at the manifest's tight optimiser tolerance.
func TestOptimizerIsolation(t *testing.T) {
	for _, kind := range []goldentest.Kind{goldentest.TTT, goldentest.OnlineE2E} {
		goldentest.ForEach(t, kind, func(t *testing.T, c *goldentest.Case) {
			tol := c.OptimizerTolerance(t)
			hp := readStepHyper(t, c)
			prefix := ""
			var lr float64
			if c.HasHyper("lr") {
				c.Hyper(t, "lr", &lr)
			} else {
				var lrs []float64
				c.Hyper(t, "lrs", &lrs)
				prefix, lr = "step0.", lrs[0]
			}
			cfg, w, f := loadGoldenWeights(t, c)
			f.Close()
			var grads [][]float32
			var sizes []int
			for _, p := range w.Params(&cfg) {
				g := f32(c.Floats(t, "expected_f64.safetensors", prefix+"grad."+p.Name))
				grads = append(grads, g)
				sizes = append(sizes, len(g))
			}
			optim.ClipGradNorm(grads, hp.MaxGradNorm)
			opt := hp.adamW(sizes)
			opt.Update(w.Slices(&cfg), grads, lr)
			for _, p := range w.Params(&cfg) {
				want := c.Floats(t, "expected_f64.safetensors", prefix+"updated."+p.Name)
				for i, v := range *p.Data {
					if math.Abs(float64(v)-want[i]) > tol.Atol+tol.Rtol*math.Abs(want[i]) {
						t.Fatalf("%s[%d] = %g, want %g", p.Name, i, v, want[i])
					}
				}
			}
		})
	}
}

// TestEvaluateOnly checks that the forward-only pass gives the training pass's metrics.
func TestEvaluateOnly(t *testing.T) {
	goldentest.ForEach(t, goldentest.TTT, func(t *testing.T, c *goldentest.Case) {
		d := loadGoldenDraft(t, c)
		b := tttBatch(t, c, d)
		K := readStepHyper(t, c).K
		eval, err := d.TTT(b, K, nil, &Workspace{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		grad := NewWeights(&d.Config)
		train, err := d.TTT(b, K, &grad, &Workspace{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if eval.Total != train.Total {
			t.Errorf("eval total %g, train %g", eval.Total, train.Total)
		}
		for k := range K {
			if eval.Loss[k] != train.Loss[k] || eval.Correct[k] != train.Correct[k] || eval.Denom[k] != train.Denom[k] {
				t.Errorf("step %d: eval %+v, train %+v", k, eval, train)
			}
		}
	})
}
