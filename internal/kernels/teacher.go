package kernels

import "math"

// GatherSoftmax writes into p [len(ids)] the softmax of the logits z at ids (exponentials and their sum
// in float64, as the EAGLE-3 teacher's probabilities need them exact to the last bit of float32) and
// returns the index of p's largest value (the first on ties).
func GatherSoftmax(p, z []float32, ids []int64) int {
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
