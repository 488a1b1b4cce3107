// Package llama2c imports checkpoints of Karpathy's llama2.c (the legacy v0 layout run.c reads, and the
// float32 v1 layout with the "ak42" header) into Hugging Face Llama folders.
package llama2c

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/safetensors"
)

// Params is the llama2.c model header.
type Params struct {
	Dim, HiddenDim, Layers, Heads, KVHeads, Vocab, SeqLen int
	SharedClassifier                                      bool
}

// Checkpoint is a llama2.c model read into memory, weights in llama2.c's own layout.
type Checkpoint struct {
	Params
	Embed, Norm                                   []float32
	AttnNorm, FFNNorm, Wq, Wk, Wv, Wo, W1, W2, W3 [][]float32 // per layer
	Classifier                                    []float32
}

const magicV1 = 0x616b3432 // "ak42"

// Header sizes: the legacy header is seven int32s, the v1 header a padded 256 bytes.
const (
	legacyHeaderBytes = 28
	v1HeaderBytes     = 256
)

// Read parses a llama2.c checkpoint file. The file size must match the header exactly, which is checked
// from the header alone, before the weights are read into memory.
func Read(path string) (*Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read llama2.c checkpoint: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read llama2.c checkpoint: %w", err)
	}
	head := make([]byte, min(st.Size(), v1HeaderBytes))
	if _, err := io.ReadFull(f, head); err != nil {
		return nil, fmt.Errorf("read llama2.c checkpoint: %w", err)
	}
	if _, _, err := parseHeader(path, head, st.Size()); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read llama2.c checkpoint: %w", err)
	}
	return parse(path, data)
}

// parseHeader decodes the header at the start of a file of size bytes and checks it: every size positive,
// the heads dividing the width, and the weights it implies, computed without overflow, filling the file
// exactly. It returns the parameters and the length of the header.
func parseHeader(path string, head []byte, size int64) (Params, int, error) {
	if len(head) < legacyHeaderBytes {
		return Params{}, 0, fmt.Errorf("%s: %d bytes is too short for a llama2.c header", path, len(head))
	}
	i32 := func(off int) int { return int(int32(binary.LittleEndian.Uint32(head[off:]))) }
	var p Params
	hdr := legacyHeaderBytes
	legacy := binary.LittleEndian.Uint32(head) != magicV1
	if legacy {
		p = Params{Dim: i32(0), HiddenDim: i32(4), Layers: i32(8), Heads: i32(12), KVHeads: i32(16), Vocab: i32(20), SeqLen: i32(24)}
		// A negative vocabulary size says the classifier is not shared; int() of an int32 keeps -MinInt32.
		p.SharedClassifier = p.Vocab > 0
		if p.Vocab < 0 {
			p.Vocab = -p.Vocab
		}
	} else {
		if len(head) < v1HeaderBytes {
			return Params{}, 0, fmt.Errorf("%s: truncated v1 header", path)
		}
		if v := i32(4); v != 1 {
			return Params{}, 0, fmt.Errorf("%s: llama2.c format version %d is not supported (supported: legacy v0 and float32 v1; v2 is int8-quantized)", path, v)
		}
		p = Params{Dim: i32(8), HiddenDim: i32(12), Layers: i32(16), Heads: i32(20), KVHeads: i32(24), Vocab: i32(28), SeqLen: i32(32)}
		p.SharedClassifier = head[36] == 1
		hdr = v1HeaderBytes
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"dim", p.Dim}, {"hidden_dim", p.HiddenDim}, {"n_layers", p.Layers}, {"n_heads", p.Heads}, {"n_kv_heads", p.KVHeads}, {"vocab_size", p.Vocab}, {"seq_len", p.SeqLen}} {
		if f.v <= 0 {
			return Params{}, 0, fmt.Errorf("%s: header %s = %d, must be positive (not a llama2.c checkpoint?)", path, f.name, f.v)
		}
	}
	if p.Dim%p.Heads != 0 || p.Heads%p.KVHeads != 0 || (p.Dim/p.Heads)%2 != 0 {
		return Params{}, 0, fmt.Errorf("%s: header dim %d, n_heads %d, n_kv_heads %d: n_heads must divide dim into an even head size and n_kv_heads divide n_heads (not a llama2.c checkpoint?)",
			path, p.Dim, p.Heads, p.KVHeads)
	}
	weights, ok := p.numWeights(legacy)
	body := size - int64(hdr)
	if !ok || weights > body/4 || 4*weights != body {
		need := "more than 2^63"
		if ok {
			need = fmt.Sprint(4 * weights)
		}
		return Params{}, 0, fmt.Errorf("%s: %d bytes of weights, the header %+v needs %s (truncated or not a llama2.c checkpoint?)", path, body, p, need)
	}
	return p, hdr, nil
}

