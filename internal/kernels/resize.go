package kernels

// Resize returns buf with length n, reallocated only when its capacity is short (the contents are not
// cleared): workspaces reused across calls of different sizes.
func Resize(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}
