package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/tokenizer"
)

// interopSamples reads the token ids and loss masks of the interop fixture's samples.
func interopSamples(t *testing.T, dir string) (ids, masks [][]int64) {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "expected.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := 0; ; i++ {
		x, err := f.Tensor(fmt.Sprintf("s%d.input_ids", i))
		if err != nil {
			return ids, masks
		}
		m, err := f.Tensor(fmt.Sprintf("s%d.loss_mask", i))
		if err != nil {
			t.Fatal(err)
		}
		a, err := x.Int64()
		if err != nil {
			t.Fatal(err)
		}
		b, err := m.Int64()
		if err != nil {
			t.Fatal(err)
		}
		ids, masks = append(ids, a), append(masks, b)
	}
}

// completionData writes the fixture's samples as prompt/completion rows (the first 8 tokens the prompt, as the
// fixture's loss masks say), decoded with the target's tokenizer, for the data pipeline to tokenize again.
func completionData(t *testing.T, path, target string, ids [][]int64) {
	t.Helper()
	tok, err := tokenizer.Load(target)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, s := range ids {
		ids32 := make([]int32, len(s))
		for i, v := range s {
			ids32[i] = int32(v)
		}
		prompt, err := tok.Decode(ids32[:8], true)
		if err != nil {
			t.Fatal(err)
		}
		// The completion is cut from the decoded whole: decoding its ids alone would drop the space
		// SentencePiece writes before its first word.
		full, err := tok.Decode(ids32, true)
		if err != nil {
			t.Fatal(err)
		}
		line, _ := json.Marshal(map[string]string{"prompt": prompt, "completion": full[len(prompt):]})
		lines = append(lines, string(line))
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestImportHidden(t *testing.T) {
	dir := goldentest.Shared(t, "assets", "interop")
	target := goldentest.Shared(t, "assets", "models", "stories260K")
	ids, masks := interopSamples(t, dir)
	out := t.TempDir()
	data := filepath.Join(out, "data.jsonl")
	completionData(t, data, target, ids)
	for _, from := range []string{"specforge", "speculators"} {
		t.Run(from, func(t *testing.T) {
			shards := filepath.Join(out, from)
			args := []string{"import-hidden", "--from", from, "--in", filepath.Join(dir, from+"_offline"), "--out", shards, "--target", target,
				"--samples-per-shard", "2"}
			if from == "speculators" {
				args = append(args, "--data", data, "--set", "data.format=completion", "--set", "data.cache_dir="+filepath.Join(out, "cache"))
			}
			stdout, err := run(args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stdout)
			}
			if !strings.Contains(stdout, "3 shards (complete), 5 samples") {
				t.Errorf("import output:\n%s", stdout)
			}
			store, err := hidden.Open(filepath.Join(shards, "train"))
			if err != nil {
				t.Fatal(err)
			}
			for i := range ids {
				s, err := store.Sample(i)
				if err != nil {
					t.Fatal(err)
				}
				for k := range s.IDs {
					if int64(s.IDs[k]) != ids[i][k] || s.LossMask[k] != (masks[i][k] == 1) {
						t.Fatalf("sample %d token %d: id %d mask %v, want %d %d", i, k, s.IDs[k], s.LossMask[k], ids[i][k], masks[i][k])
					}
				}
			}
			store.Close()
			if stdout, err := run("inspect", shards, "--deep"); err != nil || strings.Contains(stdout, "FAILED") {
				t.Errorf("inspect: %v\n%s", err, stdout)
			}
			stdout, err = run("train", "--set", "target.path="+target, "--set", "data.hidden_states="+shards,
				"--set", "train.output_dir="+filepath.Join(out, "run-"+from), "--set", "train.max_steps=3", "--set", "train.batch_size=2",
				"--set", "train.ttt_length=3", "--set", "draft.vocab_size=512")
			if err != nil || !strings.Contains(stdout, "offline") || !strings.Contains(stdout, "simulated acceptance length") {
				t.Errorf("offline training: %v\n%s", err, stdout)
			}
		})
	}
}

// TestImportHiddenRefuses: samples whose token ids the data pipeline does not reproduce, and bad flags, are
// errors naming the file or the flag.
func TestImportHiddenRefuses(t *testing.T) {
	dir := goldentest.Shared(t, "assets", "interop")
	target := goldentest.Shared(t, "assets", "models", "stories260K")
	ids, _ := interopSamples(t, dir)
	out := t.TempDir()
	data := filepath.Join(out, "data.jsonl")
	ids[2] = append(ids[2][:20:20], ids[2][21:]...) // sample 2 tokenizes to other ids
	completionData(t, data, target, ids)
	in := filepath.Join(dir, "speculators_offline")
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"other conversations", []string{"--from", "speculators", "--in", in, "--data", data, "--set", "data.format=completion", "--set", "data.cache_dir=" + filepath.Join(out, "cache")},
			[]string{filepath.Join(in, "hs_2.safetensors"), "match no sample of the prepared data", "differs at token 20"}},
		{"no data", []string{"--from", "speculators", "--in", in}, []string{"data.train"}},
		{"unknown layout", []string{"--from", "eagle", "--in", in}, []string{`--from "eagle"`}},
		{"no samples", []string{"--from", "specforge", "--in", in}, []string{in, "no specforge sample files"}},
		{"aux layer outside the target", []string{"--from", "specforge", "--in", in, "--set", "draft.aux_layers=[1,2,9]"}, []string{"draft.aux_layers", "outside the target's 5 layers"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"import-hidden", "--target", target, "--out", filepath.Join(out, "shards")}, c.args...)
			stdout, err := run(args...)
			if err == nil {
				t.Fatalf("accepted:\n%s", stdout)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(out, "shards", "train", "manifest.json")); err == nil {
		m, err := hidden.ReadManifest(filepath.Join(out, "shards", "train"))
		if err != nil || m.Complete {
			t.Errorf("a refused import left a complete manifest: %v", err)
		}
	}
}
