// Package bfgemm holds bf16 matrix products with float32 accumulation: AVX512-BF16 (vdpbf16ps) kernels
// in C, used when the CPU has them (Available). Operands are bf16 or float32; a float32 operand is rounded
// to bf16 (to nearest, ties to even) as it is packed, which is what a bf16 product in PyTorch computes.
// Builds without cgo, and CPUs without AVX512-BF16, have no kernels here: Available is false and callers
// fall back to float32 products of widened tiles (backend/purego, backend/cpu).
package bfgemm