// numWeights counts the float32 values of the weights that follow the header; ok is false when the count
// overflows an int64 (a header of random int32s easily asks for 2^70 values).
func (p Params) numWeights(legacy bool) (n int64, ok bool) {
	ok = true
	mul := func(xs ...int64) int64 {
		prod := uint64(1)
		for _, x := range xs {
			hi, lo := bits.Mul64(prod, uint64(x))
			if hi != 0 || lo > math.MaxInt64 {
				ok = false
				return 0
			}
			prod = lo
		}
		return int64(prod)
	}
	add := func(xs ...int64) int64 {
		var sum int64
		for _, x := range xs {
			if sum > math.MaxInt64-x {
				ok = false
				return 0
			}
			sum += x
		}
		return sum
	}
	dim, hidden, vocab := int64(p.Dim), int64(p.HiddenDim), int64(p.Vocab)
	hs := int64(p.Dim / p.Heads)
	kvDim := int64(p.KVHeads) * hs
	// Per layer: two norms, wq and wo [dim, dim], wk and wv [kv_dim, dim], w1, w2 and w3 [hidden_dim, dim].
	layer := add(mul(2, dim), mul(2, dim, dim), mul(2, kvDim, dim), mul(3, dim, hidden))
	n = add(mul(vocab, dim), mul(layer, int64(p.Layers)), dim)
	if legacy {
		n = add(n, mul(int64(p.SeqLen), hs)) // freq_cis_real and freq_cis_imag, [seq_len, hs/2] each
	}
	if !p.SharedClassifier {
		n = add(n, mul(vocab, dim))
	}
	return n, ok
}

// parse decodes a whole llama2.c checkpoint held in data.
func parse(path string, data []byte) (*Checkpoint, error) {
	p, hdr, err := parseHeader(path, data, int64(len(data)))
	if err != nil {
		return nil, err
	}
	legacy := hdr == legacyHeaderBytes
	c := &Checkpoint{Params: p}
	body := data[hdr:]
	hs := p.Dim / p.Heads
	kvDim := p.KVHeads * hs
	L := p.Layers
	off := 0
	next := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(body[4*(off+i):]))
		}
		off += n
		return out
	}
	perLayer := func(n int) [][]float32 {
		out := make([][]float32, L)
		for l := range out {
			out[l] = next(n)
		}
		return out
	}
	if legacy {
		c.Embed = next(p.Vocab * p.Dim)
		c.AttnNorm = perLayer(p.Dim)
		c.Wq, c.Wk, c.Wv, c.Wo = perLayer(p.Dim*p.Dim), perLayer(kvDim*p.Dim), perLayer(kvDim*p.Dim), perLayer(p.Dim*p.Dim)
		c.FFNNorm = perLayer(p.Dim)
		c.W1, c.W2, c.W3 = perLayer(p.HiddenDim*p.Dim), perLayer(p.Dim*p.HiddenDim), perLayer(p.HiddenDim*p.Dim)
		c.Norm = next(p.Dim)
		off += p.SeqLen * hs // the RoPE tables: HF recomputes them
	} else {
		c.AttnNorm, c.FFNNorm = perLayer(p.Dim), perLayer(p.Dim)
		c.Norm = next(p.Dim)
		c.Embed = next(p.Vocab * p.Dim)
		c.Wq, c.Wk, c.Wv, c.Wo = perLayer(p.Dim*p.Dim), perLayer(kvDim*p.Dim), perLayer(kvDim*p.Dim), perLayer(p.Dim*p.Dim)
		c.W1, c.W2, c.W3 = perLayer(p.HiddenDim*p.Dim), perLayer(p.Dim*p.HiddenDim), perLayer(p.HiddenDim*p.Dim)
	}
	if !p.SharedClassifier {
		c.Classifier = next(p.Vocab * p.Dim)
	}
	return c, nil
}

