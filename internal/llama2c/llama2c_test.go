package llama2c

import (
	"bytes"
	"encoding/binary"
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

// legacyHeader is a legacy llama2.c header: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
// seq_len as int32s.
func legacyHeader(v ...int32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, uint32(x))
	}
	return b
}

// Headers from strangers' files are checked, sizes and their products, before any weight is allocated
// (issue 14); each error names the file and the field or the size the header implies.
func TestReadHeaderErrors(t *testing.T) {
	const big = 1 << 30
	v1 := func(version int32, dims ...int32) []byte {
		b := binary.LittleEndian.AppendUint32(nil, magicV1)
		b = append(b, legacyHeader(append([]int32{version}, dims...)...)...)
		return append(b, make([]byte, v1HeaderBytes-len(b))...)
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"products overflow int64", legacyHeader(big, big, big, 1, 1, big, big), "needs more than 2^63"},
		{"huge but in range", append(legacyHeader(4096, 11008, 32, 32, 32, 32000, 2048), make([]byte, 64)...), "64 bytes of weights, the header"},
		{"dims overflow for int32 fields", legacyHeader(-1<<31, 64, 1, 1, 1, 1, 1), "header dim = -2147483648, must be positive"},
		{"negative layers", legacyHeader(64, 64, -1, 4, 4, 10, 8), "header n_layers = -1, must be positive"},
		{"zero seq_len", legacyHeader(64, 64, 1, 4, 4, 10, 0), "header seq_len = 0, must be positive"},
		{"heads do not divide dim", legacyHeader(64, 64, 1, 5, 5, 10, 8), "n_heads must divide dim into an even head size"},
		{"kv heads do not divide heads", legacyHeader(64, 64, 1, 4, 3, 10, 8), "n_kv_heads divide n_heads"},
		{"odd head size", legacyHeader(12, 64, 1, 4, 4, 10, 8), "n_heads must divide dim into an even head size"},
		{"unshared vocab at the int32 minimum", legacyHeader(2, 2, 1, 1, 1, -1<<31, 1), "needs 34359738512"},
		{"v1 version 2", v1(2, 64, 64, 1, 4, 4, 10, 8), "llama2.c format version 2 is not supported"},
		{"v1 overflow", v1(1, big, big, big, 2, 2, big, big), "needs more than 2^63"},
		{"v1 truncated header", v1(1, 64, 64, 1, 4, 4, 10, 8)[:100], "truncated v1 header"},
		{"tiny", []byte{1, 2, 3}, "3 bytes is too short for a llama2.c header"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".bin")
			if err := os.WriteFile(path, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Read(path)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), path) {
				t.Errorf("got %v, want an error starting with %s and containing %q", err, path, c.want)
			}
		})
	}
}

// FuzzLlama2c parses arbitrary bytes as a llama2.c checkpoint: an error naming the file, or a checkpoint
// whose every tensor has the size its header says.
func FuzzLlama2c(f *testing.F) {
	tiny := func(legacy bool, vocab int32) []byte {
		// dim 4, hidden 6, 1 layer, 2 heads (head size 2), 1 kv head, seq_len 3
		p := Params{Dim: 4, HiddenDim: 6, Layers: 1, Heads: 2, KVHeads: 1, Vocab: int(max(vocab, -vocab)), SeqLen: 3, SharedClassifier: vocab > 0}
		var b []byte
		if legacy {
			b = legacyHeader(4, 6, 1, 2, 1, vocab, 3)
		} else {
			b = binary.LittleEndian.AppendUint32(nil, magicV1)
			b = append(b, legacyHeader(1, 4, 6, 1, 2, 1, vocab, 3)...)
			if vocab > 0 {
				b = append(b, 1)
			}
			b = append(b, make([]byte, v1HeaderBytes-len(b))...)
		}
		n, _ := p.numWeights(legacy)
		return append(b, make([]byte, 4*n)...)
	}
	f.Add(tiny(true, 5))
	f.Add(tiny(true, -5))
	f.Add(tiny(false, 5))
	f.Add(tiny(false, -5))
	f.Add(legacyHeader(1<<30, 1<<30, 1<<30, 1, 1, 1<<30, 1<<30))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parse("fuzz.bin", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.bin") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		p := c.Params
		hs := p.Dim / p.Heads
		if len(c.Embed) != p.Vocab*p.Dim || len(c.Norm) != p.Dim || len(c.Wq) != p.Layers || len(c.Wk[0]) != p.KVHeads*hs*p.Dim ||
			len(c.W2[p.Layers-1]) != p.Dim*p.HiddenDim || p.SharedClassifier != (c.Classifier == nil) {
			t.Fatalf("tensors do not match the header %+v", p)
		}
		want := 2 + 9*p.Layers
		if !p.SharedClassifier {
			want++ // lm_head
		}
		if ts := c.Tensors(); len(ts) != want {
			t.Fatalf("%d tensors for %+v", len(ts), p)
		}
	})
}
