package model

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/safetensors"
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

// Sizes from a stranger's config.json are refused before they allocate anything (issue 14), each error
// naming the field and its limit.
func TestParseConfigLimits(t *testing.T) {
	const arch = `{"architectures": ["LlamaForCausalLM"], `
	base := map[string]string{"hidden_size": "64", "intermediate_size": "128", "num_hidden_layers": "4", "num_attention_heads": "4", "vocab_size": "100"}
	with := func(arch string, set map[string]string) string {
		var fields []string
		for k, v := range base {
			if _, ok := set[k]; !ok {
				fields = append(fields, `"`+k+`": `+v)
			}
		}
		for k, v := range set {
			fields = append(fields, `"`+k+`": `+v)
		}
		slices.Sort(fields)
		return arch + strings.Join(fields, ", ") + "}"
	}
	cases := []struct {
		name string
		json string
		want string
	}{
		{"layers 1e12 as an integer", with(arch, map[string]string{"num_hidden_layers": "1000000000000"}), "num_hidden_layers must be in [1, 1024], got 1000000000000"},
		{"layers 1e8", with(arch, map[string]string{"num_hidden_layers": "100000000"}), "num_hidden_layers must be in [1, 1024], got 100000000"},
		{"layers 1e12 as a float", with(arch, map[string]string{"num_hidden_layers": "1e12"}), "num_hidden_layers: want int, got number 1e12"},
		{"layers beyond int64", with(arch, map[string]string{"num_hidden_layers": "99999999999999999999"}), "num_hidden_layers: want int, got number 99999999999999999999"},
		{"layers zero", with(arch, map[string]string{"num_hidden_layers": "0"}), "num_hidden_layers must be in [1, 1024], got 0"},
		{"hidden huge", with(arch, map[string]string{"hidden_size": "4611686018427387904"}), "hidden_size must be in [1, 65536]"},
		{"hidden negative", with(arch, map[string]string{"hidden_size": "-64"}), "hidden_size must be in [1, 65536], got -64"},
		{"intermediate huge", with(arch, map[string]string{"intermediate_size": "1000000000"}), "intermediate_size must be in [1, 262144]"},
		{"vocab huge", with(arch, map[string]string{"vocab_size": "1000000000000"}), "vocab_size must be in [1, 4194304]"},
		{"heads huge", with(arch, map[string]string{"num_attention_heads": "1048576"}), "num_attention_heads must be in [1, 1024]"},
		{"kv heads do not divide", with(arch, map[string]string{"num_key_value_heads": "3"}), "num_key_value_heads 3 must be positive and divide num_attention_heads 4"},
		{"kv heads negative", with(arch, map[string]string{"num_key_value_heads": "-4"}), "num_key_value_heads -4 must be positive"},
		{"kv heads above heads", with(arch, map[string]string{"num_key_value_heads": "8"}), "num_key_value_heads 8 must be positive and divide num_attention_heads 4"},
		{"heads above hidden", with(arch, map[string]string{"num_attention_heads": "128"}), "head_dim defaults to hidden_size / num_attention_heads = 64 / 128 = 0"},
		{"head_dim huge", with(arch, map[string]string{"head_dim": "1048576"}), "head_dim must be in [1, 1024], got 1048576"},
		{"head_dim negative", with(arch, map[string]string{"head_dim": "-16"}), "head_dim must be in [1, 1024], got -16"},
		{"head_dim odd", with(arch, map[string]string{"head_dim": "15"}), "head_dim 15 must be even"},
		{"eps negative", with(arch, map[string]string{"rms_norm_eps": "-1e-6"}), "rms_norm_eps must be in (0, 1], got -1e-06"},
		{"eps zero", with(arch, map[string]string{"rms_norm_eps": "0"}), "rms_norm_eps must be in (0, 1], got 0"},
		{"eps huge", with(arch, map[string]string{"rms_norm_eps": "1e30"}), "rms_norm_eps must be in (0, 1], got 1e+30"},
		{"eps beyond float64", with(arch, map[string]string{"rms_norm_eps": "1e999"}), "rms_norm_eps: want float64, got number 1e999"},
		{"max positions negative", with(arch, map[string]string{"max_position_embeddings": "-1"}), "max_position_embeddings must be in [1, 16777216], got -1"},
		{"max positions huge", with(arch, map[string]string{"max_position_embeddings": "1000000000000"}), "max_position_embeddings must be in [1, 16777216]"},
		{"rope_theta NaN", with(arch, map[string]string{"rope_theta": "NaN"}), "invalid JSON: invalid character 'N'"},
		{"rope_theta negative", with(arch, map[string]string{"rope_theta": "-10000"}), "rope_theta must be positive, got -10000"},
		{"rope_theta infinite", with(arch, map[string]string{"rope_theta": "1e400"}), "rope_theta: want float64, got number 1e400"},
		{"layer count as string", with(arch, map[string]string{"num_hidden_layers": `"32"`}), "num_hidden_layers: want int, got string"},
		{"experts huge", with(`{"architectures": ["Qwen3MoeForCausalLM"], `, map[string]string{"num_experts": "1000000000"}), "num_experts must be in [1, 4096], got 1000000000"},
		{"moe intermediate huge", with(`{"architectures": ["Qwen3MoeForCausalLM"], `, map[string]string{"moe_intermediate_size": "1000000000"}), "moe_intermediate_size must be in [1, 262144]"},
		{"shared expert huge", with(`{"architectures": ["Qwen2MoeForCausalLM"], `, map[string]string{"shared_expert_intermediate_size": "1000000000"}), "shared_expert_intermediate_size must be in [0, 262144]"},
		{"shared expert negative", with(`{"architectures": ["Qwen2MoeForCausalLM"], `, map[string]string{"shared_expert_intermediate_size": "-1"}), "shared_expert_intermediate_size must be in [0, 262144], got -1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("dir/config.json", []byte(c.json))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "dir/config.json") {
				t.Errorf("got %v, want an error starting with the path and containing %q", err, c.want)
			}
		})
	}
}

