package model

// decodeQwen2Moe reads Qwen2MoeForCausalLM configs: Qwen2's attention (biases on q, k and v) with
// mixture-of-experts MLPs in the layers decoder_sparse_step and mlp_only_layers select, each with a shared
// expert gated by sigmoid(shared_expert_gate · x); norm_topk_prob defaults to false.
func decodeQwen2Moe(path string, raw *rawConfig, c *Config) error {
	c.QKVBias = true
	if err := qwenSlidingWindow(path, raw, c); err != nil {
		return err
	}
	return decodeMoE(path, raw, c, moeDefaults{experts: 60, topK: 4, intermediate: 1408, shared: 5632, module: "mlp",
		proj: [3]string{"gate_proj", "up_proj", "down_proj"}})
}
