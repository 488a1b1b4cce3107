package train

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/checkpoint"
	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/tensorboard"
)

// TestTensorBoardEvents trains with train.report_to [jsonl, tensorboard]: every metric of every metrics.jsonl
// record is a scalar of the event at its step, tagged split/name; a run resumed from the step-2 checkpoint
// writes a second file that starts by telling TensorBoard to drop steps from 3 on.
func TestTensorBoardEvents(t *testing.T) {
	target, data, newDraft := storiesSetup(t)
	cfg := config.Defaults().Train
	cfg.MaxSteps, cfg.BatchSize, cfg.LR, cfg.TTTLength = 4, 2, 3e-3, 3
	cfg.LogInterval, cfg.EvalInterval, cfg.EvalBatches, cfg.SaveInterval, cfg.KeepCheckpoints = 1, 2, 1, 2, 4
	cfg.OutputDir = t.TempDir()
	cfg.ReportTo = config.StringList{"jsonl", "tensorboard"}
	newTrainer := func() *Trainer {
		d := newDraft()
		src := &Online{Target: target, Data: data, AuxLayers: d.Config.AuxLayers, Used: d.Vocab.Used}
		return NewTrainer(Options{Config: cfg, Draft: d, Train: src, Eval: src})
	}
	if err := newTrainer().Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(cfg.OutputDir, "tensorboard", "events.out.tfevents.*"))
	if len(files) != 1 {
		t.Fatalf("event files %v", files)
	}
	evs, err := tensorboard.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(cfg.OutputDir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(evs) != 1+len(lines) || evs[0].FileVersion != tensorboard.FileVersion {
		t.Fatalf("%d events for %d records", len(evs), len(lines))
	}
	splits := map[string]bool{}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		ev, split := evs[1+i], m["split"].(string)
		splits[split] = true
		if ev.Step != int64(m["step"].(float64)) {
			t.Fatalf("record %d: event step %d, record step %v", i, ev.Step, m["step"])
		}
		var want []tensorboard.Scalar
		for k, v := range m {
			if k != "step" && k != "split" {
				want = append(want, tensorboard.Scalar{Tag: split + "/" + k, Value: float64(float32(v.(float64)))})
			}
		}
		slices.SortFunc(want, func(a, b tensorboard.Scalar) int { return strings.Compare(a.Tag, b.Tag) })
		if !slices.Equal(ev.Scalars, want) {
			t.Errorf("record %d: scalars %v, want %v", i, ev.Scalars, want)
		}
		for _, tag := range []string{"/loss", "/acc_2", "/ploss_0", "/alpha_1", "/simulated_acceptance_length"} {
			if !slices.ContainsFunc(ev.Scalars, func(s tensorboard.Scalar) bool { return s.Tag == split+tag && !math.IsNaN(s.Value) }) {
				t.Errorf("record %d: no %s%s", i, split, tag)
			}
		}
	}
	if !splits["train"] || !splits["eval"] {
		t.Errorf("splits %v", splits)
	}

	all, err := checkpoint.List(cfg.OutputDir)
	if err != nil || len(all) < 2 {
		t.Fatalf("checkpoints %v %v", all, err)
	}
	resumed := newTrainer()
	if err := resumed.Resume(all[0]); err != nil || resumed.Step() != 2 {
		t.Fatalf("resume from %s: step %d, %v", all[0], resumed.Step(), err)
	}
	if err := resumed.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, _ = filepath.Glob(filepath.Join(cfg.OutputDir, "tensorboard", "events.out.tfevents.*"))
	slices.Sort(files)
	if len(files) != 2 {
		t.Fatalf("event files after resuming %v", files)
	}
	evs, err = tensorboard.ReadFile(files[1])
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) < 3 || !evs[1].SessionStart || evs[1].Step != 3 || evs[2].Step != 3 {
		t.Fatalf("resumed file: %+v", evs[:min(3, len(evs))])
	}
}
