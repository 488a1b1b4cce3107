// Package scalebench measures specforge at real sizes on the machine it runs on. Scale writes a random
// checkpoint of a real target's shape (Llama-3.1-8B by default) as a sharded Hugging Face folder, streamed to
// disk so that it never has to fit in memory, then times loading it, gen-hidden over random token ids and an
// online training step of the matching draft. TrainMemory times one training step of a draft at several
// sequence lengths. Each measured phase runs as a Job, in a fresh child process when the caller can start one,
// so that the peak resident memory it reports is the phase's own.
package scalebench

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/safetensors"
)

// Shape is the architecture of a Llama target.
type Shape struct {
	Layers       int     `json:"layers"`
	Hidden       int     `json:"hidden"`
	Intermediate int     `json:"intermediate"`
	Heads        int     `json:"heads"`
	KVHeads      int     `json:"kv_heads"`
	HeadDim      int     `json:"head_dim"`
	Vocab        int     `json:"vocab"`
	RopeTheta    float64 `json:"rope_theta"`
}

// Llama8B is the shape of Llama-3.1-8B.
func Llama8B() Shape {
	return Shape{Layers: 32, Hidden: 4096, Intermediate: 14336, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 128256, RopeTheta: 500000}
}

// Validate rejects shapes no Llama has.
func (s Shape) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"layers", s.Layers}, {"hidden", s.Hidden}, {"intermediate", s.Intermediate}, {"heads", s.Heads}, {"kv-heads", s.KVHeads}, {"head-dim", s.HeadDim}, {"vocab", s.Vocab}} {
		if f.v <= 0 {
			return fmt.Errorf("shape: %s must be positive, got %d", f.name, f.v)
		}
	}
	if s.Heads%s.KVHeads != 0 {
		return fmt.Errorf("shape: %d heads are not a multiple of %d kv heads", s.Heads, s.KVHeads)
	}
	if s.HeadDim%2 != 0 {
		return fmt.Errorf("shape: head-dim %d must be even (RoPE rotates pairs)", s.HeadDim)
	}
	if s.Vocab < 4 {
		return fmt.Errorf("shape: vocab %d is too small for bos and eos", s.Vocab)
	}
	return nil
}

// tensorSpec is one weight of the checkpoint: norms are ones, every matrix random.
type tensorSpec struct {
	name  string
	shape []int
	norm  bool
}

// tensors lists the weights in Hugging Face order.
func (s Shape) tensors() []tensorSpec {
	H, I, q, kv := s.Hidden, s.Intermediate, s.Heads*s.HeadDim, s.KVHeads*s.HeadDim
	specs := []tensorSpec{{name: "model.embed_tokens.weight", shape: []int{s.Vocab, H}}}
	for i := 0; i < s.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		specs = append(specs,
			tensorSpec{name: p + "input_layernorm.weight", shape: []int{H}, norm: true},
			tensorSpec{name: p + "self_attn.q_proj.weight", shape: []int{q, H}},
			tensorSpec{name: p + "self_attn.k_proj.weight", shape: []int{kv, H}},
			tensorSpec{name: p + "self_attn.v_proj.weight", shape: []int{kv, H}},
			tensorSpec{name: p + "self_attn.o_proj.weight", shape: []int{H, q}},
			tensorSpec{name: p + "post_attention_layernorm.weight", shape: []int{H}, norm: true},
			tensorSpec{name: p + "mlp.gate_proj.weight", shape: []int{I, H}},
			tensorSpec{name: p + "mlp.up_proj.weight", shape: []int{I, H}},
			tensorSpec{name: p + "mlp.down_proj.weight", shape: []int{H, I}},
		)
	}
	return append(specs, tensorSpec{name: "model.norm.weight", shape: []int{H}, norm: true},
		tensorSpec{name: "lm_head.weight", shape: []int{s.Vocab, H}})
}

// Params is the number of weights of the shape.
func (s Shape) Params() int64 {
	var n int64
	for _, t := range s.tensors() {
		n += int64(safetensors.NumElements(t.shape))
	}
	return n
}

// config is the checkpoint's config.json: Llama-3.1's, with the shape's sizes.
func (s Shape) config(dtype safetensors.DType) map[string]any {
	bos := min(128000, s.Vocab-2)
	torchDType := "bfloat16"
	if dtype == safetensors.F32 {
		torchDType = "float32"
	}
	return map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"hidden_size": s.Hidden, "intermediate_size": s.Intermediate, "num_hidden_layers": s.Layers,
		"num_attention_heads": s.Heads, "num_key_value_heads": s.KVHeads, "head_dim": s.HeadDim, "vocab_size": s.Vocab,
		"hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": s.RopeTheta, "max_position_embeddings": 131072,
		"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
			"original_max_position_embeddings": 8192},
		"tie_word_embeddings": false, "attention_bias": false, "mlp_bias": false,
		"bos_token_id": bos, "eos_token_id": bos + 1, "torch_dtype": torchDType,
	}
}

