//go:build !cgo

package kernels

// Softmax replaces x by softmax(x) in place; a row whose entries are all -Inf becomes uniform (as PyTorch
// does with a finite minimum mask). Without cgo it is SoftmaxGo.
func Softmax(x []float32) { SoftmaxGo(x) }

// LogSumExp returns log(sum(exp(x))) (-Inf for an empty x or one of only -Inf): the normaliser of
// log-probabilities from a row of logits. Without cgo it is LogSumExpGo.
func LogSumExp(x []float32) float64 { return LogSumExpGo(x) }
