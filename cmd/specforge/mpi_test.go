package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/specforge/specforge/internal/export"
	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/mpi/mpitest"
)

// mpiArgs is the tiny run of tinyTrainArgs in float32 with a checkpoint at step 2 and a metrics line per
// step, into run folder out, at batch size batch per rank, with extra settings appended.
func mpiArgs(t *testing.T, shared, out string, batch string, extra ...string) []string {
	args := tinyTrainArgs(t, shared)
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "train.output_dir="):
			args[i] = "train.output_dir=" + out
		case strings.HasPrefix(a, "train.batch_size="):
			args[i] = "train.batch_size=" + batch
		}
	}
	args = append(args, "--set", "train.precision=f32", "--set", "train.save_interval=2", "--set", "train.log_interval=1",
		"--set", "train.eval_acceptance_prompts=0")
	for _, e := range extra {
		args = append(args, "--set", e)
	}
	return args
}

// trainLosses is each metrics line's split, step and loss of run folder dir.
func trainLosses(t *testing.T, dir string) []float64 {
	raw, err := os.ReadFile(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, line := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		var r struct {
			Step  int     `json:"step"`
			Loss  float64 `json:"loss"`
			Acc0  float64 `json:"acc_0"`
			Split string  `json:"split"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		out = append(out, float64(r.Step), r.Loss, r.Acc0)
	}
	return out
}

// ckptWeights is the draft of a checkpoint.
func ckptWeights(t *testing.T, ckpt string) *export.Imported {
	im, err := export.Read(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// TestDataParallelMPI trains the tiny run on 2 ranks (mpirun) against one process with the same global
// batch, reruns and resumes it on 2 ranks (bit-identical), resumes it on 1 rank, and feeds the ranks
// configurations that disagree.
func TestDataParallelMPI(t *testing.T) {
	goldentest.Shared(t)
	mpirun := mpitest.Mpirun(t)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "specforge")
	mpitest.Build(t, mpitest.Root(t), "build", "-o", bin, "./cmd/specforge")
	ranks := func(n string, args []string) string {
		t.Helper()
		out, err := mpitest.Run(t, mpirun, 3*time.Minute, nil, append([]string{"-np", n, bin}, args...)...)
		if err != nil {
			t.Fatalf("mpirun -np %s %v: %v\n%s", n, args, err, out)
		}
		return string(out)
	}
	alone := func(args []string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	dir := func(name string) string { return filepath.Join(tmp, name) }
	ckpt := func(run string, step string) string {
		return filepath.Join(dir(run), "checkpoints", "step_0000000"+step)
	}

	alone(mpiArgs(t, tmp, dir("one"), "4")) // also prepares the data the later runs find in the cache
	if out := ranks("2", mpiArgs(t, tmp, dir("two"), "2")); !strings.Contains(out, "data parallel on 2 ranks") || !strings.Contains(out, "on 2 ranks,") {
		t.Errorf("2-rank output does not show the world size:\n%s", out)
	}
	// 2 ranks x 2 samples = 1 process x 4: the same losses and weights, up to float32 summation order.
	one, two := trainLosses(t, dir("one")), trainLosses(t, dir("two"))
	if len(one) != len(two) || len(one) != 6*3 {
		t.Fatalf("metrics: %v against %v", one, two)
	}
	for i := range one {
		if d := math.Abs(one[i] - two[i]); d > 1e-5*math.Max(1, math.Abs(one[i])) {
			t.Errorf("metric %d: 1 process %.9g, 2 ranks %.9g", i, one[i], two[i])
		}
	}
	const weightTol = 1e-5 // four AdamW steps of lr 3e-3 from gradients equal to ~1e-7
	if d := maxDiff(ckptWeights(t, ckpt("one", "4")), ckptWeights(t, ckpt("two", "4"))); d > weightTol {
		t.Errorf("weights after 4 steps: 1 process and 2 ranks differ by %g, want <= %g", d, weightTol)
	}
	if _, err := os.Stat(filepath.Join(dir("two"), "draft", "model.safetensors")); err != nil {
		t.Errorf("rank 0 did not export the draft: %v", err)
	}

	// The same seed and world size: bit-identical.
	ranks("2", mpiArgs(t, tmp, dir("again"), "2"))
	all := func(string) bool { return false }
	sameFiles(t, "2 ranks again", filesUnder(t, ckpt("again", "4"), all), filesUnder(t, ckpt("two", "4"), all))
	// Resumed on 2 ranks from step 2: bit-identical to the run that went on.
	ranks("2", mpiArgs(t, tmp, dir("resumed"), "2", "train.resume="+ckpt("two", "2")))
	sameFiles(t, "2 ranks resumed at step 2", filesUnder(t, ckpt("resumed", "4"), all), filesUnder(t, ckpt("two", "4"), all))
	testKilledRank(t, tmp, mpirun, bin, ranks)
	// Resumed on 1 process at batch 4: the same global batch and data position.
	alone(mpiArgs(t, tmp, dir("narrow"), "4", "train.resume="+ckpt("two", "2")))
	if d := maxDiff(ckptWeights(t, ckpt("two", "4")), ckptWeights(t, ckpt("narrow", "4"))); d > weightTol {
		t.Errorf("weights after resuming 2 ranks on 1: differ by %g from the 2-rank run, want <= %g", d, weightTol)
	}
	if out, err := exec.Command(bin, mpiArgs(t, tmp, dir("bad"), "2", "train.resume="+ckpt("two", "2"))...).CombinedOutput(); err == nil || !strings.Contains(string(out), "keep the global batch") {
		t.Errorf("resuming 2 x 2 on 1 x 2: err %v, want the global batch refused\n%s", err, out)
	}

	// The optimiser state sharded over the ranks: the same training, the same checkpoint format (a sharded
	// run resumes from an unsharded checkpoint and the other way round).
	ranks("2", mpiArgs(t, tmp, dir("zero"), "2", "train.shard_optimizer=true"))
	if d := maxDiff(ckptWeights(t, ckpt("two", "4")), ckptWeights(t, ckpt("zero", "4"))); d > weightTol {
		t.Errorf("weights after 4 steps: sharded and unsharded optimiser differ by %g, want <= %g", d, weightTol)
	}
	ranks("2", mpiArgs(t, tmp, dir("zero-resumed"), "2", "train.shard_optimizer=true", "train.resume="+ckpt("two", "2")))
	alone(mpiArgs(t, tmp, dir("unsharded"), "4", "train.resume="+ckpt("zero", "2")))
	for _, run := range []string{"zero-resumed", "unsharded"} {
		if d := maxDiff(ckptWeights(t, ckpt("two", "4")), ckptWeights(t, ckpt(run, "4"))); d > weightTol {
			t.Errorf("%s: weights differ by %g from the 2-rank run, want <= %g", run, d, weightTol)
		}
	}

	testGenHiddenParts(t, tmp, mpirun, bin, ranks, alone)
	testCaptureRanks(t, tmp, ranks, alone)

	// Ranks that disagree stop at the start, naming the rank and the setting.
	a, b := mpiArgs(t, tmp, dir("mixed"), "2"), mpiArgs(t, tmp, dir("mixed"), "2", "train.lr=0.001")
	out, err := mpitest.Run(t, mpirun, 3*time.Minute, nil, append(append(append([]string{"-np", "1", bin}, a...), ":", "-np", "1", bin), b...)...)
	if err == nil || !strings.Contains(string(out), `rank 1 has train.lr = "0.001", rank 0 has "0.003"`) {
		t.Errorf("ranks with different train.lr: err %v, want an error naming rank 1 and train.lr\n%s", err, out)
	}
	// A build without MPI launched as 2 ranks says so instead of training twice alone.
	out, err = mpitest.Run(t, mpirun, time.Minute, []string{benchChildEnv + "=1"}, append([]string{"-np", "2", os.Args[0]}, a...)...)
	if err == nil || !strings.Contains(string(out), "built without MPI") {
		t.Errorf("a build without MPI under mpirun: err %v, want it refused\n%s", err, out)
	}
}

// testGenHiddenParts writes the tiny run's hidden states on 2 ranks and as 2 independent --shard jobs,
// checks both against one process, and trains offline from them on 2 ranks.
func testGenHiddenParts(t *testing.T, tmp, mpirun, bin string, ranks func(string, []string) string, alone func([]string) string) {
	gen := func(out string, extra ...string) []string {
		args := mpiArgs(t, tmp, filepath.Join(tmp, "unused"), "2")
		return append(append(append([]string{"gen-hidden"}, args[1:]...), "--out", filepath.Join(tmp, out), "--samples-per-shard", "2"), extra...)
	}
	alone(gen("h1"))
	ranks("2", gen("h2"))
	if out := alone(gen("h3", "--shard", "1/2")); !strings.Contains(out, "the part that finishes last writes") {
		t.Errorf("first --shard part:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(tmp, "h3", "train", "manifest.json")); err == nil {
		t.Error("manifest.json written with part 0 of 2 not done")
	}
	alone(gen("h3", "--shard", "0/2"))
	for _, split := range []string{"train", "eval"} {
		want, err := hidden.ReadManifest(filepath.Join(tmp, "h1", split))
		if err != nil {
			t.Fatal(err)
		}
		for _, dir := range []string{"h2", "h3"} {
			got, err := hidden.ReadManifest(filepath.Join(tmp, dir, split))
			if err != nil {
				t.Fatal(err)
			}
			if !got.Complete || len(got.Shards) != len(want.Shards) {
				t.Fatalf("%s/%s: %d shards (complete %v), one process wrote %d", dir, split, len(got.Shards), got.Complete, len(want.Shards))
			}
			for i := range want.Shards {
				if got.Shards[i] != want.Shards[i] {
					t.Errorf("%s/%s shard %d: %+v, one process %+v", dir, split, i, got.Shards[i], want.Shards[i])
				}
			}
		}
	}
	a, b := gen("h4", "--samples-per-shard", "2"), gen("h4", "--samples-per-shard", "3")
	out, err := mpitest.Run(t, mpirun, 3*time.Minute, nil, append(append(append([]string{"-np", "1", bin}, a...), ":", "-np", "1", bin), b...)...)
	if err == nil || !strings.Contains(string(out), `rank 1 has --samples-per-shard = "3", rank 0 has "2"`) {
		t.Errorf("gen-hidden ranks with different --samples-per-shard: err %v, want an error naming rank 1 and the flag\n%s", err, out)
	}
	if out := alone([]string{"inspect", filepath.Join(tmp, "h2"), "--deep"}); strings.Contains(out, "FAILED") {
		t.Errorf("inspect:\n%s", out)
	}
	trained := ranks("2", mpiArgs(t, tmp, filepath.Join(tmp, "offline"), "2", "data.hidden_states="+filepath.Join(tmp, "h2")))
	if !strings.Contains(trained, "offline") || !strings.Contains(trained, "on 2 ranks") {
		t.Errorf("offline training on 2 ranks:\n%s", trained)
	}
}

// testKilledRank kills rank 1 of a 2-rank run with SIGKILL after its third checkpoint: the job must end
// with an error, and the rerun (train.resume auto) must end with the checkpoint and draft of an
// uninterrupted run, byte for byte.
func testKilledRank(t *testing.T, tmp, mpirun, bin string, ranks func(string, []string) string) {
	args := func(out string) []string {
		return mpiArgs(t, tmp, filepath.Join(tmp, out), "2", "train.max_steps=10", "train.save_interval=1", "train.keep_checkpoints=3", "train.log_interval=0")
	}
	ranks("2", args("whole"))
	cmd, out := mpitest.Start(t, mpirun, nil, append([]string{"-np", "2", bin}, args("killed")...)...)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	third := filepath.Join(tmp, "killed", "checkpoints", "step_00000003")
	killed := false
	for !killed {
		select {
		case err := <-done:
			t.Logf("the 2-rank run ended before the kill (%v): the resume is not tested", err)
			return
		default:
		}
		if _, err := os.Stat(third); err == nil {
			if pid := mpitest.RankPID(cmd.Process.Pid, 1); pid > 0 {
				killed = syscall.Kill(pid, syscall.SIGKILL) == nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Logf("rank 1 was killed as the run finished:\n%s", out)
			return
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("rank 0 did not end within a minute of rank 1's death:\n%s", out)
	}
	ranks("2", args("killed"))
	all := func(string) bool { return false }
	for _, sub := range []string{"checkpoints/step_00000010", "draft"} {
		sameFiles(t, "2 ranks killed and resumed: "+sub, filesUnder(t, filepath.Join(tmp, "killed", sub), all), filesUnder(t, filepath.Join(tmp, "whole", sub), all))
	}
}

// testCaptureRanks trains 2 ranks from one capture server on loopback: each rank pulls the samples of its
// slice of every global batch, and the draft equals the 2-rank offline run on shards gen-hidden wrote in
// the server's batches, byte for byte.
func testCaptureRanks(t *testing.T, tmp string, ranks func(string, []string) string, alone func([]string) string) {
	args := mpiArgs(t, tmp, filepath.Join(tmp, "unused"), "2")
	hiddenDir := filepath.Join(tmp, "h5")
	alone(append(append([]string{"gen-hidden"}, args[1:]...), "--out", hiddenDir,
		"--batch", strconv.Itoa(captureGen.Batch), "--samples-per-shard", strconv.Itoa(captureGen.SamplesPerShard)))
	ranks("2", mpiArgs(t, tmp, filepath.Join(tmp, "offline5"), "2", "data.hidden_states="+hiddenDir))
	srv := startServer(t, args, "")
	trained := ranks("2", mpiArgs(t, tmp, filepath.Join(tmp, "capture"), "2", "data.hidden_states=grpc://"+srv.addr))
	if !strings.Contains(trained, "capture") || !strings.Contains(trained, "on 2 ranks") {
		t.Errorf("training from a capture server on 2 ranks:\n%s", trained)
	}
	draft := func(run string) []byte {
		raw, err := os.ReadFile(filepath.Join(tmp, run, "draft", "model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	if !bytes.Equal(draft("capture"), draft("offline5")) {
		t.Errorf("2 ranks fed by a capture server trained another draft than 2 ranks reading the shards")
	}
}
