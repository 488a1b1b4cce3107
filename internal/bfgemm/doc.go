// Package bfgemm holds bf16 matrix products with float32 accumulation: AVX512-BF16 (vdpbf16ps) kernels
// in C, used when the CPU has them (Available), and AMX-BF16 tile kernels (tdpbf16ps, Intel Xeon from
// Sapphire Rapids on: about 8x the rate of vdpbf16ps there), used instead where the CPU and the OS allow. Operands are bf16 or float32; a float32 operand is rounded
// to bf16 (to nearest, ties to even) as it is packed, which is what a bf16 product in PyTorch computes.
// Builds without cgo, and CPUs without AVX512-BF16, have no kernels here: Available is false and callers
// fall back to float32 products of widened tiles (backend/purego, backend/cpu).
package bfgemm
