package kernels

import "github.com/specforge/specforge/internal/tensor"

// Resize is tensor.Resize for float32 workspaces, under the name the draft and the trainer call it by.
func Resize(buf []float32, n int) []float32 { return tensor.Resize(buf, n) }
