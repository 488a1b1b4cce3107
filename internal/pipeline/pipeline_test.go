package pipeline

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/checkpoint"
	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/model"
)

const llamaBase = `"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 8, "num_attention_heads": 4, "vocab_size": 100`

// TestDraftConfigKeepsRopeScaling: the draft copies the target's rope_scaling as config.json writes it, and
// has none when the target's is null or absent.
func TestDraftConfigKeepsRopeScaling(t *testing.T) {
	scaling := `{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}`
	for _, c := range []struct{ field, want string }{
		{`, "rope_scaling": ` + scaling, scaling},
		{`, "rope_scaling": null`, ""},
		{``, ""},
	} {
		mc, err := model.ParseConfig("config.json", []byte(`{`+llamaBase+c.field+`}`))
		if err != nil {
			t.Fatal(err)
		}
		cfg := config.Defaults()
		dc, _, err := DraftConfig(&cfg, &model.Head{Config: mc})
		if err != nil {
			t.Fatal(err)
		}
		if string(dc.RopeScaling) != c.want {
			t.Errorf("rope_scaling%s: draft has %q, want %q", c.field, dc.RopeScaling, c.want)
		}
	}
}

func TestResolveAux(t *testing.T) {
	target := []int{1, 3, 5}
	shards := &hidden.Manifest{AuxLayers: []int{0, 2, 4}}
	for _, c := range []struct {
		name string
		s    auxSources
		want []int
		err  string
	}{
		{"default", auxSources{target: target}, target, ""},
		{"configured", auxSources{configured: []int{0, 1, 2}, target: target}, []int{0, 1, 2}, ""},
		{"warm", auxSources{warm: []int{2, 4, 6}, target: target}, []int{2, 4, 6}, ""},
		{"configured agrees with warm", auxSources{configured: []int{2, 4, 6}, warm: []int{2, 4, 6}, target: target}, []int{2, 4, 6}, ""},
		{"configured differs from warm", auxSources{configured: []int{0, 1, 2}, warm: []int{2, 4, 6}, warmSource: "config.json", target: target}, nil, "differ from draft.checkpoint's"},
		{"shards over default", auxSources{shards: shards, target: target}, shards.AuxLayers, ""},
		{"configured differs from shards", auxSources{configured: []int{1, 2, 3}, shards: shards, target: target}, nil, "the shards hold"},
		{"warm differs from shards", auxSources{warm: []int{1, 3, 5}, shards: shards, target: target}, nil, "the shards hold"},
	} {
		got, err := c.s.resolve()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, %v; want an error with %q", c.name, got, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

// TestExportSource: a draft folder or checkpoint is itself, a run folder stands for its draft, else for its
// latest checkpoint, and anything else is refused.
func TestExportSource(t *testing.T) {
	root := t.TempDir()
	touch := func(path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	draftDir, ckpt := filepath.Join(root, "draft"), filepath.Join(root, "ckpt")
	touch(filepath.Join(draftDir, "config.json"))
	touch(filepath.Join(ckpt, checkpoint.StateFile))
	withDraft := filepath.Join(root, "run1")
	touch(filepath.Join(withDraft, "draft", "config.json"))
	touch(filepath.Join(checkpoint.Root(withDraft), checkpoint.Name(4), checkpoint.StateFile))
	withCheckpoints := filepath.Join(root, "run2")
	for _, step := range []int{4, 12} {
		touch(filepath.Join(checkpoint.Root(withCheckpoints), checkpoint.Name(step), checkpoint.StateFile))
	}
	empty := filepath.Join(root, "empty")
	os.Mkdir(empty, 0o755)
	for _, c := range []struct{ dir, want, err string }{
		{draftDir, draftDir, ""},
		{ckpt, ckpt, ""},
		{withDraft, filepath.Join(withDraft, "draft"), ""},
		{withCheckpoints, filepath.Join(checkpoint.Root(withCheckpoints), checkpoint.Name(12)), ""},
		{empty, "", "not a checkpoint"},
	} {
		got, err := exportSource(c.dir)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %q, %v; want an error with %q", c.dir, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.dir, got, err, c.want)
		}
	}
}

// TestFitsInMemory checks the refusal of a draft whose training state cannot fit the machine: the 8B-shaped
// draft (hidden 4096, MLP 14336, 32000-token head: 0.42 G parameters, 6.3 GiB of state) fits 24 GiB but
// not 4, and a typo-sized hidden_size is refused before anything is allocated.
func TestFitsInMemory(t *testing.T) {
	eight := draft.Config{HiddenSize: 4096, IntermediateSize: 14336, NumHeads: 32, NumKVHeads: 8, HeadDim: 128,
		VocabSize: 128256, DraftVocabSize: 32000, TargetHiddenSize: 4096}
	// fc, 4 norms, q, k and v (reading 2H), o, the MLP, lm_head.
	if got, want := eight.NumParams(), int64(3*4096*4096+4*4096+4096*8192+2*1024*8192+4096*4096+3*14336*4096+32000*4096); got != want {
		t.Fatalf("NumParams %d, want %d", got, want)
	}
	for _, c := range []struct {
		dc    draft.Config
		total float64
		ok    bool
	}{
		{eight, 24 << 10, true},
		{eight, 4 << 10, false},
		{eight, 0, true}, // unknown memory: not refused
		{draft.Config{HiddenSize: 100000, IntermediateSize: 14336, NumHeads: 32, NumKVHeads: 8, HeadDim: 128,
			VocabSize: 128256, DraftVocabSize: 32000, TargetHiddenSize: 4096}, 24 << 10, false},
	} {
		err := fitsInMemory(&c.dc, c.total)
		if (err == nil) != c.ok || err != nil && !strings.Contains(err.Error(), "draft.hidden_size") {
			t.Errorf("hidden %d in %.0f MiB: %v", c.dc.HiddenSize, c.total, err)
		}
	}
}
