package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"unsafe"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/tensor"
)

// writeBF16 writes the float32 values of every tensor of ts as a bf16 model folder with config.json cfg,
// and returns the folder and the size of its model.safetensors.
func writeBF16(t *testing.T, cfg []byte, ts map[string]*safetensors.Tensor) (string, int64) {
	t.Helper()
	dir := t.TempDir()
	var out []safetensors.Tensor
	for name, x := range ts {
		v, err := x.Float32()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, safetensors.FromFloat32(name, safetensors.BF16, x.Shape, v))
	}
	path := filepath.Join(dir, "model.safetensors")
	if err := safetensors.Write(path, out, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return dir, st.Size()
}

// checkStoredBF16 fails unless every matrix of m is BF16 and aliases the checkpoint's mapping (the very
// bytes the file's tensor points at), and every vector is F32.
// bf16Copy writes the model folder srcDir with every tensor in bf16 to a temporary folder and returns it.
func bf16Copy(t *testing.T, srcDir string) string {
	t.Helper()
	src, err := safetensors.OpenCheckpoint(srcDir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ts := map[string]*safetensors.Tensor{}
	for _, name := range src.Names() {
		ts[name], _ = src.Tensor(name)
	}
	cfg, err := os.ReadFile(filepath.Join(srcDir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := writeBF16(t, cfg, ts)
	return dir
}

func checkStoredBF16(t *testing.T, m *Model) {
	t.Helper()
	mapped := func(what string, got tensor.Tensor, name string) {
		t.Helper()
		x, err := m.ckpt.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if got.DType() != tensor.BF16 || got.Storage() != tensor.Mapped || unsafe.SliceData(got.Raw()) != unsafe.SliceData(x.Data) {
			t.Fatalf("%s is %v, not the mapped BF16 tensor %s", what, got, name)
		}
	}
	mapped("Embed", m.Embed, "model.embed_tokens.weight")
	if m.LMHead != m.Embed {
		t.Error("tied lm_head is not the embedding")
	}
	for i, l := range m.Layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		for _, w := range []struct {
			t    tensor.Tensor
			name string
		}{
			{l.Wq, "self_attn.q_proj.weight"}, {l.Wk, "self_attn.k_proj.weight"}, {l.Wv, "self_attn.v_proj.weight"},
			{l.Wo, "self_attn.o_proj.weight"}, {l.Wgate, "mlp.gate_proj.weight"}, {l.Wup, "mlp.up_proj.weight"},
			{l.Wdown, "mlp.down_proj.weight"},
		} {
			mapped(fmt.Sprintf("layer %d %s", i, w.name), w.t, p+w.name)
		}
		if l.InputNorm.DType() != tensor.F32 || l.PostNorm.DType() != tensor.F32 {
			t.Errorf("layer %d norms are %v and %v, want F32 (widened at load)", i, l.InputNorm, l.PostNorm)
		}
	}
	if m.Norm.DType() != tensor.F32 {
		t.Errorf("final norm is %v, want F32", m.Norm)
	}
}

// TestBF16StoriesCheckpoint converts the stories260K target to bf16 and checks that it loads without a
// copy of its matrices and computes the float32 model's logits within what the rounding of its weights to
// bf16 allows. The model multiplies in float32 (F32Product), so that rounding is the only difference: each
// weight moves by at most 2^-9 relative (uniformly, rms 2^-9/sqrt(3)), a dot product by that fraction of the
// root-sum-square of its terms, and the errors of the 36 products of 5 layers (7 a layer and lm_head) add
// like a random walk along the residual stream: sqrt(36) * 2^-9/sqrt(3), about 0.7% of the activations'
// scale in rms. The test allows 3 * 2^-9 (0.6%) of the largest logit in rms (the logits' own rms is well
// below their largest) and 12 * 2^-9 (2.3%) anywhere; stories260K is at 0.11% and 0.5%, and a lost weight
// (a wrong widening, a misread tile) moves logits by far more.
func TestBF16StoriesCheckpoint(t *testing.T) {
	srcDir := goldentest.Shared(t, "assets", "models", "stories260K")
	dir := bf16Copy(t, srcDir)

	ref, err := Load(srcDir)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	m, err := LoadWith(dir, backend.F32Product)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	checkStoredBF16(t, m)

	B, T := 2, 40
	b := Batch{B: B, T: T, IDs: make([]int32, B*T)}
	for i := range b.IDs {
		b.IDs[i] = int32(1 + i*97%(m.Config.VocabSize-1))
	}
	want, err := ref.Forward(b, nil, Request{Logits: AllLogits})
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Forward(b, nil, Request{Logits: AllLogits})
	if err != nil {
		t.Fatal(err)
	}
	var scale, maxDiff, sq float64
	for i := range want.Logits {
		scale = max(scale, math.Abs(float64(want.Logits[i])))
		d := math.Abs(float64(got.Logits[i] - want.Logits[i]))
		maxDiff, sq = max(maxDiff, d), sq+d*d
	}
	rms := math.Sqrt(sq / float64(len(want.Logits)))
	t.Logf("logits: largest %.3g, max |diff| %.3g (%.2g of it), rms diff %.3g", scale, maxDiff, maxDiff/scale, rms)
	if maxDiff > 12*0x1p-9*scale || rms > 3*0x1p-9*scale || math.IsNaN(maxDiff) {
		t.Errorf("bf16 logits off the float32 model's: max |diff| %.3g, rms %.3g, largest logit %.3g", maxDiff, rms, scale)
	}
}

// TestBF16LoadAllocatesNoCopies loads a random bf16 checkpoint of about 8 MB and checks that the Go heap
// grows by far less than the file: the matrices are the mapping, not float32 copies (which would be twice
// the file) or bf16 ones (the file again). The heap holds only the config, the widened vectors and the
// prepared weights' headers.
func TestBF16LoadAllocatesNoCopies(t *testing.T) {
	const H, I, L, V = 256, 704, 4, 4096
	cfg := fmt.Appendf(nil, `{"architectures": ["LlamaForCausalLM"], "hidden_size": %d, "intermediate_size": %d,
		"num_hidden_layers": %d, "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": %d,
		"rms_norm_eps": 1e-5, "tie_word_embeddings": true}`, H, I, L, V)
	r := rand.New(rand.NewPCG(7, 7))
	ts := map[string]*safetensors.Tensor{}
	add := func(name string, shape ...int) {
		v := make([]float32, safetensors.NumElements(shape))
		for i := range v {
			v[i] = float32(r.NormFloat64() * 0.05)
		}
		x := safetensors.FromFloat32(name, safetensors.F32, shape, v)
		ts[name] = &x
	}
	add("model.embed_tokens.weight", V, H)
	add("model.norm.weight", H)
	for l := range L {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", H)
		add(p+"post_attention_layernorm.weight", H)
		add(p+"self_attn.q_proj.weight", H, H)
		add(p+"self_attn.k_proj.weight", H/2, H)
		add(p+"self_attn.v_proj.weight", H/2, H)
		add(p+"self_attn.o_proj.weight", H, H)
		add(p+"mlp.gate_proj.weight", I, H)
		add(p+"mlp.up_proj.weight", I, H)
		add(p+"mlp.down_proj.weight", H, I)
	}
	dir, size := writeBF16(t, cfg, ts)
	ts = nil

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	runtime.GC()
	runtime.ReadMemStats(&after)
	checkStoredBF16(t, m)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("checkpoint %d bytes; heap grew by %d bytes at load", size, grew)
	if grew > size/16 {
		t.Errorf("loading a %d-byte bf16 checkpoint grew the heap by %d bytes: the matrices were copied", size, grew)
	}
	// And the model runs on its mapped bf16 weights.
	out, err := m.Forward(Batch{B: 1, T: 3, IDs: []int32{1, 2, 3}}, nil, Request{Logits: AllLogits})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range out.Logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("logit %d is %g", i, v)
		}
	}
}