func TestParseConfigErrorPosition(t *testing.T) {
	data := "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"num_hidden_layers\": 1e12\n}"
	_, err := ParseConfig("config.json", []byte(data))
	if err == nil || !strings.HasPrefix(err.Error(), "config.json:3:28: num_hidden_layers: want int") {
		t.Errorf("got %v, want the line and column of the value", err)
	}
}

func TestLoadConfigTooLarge(t *testing.T) {
	dir := t.TempDir()
	big := `{"architectures": ["LlamaForCausalLM"], "pad": "` + strings.Repeat("x", MaxConfigBytes) + `"}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(dir)
	if err == nil || !strings.Contains(err.Error(), "over the limit of 4194304 bytes") || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("got %v", err)
	}
}

// A config whose sizes are within the limits but far above what its checkpoint holds is named as the
// culprit before any weight is read.
func TestLoadCheckpointTooSmallForConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"architectures": ["LlamaForCausalLM"], "hidden_size": 65536, "intermediate_size": 262144, "num_hidden_layers": 1024, "num_attention_heads": 128, "vocab_size": 4194304}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	w := safetensors.FromFloat32("model.embed_tokens.weight", safetensors.F32, []int{2, 2}, make([]float32, 4))
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), []safetensors.Tensor{w}, nil); err != nil {
		t.Fatal(err)
	}
	for name, load := range map[string]func() error{
		"Load":     func() error { _, err := Load(dir); return err },
		"LoadHead": func() error { _, _, err := LoadHead(dir); return err },
	} {
		err := load()
		if err == nil || !strings.Contains(err.Error(), "but the checkpoint holds 16 bytes of tensors") || !strings.Contains(err.Error(), dir) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

// FuzzConfig decodes arbitrary bytes as a config.json. It must fail with an error naming the file, or give
// a config within the limits whose derived sizes can be computed without overflow.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(`{"architectures": ["LlamaForCausalLM"], ` + llamaBase + `}`))
	f.Add([]byte(`{"architectures": ["Qwen3MoeForCausalLM"], "num_experts": 8, "num_experts_per_tok": 2, "decoder_sparse_step": 2, "mlp_only_layers": [3], ` + llamaBase + `}`))
	f.Add([]byte(`{"architectures": ["Qwen2ForCausalLM"], "sliding_window": 8, "use_sliding_window": true, "layer_types": ["full_attention", "sliding_attention", "full_attention", "full_attention"], ` + llamaBase + `}`))
	f.Add([]byte(`{"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 1e12}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("fuzz/config.json", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz/config.json") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if c.NumLayers > MaxLayers || c.HiddenSize > MaxHiddenSize || c.IntermediateSize > MaxIntermediateSize ||
			c.VocabSize > MaxVocabSize || c.NumHeads > MaxHeads || c.HeadDim > MaxHeadDim || c.MaxPositionEmbeddings > MaxPositionEmbeddings {
			t.Fatalf("config beyond the limits: %+v", c)
		}
		if c.MoE != nil && (c.MoE.Experts > MaxExperts || len(c.MoE.Sparse) != c.NumLayers) {
			t.Fatalf("mixture beyond the limits: %+v", c.MoE)
		}
		if n := c.minWeights(); n <= 0 {
			t.Fatalf("minWeights = %d for %+v", n, c)
		}
		if aux := c.DefaultAuxLayers(); len(aux) != 3 {
			t.Fatalf("aux layers %v", aux)
		}
		if inv, _ := c.Rope.Frequencies(1); len(inv) != c.Rope.Dim/2 {
			t.Fatalf("%d frequencies for rotary dimension %d", len(inv), c.Rope.Dim)
		}
	})
}
