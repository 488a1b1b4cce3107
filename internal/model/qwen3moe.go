package model

// decodeQwen3Moe reads Qwen3MoeForCausalLM configs: Qwen3's attention (per-head q/k RMSNorm, attention_bias
// on q, k, v and o) with mixture-of-experts MLPs in the layers decoder_sparse_step and mlp_only_layers
// select. Unlike dense Qwen3, head_dim defaults to hidden_size / num_attention_heads.
func decodeQwen3Moe(path string, raw *rawConfig, c *Config) error {
	c.QKNorm = true
	if raw.AttentionBias != nil && *raw.AttentionBias {
		c.QKVBias, c.OBias = true, true
	}
	if err := qwenSlidingWindow(path, raw, c); err != nil {
		return err
	}
	return decodeMoE(path, raw, c, moeDefaults{experts: 128, topK: 8, intermediate: 768, module: "mlp",
		proj: [3]string{"gate_proj", "up_proj", "down_proj"}})
}
