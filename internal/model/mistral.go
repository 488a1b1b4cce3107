package model

// decodeMistral reads MistralForCausalLM configs: a Llama layer stack whose every layer attends within
// sliding_window keys when the window is set (Mistral 7B v0.1 uses 4096; later versions set null).
func decodeMistral(path string, raw *rawConfig, c *Config) error {
	if err := decodeLlama(path, raw, c); err != nil {
		return err
	}
	c.slidingWindow(raw, func(int) bool { return true })
	return nil
}
