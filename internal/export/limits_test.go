package export

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/tensor"
	"github.com/specforge/specforge/internal/vocab"
)

// tinyDraft is a draft of a few values a tensor: 4 wide, 2 heads of 2, a target of 6 features and 16 tokens,
// 8 of them in the draft vocabulary.
func tinyDraft(t testing.TB) *draft.Draft {
	cfg := draft.Config{HiddenSize: 4, IntermediateSize: 8, NumHeads: 2, NumKVHeads: 1, HeadDim: 2, VocabSize: 16,
		DraftVocabSize: 8, TargetHiddenSize: 6, RMSNormEps: 1e-6, RopeTheta: 10000, MaxPositions: 64,
		AuxLayers: []int{0, 1, 2}, AuxConvention: draft.OutputOfLayer, TargetNumLayers: 4}
	w := draft.NewWeights(&cfg)
	for _, s := range w.Slices(&cfg) {
		for i := range s {
			s[i] = float32(i%7) / 8
		}
	}
	m, err := vocab.FromD2T([]int64{0, 1, 1, 2, 3, 3, 5, 8}, cfg.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	d, err := draft.New(cfg, tensor.FromF32(make([]float32, 16*4), 16, 4), m, w)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Draft folders from strangers: sizes beyond the target limits, and tensors whose shapes overflow or do not
// match, are refused with the file and field (issue 14).
func TestReadDraftLimits(t *testing.T) {
	d := tinyDraft(t)
	good := t.TempDir()
	if err := Write(good, d, SGLang, Options{}); err != nil {
		t.Fatal(err)
	}
	weights, err := os.ReadFile(filepath.Join(good, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	// overflowing is a safetensors file whose lm_head claims 2^62 x 64 elements in 0 bytes (the product
	// wraps to 0 in int64).
	header := `{"lm_head.weight": {"dtype": "BF16", "shape": [4611686018427387904, 64], "data_offsets": [0, 0]}}`
	overflowing := append(binary.LittleEndian.AppendUint64(nil, uint64(len(header))), header...)
	var kept []safetensors.Tensor
	for _, tt := range Tensors(d, SGLang, safetensors.F32) {
		if tt.Name != "t2d" {
			kept = append(kept, tt)
		}
	}
	noT2DPath := filepath.Join(t.TempDir(), "model.safetensors")
	if err := safetensors.Write(noT2DPath, kept, nil); err != nil {
		t.Fatal(err)
	}
	noT2D, err := os.ReadFile(noT2DPath)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		set     map[string]any
		weights []byte
		want    string
	}{
		{"hidden_size 1e12", map[string]any{"hidden_size": 1000000000000}, nil, "hidden_size must be in [1, 65536], got 1000000000000"},
		{"intermediate_size huge", map[string]any{"intermediate_size": 1 << 40}, nil, "intermediate_size must be in [1, 262144]"},
		{"heads x head_dim overflows", map[string]any{"num_attention_heads": 1 << 32, "head_dim": 1 << 32}, nil, "num_attention_heads must be in [1, 1024]"},
		{"head_dim negative", map[string]any{"head_dim": -2}, nil, "head_dim must be in [1, 1024], got -2"},
		{"kv heads negative", map[string]any{"num_key_value_heads": -1}, nil, "num_key_value_heads must be in [1, 1024], got -1"},
		{"vocab_size huge with t2d", map[string]any{"vocab_size": 1 << 40}, nil, "t2d has 16 entries but vocab_size is 1099511627776"},
		// Without t2d, vocab_size sizes the vocabulary mapping's flags: the limit keeps it from allocating.
		{"vocab_size huge without t2d", map[string]any{"vocab_size": 1 << 40}, noT2D, "vocab_size must be in [1, 4194304], got 1099511627776"},
		{"draft_vocab_size negative", map[string]any{"draft_vocab_size": -8}, nil, "draft_vocab_size must be in [1, 4194304], got -8"},
		{"target_hidden_size huge", map[string]any{"target_hidden_size": 1 << 40}, nil, "target_hidden_size 1099511627776 but fc.weight reads 18"},
		{"max positions negative", map[string]any{"max_position_embeddings": -1}, nil, "max_position_embeddings must be in [1, 16777216], got -1"},
		{"eps negative", map[string]any{"rms_norm_eps": -1e-6}, nil, "rms_norm_eps must be in (0, 1], got -1e-06"},
		{"aux layer huge", map[string]any{"specforge": nil, "eagle_config": map[string]any{"eagle_aux_hidden_state_layer_ids": []int{1, 2, 1 << 40}}}, nil, "aux layer 1099511627776 (output of 0-based decoder layer i"},
		{"hidden_size as a float", map[string]any{"hidden_size": 1.5}, nil, "hidden_size: want int, got number 1.5"},
		{"lm_head overflows", nil, overflowing, `tensor "lm_head.weight": shape [4611686018427387904 64]: the size overflows int64 bytes`},
		{"weights of another shape", map[string]any{"hidden_size": 8, "head_dim": 4}, weights, `tensor "fc.weight": shape [4 18], want [8 18]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := readConfig(t, good)
			for k, v := range c.set {
				cfg[k] = v
			}
			writeConfig(t, dir, cfg)
			w := weights
			if c.weights != nil {
				w = c.weights
			}
			if err := os.WriteFile(filepath.Join(dir, "model.safetensors"), w, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Read(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), dir) {
				t.Errorf("got %v, want an error naming %s and containing %q", err, dir, c.want)
			}
		})
	}
}

// FuzzDraftImport reads a draft folder of arbitrary config.json and model.safetensors bytes: an error, or a
// draft whose weights have the sizes its configuration gives.
func FuzzDraftImport(f *testing.F) {
	d := tinyDraft(f)
	for _, format := range []Format{SGLang, VLLM, Speculators} {
		dir := f.TempDir()
		if err := Write(dir, d, format, Options{DType: safetensors.F16}); err != nil {
			f.Fatal(err)
		}
		cfg, err1 := os.ReadFile(filepath.Join(dir, "config.json"))
		weights, err2 := os.ReadFile(filepath.Join(dir, "model.safetensors"))
		if err1 != nil || err2 != nil {
			f.Fatal(err1, err2)
		}
		f.Add(cfg, weights)
	}
	f.Fuzz(func(t *testing.T, cfg, weights []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "model.safetensors"), weights, 0o644); err != nil {
			t.Fatal(err)
		}
		im, err := Read(dir)
		if err != nil {
			return
		}
		c := &im.Config
		for _, p := range im.Weights.Params(c) {
			if len(*p.Data) != safetensors.NumElements(p.Shape) {
				t.Fatalf("%s: %d values for shape %v", p.Name, len(*p.Data), p.Shape)
			}
		}
		if len(im.Vocab.D2T) != c.DraftVocabSize || len(im.Vocab.T2D) != c.VocabSize {
			t.Fatalf("vocabulary of %d -> %d for %+v", len(im.Vocab.D2T), len(im.Vocab.T2D), c)
		}
	})
}
