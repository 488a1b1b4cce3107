package model

import "fmt"

// decodeQwen2 reads Qwen2ForCausalLM configs: q, k and v carry biases (o does not) whatever the config says.
func decodeQwen2(path string, raw *rawConfig, c *Config) error {
	c.QKVBias = true
	return qwenSlidingWindow(path, raw, c)
}

// qwenSlidingWindow applies Qwen2/Qwen3's window rule: only with use_sliding_window, then to the layers that
// layer_types marks "sliding_attention", or else to layers at index >= max_window_layers (default 28).
func qwenSlidingWindow(path string, raw *rawConfig, c *Config) error {
	if raw.UseSlidingWindow == nil || !*raw.UseSlidingWindow {
		return nil
	}
	if raw.LayerTypes != nil {
		if len(raw.LayerTypes) != c.NumLayers {
			return fmt.Errorf("%s: layer_types has %d entries for %d layers", path, len(raw.LayerTypes), c.NumLayers)
		}
		for i, lt := range raw.LayerTypes {
			if lt != "sliding_attention" && lt != "full_attention" {
				return fmt.Errorf("%s: layer_types[%d] = %q (supported: sliding_attention, full_attention)", path, i, lt)
			}
		}
		c.slidingWindow(raw, func(i int) bool { return raw.LayerTypes[i] == "sliding_attention" })
		return nil
	}
	maxWindowLayers := 28
	if raw.MaxWindowLayers != nil {
		maxWindowLayers = *raw.MaxWindowLayers
	}
	c.slidingWindow(raw, func(i int) bool { return i >= maxWindowLayers })
	return nil
}
