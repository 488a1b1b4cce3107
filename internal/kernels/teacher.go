package kernels

import "math"

// GatherSoftmaxGo is GatherSoftmax in pure Go, compiled in every build: it writes into p [len(ids)] the
// softmax of the logits z at ids (exponentials by math.Exp and their sum in float64, as the EAGLE-3
// teacher's probabilities need them exact to the last bit of float32) and returns the index of p's largest
// value (the first on ties).
func GatherSoftmaxGo(p, z []float32, ids []int64) int {
	m := float32(math.Inf(-1))
	for j, id := range ids {
		p[j] = z[id]
		m = max(m, p[j])
	}
	var sum float64
	for j := range p {
		e := float32(math.Exp(float64(p[j] - m)))
		p[j] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	arg := 0
	for j := range p {
		p[j] *= inv
		if p[j] > p[arg] {
			arg = j
		}
	}
	return arg
}
