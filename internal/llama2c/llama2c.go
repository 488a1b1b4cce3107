// Package llama2c imports checkpoints of Karpathy's llama2.c (the legacy v0 layout run.c reads, and the
// float32 v1 layout with the "ak42" header) into Hugging Face Llama folders.
package llama2c

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
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

// Read parses a llama2.c checkpoint file. The file size must match the header exactly.
func Read(path string) (*Checkpoint, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read llama2.c checkpoint: %w", err)
	}
	if len(data) < 28 {
		return nil, fmt.Errorf("%s: %d bytes is too short for a llama2.c header", path, len(data))
	}
	i32 := func(off int) int { return int(int32(binary.LittleEndian.Uint32(data[off:]))) }
	c := &Checkpoint{}
	var body []byte
	legacy := binary.LittleEndian.Uint32(data) != magicV1
	if legacy {
		c.Params = Params{Dim: i32(0), HiddenDim: i32(4), Layers: i32(8), Heads: i32(12), KVHeads: i32(16), Vocab: i32(20), SeqLen: i32(24)}
		c.SharedClassifier = c.Vocab > 0
		if c.Vocab < 0 {
			c.Vocab = -c.Vocab
		}
		body = data[28:]
	} else {
		if len(data) < 256 {
			return nil, fmt.Errorf("%s: truncated v1 header", path)
		}
		if v := i32(4); v != 1 {
			return nil, fmt.Errorf("%s: llama2.c format version %d is not supported (supported: legacy v0 and float32 v1; v2 is int8-quantized)", path, v)
		}
		c.Params = Params{Dim: i32(8), HiddenDim: i32(12), Layers: i32(16), Heads: i32(20), KVHeads: i32(24), Vocab: i32(28), SeqLen: i32(32)}
		c.SharedClassifier = data[36] == 1
		body = data[256:]
	}
	p := c.Params
	if p.Dim <= 0 || p.HiddenDim <= 0 || p.Layers <= 0 || p.Heads <= 0 || p.KVHeads <= 0 || p.Vocab <= 0 || p.SeqLen <= 0 ||
		p.Dim%p.Heads != 0 || p.Heads%p.KVHeads != 0 || (p.Dim/p.Heads)%2 != 0 {
		return nil, fmt.Errorf("%s: implausible llama2.c header %+v (not a llama2.c checkpoint?)", path, p)
	}
	hs := p.Dim / p.Heads
	kvDim := p.KVHeads * hs
	L := p.Layers
	want := p.Vocab*p.Dim + L*(2*p.Dim+p.Dim*p.Dim+2*kvDim*p.Dim+p.Dim*p.Dim+3*p.Dim*p.HiddenDim) + p.Dim
	if legacy {
		want += p.SeqLen * hs // freq_cis_real and freq_cis_imag, [seq_len, hs/2] each
	}
	if !p.SharedClassifier {
		want += p.Vocab * p.Dim
	}
	if len(body) != 4*want {
		return nil, fmt.Errorf("%s: %d bytes of weights, the header %+v needs %d (truncated or not a llama2.c checkpoint?)", path, len(body), p, 4*want)
	}
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
