package model

import (
	"strings"
	"testing"
)

const llamaBase = `"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "vocab_size": 100`

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name, json string
		check      func(*Config) bool
	}{
		{"llama defaults", `{"architectures": ["LlamaForCausalLM"], ` + llamaBase + `}`, func(c *Config) bool {
			return c.NumKVHeads == 4 && c.HeadDim == 16 && c.RMSNormEps == 1e-6 && c.Rope.Theta == 10000 &&
				!c.TieWordEmbeddings && !c.QKVBias && c.SlidingWindow == 0 && c.Rope.Type == "default"
		}},
		{"llama attention bias", `{"architectures": ["LlamaForCausalLM"], "attention_bias": true, "mlp_bias": true, ` + llamaBase + `}`,
			func(c *Config) bool { return c.QKVBias && c.OBias && c.MLPBias }},
		{"llama 3.2", `{"architectures": ["LlamaForCausalLM"], "num_key_value_heads": 2, "tie_word_embeddings": true, "eos_token_id": [128001, 128009], "rope_theta": 500000.0,
			"rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}, ` + llamaBase + `}`,
			func(c *Config) bool {
				return c.NumKVHeads == 2 && c.TieWordEmbeddings && len(c.EOSTokenIDs) == 2 && c.Rope.Type == "llama3" && c.Rope.OriginalMaxPositions == 8192
			}},
		{"mistral window", `{"architectures": ["MistralForCausalLM"], "sliding_window": 4096, ` + llamaBase + `}`,
			func(c *Config) bool { return c.SlidingWindow == 4096 && c.SlidingLayers[0] && c.SlidingLayers[3] }},
		{"mistral no window", `{"architectures": ["MistralForCausalLM"], "sliding_window": null, ` + llamaBase + `}`,
			func(c *Config) bool { return c.SlidingWindow == 0 }},
		{"qwen2 bias, window off", `{"architectures": ["Qwen2ForCausalLM"], "sliding_window": 4096, "use_sliding_window": false, ` + llamaBase + `}`,
			func(c *Config) bool { return c.QKVBias && !c.OBias && c.SlidingWindow == 0 }},
		{"qwen2 window on upper layers", `{"architectures": ["Qwen2ForCausalLM"], "sliding_window": 8, "use_sliding_window": true, "max_window_layers": 2, ` + llamaBase + `}`,
			func(c *Config) bool {
				return c.SlidingWindow == 8 && !c.SlidingLayers[1] && c.SlidingLayers[2] && c.SlidingLayers[3]
			}},
		{"qwen3 head_dim default", `{"architectures": ["Qwen3ForCausalLM"], ` + llamaBase + `}`,
			func(c *Config) bool { return c.QKNorm && c.HeadDim == 128 && c.Rope.Dim == 128 && !c.QKVBias }},
	}
	for _, c := range cases {
		cfg, err := ParseConfig("config.json", []byte(c.json))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !c.check(cfg) {
			t.Errorf("%s: unexpected config %+v", c.name, cfg)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	cases := []struct{ json, want string }{
		{`{"architectures": ["GPT2LMHeadModel"], ` + llamaBase + `}`, `architecture "GPT2LMHeadModel" is not supported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)`},
		{`{"architectures": ["LlamaForCausalLM"], "hidden_act": "gelu", ` + llamaBase + `}`, `hidden_act "gelu" is not supported (supported: silu)`},
		{`{"architectures": ["LlamaForCausalLM"], "rope_scaling": {"rope_type": "longrope", "factor": 4}, ` + llamaBase + `}`, `rope_scaling: rope type "longrope" is not supported`},
		{`{"architectures": ["LlamaForCausalLM"], "quantization_config": {"quant_method": "awq"}, ` + llamaBase + `}`, "quantized checkpoints"},
		{`{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "vocab_size": 10}`, "missing required field intermediate_size"},
		{`{"architectures": ["LlamaForCausalLM"], "num_key_value_heads": 3, ` + llamaBase + `}`, "num_key_value_heads 3 must be positive and divide num_attention_heads 4"},
		{`{"architectures": []}`, "architectures must name exactly one"},
		{`{"architectures": ["LlamaForCausalLM"], `, "invalid JSON"},
	}
	for _, c := range cases {
		_, err := ParseConfig("dir/config.json", []byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "dir/config.json") {
			t.Errorf("got %v, want an error starting with the path and containing %q", err, c.want)
		}
	}
}

func TestDefaultAuxLayers(t *testing.T) {
	for n, want := range map[int][]int{32: {1, 15, 28}, 16: {1, 7, 12}, 28: {1, 13, 24}, 5: {1, 1, 1}} {
		c := &Config{NumLayers: n}
		if got := c.DefaultAuxLayers(); !equalInts(got, want) {
			t.Errorf("N=%d: %v, want %v", n, got, want)
		}
	}
}
