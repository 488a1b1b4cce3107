//go:build cgo

package cpu

import "github.com/specforge/specforge/internal/bfgemm"

// SetBF16Kernels switches the AVX512-BF16 kernels off (tests of the fallback a CPU without them takes) or
// back on where the CPU has them.
func SetBF16Kernels(on bool) { bf16Kernels = on && bfgemm.Available() }
