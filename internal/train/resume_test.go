package train

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/checkpoint"
	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/export"
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

// onlineTrainer trains d on data with target beside it.
func onlineTrainer(cfg config.TrainConfig, target *model.Model, data *dataset.File, d *draft.Draft) *Trainer {
	return packedTrainer(cfg, 0, target, data, d)
}

// packedTrainer is onlineTrainer packing batches into rows of packLength tokens (0: no packing).
func packedTrainer(cfg config.TrainConfig, packLength int, target *model.Model, data *dataset.File, d *draft.Draft) *Trainer {
	return NewTrainer(Options{Config: cfg, Draft: d, PackLength: packLength,
		Train: &Online{Target: target, Data: data, AuxLayers: d.Config.AuxLayers, Used: d.Vocab.Used}})
}

// TestResumeIsExact interrupts a run after 3 of 7 steps, resumes it from the checkpoint, and requires the
// same weights and optimiser state, bit for bit, as an uninterrupted run; with and without packing.
func TestResumeIsExact(t *testing.T) {
	for _, c := range []struct {
		name       string
		packLength int
	}{{"unpacked", 0}, {"packed", 96}} {
		t.Run(c.name, func(t *testing.T) { resumeIsExact(t, c.packLength) })
	}
}

func resumeIsExact(t *testing.T, packLength int) {
	target, data, newDraft := storiesSetup(t)
	cfg := config.Defaults().Train
	cfg.MaxSteps, cfg.BatchSize, cfg.GradAccum, cfg.LR, cfg.WarmupRatio = 7, 3, 2, 3e-3, 0.3
	cfg.LogInterval, cfg.SaveInterval, cfg.Seed = 1, 0, 11
	newTrainer := func(out string) *Trainer {
		c := cfg
		c.OutputDir = out
		d := newDraft()
		return packedTrainer(c, packLength, target, data, d)
	}
	whole := newTrainer(t.TempDir())
	if err := whole.Run(context.Background()); err != nil {
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
	all, err := checkpoint.List(out)
	if err != nil || len(all) != 1 {
		t.Fatalf("checkpoints %v %v", all, err)
	}
	if err := resumed.Resume(all[0]); err != nil {
		t.Fatal(err)
	}
	if resumed.step != 3 || len(resumed.history) != 3 {
		t.Fatalf("resumed at step %d with %d records", resumed.step, len(resumed.history))
	}
	if err := resumed.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := &whole.draft.Config
	a, b := whole.draft.W.Slices(c), resumed.draft.W.Slices(c)
	for i := range a {
		for j := range a[i] {
			if math.Float32bits(a[i][j]) != math.Float32bits(b[i][j]) {
				t.Fatalf("tensor %d element %d: resumed %g, uninterrupted %g", i, j, b[i][j], a[i][j])
			}
			if math.Float32bits(whole.opt.M[i][j]) != math.Float32bits(resumed.opt.M[i][j]) ||
				math.Float32bits(whole.opt.V[i][j]) != math.Float32bits(resumed.opt.V[i][j]) {
				t.Fatalf("optimiser moment %d/%d differs", i, j)
			}
		}
	}
	if len(resumed.history) != len(whole.history) || resumed.opt.Step != whole.opt.Step {
		t.Errorf("metrics: %d records resumed, %d uninterrupted; optimiser step %d, %d", len(resumed.history), len(whole.history), resumed.opt.Step, whole.opt.Step)
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
	tr := NewTrainer(Options{Config: cfg, Draft: d, Train: src(), Eval: src()})
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	evaluated := map[int]bool{}
	for _, r := range tr.history {
		if r.Split == "eval" {
			evaluated[r.Step] = true
		}
	}
	if !evaluated[tr.bestStep] {
		t.Fatalf("best checkpoint step %d, evaluated steps %v", tr.bestStep, evaluated)
	}
	if _, err := os.Stat(filepath.Join(cfg.OutputDir, "checkpoints", checkpoint.Name(tr.bestStep), "state.json")); err != nil {
		t.Errorf("the best checkpoint was removed: %v", err)
	}
}

// TestCancelSavesCheckpoint cancels the run's context before it starts: the step under way finishes, its
// checkpoint is saved, and Run reports the interruption.
func TestCancelSavesCheckpoint(t *testing.T) {
	target, data, newDraft := storiesSetup(t)
	cfg := config.Defaults().Train
	cfg.MaxSteps, cfg.BatchSize, cfg.SaveInterval, cfg.OutputDir = 4, 2, 0, t.TempDir()
	d := newDraft()
	tr := onlineTrainer(cfg, target, data, d)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tr.Run(ctx); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("cancelled run: %v", err)
	}
	latest, err := checkpoint.Latest(cfg.OutputDir)
	if err != nil || filepath.Base(latest) != checkpoint.Name(1) || tr.Step() != 1 {
		t.Fatalf("after cancelling at step %d: latest checkpoint %q %v", tr.Step(), latest, err)
	}
}

func TestResumeRefusesAnotherRun(t *testing.T) {
	target, data, newDraft := storiesSetup(t)
	cfg := config.Defaults().Train
	cfg.MaxSteps, cfg.BatchSize, cfg.OutputDir = 2, 2, t.TempDir()
	d := newDraft()
	tr := onlineTrainer(cfg, target, data, d)
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg.Seed = 99
	other := NewTrainer(Options{Config: cfg, Draft: newDraft(), Train: tr.train})
	all, _ := checkpoint.List(cfg.OutputDir)
	if err := other.Resume(all[len(all)-1]); err == nil || !strings.Contains(err.Error(), "seed") {
		t.Errorf("resume with another seed: %v", err)
	}
	if err := other.Resume(filepath.Join(cfg.OutputDir, "nope")); err == nil {
		t.Error("resume from a missing checkpoint succeeded")
	}
}

func TestRecordJSON(t *testing.T) {
	r := Record{Step: 3, Split: "train", Loss: 1.5, PLoss: []float64{1, 0.5}, Acc: []float64{0.25, 0.125}, Alpha: []float64{0.5, 0.375}, SimAccLen: 0.28}
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"ploss_1":0.5`, `"acc_0":0.25`, `"alpha_1":0.375`, `"simulated_acceptance_length":0.28`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("%s lacks %s", raw, key)
		}
	}
	var back Record
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if back.Step != 3 || len(back.PLoss) != 2 || back.Acc[1] != 0.125 || len(back.Alpha) != 2 || back.Alpha[1] != 0.375 {
		t.Errorf("round trip %+v", back)
	}
}

// TestHistoryLongLines: a metrics.jsonl line over the old 16 MiB scanner limit stopped the history reader,
// and resume rewrote the file without every record after it; now all records up to the step are kept and
// a torn last line is dropped.
func TestHistoryLongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.jsonl")
	long := `{"step": 2, "split": "train", "note": "` + strings.Repeat("x", 20<<20) + `"}`
	content := `{"step": 1, "split": "train"}` + "\n" + long + "\n" + `{"step": 3, "split": "eval"}` + "\n" +
		`{"step": 4, "split": "train"}` + "\n" + `{"step": 5, "spl`
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got := readHistory(path, 4)
	var steps []int
	for _, r := range got {
		steps = append(steps, r.Step)
	}
	if len(steps) != 4 || steps[0] != 1 || steps[1] != 2 || steps[2] != 3 || steps[3] != 4 {
		t.Errorf("steps %v, want [1 2 3 4]", steps)
	}
	if got := readHistory(path, 2); len(got) != 2 {
		t.Errorf("up to step 2: %d records", len(got))
	}
}

// TestDefaultSavesPeriodically: with the default save_interval (0) a run saves after every tenth of its
// steps, so a killed run resumes near where it stopped; with save_interval the interval is the user's.
func TestDefaultSavesPeriodically(t *testing.T) {
	target, data, newDraft := storiesSetup(t)
	for _, c := range []struct {
		steps, interval int
		want            []int
	}{
		{20, 0, []int{2, 4, 6, 8, 10, 12, 14, 16, 18, 20}},
		{7, 0, []int{1, 2, 3, 4, 5, 6, 7}},
		{7, 3, []int{3, 6, 7}},
	} {
		cfg := config.Defaults().Train
		cfg.MaxSteps, cfg.BatchSize, cfg.SaveInterval, cfg.KeepCheckpoints, cfg.OutputDir = c.steps, 1, c.interval, 100, t.TempDir()
		d := newDraft()
		tr := onlineTrainer(cfg, target, data, d)
		if err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		all, _ := checkpoint.List(cfg.OutputDir)
		var got []string
		for _, s := range c.want {
			got = append(got, checkpoint.Name(s))
		}
		var names []string
		for _, p := range all {
			names = append(names, filepath.Base(p))
		}
		if strings.Join(names, " ") != strings.Join(got, " ") {
			t.Errorf("%d steps, save_interval %d: checkpoints %v, want %v", c.steps, c.interval, names, got)
		}
	}
}

// TestResumeFallsBack: when the newest checkpoint no longer loads, resume takes the one before it.
func TestResumeFallsBack(t *testing.T) {
	target, data, newDraft := storiesSetup(t)
	cfg := config.Defaults().Train
	cfg.MaxSteps, cfg.BatchSize, cfg.SaveInterval, cfg.OutputDir = 4, 1, 2, t.TempDir()
	d := newDraft()
	tr := onlineTrainer(cfg, target, data, d)
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	all, _ := checkpoint.List(cfg.OutputDir)
	if len(all) != 2 {
		t.Fatalf("checkpoints %v", all)
	}
	weights := filepath.Join(all[1], checkpoint.WeightsFile)
	raw, _ := os.ReadFile(weights)
	os.WriteFile(weights, raw[:len(raw)/2], 0o644) // damaged after it was published
	var log strings.Builder
	again := NewTrainer(Options{Config: cfg, Draft: newDraft(), Train: tr.train, Log: &log})
	if err := again.ResumeLatest(cfg.OutputDir); err != nil {
		t.Fatal(err)
	}
	if again.Step() != 2 || !strings.Contains(log.String(), "does not load") {
		t.Errorf("resumed at step %d, log %q", again.Step(), log.String())
	}
	os.RemoveAll(all[0])
	if err := NewTrainer(Options{Config: cfg, Draft: newDraft(), Train: tr.train}).ResumeLatest(cfg.OutputDir); err == nil {
		t.Error("resumed from a damaged checkpoint alone")
	}
}

// TestFailedSaveStopsAndRescues: a checkpoint that cannot be written (here its folder's name is taken by a
// file) stops the run at that step with the reason, and with train.rescue_dir the draft is written there.
func TestFailedSaveStopsAndRescues(t *testing.T) {
	target, data, newDraft := storiesSetup(t)
	cfg := config.Defaults().Train
	cfg.MaxSteps, cfg.BatchSize, cfg.SaveInterval, cfg.OutputDir = 4, 1, 2, t.TempDir()
	cfg.RescueDir = filepath.Join(t.TempDir(), "rescued")
	if err := os.WriteFile(checkpoint.Root(cfg.OutputDir), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d := newDraft()
	tr := onlineTrainer(cfg, target, data, d)
	err := tr.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "checkpoint of step 2") || !strings.Contains(err.Error(), "rescue_dir") || tr.Step() != 2 {
		t.Fatalf("run with an unwritable checkpoint folder: step %d, %v", tr.Step(), err)
	}
	im, err := export.Read(cfg.RescueDir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(im.Weights.LMHead, d.W.LMHead) {
		t.Error("the rescued draft is not the run's")
	}
}
