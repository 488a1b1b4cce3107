package train

import (
	"math"
	"testing"

	"github.com/specforge/specforge/internal/config"
)

// TestTrainLossKinds trains a few steps with each train.loss and checks the logged losses are that loss: kl
// and the LK losses start from the same draft, so at step 1 kl's ploss_k is the KL, lk_alpha's is
// -log(alpha)-like (at least -log(alpha_k), by Jensen) and lk_lambda's lies between the KL and 1-alpha_k;
// and training with an LK loss raises the acceptance alpha_0 it targets, measured on the same held batches.
func TestTrainLossKinds(t *testing.T) {
	target, data, newDraft := storiesSetup(t)
	first := map[string]*Record{}
	before, after := map[string]*Record{}, map[string]*Record{}
	for _, kind := range []string{"kl", "lk_lambda", "lk_alpha"} {
		cfg := config.Defaults().Train
		cfg.MaxSteps, cfg.BatchSize, cfg.LR, cfg.WarmupRatio, cfg.Seed = 12, 4, 1e-2, 0, 3
		cfg.Loss, cfg.LKKLScale, cfg.LKKLDecay = kind, 1, 1
		d := newDraft()
		cfg.EvalBatches = 4
		online := &Online{Target: target, Data: data, AuxLayers: d.Config.AuxLayers, Used: d.Vocab.Used}
		tr := NewTrainer(Options{Config: cfg, Draft: d, Train: online, Eval: online})
		var err error
		if before[kind], err = tr.Evaluate(); err != nil {
			t.Fatal(err)
		}
		for s := 0; s < cfg.MaxSteps; s++ {
			rec, err := tr.TrainStep()
			if err != nil {
				t.Fatal(err)
			}
			if len(rec.Alpha) != cfg.TTTLength {
				t.Fatalf("%s: %d alpha values for %d steps", kind, len(rec.Alpha), cfg.TTTLength)
			}
			if s == 0 {
				first[kind] = rec
			}
		}
		if after[kind], err = tr.Evaluate(); err != nil {
			t.Fatal(err)
		}
	}
	kl, lam, alp := first["kl"], first["lk_lambda"], first["lk_alpha"]
	for k := range kl.PLoss {
		if math.Abs(kl.Alpha[k]-alp.Alpha[k]) > 1e-9 || math.Abs(kl.Alpha[k]-lam.Alpha[k]) > 1e-9 {
			t.Errorf("step %d: alpha differs between losses before any update: %g %g %g", k, kl.Alpha[k], lam.Alpha[k], alp.Alpha[k])
		}
		a := kl.Alpha[k]
		if a <= 0 || a >= 1 {
			t.Fatalf("alpha_%d = %g, want in (0, 1)", k, a)
		}
		if alp.PLoss[k] < -math.Log(a)-1e-6 {
			t.Errorf("lk_alpha ploss_%d = %g below -log(alpha) = %g", k, alp.PLoss[k], -math.Log(a))
		}
		lo, hi := math.Min(kl.PLoss[k], 1-a), math.Max(kl.PLoss[k], 1-a)
		if lam.PLoss[k] < lo-1e-6 || lam.PLoss[k] > hi+1e-6 {
			t.Errorf("lk_lambda ploss_%d = %g outside [%g, %g]", k, lam.PLoss[k], lo, hi)
		}
	}
	for _, kind := range []string{"lk_lambda", "lk_alpha"} {
		t.Logf("%s: eval alpha_0 %.4f -> %.4f", kind, before[kind].Alpha[0], after[kind].Alpha[0])
		if after[kind].Alpha[0] <= before[kind].Alpha[0] {
			t.Errorf("%s: eval alpha_0 fell from %g to %g", kind, before[kind].Alpha[0], after[kind].Alpha[0])
		}
	}
}
