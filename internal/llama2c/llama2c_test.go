package llama2c

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/golden"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/safetensors"
)

// TestConvertStories260K converts the llama2.c checkpoint and checks every tensor against the independently
// converted Hugging Face folder, bit for bit, then greedy-decodes through the import.
func TestConvertStories260K(t *testing.T) {
	bin := golden.Shared(t, "assets", "models", "stories260K", "llama2c", "stories260K.bin")
	refDir := golden.Shared(t, "assets", "models", "stories260K")
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
	bin := golden.Shared(t, "assets", "models", "stories260K", "llama2c", "stories260K.bin")
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
