package regen

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/fixturetest"
	"github.com/specforge/specforge/internal/generate"
	"github.com/specforge/specforge/internal/goldentest"
)

// TestRegenerate writes continuations of TinyStories openings and checks them against greedy decoding of
// the same prompts, one by one.
func TestRegenerate(t *testing.T) {
	m, tok := fixturetest.StoriesTarget(t)
	o := Options{OpeningTokens: 6, MaxNewTokens: 12, Batch: 3, Limit: 5}
	src := goldentest.Shared(t, "assets", "datasets", "tinystories", "tinystories_valid_head.txt")
	prompts, err := Openings(src, tok, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(prompts) != 5 || len(prompts[0]) != 7 || prompts[0][0] != 1 {
		t.Fatalf("prompts %v", prompts)
	}
	out := filepath.Join(t.TempDir(), "regen.jsonl")
	if err := Write(context.Background(), out, m, tok, prompts, o); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	i := 0
	for sc.Scan() {
		var row struct{ Prompt, Completion string }
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatal(err)
		}
		res, err := generate.Generate(context.Background(), m, prompts[i], generate.Options{MaxNewTokens: 12, StopIDs: m.Config.EOSTokenIDs})
		if err != nil {
			t.Fatal(err)
		}
		all := append(append([]int32(nil), prompts[i]...), res.Tokens...)
		text, _ := tok.Decode(all, true)
		if row.Prompt+row.Completion != text || !strings.HasPrefix(text, row.Prompt) {
			t.Errorf("row %d: %q + %q, want %q", i, row.Prompt, row.Completion, text)
		}
		i++
	}
	if i != 5 {
		t.Errorf("%d rows", i)
	}
	key1, _ := Key(m, src, o)
	o.MaxNewTokens++
	key2, _ := Key(m, src, o)
	if key1 == key2 {
		t.Error("the cache key ignores max_new_tokens")
	}
}

// TestRegenerateResumes: regeneration stopped after its first batch (and with a torn batch at the end of
// its progress file, as a kill leaves it) resumes there and writes the bytes an uninterrupted run writes,
// sampling at temperature 1 so that a batch regenerated differently would show.
func TestRegenerateResumes(t *testing.T) {
	m, tok := fixturetest.StoriesTarget(t)
	o := Options{OpeningTokens: 6, MaxNewTokens: 10, Batch: 2, Limit: 7, Sampling: generate.SamplingParams{Temperature: 1, Seed: 3}}
	prompts, err := Openings(goldentest.Shared(t, "assets", "datasets", "tinystories", "tinystories_valid_head.txt"), tok, o)
	if err != nil {
		t.Fatal(err)
	}
	whole := filepath.Join(t.TempDir(), "regen.jsonl")
	if err := Write(context.Background(), whole, m, tok, prompts, o); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(whole)

	out := filepath.Join(t.TempDir(), "regen.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	stopped := o
	stopped.Progress = func(done, total int) {
		if done >= 4 {
			cancel()
		}
	}
	if err := Write(ctx, out, m, tok, prompts, stopped); err == nil {
		t.Fatal("a cancelled regeneration finished")
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a cancelled regeneration wrote its output")
	}
	partial := PartialPath(out, o.Batch)
	f, err := os.OpenFile(partial, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"prompt": "torn", "completion": "by a kill"}` + "\n" + `{"prompt": "to`)
	f.Close()
	var resumedAt int
	resumed := o
	resumed.Progress = func(done, total int) {
		if resumedAt == 0 {
			resumedAt = done
		}
	}
	if err := Write(context.Background(), out, m, tok, prompts, resumed); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if string(got) != string(want) {
		t.Errorf("resumed regeneration differs:\n%s\nwant\n%s", got, want)
	}
	if resumedAt != 4 {
		t.Errorf("resumed at %d prompts, want 4 (two whole batches)", resumedAt)
	}
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Errorf("the progress file is left: %v", err)
	}
}
