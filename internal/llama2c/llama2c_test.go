package llama2c

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/safetensors"
)

// TestConvertStories260K converts the llama2.c checkpoint and checks every tensor against the independently
// converted Hugging Face folder, bit for bit, then greedy-decodes through the import.
func TestConvertStories260K(t *testing.T) {
	bin := goldentest.Shared(t, "assets", "models", "stories260K", "llama2c", "stories260K.bin")
	refDir := goldentest.Shared(t, "assets", "models", "stories260K")
	ck, err := Read(bin)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := ck.WriteHF(out); err != nil {
		t.Fatal(err)
	}
	got, err := safetensors.OpenCheckpoint(out)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	ref, err := safetensors.OpenCheckpoint(refDir)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	if g, r := got.Names(), ref.Names(); strings.Join(g, ",") != strings.Join(r, ",") {
		t.Fatalf("tensors %v, want %v", g, r)
	}
	for _, name := range ref.Names() {
		a, _ := got.Tensor(name)
		b, _ := ref.Tensor(name)
		if !bytes.Equal(a.Data, b.Data) || a.DType != b.DType {
			t.Errorf("%s differs from the reference conversion", name)
		}
	}
	m, err := model.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cache := m.NewCache(1, 16)
	ids := []int32{1}
	want := []int32{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426}
	for i, w := range want {
		o, err := m.Forward(model.Batch{B: 1, T: 1, IDs: ids}, cache, model.Request{Logits: model.LastLogits})
		if err != nil {
			t.Fatal(err)
		}
		best := 0
		for v, x := range o.Logits {
			if x > o.Logits[best] {
				best = v
			}
		}
		if int32(best) != w {
			t.Fatalf("greedy token %d = %d, want %d", i, best, w)
		}
		ids = []int32{int32(best)}
	}
}

func TestReadErrors(t *testing.T) {
	bin := goldentest.Shared(t, "assets", "models", "stories260K", "llama2c", "stories260K.bin")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cases := map[string][]byte{
		"truncated":    data[:len(data)-100],
		"tiny":         data[:10],
		"not llama2.c": bytes.Repeat([]byte{0xff}, 1000),
	}
	for name, content := range cases {
		path := filepath.Join(dir, name+".bin")
		os.WriteFile(path, content, 0o644)
		if _, err := Read(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: got %v, want an error naming the file", name, err)
		}
	}
}

// TestTokenizerMatchesReference converts tok512.bin and compares vocabulary, merges and pipeline with the
// independently converted tokenizer.json of the shared stories260K folder.
func TestTokenizerMatchesReference(t *testing.T) {
	v, err := ReadVocab(goldentest.Shared(t, "assets", "models", "stories260K", "llama2c", "tok512.bin"), 512)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := v.WriteHF(dir, 512); err != nil {
		t.Fatal(err)
	}
	read := func(path string) map[string]any {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	got := read(filepath.Join(dir, "tokenizer.json"))
	want := read(goldentest.Shared(t, "assets", "models", "stories260K", "tokenizer.json"))
	for _, key := range []string{"added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder", "model"} {
		if !reflect.DeepEqual(got[key], want[key]) {
			g, _ := json.Marshal(got[key])
			w, _ := json.Marshal(want[key])
			t.Errorf("%s differs:\n got %.300s\nwant %.300s", key, g, w)
		}
	}
	if _, err := ReadVocab(goldentest.Shared(t, "assets", "models", "stories260K", "llama2c", "tok512.bin"), 500); err == nil {
		t.Error("a vocabulary size mismatch was accepted")
	}
}
