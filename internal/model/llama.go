package model

// decodeLlama reads LlamaForCausalLM configs (Llama 2, 3, 3.1, 3.2): attention_bias puts biases on q, k, v
// and o; mlp_bias on the MLP; no sliding window.
func decodeLlama(path string, raw *rawConfig, c *Config) error {
	if raw.AttentionBias != nil && *raw.AttentionBias {
		c.QKVBias, c.OBias = true, true
	}
	return nil
}
