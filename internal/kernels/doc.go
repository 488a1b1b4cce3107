// Package kernels holds the CPU compute kernels under specforge's backends: the few operations a
// Llama-family forward and an EAGLE-3 draft need, each a short explicit function over row-major float32
// slices, split across cores with package parallel. Matrix products go through package blas. Where a kernel
// has a C version (softmax, SwiGLU, few-query attention; built with cgo), its pure-Go version is compiled in
// every build under a name ending in Go (SoftmaxGo, Attention.ForwardGo, TTTForward with pure set...): the
// kernels of backend/purego, and the reference the C ones are tested against. Models reach these through
// package backend. Reductions accumulate in float64 where the reference computes in float32, so results stay
// within float32 rounding of a float64 reference.
package kernels
