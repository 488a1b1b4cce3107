//go:build !cgo

package kernels

const haveFewKernel = false

// forwardFew has no pure-Go version: Forward's blocked path serves every case.
func (a Attention) forwardFew(out, q, k, v []float32, T int, m Mask) bool { return false }
