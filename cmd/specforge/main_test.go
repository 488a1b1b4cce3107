package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/export"
	"github.com/specforge/specforge/internal/goldentest"
)

// run executes the CLI in-process and returns its output and error.
func run(args ...string) (string, error) {
	cmd := rootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestGenerateStories260K(t *testing.T) {
	dir := goldentest.Shared(t, "assets", "models", "stories260K")
	out, err := run("generate", "--model", dir, "--max-new-tokens", "15", "--ids")
	if err != nil {
		t.Fatal(err)
	}
	if want := "403 407 261 378 432 383 286 261 376 298 315 421 395 317 426\n"; !strings.HasPrefix(out, want) {
		t.Errorf("output %q, want it to start with %q", out, want)
	}
	if !strings.Contains(out, "tokens/s") {
		t.Errorf("no rate in %q", out)
	}
	out, err = run("generate", "--model", dir, "--max-new-tokens", "30")
	if err != nil {
		t.Fatal(err)
	}
	if want := "Once upon a time, there was a little girl named Lily."; !strings.HasPrefix(out, want) {
		t.Errorf("text %q, want it to start with %q", out, want)
	}
	out, err = run("generate", "--model", dir, "--max-new-tokens", "8", "--prompt", "Lily's mom said")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "Lily's mom said") {
		t.Errorf("text %q", out)
	}
}

func TestConvertThenGenerate(t *testing.T) {
	bin := goldentest.Shared(t, "assets", "models", "stories260K", "llama2c", "stories260K.bin")
	dir := filepath.Join(t.TempDir(), "hf")
	tok := goldentest.Shared(t, "assets", "models", "stories260K", "llama2c", "tok512.bin")
	if _, err := run("convert", "llama2c", "--checkpoint", bin, "--tokenizer", tok, "--out", dir); err != nil {
		t.Fatal(err)
	}
	out, err := run("generate", "--model", dir, "--max-new-tokens", "5", "--prompt-ids", "1,403", "--ids")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "407 261 378 432 383\n") {
		t.Errorf("output %q", out)
	}
}

// TestGenerateCancelled: a command run under a cancelled context (Ctrl-C) stops with context.Canceled and
// says it was interrupted.
func TestGenerateCancelled(t *testing.T) {
	dir := goldentest.Shared(t, "assets", "models", "stories260K")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cmd := rootCommand()
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"generate", "--model", dir, "--max-new-tokens", "50"})
	if err := cmd.ExecuteContext(ctx); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("error %v, want an interruption wrapping context.Canceled", err)
	}
}

// TestBenchRefusesBadCounts checks that negative or zero counts are refused before anything loads, naming
// the flag.
func TestBenchRefusesBadCounts(t *testing.T) {
	for _, c := range []struct{ flag, value string }{{"--skip", "-5"}, {"--warmup", "-1"}, {"--num-prompts", "0"},
		{"--max-new-tokens", "0"}, {"--prompt-tokens", "-2"}} {
		_, err := run("bench", "--target", t.TempDir(), "--draft", t.TempDir(), c.flag, c.value)
		if err == nil || !strings.Contains(err.Error(), c.flag+" must be at least") {
			t.Errorf("bench %s %s: got %v, want an error naming the flag", c.flag, c.value, err)
		}
	}
}

func TestErrorsAreOneLine(t *testing.T) {
	dir := goldentest.Shared(t, "assets", "models", "stories260K")
	bad := filepath.Join(t.TempDir(), "bad.bin")
	os.WriteFile(bad, []byte("not a model"), 0o644)
	cases := [][]string{
		{"generate", "--model", t.TempDir()},
		{"generate", "--model", dir, "--prompt-ids", "1 x"},
		{"generate", "--model", dir, "--temperature", "-1"},
		{"convert", "llama2c", "--checkpoint", bad, "--out", filepath.Join(t.TempDir(), "o")},
	}
	for _, args := range cases {
		_, err := run(args...)
		if err == nil {
			t.Errorf("%v: no error", args)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: multi-line error %q", args, err)
		}
	}
}

