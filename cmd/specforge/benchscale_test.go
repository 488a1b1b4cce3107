package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/scalebench"
)

// benchChildEnv makes the test binary act as the specforge binary, so that the bench subcommands' child
// processes (os.Executable "bench job") run here.
const benchChildEnv = "SPECFORGE_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(benchChildEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var tinyShape = []string{"--layers", "4", "--hidden", "64", "--intermediate", "160", "--heads", "4", "--kv-heads", "2", "--head-dim", "16", "--vocab", "512"}

func TestBenchScaleTiny(t *testing.T) {
	t.Setenv(benchChildEnv, "1")
	dir := filepath.Join(t.TempDir(), "scale")
	report := filepath.Join(t.TempDir(), "scale.json")
	args := append([]string{"bench", "scale", "--dir", dir, "--keep", "--out", report, "--tokens", "256", "--seq", "64", "--draft-vocab", "100", "--shard-gb", "0.0001"}, tinyShape...)
	out, err := run(args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"backend: ", "each in a fresh child process", "checkpoint write", "gen-hidden        256 tokens", "train (1 step)    64 tokens", "peak RSS overall"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep scalebench.ScaleReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Isolated || len(rep.Checkpoint.Shards) < 2 || rep.GenHidden.TokensPerS <= 0 || rep.Train.TokensPerS <= 0 {
		t.Errorf("report: %s", raw)
	}
	// Each phase ran in its own process: none of them saw the writer's or another phase's memory.
	if rep.Load.PeakRSSMiB > rep.Train.PeakRSSMiB || rep.PeakRSSMiB != max(rep.Load.PeakRSSMiB, rep.GenHidden.PeakRSSMiB, rep.Train.PeakRSSMiB) {
		t.Errorf("peaks: load %.0f, gen-hidden %.0f, train %.0f, overall %.0f MiB", rep.Load.PeakRSSMiB, rep.GenHidden.PeakRSSMiB, rep.Train.PeakRSSMiB, rep.PeakRSSMiB)
	}
	ckpt, err := safetensors.OpenCheckpoint(filepath.Join(dir, "target"))
	if err != nil {
		t.Fatal(err)
	}
	ckpt.Close()

	// Without --keep the folder goes away; a folder with files in it is refused rather than removed.
	dir2 := filepath.Join(t.TempDir(), "scale2")
	if out, err := run(append([]string{"bench", "scale", "--in-process", "--dir", dir2, "--tokens", "64", "--seq", "64", "--draft-vocab", "100"}, tinyShape...)...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := os.Stat(dir2); !os.IsNotExist(err) {
		t.Errorf("%s is still there: %v", dir2, err)
	}
	if _, err := run(append([]string{"bench", "scale", "--dir", dir}, tinyShape...)...); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a non-empty --dir: %v", err)
	}
	if _, err := run("bench", "scale", "--dtype", "f16"); err == nil {
		t.Error("--dtype f16 accepted")
	}
}

func TestBenchTrainMemoryTiny(t *testing.T) {
	out, err := run("bench", "train-memory", "--in-process", "--seq-lens", "32,64", "--hidden", "64", "--intermediate", "160", "--heads", "4",
		"--kv-heads", "2", "--head-dim", "16", "--vocab", "512", "--draft-vocab", "128", "--ttt-length", "3")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// run shares one buffer between stdout and stderr: the table is the last three lines.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	lines = lines[max(0, len(lines)-3):]
	if len(lines) != 3 || !strings.Contains(lines[0], "peak RSS MiB") || !strings.HasPrefix(strings.TrimSpace(lines[1]), "32 ") ||
		!strings.HasPrefix(strings.TrimSpace(lines[2]), "64 ") || !strings.Contains(lines[2], "x") {
		t.Errorf("output:\n%s", out)
	}
}
