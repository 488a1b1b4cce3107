//go:build cgo

package kernels

/*
#pragma GCC optimize("O3", "no-math-errno", "no-trapping-math", "no-signed-zeros", "associative-math", "reciprocal-math")
#include "fastexp.h"

// sf_softmax replaces x[0..n) by its softmax; a row of -inf (every entry masked) becomes uniform.
__attribute__((target_clones("avx512f", "avx2", "default")))
void sf_softmax(float *x, int n) {
	float m = x[0];
	for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
	if (m < -3.0e38f) {
		for (int i = 0; i < n; i++) x[i] = 1.0f / n;
		return;
	}
	float s = 0;
	for (int i = 0; i < n; i++) {
		float e = sf_exp(x[i] - m);
		x[i] = e;
		s += e;
	}
	float inv = 1.0f / s;
	for (int i = 0; i < n; i++) x[i] *= inv;
}

// sf_max_sumexp returns the maximum m of x[0..n) and stores the sum of exp(x[i] - m) in *sum.
__attribute__((target_clones("avx512f", "avx2", "default")))
float sf_max_sumexp(const float *x, int n, float *sum) {
	float m = x[0];
	for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
	float s = 0;
	if (m > -3.0e38f)
		for (int i = 0; i < n; i++) s += sf_exp(x[i] - m);
	*sum = s;
	return m;
}
*/
import "C"

import (
	"math"
	"unsafe"
)

// Softmax replaces x by softmax(x) in place (vectorised C; see exp.go for the algorithm); a row whose
// entries are all -Inf becomes uniform (as PyTorch does with a finite minimum mask).
func Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	C.sf_softmax((*C.float)(unsafe.Pointer(&x[0])), C.int(len(x)))
}

// LogSumExp returns log(sum(exp(x))) (vectorised C; -Inf for an empty x or one of only -Inf): the
// normaliser of log-probabilities from a row of logits.
func LogSumExp(x []float32) float64 {
	if len(x) == 0 {
		return math.Inf(-1)
	}
	var sum C.float
	m := float64(C.sf_max_sumexp((*C.float)(unsafe.Pointer(&x[0])), C.int(len(x)), &sum))
	if sum == 0 {
		return math.Inf(-1)
	}
	return m + math.Log(float64(sum))
}
