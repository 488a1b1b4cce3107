package train

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/fixturetest"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/vocab"
)

// storiesSetup prepares a small dataset of TinyStories paragraphs and a fresh draft for stories260K.
func storiesSetup(t *testing.T) (*model.Model, *dataset.File, func() *draft.Draft) {
	target, f, _ := fixturetest.Stories(t, 40, 48)
	counts, err := f.CountLossTokens(512)
	if err != nil {
		t.Fatal(err)
	}
	m, err := vocab.Build(counts.Counts, 96, nil)
	if err != nil {
		t.Fatal(err)
	}
	newDraft := func() *draft.Draft {
		cfg := draft.FromTarget(target.Config, nil, 96)
		w := draft.NewWeights(&cfg)
		w.Init(&cfg, 5, 0.02)
		d, err := draft.New(cfg, target.Embed, m, w)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	return target, f, newDraft
}

// TestResumeIsExact interrupts a run after 3 of 7 steps, resumes it from the checkpoint, and requires the
// same weights and optimiser state, bit for bit, as an uninterrupted run.
func TestResumeIsExact(t *testing.T) {
	target, data, newDraft := storiesSetup(t)
	cfg := config.Defaults().Train
	cfg.MaxSteps, cfg.BatchSize, cfg.GradAccum, cfg.LR, cfg.WarmupRatio = 7, 3, 2, 3e-3, 0.3
	cfg.LogInterval, cfg.SaveInterval, cfg.Seed = 1, 0, 11
	newTrainer := func(out string) *Trainer {
		c := cfg
		c.OutputDir = out
		d := newDraft()
		return NewTrainer(c, d, &Online{Target: target, Data: data, AuxLayers: d.Config.AuxLayers, Used: d.Vocab.Used}, nil, nil)
	}
	whole := newTrainer(t.TempDir())
	if err := whole.Run(); err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	first := newTrainer(out)
	first.metrics, _ = os.Create(filepath.Join(out, "metrics.jsonl"))
	for i := 0; i < 3; i++ {
		rec, err := first.TrainStep()
		if err != nil {
			t.Fatal(err)
		}
		first.record(rec)
	}
	if err := first.Save(); err != nil {
		t.Fatal(err)
	}
	first.TrainStep() // work after the checkpoint, lost when the process dies
	first.metrics.Close()

	resumed := newTrainer(out)
	all, err := Checkpoints(filepath.Join(out, "checkpoints"))
	if err != nil || len(all) != 1 {
		t.Fatalf("checkpoints %v %v", all, err)
	}
	if err := resumed.Resume(all[0]); err != nil {
		t.Fatal(err)
	}
	if resumed.Step != 3 || len(resumed.History) != 3 {
		t.Fatalf("resumed at step %d with %d records", resumed.Step, len(resumed.History))
	}
	if err := resumed.Run(); err != nil {
		t.Fatal(err)
	}
	c := &whole.Draft.Config
	a, b := whole.Draft.W.Slices(c), resumed.Draft.W.Slices(c)
	for i := range a {
		for j := range a[i] {
			if math.Float32bits(a[i][j]) != math.Float32bits(b[i][j]) {
				t.Fatalf("tensor %d element %d: resumed %g, uninterrupted %g", i, j, b[i][j], a[i][j])
			}
			if math.Float32bits(whole.Opt.M[i][j]) != math.Float32bits(resumed.Opt.M[i][j]) ||
				math.Float32bits(whole.Opt.V[i][j]) != math.Float32bits(resumed.Opt.V[i][j]) {
				t.Fatalf("optimiser moment %d/%d differs", i, j)
			}
		}
	}
	if len(resumed.History) != len(whole.History) || resumed.Opt.Step != whole.Opt.Step {
		t.Errorf("metrics: %d records resumed, %d uninterrupted; optimiser step %d, %d", len(resumed.History), len(whole.History), resumed.Opt.Step, whole.Opt.Step)
	}
}

// TestBestCheckpointWasEvaluated saves at steps 3 and 5 and evaluates at 2, 4 and 5, with a learning rate
// too small to change any metric: the checkpoint kept as the best must be one whose weights were evaluated
// (step 5), not step 3 credited with step 2's evaluation.
func TestBestCheckpointWasEvaluated(t *testing.T) {
	target, data, newDraft := storiesSetup(t)
	cfg := config.Defaults().Train
	cfg.MaxSteps, cfg.BatchSize, cfg.LR, cfg.Seed = 5, 3, 1e-30, 5
	cfg.SaveInterval, cfg.EvalInterval, cfg.EvalBatches, cfg.KeepCheckpoints = 3, 2, 1, 1
	cfg.OutputDir = t.TempDir()
	d := newDraft()
	src := func() BatchSource {
		return &Online{Target: target, Data: data, AuxLayers: d.Config.AuxLayers, Used: d.Vocab.Used}
	}
	tr := NewTrainer(cfg, d, src(), src(), nil)
	if err := tr.Run(); err != nil {
		t.Fatal(err)
	}
	evaluated := map[int]bool{}
	for _, r := range tr.History {
		if r.Split == "eval" {
			evaluated[r.Step] = true
		}
	}
	if !evaluated[tr.BestStep] {
		t.Fatalf("best checkpoint step %d, evaluated steps %v", tr.BestStep, evaluated)
	}
	if _, err := os.Stat(filepath.Join(cfg.OutputDir, "checkpoints", checkpointName(tr.BestStep), "state.json")); err != nil {
		t.Errorf("the best checkpoint was removed: %v", err)
	}
}

func TestResumeRefusesAnotherRun(t *testing.T) {
	target, data, newDraft := storiesSetup(t)
	cfg := config.Defaults().Train
	cfg.MaxSteps, cfg.BatchSize, cfg.OutputDir = 2, 2, t.TempDir()
	d := newDraft()
	tr := NewTrainer(cfg, d, &Online{Target: target, Data: data, AuxLayers: d.Config.AuxLayers, Used: d.Vocab.Used}, nil, nil)
	if err := tr.Run(); err != nil {
		t.Fatal(err)
	}
	cfg.Seed = 99
	other := NewTrainer(cfg, newDraft(), tr.Train, nil, nil)
	all, _ := Checkpoints(filepath.Join(cfg.OutputDir, "checkpoints"))
	if err := other.Resume(all[len(all)-1]); err == nil || !strings.Contains(err.Error(), "seed") {
		t.Errorf("resume with another seed: %v", err)
	}
	if err := other.Resume(filepath.Join(cfg.OutputDir, "nope")); err == nil {
		t.Error("resume from a missing checkpoint succeeded")
	}
}

func TestRecordJSON(t *testing.T) {
	r := Record{Step: 3, Split: "train", Loss: 1.5, PLoss: []float64{1, 0.5}, Acc: []float64{0.25, 0.125}, SimAccLen: 0.28}
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"ploss_1":0.5`, `"acc_0":0.25`, `"simulated_acceptance_length":0.28`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("%s lacks %s", raw, key)
		}
	}
	var back Record
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if back.Step != 3 || len(back.PLoss) != 2 || back.Acc[1] != 0.125 {
		t.Errorf("round trip %+v", back)
	}
}
