package train

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/specforge/specforge/internal/batch"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/optim"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/vocab"
)

// TestGoldenOnlineEndToEnd replays every online end-to-end case: the target produces aux states and the
// teacher for a batch, the draft vocabulary comes from the batch's loss tokens, and the case's optimiser steps
// run with its warmup-cosine schedule.
func TestGoldenOnlineEndToEnd(t *testing.T) {
	goldentest.ForEach(t, goldentest.OnlineE2E, onlineEndToEnd)
}

func onlineEndToEnd(t *testing.T, c *goldentest.Case) {
	var targetDir string
	c.Hyper(t, "target", &targetDir)
	target, err := model.Load(filepath.Join(c.Dir, targetDir))
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	ids := c.Ints(t, "inputs.safetensors", "input_ids")
	lm := c.Ints(t, "inputs.safetensors", "loss_mask")
	am := c.Ints(t, "inputs.safetensors", "attention_mask")
	shape := c.Shape(t, "inputs.safetensors", "input_ids")
	B, T := shape[0], shape[1]
	var K, steps, total int
	var maxNorm, warmup, base float64
	var betas [2]float64
	var eps, wd float64
	c.Hyper(t, "K", &K)
	c.Hyper(t, "steps", &steps)
	c.Hyper(t, "total_steps", &total)
	c.Hyper(t, "warmup_ratio", &warmup)
	c.Hyper(t, "base_lr", &base)
	c.Hyper(t, "max_grad_norm", &maxNorm)
	c.Hyper(t, "adam_betas", &betas)
	c.Hyper(t, "adam_eps", &eps)
	c.Hyper(t, "weight_decay", &wd)
	p := &batch.Tokens{B: B, T: T, IDs: make([]int32, B*T), LossMask: make([]bool, B*T), AttentionMask: make([]bool, B*T)}
	for i := range ids {
		p.IDs[i], p.LossMask[i], p.AttentionMask[i] = int32(ids[i]), lm[i] == 1, am[i] == 1
	}
	exp := "expected_f64.safetensors"

	// The vocabulary mapping from the batch's loss tokens.
	var cfg draft.Config
	c.Hyper(t, "draft_config", &cfg)
	c.Hyper(t, "aux_layer_ids", &cfg.AuxLayers)
	counter := vocab.NewCounter(cfg.VocabSize)
	if err := counter.Add(p.IDs, p.LossMask); err != nil {
		t.Fatal(err)
	}
	m, err := vocab.Build(counter.Counts, cfg.DraftVocabSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantD2T := c.Ints(t, exp, "vocab.d2t")
	if len(m.D2T) != len(wantD2T) {
		t.Fatalf("d2t %v, want %v", m.D2T, wantD2T)
	}
	for i := range wantD2T {
		if m.D2T[i] != wantD2T[i] {
			t.Fatalf("d2t %v, want %v", m.D2T, wantD2T)
		}
	}

	// Target outputs, compared on real rows.
	out, err := target.Forward(model.Batch{B: B, T: T, IDs: p.IDs, AttentionMask: p.AttentionMask}, nil,
		model.Request{AuxLayers: cfg.AuxLayers, Logits: model.AllLogits})
	if err != nil {
		t.Fatal(err)
	}
	c.Compare(t, exp, "target.aux_hidden", out.Aux, p.AttentionMask)
	c.Compare(t, exp, "target.final_hidden", out.Hidden, p.AttentionMask)
	c.Compare(t, exp, "target.logits", out.Logits, p.AttentionMask)

	f, err := safetensors.Open(filepath.Join(c.Dir, "draft_init.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := draft.LoadWeights(&cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	d, err := draft.New(cfg, target.Embed, m, w)
	if err != nil {
		t.Fatal(err)
	}
	src := &Online{Target: target, AuxLayers: cfg.AuxLayers, Used: m.Used}
	var lrs []float64
	c.Hyper(t, "lrs", &lrs)
	if len(lrs) < steps {
		t.Fatalf("%d learning rates for %d steps", len(lrs), steps)
	}
	lrTable := make([]float32, total)
	for s := range lrTable {
		lrTable[s] = float32(optim.CosineWarmup(s, total, warmup, base))
	}
	c.Compare(t, exp, "lr_table", lrTable, nil)

	var sizes []int
	for _, s := range d.W.Slices(&cfg) {
		sizes = append(sizes, len(s))
	}
	opt := optim.NewAdamW(sizes, betas[0], betas[1], eps, wd)
	ws := &draft.Workspace{}
	for step := range steps {
		b, err := src.batchOf(p)
		if err != nil {
			t.Fatal(err)
		}
		prefix := fmt.Sprintf("step%d.", step)
		if step == 0 {
			c.Compare(t, exp, prefix+"target_p", b.Teacher.P, nil)
		}
		grad := draft.NewWeights(&cfg)
		met, err := d.TTT(b, K, &grad, ws, 1)
		if err != nil {
			t.Fatal(err)
		}
		loss := make([]float32, K)
		for k := range loss {
			loss[k] = float32(met.Loss[k])
		}
		c.Compare(t, exp, prefix+"loss", loss, nil)
		c.Compare(t, exp, prefix+"total_loss", []float32{float32(met.Total)}, nil)
		wantCorrect := c.Ints(t, exp, prefix+"correct")
		if len(met.Correct) != len(wantCorrect) {
			t.Fatalf("%scorrect %v, want %v", prefix, met.Correct, wantCorrect)
		}
		for k := range wantCorrect {
			if int64(met.Correct[k]) != wantCorrect[k] {
				t.Fatalf("%scorrect %v, want %v", prefix, met.Correct, wantCorrect)
			}
		}
		if step == 0 {
			for _, pr := range grad.Params(&cfg) {
				c.Compare(t, exp, prefix+"grad."+pr.Name, *pr.Data, nil)
			}
		}
		norm, _ := optim.ClipGradNorm(grad.Slices(&cfg), maxNorm)
		c.Compare(t, exp, prefix+"grad_norm", []float32{float32(norm)}, nil)
		opt.Update(d.W.Slices(&cfg), grad.Slices(&cfg), lrs[step])
		if step == 0 {
			for _, pr := range d.W.Params(&cfg) {
				c.Compare(t, exp, prefix+"updated."+pr.Name, *pr.Data, nil)
			}
		}
	}
	for _, pr := range d.W.Params(&cfg) {
		c.Compare(t, exp, "final."+pr.Name, *pr.Data, nil)
	}
}
