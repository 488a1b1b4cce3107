package model

// decodeQwen3 reads Qwen3ForCausalLM configs: per-head RMSNorm of queries and keys before RoPE, head_dim
// 128 unless the config says otherwise, and attention_bias on q, k, v and o.
func decodeQwen3(path string, raw *rawConfig, c *Config) error {
	c.QKNorm = true
	if raw.HeadDim == nil {
		c.HeadDim = 128
		c.Rope.Dim = 128
	}
	if raw.AttentionBias != nil && *raw.AttentionBias {
		c.QKVBias, c.OBias = true, true
	}
	return qwenSlidingWindow(path, raw, c)
}
