package draft

import (
	"testing"

	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/optim"
	"github.com/specforge/specforge/internal/tensor"
)

// Tolerances of a bf16 training step against the float64 goldens, relative to each tensor's largest
// magnitude. They come from a bf16 run of the same math: the PyTorch reference (shared/bench/eagle3.py)
// under torch.autocast("cpu", torch.bfloat16) on the public TTT cases deviates from expected_f64 by at
// most 2.1e-2 of the scale on gradients and AdamW moments (adam_v.lm_head of f_ttt_target_hidden_96),
// 6.0e-4 on the per-step losses and 1.0e-3 on the gradient norm and clip coefficient. Our products round
// the same operands but sum in another order, so the bounds are those deviations with a margin of 2.5x:
const (
	bf16GradRel = 0.05 // gradients, adam_m, adam_v
	bf16LossRel = 2e-3 // loss, total_loss, grad_norm, clip_coef
)

// bf16Flips bounds how many argmax decisions (correct counts) a bf16 step may flip per TTT step: near-tied
// logits change order under bf16 rounding (the PyTorch run flips one of e_ttt_basic's 31 counted rows).
func bf16Flips(denom int) int { return max(1, denom/20) }

func TestGoldenTTTBF16(t *testing.T) {
	goldentest.ForEach(t, goldentest.TTT, func(t *testing.T, c *goldentest.Case) {
		d := loadGoldenDraft(t, c)
		var lr float64
		c.Hyper(t, "lr", &lr)
		hp := readStepHyper(t, c)
		b := tttBatch(t, c, d)
		exp := "expected_f64.safetensors"
		grad := NewWeights(&d.Config)
		met, err := d.TTT(b, hp.K, &grad, &Workspace{Precision: tensor.BF16}, 1)
		if err != nil {
			t.Fatal(err)
		}
		c.CompareScaled(t, exp, "loss", f32(met.Loss), bf16LossRel, 0)
		c.CompareScaled(t, exp, "total_loss", []float32{float32(met.Total)}, bf16LossRel, 0)
		wantCorrect, wantDenom := c.Ints(t, exp, "correct"), c.Ints(t, exp, "denom")
		exactInts(t, "denom", met.Denom, wantDenom)
		for k, got := range met.Correct {
			if d := got - int(wantCorrect[k]); d > bf16Flips(met.Denom[k]) || -d > bf16Flips(met.Denom[k]) {
				t.Errorf("correct[%d] = %d, want %d within %d", k, got, wantCorrect[k], bf16Flips(met.Denom[k]))
			}
		}
		for _, p := range grad.Params(&d.Config) {
			c.CompareScaled(t, exp, "grad."+p.Name, *p.Data, bf16GradRel, 0)
		}
		gs := grad.Slices(&d.Config)
		norm, coef := optim.ClipGradNorm(gs, hp.MaxGradNorm)
		c.CompareScaled(t, exp, "grad_norm", []float32{float32(norm)}, bf16LossRel, 0)
		c.CompareScaled(t, exp, "clip_coef", []float32{float32(coef)}, bf16LossRel, 0)
		opt := hp.step(d, gs, lr)
		for i, p := range d.W.Params(&d.Config) {
			// One AdamW step moves a weight by about lr*sign(g) where |g| is well above eps, so a gradient
			// whose sign bf16 flips moves it 2 lr away: the PyTorch bf16 run's largest deviation is 1.999e-3
			// at lr 1e-3.
			c.CompareScaled(t, exp, "updated."+p.Name, *p.Data, 0, 2.05*lr)
			c.CompareScaled(t, exp, "adam_m."+p.Name, opt.M[i], bf16GradRel, 0)
			c.CompareScaled(t, exp, "adam_v."+p.Name, opt.V[i], bf16GradRel, 0)
		}
	})
}

// A bf16 step must actually round: its gradients differ from the float32 step's, by about bf16's
// precision and not more.
func TestBF16StepRounds(t *testing.T) {
	c := goldentest.First(t, goldentest.TTT)
	d := loadGoldenDraft(t, c)
	hp := readStepHyper(t, c)
	b := tttBatch(t, c, d)
	g32, g16 := NewWeights(&d.Config), NewWeights(&d.Config)
	if _, err := d.TTT(b, hp.K, &g32, &Workspace{}, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := d.TTT(b, hp.K, &g16, &Workspace{Precision: tensor.BF16}, 1); err != nil {
		t.Fatal(err)
	}
	a, z := g32.Slices(&d.Config), g16.Slices(&d.Config)
	var diff, scale float64
	for i := range a {
		for j := range a[i] {
			diff = max(diff, float64(abs32(a[i][j]-z[i][j])))
			scale = max(scale, float64(abs32(a[i][j])))
		}
	}
	if rel := diff / scale; rel < 1e-4 || rel > bf16GradRel {
		t.Fatalf("bf16 gradients differ from float32 ones by %.2e of the scale, want between 1e-4 and %g", rel, bf16GradRel)
	}
	if _, err := d.TTT(b, hp.K, &g16, &Workspace{Precision: tensor.F16}, 1); err == nil {
		t.Fatal("an F16 training precision was accepted")
	}
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}
