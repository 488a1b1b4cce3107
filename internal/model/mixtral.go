package model

// decodeMixtral reads MixtralForCausalLM configs: Mistral's attention (sliding_window on every layer when
// set) with a mixture of num_local_experts experts of intermediate_size in every layer
// (block_sparse_moe.experts.{j}.w1/w3/w2: gate, up, down), the kept probabilities always renormalised.
// router_jitter_noise only perturbs training in Hugging Face's implementation: inference ignores it.
func decodeMixtral(path string, raw *rawConfig, c *Config) error {
	if err := decodeMistral(path, raw, c); err != nil {
		return err
	}
	return decodeMoE(path, raw, c, moeDefaults{experts: 8, topK: 2, alwaysNorm: true, sparseEveryLayer: true,
		module: "block_sparse_moe", proj: [3]string{"w1", "w3", "w2"}})
}
