package model

import (
	"slices"
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
		{"qwen3-moe defaults", `{"architectures": ["Qwen3MoeForCausalLM"], ` + llamaBase + `}`,
			func(c *Config) bool {
				m := c.MoE
				return c.QKNorm && c.HeadDim == 16 && m.Experts == 128 && m.TopK == 8 && m.IntermediateSize == 768 &&
					!m.NormTopK && m.SharedIntermediateSize == 0 && slices.Equal(m.Sparse, []bool{true, true, true, true}) &&
					m.Module == "mlp" && m.Proj == [3]string{"gate_proj", "up_proj", "down_proj"}
			}},
		{"qwen3-moe sparse step and dense layers", `{"architectures": ["Qwen3MoeForCausalLM"], "num_experts": 8, "num_experts_per_tok": 2,
			"moe_intermediate_size": 48, "norm_topk_prob": true, "decoder_sparse_step": 2, "mlp_only_layers": [3], ` + llamaBase + `}`,
			func(c *Config) bool {
				m := c.MoE
				return m.Experts == 8 && m.TopK == 2 && m.IntermediateSize == 48 && m.NormTopK && slices.Equal(m.Sparse, []bool{false, true, false, false})
			}},
		{"qwen2-moe shared expert", `{"architectures": ["Qwen2MoeForCausalLM"], "num_experts": 6, "num_experts_per_tok": 2,
			"moe_intermediate_size": 32, "shared_expert_intermediate_size": 64, ` + llamaBase + `}`,
			func(c *Config) bool {
				m := c.MoE
				return c.QKVBias && !c.QKNorm && m.Experts == 6 && !m.NormTopK && m.SharedIntermediateSize == 64
			}},
		{"qwen2-moe without experts is dense", `{"architectures": ["Qwen2MoeForCausalLM"], "num_experts": 0, ` + llamaBase + `}`,
			func(c *Config) bool { return c.MoE == nil }},
		{"mixtral", `{"architectures": ["MixtralForCausalLM"], "num_local_experts": 4, "norm_topk_prob": false, "sliding_window": 16,
			"router_jitter_noise": 0.1, "output_router_logits": true, ` + llamaBase + `}`,
			func(c *Config) bool {
				m := c.MoE
				return m.Experts == 4 && m.TopK == 2 && m.IntermediateSize == 128 && m.NormTopK && c.SlidingWindow == 16 &&
					slices.Equal(m.Sparse, []bool{true, true, true, true}) && m.Module == "block_sparse_moe" && m.Proj == [3]string{"w1", "w3", "w2"}
			}},
		{"neutral routing fields of other families", `{"architectures": ["Qwen3MoeForCausalLM"], "scoring_func": "softmax", "routed_scaling_factor": 1.0, "n_shared_experts": null, ` + llamaBase + `}`,
			func(c *Config) bool { return c.MoE != nil }},
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
		{`{"architectures": ["GPT2LMHeadModel"], ` + llamaBase + `}`, `architecture "GPT2LMHeadModel" is not supported (supported: LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM, Qwen2MoeForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM)`},
		{`{"architectures": ["Qwen3MoeForCausalLM"], "num_experts": 8, "num_experts_per_tok": 9, ` + llamaBase + `}`, "num_experts_per_tok must be in [1, num_experts = 8], got 9"},
		{`{"architectures": ["Qwen3MoeForCausalLM"], "num_experts": -2, ` + llamaBase + `}`, "num_experts must be positive, got -2"},
		{`{"architectures": ["Qwen3MoeForCausalLM"], "moe_intermediate_size": 0, ` + llamaBase + `}`, "moe_intermediate_size must be positive"},
		{`{"architectures": ["Qwen3MoeForCausalLM"], "decoder_sparse_step": 0, ` + llamaBase + `}`, "decoder_sparse_step must be positive"},
		{`{"architectures": ["Qwen3MoeForCausalLM"], "mlp_only_layers": [4], ` + llamaBase + `}`, "mlp_only_layers: layer 4 out of range [0, 4)"},
		{`{"architectures": ["Qwen3MoeForCausalLM"], "shared_expert_intermediate_size": 64, ` + llamaBase + `}`, "shared_expert_intermediate_size is set, but Qwen3MoeForCausalLM has no shared expert"},
		{`{"architectures": ["Qwen3MoeForCausalLM"], "scoring_func": "sigmoid", ` + llamaBase + `}`, `scoring_func = "sigmoid" is not supported by Qwen3MoeForCausalLM`},
		{`{"architectures": ["Qwen2MoeForCausalLM"], "n_shared_experts": 2, ` + llamaBase + `}`, "n_shared_experts = 2 is not supported"},
		{`{"architectures": ["MixtralForCausalLM"], "num_experts": 4, "num_local_experts": 8, ` + llamaBase + `}`, "num_experts 4 and num_local_experts 8 disagree"},
		{`{"architectures": ["MixtralForCausalLM"], "decoder_sparse_step": 2, ` + llamaBase + `}`, "decoder_sparse_step is not a field of MixtralForCausalLM"},
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
