package main

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/export"
	"github.com/specforge/specforge/internal/fixturetest"
	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/train"
)

// TestMoETargets runs every command downstream of the model on the golden mixture-of-experts targets, each
// with stories260K's tokenizer: online training, gen-hidden and offline training from its shards, export in
// the three layouts, generate with each export and bench. The draft of an MoE target is the usual dense
// EAGLE-3 layer, of the target's intermediate_size.
func TestMoETargets(t *testing.T) {
	goldentest.Shared(t)
	for _, c := range []struct {
		name, golden, weights string
		// regenerate trains on 24 continuations the target writes (the README's recipe) rather than on the
		// TinyStories sample. Only Qwen2-MoE's stay within the tokenizer's 512 ids (it repeats its last
		// token); the other random targets soon write ids of their larger vocabularies that it cannot decode.
		regenerate bool
	}{
		{"qwen3_moe", "m1_qwen3_moe_forward", "model_f32", false},
		{"qwen3_moe_bf16", "m1_qwen3_moe_forward", "model_bf16", false},
		{"mixtral_sharded", "m2_mixtral_forward", "model_f32", false},
		{"qwen2_moe_shared_expert", "m3_qwen2_moe_shared_expert_forward", "model_f32", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			target := fixturetest.GoldenTarget(t, c.golden, c.weights)
			tc, err := model.LoadConfig(target)
			if err != nil {
				t.Fatal(err)
			}
			if tc.MoE == nil {
				t.Fatalf("%s: not a mixture of experts", target)
			}
			out := t.TempDir()
			args := moeTrainArgs(t, target, out, c.regenerate)
			if stdout, err := run(args...); err != nil {
				t.Fatalf("train: %v\n%s", err, stdout)
			}
			online := evalRecords(t, filepath.Join(out, "run"))
			first, last := online[0], online[len(online)-1]
			if last.Loss >= first.Loss || last.AcceptanceLength < 1 {
				t.Errorf("online training: eval loss %g at step %d, %g at step %d (want a decrease), acceptance length %g",
					first.Loss, first.Step, last.Loss, last.Step, last.AcceptanceLength)
			}
			final, err := export.Read(filepath.Join(out, "run", "draft"))
			if err != nil {
				t.Fatal(err)
			}
			// The draft is dense: of the width, heads and intermediate_size of the target (not of its experts).
			if dc := final.Config; dc.IntermediateSize != tc.IntermediateSize || dc.HiddenSize != tc.HiddenSize || dc.HeadDim != tc.HeadDim ||
				dc.NumHeads != tc.NumHeads || dc.NumKVHeads != tc.NumKVHeads || dc.DraftVocabSize != tc.VocabSize || dc.TargetNumLayers != tc.NumLayers ||
				dc.TargetArchitecture != tc.Architecture || !slices.Equal(dc.AuxLayers, tc.DefaultAuxLayers()) || !final.Embed.IsNil() {
				t.Errorf("draft %+v for target %+v", dc, *tc)
			}

			hid := filepath.Join(out, "hidden")
			gen := append(append([]string{"gen-hidden"}, args[1:]...), "--out", hid, "--samples-per-shard", "5")
			if stdout, err := run(gen...); err != nil {
				t.Fatalf("gen-hidden: %v\n%s", err, stdout)
			}
			if stdout, err := run("inspect", hid, "--deep"); err != nil || strings.Contains(stdout, "FAILED") || !strings.Contains(stdout, tc.Architecture) {
				t.Errorf("inspect: %v\n%s", err, stdout)
			}
			offArgs := append(args, "--set", "data.hidden_states="+hid, "--set", "train.output_dir="+filepath.Join(out, "offline"))
			if stdout, err := run(offArgs...); err != nil || !strings.Contains(stdout, "offline") {
				t.Fatalf("offline training: %v\n%s", err, stdout)
			}
			// The shards hold what online training computes, rounded to bf16: the same run evaluates to the same
			// losses up to that (other aux layers move them by about 5e-4 of the loss).
			offline := evalRecords(t, filepath.Join(out, "offline"))
			if len(offline) != len(online) {
				t.Fatalf("%d offline evaluations, %d online", len(offline), len(online))
			}
			for i, r := range offline {
				if r.Step != online[i].Step || math.Abs(r.Loss-online[i].Loss) > 1e-4*online[i].Loss {
					t.Errorf("offline eval at step %d: loss %g, online at step %d: %g", r.Step, r.Loss, online[i].Step, online[i].Loss)
				}
			}

			prompt := "Once upon a time"
			want, _ := generateIDs(t, target, "", prompt)
			for _, to := range []string{"sglang", "vllm", "speculators"} {
				dir := filepath.Join(out, "export_"+to)
				if stdout, err := run("export", "--checkpoint", filepath.Join(out, "run"), "--to", to, "--out", dir, "--target", target); err != nil || !strings.Contains(stdout, "serve: ") {
					t.Fatalf("export to %s: %v\n%s", to, err, stdout)
				}
				im, err := export.Read(dir)
				if err != nil {
					t.Fatal(err)
				}
				if string(im.Format) != to || maxDiff(im, final) != 0 || im.Config.IntermediateSize != tc.IntermediateSize || im.Config.TargetArchitecture != tc.Architecture {
					t.Errorf("%s: read back as %s, %+v, weights differ from the run's draft by %g", dir, im.Format, im.Config, maxDiff(im, final))
				}
				// Greedy speculative decoding writes what the target alone writes.
				if got, al := generateIDs(t, target, dir, prompt); got != want || al < 1 {
					t.Errorf("generate with the %s export: %q, acceptance length %g; the target alone: %q", to, got, al, want)
				}
			}
			var spec struct {
				SpeculatorsConfig struct {
					Verifier struct {
						Architectures []string `json:"architectures"`
					} `json:"verifier"`
				} `json:"speculators_config"`
			}
			raw, err := os.ReadFile(filepath.Join(out, "export_speculators", "config.json"))
			if err == nil {
				err = json.Unmarshal(raw, &spec)
			}
			if v := spec.SpeculatorsConfig.Verifier.Architectures; err != nil || !slices.Equal(v, []string{tc.Architecture}) {
				t.Errorf("speculators verifier architectures %v, want [%s]: %v", v, tc.Architecture, err)
			}
			if c.regenerate {
				// A prompt of the regenerated data: the target continues it with " with" over and over, which the
				// draft has learnt, so verification forwards accept drafted tokens.
				p := "After playing with"
				want, _ := generateIDs(t, target, "", p)
				if got, al := generateIDs(t, target, filepath.Join(out, "export_vllm"), p); got != want || al < 2 {
					t.Errorf("generate from %q: %q, acceptance length %g; the target alone: %q", p, got, al, want)
				}
			}

			result := filepath.Join(out, "bench.json")
			for _, mode := range [][]string{{"--steps", "5"}, {"--depth", "3", "--topk", "2", "--draft-tokens", "6"}} {
				stdout, err := run(append([]string{"bench", "--target", target, "--draft", filepath.Join(out, "export_vllm"),
					"--dataset", goldentest.Shared(t, "assets", "datasets", "tinystories", "tinystories_valid_head.txt"), "--skip", "4200",
					"--num-prompts", "3", "--max-new-tokens", "16", "--prompt-tokens", "12", "--out", result}, mode...)...)
				if err != nil || !strings.Contains(stdout, "greedy outputs equal   3 of 3") {
					t.Errorf("bench %v: %v\n%s", mode, err, stdout)
				}
				if res, err := readBenchResult(result); err != nil || res.Prompts != 3 || res.AcceptanceLength < 1 || res.Mismatches != 0 {
					t.Errorf("bench %v result: %v %+v", mode, err, res)
				}
			}
		})
	}
}

