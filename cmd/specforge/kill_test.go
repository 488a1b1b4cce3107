package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/runlock"
)

// killArgs trains the tiny run of tinyTrainArgs for longer, with a checkpoint every step, so that kills
// land in training steps, in checkpoint writes and in the final export.
func killArgs(t *testing.T, out, cache string) []string {
	args := tinyTrainArgs(t, out)
	for i, a := range args {
		if strings.HasPrefix(a, "train.max_steps=") {
			args[i] = "train.max_steps=10"
		}
		if strings.HasPrefix(a, "data.cache_dir=") {
			args[i] = "data.cache_dir=" + cache
		}
	}
	return append(args, "--set", "train.save_interval=1", "--set", "train.keep_checkpoints=3")
}

// startCLI runs the test binary as the specforge command.
func startCLI(t *testing.T, args []string) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), benchChildEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

// killWhen runs the command until cond holds (polled every millisecond) or it exits, kills it with
// SIGKILL, and reports whether the kill landed before the command finished.
func killWhen(t *testing.T, args []string, cond func() bool) bool {
	cmd, out := startCLI(t, args)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run failed before the kill: %v\n%s", err, out)
			}
			return false
		default:
		}
		if cond() {
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			return true
		}
		time.Sleep(time.Millisecond)
	}
}

// hasEntry reports whether dir holds an entry whose name has the prefix and contains part.
func hasEntry(dir, prefix, part string) bool {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && strings.Contains(e.Name(), part) {
			return true
		}
	}
	return false
}

// TestKilledTrainingResumesExactly kills a training with SIGKILL while it trains, while it writes a
// checkpoint, and while it writes the final export, runs it again each time, and requires the final draft
// to be the bytes an uninterrupted run writes; the stale temporary entries of the kills are gone.
func TestKilledTrainingResumesExactly(t *testing.T) {
	goldentest.Shared(t)
	cache := filepath.Join(t.TempDir(), "cache")
	whole := t.TempDir()
	if cmd, out := startCLI(t, killArgs(t, whole, cache)); cmd.Wait() != nil {
		t.Fatalf("uninterrupted run failed:\n%s", out)
	}
	want, err := os.ReadFile(filepath.Join(whole, "run", "draft", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	run, ckpts := filepath.Join(out, "run"), filepath.Join(out, "run", "checkpoints")
	args := killArgs(t, out, cache)
	kills := []struct {
		name string
		cond func() bool
	}{
		{"after the third checkpoint", func() bool { return hasEntry(ckpts, "step_00000003", "") }},
		{"during a checkpoint write", func() bool { return hasEntry(ckpts, ".step_", ".tmp-") }},
		{"during a checkpoint write", func() bool { return hasEntry(ckpts, ".step_", ".tmp-") }},
		{"during the final export", func() bool { return hasEntry(run, ".draft", ".tmp-") }},
	}
	for _, k := range kills {
		if killWhen(t, args, k.cond) {
			t.Logf("killed %s", k.name)
		} else {
			t.Logf("the run ended before the kill %s", k.name)
		}
	}
	cmd, log := startCLI(t, args)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final run: %v\n%s", err, log)
	}
	got, err := os.ReadFile(filepath.Join(run, "draft", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the draft after %d kills differs from the uninterrupted run's\n%s", len(kills), log)
	}
	for _, dir := range []string{run, ckpts} {
		if hasEntry(dir, ".", ".tmp-") {
			t.Errorf("%s keeps temporary entries of the killed runs", dir)
		}
	}
}

// TestInterruptExitsWith130: SIGINT during training saves a checkpoint and exits with status 130, which
// scripts tell apart from a failure (1).
func TestInterruptExitsWith130(t *testing.T) {
	goldentest.Shared(t)
	out := t.TempDir()
	// Long enough that the run is still training when the signal comes.
	args := append(killArgs(t, out, filepath.Join(out, "cache")), "--set", "train.max_steps=100000")
	cmd, log := startCLI(t, args)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ckpts := filepath.Join(out, "run", "checkpoints")
	var err error
wait:
	for {
		select {
		case err = <-done:
			t.Fatalf("the run ended (%v) before its second checkpoint\n%s", err, log)
		default:
		}
		if hasEntry(ckpts, "step_00000002", "") {
			cmd.Process.Signal(os.Interrupt)
			err = <-done
			break wait
		}
		time.Sleep(time.Millisecond)
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Fatalf("exit status %d (%v), want 130\n%s", code, err, log)
	}
	if !strings.Contains(log.String(), "interrupted") {
		t.Errorf("output:\n%s", log)
	}
}

// filesUnder maps the regular files below dir (relative paths) to their bytes, leaving out names that
// skip reports.
func filesUnder(t *testing.T, dir string, skip func(name string) bool) map[string]string {
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() || skip(e.Name()) {
			return err
		}
		raw, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(raw)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameFiles(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: %s is not in the uninterrupted run's output", what, name)
		}
	}
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s: %s is missing", what, name)
		} else if g != w {
			t.Errorf("%s: %s differs from the uninterrupted run's", what, name)
			if len(g) < 2000 {
				t.Logf("got %s\nwant %s", g, w)
			}
		}
	}
}