func TestPrepareData(t *testing.T) {
	tok := goldentest.Shared(t, "assets", "tokenizers", "qwen3")
	data := goldentest.Shared(t, "assets", "datasets", "fastchat_dummy_conversation", "dummy_conversation.json")
	cache := t.TempDir()
	args := []string{"prepare-data", "--target", tok, "--data", data, "--chat-template", "qwen3-instruct", "--cache-dir", cache, "--draft-vocab-size", "1000"}
	out, err := run(args...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"train: 500 rows -> 500 samples", "draft vocabulary: 1000 of 151669", "rows/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = run(args...)
	if err != nil || !strings.Contains(out, "already prepared") {
		t.Errorf("second run: %v\n%s", err, out)
	}
	for _, bad := range [][]string{
		{"prepare-data", "--target", tok, "--data", filepath.Join(t.TempDir(), "missing.jsonl"), "--chat-template", "qwen", "--cache-dir", cache},
		{"prepare-data", "--target", tok, "--data", data, "--chat-template", "no-such-template", "--cache-dir", cache},
		{"prepare-data", "--target", tok, "--data", data, "--set", "data.max_lenght=5"},
		{"prepare-data", "--data", data},
	} {
		if _, err := run(bad...); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v", bad, err)
		}
	}
}

// tinyTrainArgs trains a stories260K draft for a few steps on 16 regenerated continuations.
func tinyTrainArgs(t *testing.T, out string) []string {
	return []string{"train", "--config", "../../configs/stories260k.yaml",
		"--set", "target.path=" + goldentest.Shared(t, "assets", "models", "stories260K"),
		"--set", "data.regenerate.from=" + goldentest.Shared(t, "assets", "datasets", "tinystories", "tinystories_valid_head.txt"),
		"--set", "data.cache_dir=" + filepath.Join(out, "cache"), "--set", "train.output_dir=" + filepath.Join(out, "run"),
		"--set", "data.regenerate.limit=24", "--set", "data.regenerate.max_new_tokens=24", "--set", "data.eval_fraction=0.25",
		"--set", "train.max_steps=4", "--set", "train.batch_size=4", "--set", "train.eval_interval=2"}
}

func TestTrainCommand(t *testing.T) {
	goldentest.Shared(t) // needs ../shared
	out := t.TempDir()
	stdout, err := run(tinyTrainArgs(t, out)...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "simulated acceptance length") || !strings.Contains(stdout, "draft: ") {
		t.Errorf("output:\n%s", stdout)
	}
	for _, f := range []string{"run/draft/config.json", "run/draft/model.safetensors", "run/metrics.jsonl", "run/metrics.png", "run/checkpoints/step_00000004/state.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	im, err := export.Read(filepath.Join(out, "run", "draft"))
	if err != nil {
		t.Fatal(err)
	}
	if c := im.Config; c.HiddenSize != 64 || c.DraftVocabSize != 512 || len(im.Vocab.Used) != 512 || !im.Embed.IsNil() || len(im.Weights.LMHead) != 512*64 || c.TargetNumLayers != 5 {
		t.Errorf("exported draft %+v", c)
	}
	// A finished run resumes to nothing more to do.
	if stdout, err = run(tinyTrainArgs(t, out)...); err != nil || !strings.Contains(stdout, "draft: ") {
		t.Errorf("rerun: %v\n%s", err, stdout)
	}
	testExport(t, out, im)
}

// benchResult is what the tests read of bench's JSON result (--out).
type benchResult struct {
	Prompts          int     `json:"prompts"`
	AcceptanceLength float64 `json:"acceptance_length"`
	Mismatches       int     `json:"greedy_mismatches"`
}

func readBenchResult(path string) (benchResult, error) {
	var res struct {
		Result benchResult `json:"result"`
	}
	raw, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(raw, &res)
	}
	return res.Result, err
}

// maxDiff is the largest absolute difference between the weights of two drafts.
func maxDiff(a, b *export.Imported) float64 {
	var m float64
	for i, x := range a.Weights.Slices(&a.Config) {
		for j, v := range x {
			m = max(m, math.Abs(float64(v-b.Weights.Slices(&b.Config)[i][j])))
		}
	}
	return m
}

