package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReportTo(t *testing.T) {
	r, err := LoadRun("", nil)
	if err != nil || !slices.Equal(r.Train.ReportTo, StringList{"jsonl"}) {
		t.Fatalf("default report_to %v (%v)", r.Train.ReportTo, err)
	}
	if r, err = LoadRun("", []string{"train.report_to=[jsonl, tensorboard]"}); err != nil || !r.Train.ReportTo.Has("tensorboard") {
		t.Fatalf("report_to %v (%v)", r.Train.ReportTo, err)
	}
	path := filepath.Join(t.TempDir(), "run.yaml")
	for _, c := range []struct{ yaml, want string }{
		{"train:\n  report_to: [jsonl, wandb]\n", `run.yaml:2: train.report_to entry 1: "wandb" is not one of jsonl, tensorboard`},
		{"train:\n  report_to: tensorboard\n", `run.yaml:2: train.report_to ["tensorboard"] lacks jsonl`},
		{"train:\n  report_to: []\n", `train.report_to [] lacks jsonl`},
	} {
		os.WriteFile(path, []byte(c.yaml), 0o644)
		if _, err := LoadRun(path, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.yaml, err, c.want)
		}
	}
}