// CheckpointOptions say what WriteCheckpoint writes.
type CheckpointOptions struct {
	Dir        string
	Shape      Shape
	DType      safetensors.DType // BF16 or F32
	ShardBytes int64             // shards are filled up to this size (a tensor never spans two)
	Seed       uint64
}

// CheckpointInfo describes a written checkpoint.
type CheckpointInfo struct {
	Shards  []string `json:"shards"`
	Bytes   int64    `json:"bytes"` // of the shards
	Params  int64    `json:"params"`
	Seconds float64  `json:"seconds"`
}

// initStd is the standard deviation of the random matrices: Llama's initializer_range, which keeps
// activations finite through 32 layers.
const initStd = 0.02

// WriteCheckpoint writes a random checkpoint of o.Shape into o.Dir: config.json, the shards named as Hugging
// Face names them and model.safetensors.index.json. Each tensor's values are generated chunk by chunk while
// its shard is written, so memory use does not grow with the checkpoint.
func WriteCheckpoint(o CheckpointOptions) (*CheckpointInfo, error) {
	if err := o.Shape.Validate(); err != nil {
		return nil, err
	}
	if o.DType != safetensors.BF16 && o.DType != safetensors.F32 {
		return nil, fmt.Errorf("checkpoint dtype %s: want BF16 or F32", o.DType)
	}
	if o.ShardBytes <= 0 {
		return nil, fmt.Errorf("shard size %d must be positive", o.ShardBytes)
	}
	start := time.Now()
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", o.Dir, err)
	}
	raw, err := json.MarshalIndent(o.Shape.config(o.DType), "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteBytes(filepath.Join(o.Dir, "config.json"), append(raw, '\n')); err != nil {
		return nil, err
	}
	var shards [][]safetensors.Source
	var size int64
	for i, t := range o.Shape.tensors() {
		src := source(t, o.DType, o.Seed+uint64(i))
		if len(shards) == 0 || size > 0 && size+src.Bytes() > o.ShardBytes {
			shards = append(shards, nil)
			size = 0
		}
		shards[len(shards)-1] = append(shards[len(shards)-1], src)
		size += src.Bytes()
	}
	info := &CheckpointInfo{Params: o.Shape.Params()}
	weightMap := map[string]string{}
	for i, srcs := range shards {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		if err := safetensors.WriteStream(filepath.Join(o.Dir, name), srcs, map[string]string{"format": "pt"}); err != nil {
			return nil, err
		}
		for _, s := range srcs {
			weightMap[s.Name] = name
			info.Bytes += s.Bytes()
		}
		info.Shards = append(info.Shards, name)
	}
	index, err := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": info.Bytes}, "weight_map": weightMap}, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteBytes(filepath.Join(o.Dir, safetensors.IndexFile), append(index, '\n')); err != nil {
		return nil, err
	}
	info.Seconds = time.Since(start).Seconds()
	return info, nil
}

// genChunk is the number of values generated and written at a time.
const genChunk = 1 << 16

// source generates tensor t: ones for a norm, else uniform values of standard deviation initStd from a
// generator seeded per tensor, so that a checkpoint is the same for the same seed.
func source(t tensorSpec, dtype safetensors.DType, seed uint64) safetensors.Source {
	return safetensors.Source{Name: t.name, DType: dtype, Shape: t.shape, Fill: func(w io.Writer) error {
		n := safetensors.NumElements(t.shape)
		vals := make([]float32, genChunk)
		bits := make([]uint16, genChunk)
		buf := make([]byte, genChunk*dtype.Size())
		rng := splitmix{seed}
		// Uniform on [-a, a] has standard deviation a/sqrt(3).
		scale := float32(initStd * math.Sqrt(3) * 2 / (1 << 24))
		for lo := 0; lo < n; lo += genChunk {
			m := min(genChunk, n-lo)
			v := vals[:m]
			if t.norm {
				for i := range v {
					v[i] = 1
				}
			} else {
				for i := 0; i+1 < m; i += 2 {
					r := rng.next()
					v[i] = (float32(r>>40) - (1 << 23)) * scale
					v[i+1] = (float32(r>>8&(1<<24-1)) - (1 << 23)) * scale
				}
				if m%2 == 1 {
					v[m-1] = (float32(rng.next()>>40) - (1 << 23)) * scale
				}
			}
			b := buf[:m*dtype.Size()]
			if dtype == safetensors.BF16 {
				half.F32ToBF16(bits[:m], v)
				for i, x := range bits[:m] {
					binary.LittleEndian.PutUint16(b[2*i:], x)
				}
			} else {
				for i, x := range v {
					binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
				}
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		return nil
	}}
}

// splitmix is SplitMix64: fast enough that generating 8 billion values costs less than writing them.
type splitmix struct{ s uint64 }

func (r *splitmix) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