// permuteRotary reorders the rows of a q or k projection [heads*hs, dim] from Meta's interleaved-pair RoPE
// layout to Hugging Face's rotate-half layout: row h*hs+2i+j moves to h*hs+j*hs/2+i, as HF's
// convert_llama_weights_to_hf.py and llama2.c's export.py do.
func permuteRotary(w []float32, heads, hs, dim int) []float32 {
	out := make([]float32, len(w))
	for h := 0; h < heads; h++ {
		for i := 0; i < hs/2; i++ {
			for j := 0; j < 2; j++ {
				src, dst := h*hs+2*i+j, h*hs+j*hs/2+i
				copy(out[dst*dim:(dst+1)*dim], w[src*dim:(src+1)*dim])
			}
		}
	}
	return out
}

// HFConfig is the config.json of the converted model.
func (c *Checkpoint) HFConfig() map[string]any {
	p := c.Params
	return map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"hidden_size": p.Dim, "intermediate_size": p.HiddenDim, "num_hidden_layers": p.Layers,
		"num_attention_heads": p.Heads, "num_key_value_heads": p.KVHeads, "head_dim": p.Dim / p.Heads,
		"vocab_size": p.Vocab, "max_position_embeddings": p.SeqLen, "rms_norm_eps": 1e-5,
		"rope_theta": 10000.0, "rope_scaling": nil, "hidden_act": "silu",
		"tie_word_embeddings": p.SharedClassifier, "attention_bias": false, "mlp_bias": false,
		"bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
	}
}

// Tensors returns the weights under Hugging Face names, q and k rows permuted to rotate-half.
func (c *Checkpoint) Tensors() []safetensors.Tensor {
	p := c.Params
	hs := p.Dim / p.Heads
	f := func(name string, shape []int, v []float32) safetensors.Tensor {
		return safetensors.FromFloat32(name, safetensors.F32, shape, v)
	}
	ts := []safetensors.Tensor{f("model.embed_tokens.weight", []int{p.Vocab, p.Dim}, c.Embed), f("model.norm.weight", []int{p.Dim}, c.Norm)}
	for l := 0; l < p.Layers; l++ {
		pre := fmt.Sprintf("model.layers.%d.", l)
		ts = append(ts,
			f(pre+"input_layernorm.weight", []int{p.Dim}, c.AttnNorm[l]),
			f(pre+"post_attention_layernorm.weight", []int{p.Dim}, c.FFNNorm[l]),
			f(pre+"self_attn.q_proj.weight", []int{p.Heads * hs, p.Dim}, permuteRotary(c.Wq[l], p.Heads, hs, p.Dim)),
			f(pre+"self_attn.k_proj.weight", []int{p.KVHeads * hs, p.Dim}, permuteRotary(c.Wk[l], p.KVHeads, hs, p.Dim)),
			f(pre+"self_attn.v_proj.weight", []int{p.KVHeads * hs, p.Dim}, c.Wv[l]),
			f(pre+"self_attn.o_proj.weight", []int{p.Dim, p.Heads * hs}, c.Wo[l]),
			f(pre+"mlp.gate_proj.weight", []int{p.HiddenDim, p.Dim}, c.W1[l]),
			f(pre+"mlp.down_proj.weight", []int{p.Dim, p.HiddenDim}, c.W2[l]),
			f(pre+"mlp.up_proj.weight", []int{p.HiddenDim, p.Dim}, c.W3[l]),
		)
	}
	if !p.SharedClassifier {
		ts = append(ts, f("lm_head.weight", []int{p.Vocab, p.Dim}, c.Classifier))
	}
	return ts
}

// WriteHF writes config.json, generation_config.json and model.safetensors into dir (created if needed).
// Each file is written atomically.
func (c *Checkpoint) WriteHF(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), c.Tensors(), map[string]string{"format": "pt"}); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(dir, "generation_config.json"), map[string]any{"bos_token_id": 1, "eos_token_id": 2, "max_length": c.SeqLen, "do_sample": false}); err != nil {
		return err
	}
	// config.json last: a folder with a config is a complete model.
	return writeJSON(filepath.Join(dir, "config.json"), c.HFConfig())
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(path, append(data, '\n'))
}
