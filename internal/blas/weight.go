package blas

// Weight is the weight w [Out, In] of a linear layer, in PyTorch's layout. A weight small enough to stay in
// a core's cache also keeps its transpose [In, Out], which the small kernels multiply without horizontal
// sums: a product of a few rows by it (a verification of drafted tokens) runs about twice as fast from three
// rows on, and a single row as fast as with w. Every row count up to the small kernels' limit takes the same
// path, so a row's result does not depend on how many rows share the product.
type Weight struct {
	W       []float32
	Out, In int
	t       []float32 // [In, Out], or nil
}

// transposeLimit is the largest weight (elements) that keeps a transpose: 1 MiB of float32. Larger ones are
// read from memory at a rate the layout does not change, and their copies would cost real memory.
const transposeLimit = 1 << 18

// NewWeight wraps w [out, in], adding its transpose when it is small and the small kernels are built in.
func NewWeight(w []float32, out, in int) Weight {
	check("W", w, out, in, in)
	wt := Weight{W: w[:out*in], Out: out, In: in}
	if smallKernels && out*in <= transposeLimit {
		wt.t = make([]float32, out*in)
		for o := 0; o < out; o++ {
			for i, v := range w[o*in : (o+1)*in] {
				wt.t[i*out+o] = v
			}
		}
	}
	return wt
}

// Apply computes y = x w^T for x [m, In] into y [m, Out], or adds it to y when acc is set.
func (w *Weight) Apply(y, x []float32, m int, acc bool) {
	var beta float32
	if acc {
		beta = 1
	}
	if w.t != nil && useSmall(false, m, w.Out, w.In) {
		Sgemm(false, false, m, w.Out, w.In, 1, x, w.In, w.t, w.Out, beta, y, w.Out)
		return
	}
	Sgemm(false, true, m, w.Out, w.In, 1, x, w.In, w.W, w.In, beta, y, w.Out)
}