// testExport exports the run of TestTrainCommand in every layout, from the run folder and from its last
// checkpoint, decodes with each export, and warm-starts training from one.
func testExport(t *testing.T, out string, final *export.Imported) {
	stories := goldentest.Shared(t, "assets", "models", "stories260K")
	ckpt := filepath.Join(out, "run", "checkpoints", "step_00000004")
	for _, to := range []string{"sglang", "vllm", "speculators"} {
		for _, from := range []string{filepath.Join(out, "run"), ckpt} {
			dir := filepath.Join(out, "export", to+"_"+filepath.Base(from))
			stdout, err := run("export", "--checkpoint", from, "--to", to, "--out", dir)
			if err != nil {
				t.Fatalf("export %s to %s: %v", from, to, err)
			}
			// Each layout is read right by the engine it is for (the vLLM reading of SGLang's layout is not).
			intended := map[string]string{"sglang": "ok    SGLang, model files adding 1", "vllm": "ok    vLLM since", "speculators": "ok    vLLM since"}[to]
			if !strings.Contains(stdout, "serve: ") || !strings.Contains(stdout, "outputs of 0-based layers [1 2 3]") || !strings.Contains(stdout, intended) {
				t.Errorf("export output:\n%s", stdout)
			}
			im, err := export.Read(dir)
			if err != nil {
				t.Fatal(err)
			}
			// The final draft is the last checkpoint's weights in bf16: both exports must hold the same bits.
			if string(im.Format) != to || maxDiff(im, final) != 0 {
				t.Errorf("%s: read back as %s, weights differ from the run's draft by %g", dir, im.Format, maxDiff(im, final))
			}
		}
		dir := filepath.Join(out, "export", to+"_run")
		stdout, err := run("generate", "--model", stories, "--draft", dir, "--prompt", "Once upon a time", "--max-new-tokens", "12", "--ids")
		if err != nil || !strings.Contains(stdout, "acceptance length") {
			t.Errorf("generate with the %s export: %v\n%s", to, err, stdout)
		}
	}
	// The benchmark, on a paragraph file with held-out prompts and on a named benchmark.
	result, prof := filepath.Join(out, "bench.json"), filepath.Join(out, "bench.pprof")
	for _, args := range [][]string{
		{"--dataset", goldentest.Shared(t, "assets", "datasets", "tinystories", "tinystories_valid_head.txt"), "--skip", "4200", "--min-draft-prob", "0.3", "--cpuprofile", prof},
		{"--dataset", "mtbench", "--datasets-dir", goldentest.Shared(t, "assets", "datasets"), "--depth", "3", "--topk", "2", "--draft-tokens", "6"},
	} {
		stdout, err := run(append([]string{"bench", "--target", stories, "--draft", filepath.Join(out, "export", "vllm_run"),
			"--num-prompts", "3", "--max-new-tokens", "16", "--prompt-tokens", "12", "--out", result}, args...)...)
		if err != nil || !strings.Contains(stdout, "greedy outputs equal   3 of 3") || !strings.Contains(stdout, "speed-up") {
			t.Errorf("bench %v: %v\n%s", args, err, stdout)
		}
		if res, err := readBenchResult(result); err != nil || res.Prompts != 3 || res.AcceptanceLength < 1 || res.Mismatches != 0 {
			t.Errorf("bench %v result: %v %+v", args, err, res)
		}
	}
	if raw, err := os.ReadFile(prof); err != nil || len(raw) < 2 || raw[0] != 0x1f || raw[1] != 0x8b { // pprof files are gzipped
		t.Errorf("bench --cpuprofile wrote no profile: %v (%d bytes)", err, len(raw))
	}
	if _, err := run("bench", "--target", stories, "--draft", filepath.Join(out, "export", "vllm_run"), "--dataset",
		goldentest.Shared(t, "assets", "datasets", "tinystories", "tinystories_valid_head.txt"), "--skip", "100000", "--out", result); err == nil || !strings.Contains(err.Error(), "no prompts after skipping") {
		t.Errorf("bench past the end of the file: %v", err)
	}

	raw, _ := os.ReadFile(filepath.Join(out, "export", "speculators_run", "config.json"))
	if abs, _ := filepath.Abs(stories); !strings.Contains(string(raw), abs) {
		t.Errorf("the speculators export does not name the verifier %s:\n%s", abs, raw)
	}
	if _, err := run("export", "--checkpoint", t.TempDir(), "--to", "sglang", "--out", t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a checkpoint") {
		t.Errorf("export of an empty folder: %v", err)
	}
	if _, err := run("export", "--checkpoint", ckpt, "--to", "trtllm", "--out", t.TempDir()); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("unknown format: %v", err)
	}

	// Warm start from the speculators export with a vanishing learning rate: training reads its weights (and
	// its vocabulary) and leaves them as they were.
	warm := filepath.Join(out, "warm")
	args := append(tinyTrainArgs(t, warm), "--set", "draft.checkpoint="+filepath.Join(out, "export", "speculators_run"), "--set", "train.lr=1e-30")
	if stdout, err := run(args...); err != nil {
		t.Fatalf("warm start: %v\n%s", err, stdout)
	}
	im, err := export.Read(filepath.Join(warm, "run", "draft"))
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(im, final); d > 1e-6 {
		t.Errorf("the warm-started draft moved by %g with lr 1e-30: its weights were not the checkpoint's", d)
	}
	for name, set := range map[string]string{"a shape override": "draft.hidden_size=32", "other aux layers": "draft.aux_layers=[0,1,2]"} {
		args := append(tinyTrainArgs(t, t.TempDir()), "--set", "draft.checkpoint="+ckpt, "--set", set)
		if _, err := run(args...); err == nil || !strings.Contains(err.Error(), "draft.checkpoint") {
			t.Errorf("warm start with %s: %v", name, err)
		}
	}
}

