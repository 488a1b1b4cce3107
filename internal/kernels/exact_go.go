package kernels

// expShiftGo is expShift in pure Go, compiled in every build: x[i] = Exp(x[i] - m).
func expShiftGo(x []float32, m float32) {
	for j, v := range x {
		x[j] = Exp(v - m)
	}
}

// maxFoldGo is maxFold in pure Go: m = max(m, x[i]) over x in order.
func maxFoldGo(m float32, x []float32) float32 {
	for _, v := range x {
		m = max(m, v)
	}
	return m
}

// dot64Go is dot64 in pure Go: sum_j p[j]*z[j] in float64, in order.
func dot64Go(p, z []float32) float64 {
	var dot float64
	for j, x := range z {
		dot += float64(p[j]) * float64(x)
	}
	return dot
}

// sum64Go is sum64 in pure Go: the float64 sum of z in order.
func sum64Go(z []float32) float64 {
	var sum float64
	for _, e := range z {
		sum += float64(e)
	}
	return sum
}

// acceptRowGo is acceptRow in pure Go: it scales the exponentials z by inv into q = softmax(z) and returns
// the acceptance sum_v min(p_v, q_v) and sum_v g_v q_v with g_v the min's subgradient (1 where q_v < p_v,
// 1/2 at ties, 0 elsewhere).
func acceptRowGo(z, p []float32, inv float32) (a, gq float64) {
	for j := range z {
		q := z[j] * inv
		z[j] = q
		switch {
		case q < p[j]:
			a += float64(q)
			gq += float64(q)
		case q == p[j]:
			a += float64(q)
			gq += float64(q) / 2
		default:
			a += float64(p[j])
		}
	}
	return a, gq
}

// acceptGradGo is acceptGrad in pure Go: it replaces q = softmax(z) by the row's logit gradient
// c*(q - p) + w*q*(g - s), g the subgradient of acceptRowGo and s its sum_v g_v q_v.
func acceptGradGo(z, p []float32, c, w, s float32) {
	for j, q := range z {
		g := float32(0)
		switch {
		case q < p[j]:
			g = 1
		case q == p[j]:
			g = 0.5
		}
		z[j] = c*(q-p[j]) + w*q*(g-s)
	}
}
