package export

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/golden"
	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/vocab"
)

// goldenDraft is case h's draft (stories260K shape, V_d = 64) with its initial weights.
func goldenDraft(t *testing.T) *draft.Draft {
	c := golden.Open(t, "h_e2e_stories260k_online")
	var cfg draft.Config
	c.Hyper(t, "draft_config", &cfg)
	cfg.AuxLayers = []int{1, 1, 1}
	f, err := safetensors.Open(filepath.Join(c.Dir, "draft_init.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := draft.LoadWeights(&cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	m, err := vocab.FromD2T(c.Ints(t, "expected_f64.safetensors", "vocab.d2t"), cfg.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	d, err := draft.New(cfg, make([]float32, cfg.VocabSize*cfg.HiddenSize), m, w)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestSGLangLayoutMatchesReference writes a draft and compares the tensor names, dtypes and shapes and the
// config fields with the reference export of golden case h.
func TestSGLangLayoutMatchesReference(t *testing.T) {
	d := goldenDraft(t)
	dir := t.TempDir()
	if err := WriteSGLang(dir, d); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(golden.Shared(t, "goldens", "h_e2e_stories260k_online", "draft_export_bf16"))
	layout := func(path string) map[string]string {
		f, err := safetensors.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		out := map[string]string{}
		for _, n := range f.Names() {
			x, _ := f.Tensor(n)
			b, _ := json.Marshal(x.Shape)
			out[n] = string(x.DType) + string(b)
		}
		return out
	}
	got, want := layout(filepath.Join(dir, "model.safetensors")), layout(filepath.Join(ref, "model.safetensors"))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tensors %v, want %v", got, want)
	}
	readJSON := func(path string) map[string]any {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.Unmarshal(raw, &m)
		return m
	}
	gc, wc := readJSON(filepath.Join(dir, "config.json")), readJSON(filepath.Join(ref, "config.json"))
	var keys []string
	for k := range wc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !reflect.DeepEqual(gc[k], wc[k]) {
			t.Errorf("config %s = %v, want %v", k, gc[k], wc[k])
		}
	}
}

func TestRoundTrip(t *testing.T) {
	d := goldenDraft(t)
	dir := t.TempDir()
	if err := WriteSGLang(dir, d); err != nil {
		t.Fatal(err)
	}
	cfg, w, m, embed, err := ReadSGLang(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.D2T, d.Vocab.D2T) || embed != nil || !reflect.DeepEqual(cfg.AuxLayers, d.Config.AuxLayers) || cfg.HiddenSize != d.Config.HiddenSize {
		t.Fatalf("read back %+v", cfg)
	}
	for i, got := range w.Slices(cfg) {
		want := d.W.Slices(&d.Config)[i]
		for j := range got {
			if got[j] != half.RoundBF16(want[j]) || math.IsNaN(float64(got[j])) {
				t.Fatalf("tensor %d element %d: %g, want bf16(%g)", i, j, got[j], want[j])
			}
		}
	}
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"hidden_size": 64}`), 0o644)
	if _, _, _, _, err := ReadSGLang(dir); err == nil {
		t.Error("an incomplete config was accepted")
	}
}
