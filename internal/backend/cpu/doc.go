// Package cpu is the CPU implementation of backend.Backend with cgo: OpenBLAS products, the register-blocked
// few-row kernels of package blas (prepared weights keep a transpose for them), and the C vector kernels of
// package kernels (softmax, SwiGLU, few-query attention). The operations that have only a Go kernel are the
// purego backend's, which Backend embeds. Without cgo the package is empty and backend/auto picks purego.
package cpu
