package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// Limits on the sizes a config.json may declare. A model folder may come from anyone, and the config is
// read before any weight: these bound what it can make us allocate (layer tables, per-layer flags, expert
// lists, scratch buffers, products of sizes) and keep every product of two or three of them far from
// overflowing an int. Each is several times the largest published model's value, so no real checkpoint
// is refused.
const (
	// MaxLayers bounds num_hidden_layers: the largest published models have fewer than 200 (Llama 3.1
	// 405B: 126).
	MaxLayers = 1024
	// MaxHiddenSize bounds hidden_size: Llama 3.1 405B, the widest published dense model, has 16384.
	MaxHiddenSize = 1 << 16
	// MaxIntermediateSize bounds intermediate_size, moe_intermediate_size and
	// shared_expert_intermediate_size: Llama 3.1 405B has 53248.
	MaxIntermediateSize = 1 << 18
	// MaxVocabSize bounds vocab_size: the largest published vocabularies have 262144 entries (Gemma 3).
	MaxVocabSize = 1 << 22
	// MaxHeads bounds num_attention_heads (and so num_key_value_heads, which divides it): Llama 3.1 405B
	// has 128.
	MaxHeads = 1024
	// MaxHeadDim bounds head_dim: published models use 64 to 256.
	MaxHeadDim = 1024
	// MaxExperts bounds num_experts: the largest published mixtures have 384 experts a layer (Kimi K2).
	MaxExperts = 1 << 12
	// MaxPositionEmbeddings bounds max_position_embeddings: the longest published context is 10M tokens
	// (Llama 4 Scout).
	MaxPositionEmbeddings = 1 << 24
	// MaxRMSNormEps bounds rms_norm_eps: published models use 1e-6 to 1e-5, and an epsilon of the order of
	// the activations' mean square (about 1) would replace it rather than guard the division.
	MaxRMSNormEps = 1.0
	// MaxConfigBytes bounds a config.json: a causal LM's config is a few KiB, one listing layer_types for
	// MaxLayers layers under 40 KiB; a larger file would only be read into memory to be refused.
	MaxConfigBytes = 4 << 20
)

// inRange is the error for an integer field outside [lo, hi], or nil.
func inRange(path, field string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("%s: %s must be in [%d, %d], got %d", path, field, lo, hi, v)
	}
	return nil
}

// ReadConfigFile reads a config.json (of a model or a draft) of at most MaxConfigBytes; what names the file
// in the error for one that cannot be read ("model config").
func ReadConfigFile(path, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if len(data) > MaxConfigBytes {
		return nil, fmt.Errorf("%s: over the limit of %d bytes for a config.json", path, MaxConfigBytes)
	}
	return data, nil
}

// JSONError says where in data a decoding error is, as path:line:column, and for a value of the wrong type
// (num_hidden_layers: 1e12 is not an int, rope_theta: 1e999 not a float64) which field holds it.
func JSONError(path string, data []byte, err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Errorf("%s: invalid JSON: %v", position(path, data, syntax.Offset), err)
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Errorf("%s: %s: want %s, got %s", position(path, data, typ.Offset), typ.Field, typ.Type, typ.Value)
	}
	return fmt.Errorf("%s: invalid JSON: %v", path, err)
}

// position is path:line:column of byte offset off of data.
func position(path string, data []byte, off int64) string {
	line, col := 1, 1
	for _, b := range data[:min(max(off, 0), int64(len(data)))] {
		if b == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("%s:%d:%d", path, line, col)
}

// minWeights counts the elements of the tensors c requires (optional biases left out), for comparison
// with a checkpoint's size before any weight is read. The limits above keep it far below 2^63.
func (c *Config) minWeights() int64 {
	H, I := int64(c.HiddenSize), int64(c.IntermediateSize)
	q, kv := int64(c.NumHeads*c.HeadDim), int64(c.NumKVHeads*c.HeadDim)
	n := c.headWeights() + H // the final norm
	for i := range c.NumLayers {
		n += 2*H + 2*q*H + 2*kv*H // the two norms, q, o, k, v
		if c.QKNorm {
			n += 2 * int64(c.HeadDim)
		}
		if c.sparse(i) {
			m := c.MoE
			n += int64(m.Experts)*H + 3*int64(m.Experts)*int64(m.IntermediateSize)*H
			if Is := int64(m.SharedIntermediateSize); Is > 0 {
				n += 3*Is*H + H
			}
		} else {
			n += 3 * I * H
		}
	}
	return n
}

// headWeights counts the elements of the embedding and, unless tied to it, lm_head.
func (c *Config) headWeights() int64 {
	n := int64(c.VocabSize) * int64(c.HiddenSize)
	if !c.TieWordEmbeddings {
		n *= 2
	}
	return n
}

// minWeightBytes is the fewest bytes a checkpoint's tensors can take: every supported weight dtype has at
// least 2 bytes an element.
const minWeightBytes = 2

// checkCheckpointSize refuses a checkpoint of fewer bytes than the weights config.json declares need, so
// that a config that does not belong to its weights is named as such before any weight is read.
func checkCheckpointSize(dir string, weights, have int64) error {
	if need := weights * minWeightBytes; have < need {
		return fmt.Errorf("%s: config.json declares %d weights, at least %d bytes at %d bytes each, but the checkpoint holds %d bytes of tensors: the config does not describe these weights",
			dir, weights, need, minWeightBytes, have)
	}
	return nil
}
