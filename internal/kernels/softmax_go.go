package kernels

import "math"

// SoftmaxGo is Softmax in pure Go, compiled in every build (the pure-Go backend's, and the reference of the C
// kernel): it replaces x by softmax(x) in place, computed in float32 after subtracting the row maximum; a row
// whose entries are all -Inf becomes uniform (as PyTorch does with a finite minimum mask).
func SoftmaxGo(x []float32) {
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	if m < -3.0e38 {
		u := 1 / float32(len(x))
		for i := range x {
			x[i] = u
		}
		return
	}
	var s float64
	for i, v := range x {
		e := Exp(v - m)
		x[i] = e
		s += float64(e)
	}
	inv := float32(1 / s)
	for i := range x {
		x[i] *= inv
	}
}

// LogSumExpGo is LogSumExp in pure Go, compiled in every build: it returns log(sum(exp(x))) (-Inf for an empty x or one of only -Inf): the normaliser of
// log-probabilities from a row of logits.
func LogSumExpGo(x []float32) float64 {
	if len(x) == 0 {
		return math.Inf(-1)
	}
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	if m < -3.0e38 {
		return math.Inf(-1)
	}
	var s float64
	for _, v := range x {
		s += float64(Exp(v - m))
	}
	return float64(m) + math.Log(s)
}