func TestTrainRefusesBadInputFirst(t *testing.T) {
	goldentest.Shared(t)
	out := t.TempDir()
	empty := filepath.Join(out, "empty.jsonl")
	os.WriteFile(empty, nil, 0o644)
	cases := map[string][]string{
		"aux layer outside the target": {"--set", "draft.aux_layers=[1,2,9]"},
		"draft vocabulary too large":   {"--set", "draft.vocab_size=600"},
		"unknown aux convention":       {"--set", "draft.aux_layer_convention=hf"},
		"vllm aux id 0":                {"--set", "draft.aux_layer_convention=vllm", "--set", "draft.aux_layers=[0,1,2]"},
		"missing resume checkpoint":    {"--set", "train.resume=" + filepath.Join(out, "nope")},
		"empty dataset":                {"--set", "data.regenerate.from=", "--set", "data.train=" + empty},
	}
	for name, extra := range cases {
		dir := out
		if name == "empty dataset" { // read, so it may create the cache: not in the folder the others check
			dir = t.TempDir()
		}
		args := append(tinyTrainArgs(t, dir), extra...)
		_, err := run(args...)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v", name, err)
		}
		if _, statErr := os.Stat(filepath.Join(out, "cache")); statErr == nil {
			t.Errorf("%s: work started before the error (cache written)", name)
		}
	}
}

// TestOfflineTraining generates hidden states for the tiny stories run, inspects them and trains from them.
func TestOfflineTraining(t *testing.T) {
	goldentest.Shared(t)
	out := t.TempDir()
	args := tinyTrainArgs(t, out)
	gen := append([]string{"gen-hidden"}, args[1:]...)
	gen = append(gen, "--out", filepath.Join(out, "hidden"), "--samples-per-shard", "5")
	stdout, err := run(gen...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "bytes/token") || !strings.Contains(stdout, "eval:") {
		t.Errorf("gen-hidden output:\n%s", stdout)
	}
	stdout, err = run("inspect", filepath.Join(out, "hidden"), "--deep")
	if err != nil || !strings.Contains(stdout, "shard_00000.sfh") || strings.Contains(stdout, "FAILED") {
		t.Errorf("inspect: %v\n%s", err, stdout)
	}
	shard := filepath.Join(out, "hidden", "train", "shard_00001.sfh")
	raw, _ := os.ReadFile(shard)
	raw[len(raw)/2] ^= 1
	os.WriteFile(shard, raw, 0o644)
	if stdout, err = run("inspect", filepath.Join(out, "hidden")); err == nil || !strings.Contains(stdout, "FAILED") {
		t.Errorf("inspect missed a corrupt shard: %v\n%s", err, stdout)
	}
	raw[len(raw)/2] ^= 1
	os.WriteFile(shard, raw, 0o644)
	trainArgs := append(args, "--set", "data.hidden_states="+filepath.Join(out, "hidden"), "--set", "train.output_dir="+filepath.Join(out, "offline"))
	stdout, err = run(trainArgs...)
	if err != nil || !strings.Contains(stdout, "offline") || !strings.Contains(stdout, "simulated acceptance length") {
		t.Errorf("offline training: %v\n%s", err, stdout)
	}
	if _, err := run(append(args, "--set", "data.hidden_states="+filepath.Join(out, "nope"))...); err == nil {
		t.Error("training from a missing shard folder started")
	}
}
