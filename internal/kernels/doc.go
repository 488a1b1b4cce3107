// Package kernels holds the CPU compute kernels of specforge: the few operations a Llama-family forward and
// an EAGLE-3 draft need, each a short explicit function over row-major float32 slices, split across cores with
// package parallel. Matrix products go through package blas. Reductions accumulate in float64 where the
// reference computes in float32, so results stay within float32 rounding of a float64 reference.
package kernels