// moeTrainArgs train a draft of target for 6 steps into out/run, evaluated at steps 3 and 6 (the acceptance
// length measured on 3 held-out prompts), on the TinyStories sample paragraphs as plain text or, with
// regenerate, on 24 continuations of TinyStories openings the target writes.
func moeTrainArgs(t *testing.T, target, out string, regenerate bool) []string {
	args := []string{"train", "--config", "../../configs/stories260k.yaml", "--set", "target.path=" + target,
		"--set", "data.cache_dir=" + filepath.Join(out, "cache"), "--set", "train.output_dir=" + filepath.Join(out, "run"),
		"--set", "data.max_length=64", "--set", "data.eval_fraction=0.25",
		"--set", "train.max_steps=6", "--set", "train.batch_size=4", "--set", "train.eval_interval=3",
		"--set", "train.eval_acceptance_prompts=3", "--set", "train.eval_acceptance_tokens=24",
		"--set", "draft.aux_layers=[]"} // the target's default layers, not the ones the config picks for stories260K
	if regenerate {
		return append(args, "--set", "data.regenerate.from="+goldentest.Shared(t, "assets", "datasets", "tinystories", "tinystories_valid_head.txt"),
			"--set", "data.regenerate.limit=24", "--set", "data.regenerate.max_new_tokens=24")
	}
	return append(args, "--set", "data.regenerate.from=", "--set", "data.format=text", "--set", "data.train="+fixturetest.StoriesJSONL(t, 100))
}

// evalRecords reads the evaluations of a run's metrics log; there must be two at least.
func evalRecords(t *testing.T, runDir string) []train.Record {
	t.Helper()
	f, err := os.Open(filepath.Join(runDir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []train.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r train.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", f.Name(), err)
		}
		if r.Split == "eval" {
			out = append(out, r)
		}
	}
	if err := sc.Err(); err != nil || len(out) < 2 {
		t.Fatalf("%s: %d evaluations, %v", f.Name(), len(out), err)
	}
	return out
}

var acceptanceRE = regexp.MustCompile(`acceptance length ([0-9.]+)`)

// generateIDs decodes 24 tokens of prompt greedily with target, speculatively with draftDir unless it is "",
// and returns the ids written and the acceptance length reported (0 without a draft).
func generateIDs(t *testing.T, target, draftDir, prompt string) (string, float64) {
	t.Helper()
	args := []string{"generate", "--model", target, "--prompt", prompt, "--max-new-tokens", "24", "--ids"}
	if draftDir != "" {
		args = append(args, "--draft", draftDir)
	}
	stdout, err := run(args...)
	if err != nil {
		t.Fatalf("generate: %v\n%s", err, stdout)
	}
	ids, report, _ := strings.Cut(stdout, "\n")
	var al float64
	if draftDir != "" {
		m := acceptanceRE.FindStringSubmatch(report)
		if m == nil {
			t.Fatalf("generate reported no acceptance length:\n%s", stdout)
		}
		if al, err = strconv.ParseFloat(m[1], 64); err != nil {
			t.Fatal(err)
		}
	}
	return ids, al
}
