package kernels

// expShiftGo is expShift in pure Go, compiled in every build: x[i] = Exp(x[i] - m).
func expShiftGo(x []float32, m float32) {
	for j, v := range x {
		x[j] = Exp(v - m)
	}
}