// TestKilledGenHiddenAndPrepareResume kills gen-hidden while it writes a shard and after a shard, and
// prepare-data while it writes its dataset, runs each again, and requires the files an uninterrupted run
// writes (shards, manifests, datasets) byte for byte.
func TestKilledGenHiddenAndPrepareResume(t *testing.T) {
	goldentest.Shared(t)
	genArgs := func(out, cache string) []string {
		args := killArgs(t, out, cache)
		return append(append([]string{"gen-hidden"}, args[1:]...), "--out", filepath.Join(out, "hidden"), "--samples-per-shard", "2")
	}
	cache := filepath.Join(t.TempDir(), "cache")
	whole := t.TempDir()
	if cmd, log := startCLI(t, genArgs(whole, cache)); cmd.Wait() != nil {
		t.Fatalf("uninterrupted gen-hidden failed:\n%s", log)
	}
	keep := func(name string) bool { return name == runlock.FileName } // it names the pid
	want := filesUnder(t, filepath.Join(whole, "hidden"), keep)

	out := t.TempDir()
	train := filepath.Join(out, "hidden", "train")
	for _, cond := range []func() bool{
		func() bool { return hasEntry(train, "shard_00001", "") },
		func() bool { return hasEntry(train, ".shard_", ".tmp-") },
		func() bool { return hasEntry(train, ".shard_", ".tmp-") },
	} {
		if !killWhen(t, genArgs(out, cache), cond) {
			t.Log("gen-hidden ended before the kill")
		}
	}
	if cmd, log := startCLI(t, genArgs(out, cache)); cmd.Wait() != nil {
		t.Fatalf("resumed gen-hidden failed:\n%s", log)
	}
	sameFiles(t, "gen-hidden", filesUnder(t, filepath.Join(out, "hidden"), keep), want)

	tok := goldentest.Shared(t, "assets", "tokenizers", "qwen3")
	data := goldentest.Shared(t, "assets", "datasets", "fastchat_dummy_conversation", "dummy_conversation.json")
	prepArgs := func(cache string) []string {
		return []string{"prepare-data", "--target", tok, "--data", data, "--chat-template", "qwen3-instruct", "--cache-dir", cache, "--draft-vocab-size", "1000"}
	}
	wholeCache := t.TempDir()
	if cmd, log := startCLI(t, prepArgs(wholeCache)); cmd.Wait() != nil {
		t.Fatalf("uninterrupted prepare-data failed:\n%s", log)
	}
	// prepare-data takes a few tens of milliseconds here: kill it after 25, 50, ... ms until a run ends on
	// its own, so that kills land throughout it.
	killedCache := t.TempDir()
	kills := 0
	for delay := 25 * time.Millisecond; ; delay += 25 * time.Millisecond {
		start := time.Now()
		if !killWhen(t, prepArgs(killedCache), func() bool { return time.Since(start) > delay }) {
			break
		}
		kills++
	}
	t.Logf("prepare-data killed %d times", kills)
	if cmd, log := startCLI(t, prepArgs(killedCache)); cmd.Wait() != nil {
		t.Fatalf("prepare-data after the kill failed:\n%s", log)
	}
	volatile := func(name string) bool { return name == "stats.json" || name == runlock.FileName } // seconds, pid
	sameFiles(t, "prepare-data", filesUnder(t, killedCache, volatile), filesUnder(t, wholeCache, volatile))
}

// TestSecondRunRefused: a second train on a folder another process trains in is refused, naming the
// holder, and leaves the first run's metrics alone.
func TestSecondRunRefused(t *testing.T) {
	goldentest.Shared(t)
	out := t.TempDir()
	// Long enough that the first run is still training when the second starts; it is interrupted below.
	args := append(killArgs(t, out, filepath.Join(out, "cache")), "--set", "train.max_steps=100000", "--set", "train.log_interval=1")
	first, log := startCLI(t, args)
	done := make(chan error, 1)
	go func() { done <- first.Wait() }()
	ckpts := filepath.Join(out, "run", "checkpoints")
	for !hasEntry(ckpts, "step_00000001", "") {
		select {
		case err := <-done:
			t.Fatalf("the first run ended (%v) before its first checkpoint\n%s", err, log)
		default:
			time.Sleep(time.Millisecond)
		}
	}
	_, err := run(args...)
	if err == nil || !strings.Contains(err.Error(), "in use by another run") || !strings.Contains(err.Error(), "pid ") {
		t.Errorf("second run: %v", err)
	}
	first.Process.Signal(os.Interrupt)
	<-done
	if code := first.ProcessState.ExitCode(); code != 130 {
		t.Fatalf("first run: exit status %d\n%s", code, log)
	}
	// The first run's records, in order and each once: no second writer interleaved or cut them.
	raw, _ := os.ReadFile(filepath.Join(out, "run", "metrics.jsonl"))
	last, n := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var r struct {
			Step  int    `json:"step"`
			Split string `json:"split"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		if r.Split != "train" {
			continue
		}
		if r.Step != last+1 {
			t.Errorf("train record of step %d after step %d", r.Step, last)
		}
		last, n = r.Step, n+1
	}
	if n < 2 {
		t.Errorf("%d train records", n)
	}
}
