package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestTTTAttentionPacked runs the TTT attention over rows that each hold several samples (starts set) and
// checks every sample's output, lse and gradients against the attention of that sample alone, for both
// products (cgo and pure Go) and steps 0..2. The rows are longer than a query block, so blocks start inside
// samples and skip the keys before their first sample; the padding's queries get random output gradients
// too, which must reach no real row.
func TestTTTAttentionPacked(t *testing.T) {
	a := TTTAttention{Heads: 4, KVHeads: 1, HeadDim: 8, Scale: 0.35} // 64-query blocks
	const T = 150
	rowSamples := [][]int{{40, 60, 45}, {30, 20}} // the rest of each row is padding
	B := len(rowSamples)
	qs, kvs := a.Heads*a.HeadDim, a.KVHeads*a.HeadDim
	valid, starts := make([]bool, B*T), make([]int32, B*T)
	type sample struct{ row, off, n int }
	var samples []sample
	for r, lens := range rowSamples {
		off := 0
		for _, n := range lens {
			samples = append(samples, sample{r, off, n})
			for t := off; t < off+n; t++ {
				valid[r*T+t], starts[r*T+t] = true, int32(off)
			}
			off += n
		}
		for t := off; t < T; t++ {
			starts[r*T+t] = int32(off)
		}
	}
	// rowsOf copies the rows of sample s out of x [B*T, width].
	rowsOf := func(x []float32, s sample, width int) []float32 {
		lo := (s.row*T + s.off) * width
		return append([]float32(nil), x[lo:lo+s.n*width]...)
	}
	for _, pure := range []bool{false, true} {
		for k := 0; k < 3; k++ {
			t.Run(fmt.Sprintf("pure=%v/k=%d", pure, k), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(k), 5))
				q, dout := randn(r, B*T*qs, 1), randn(r, B*T*qs, 1)
				var keys, values, dK, dV Slices
				for i := 0; i <= k; i++ {
					keys, values = append(keys, randn(r, B*T*kvs, 1)), append(values, randn(r, B*T*kvs, 1))
					dK, dV = append(dK, make([]float32, B*T*kvs)), append(dV, make([]float32, B*T*kvs))
				}
				out, lse, dq := make([]float32, B*T*qs), make([]float32, B*T*a.Heads), make([]float32, B*T*qs)
				TTTForward(a, pure, out, lse, q, keys, values, valid, starts, B, T)
				TTTBackward(a, pure, dq, dK, dV, dout, out, lse, q, keys, values, valid, starts, B, T)
				for _, s := range samples {
					var sk, sv, sdK, sdV Slices
					for i := 0; i <= k; i++ {
						sk, sv = append(sk, rowsOf(keys[i], s, kvs)), append(sv, rowsOf(values[i], s, kvs))
						sdK, sdV = append(sdK, make([]float32, s.n*kvs)), append(sdV, make([]float32, s.n*kvs))
					}
					sq, sdout, sValid := rowsOf(q, s, qs), rowsOf(dout, s, qs), valid[s.row*T+s.off:s.row*T+s.off+s.n]
					sOut, sLse, sdq := make([]float32, s.n*qs), make([]float32, s.n*a.Heads), make([]float32, s.n*qs)
					TTTForward(a, pure, sOut, sLse, sq, sk, sv, sValid, nil, 1, s.n)
					TTTBackward(a, pure, sdq, sdK, sdV, sdout, sOut, sLse, sq, sk, sv, sValid, nil, 1, s.n)
					name := fmt.Sprintf("row %d sample at %d", s.row, s.off)
					close64(t, name+" out", rowsOf(out, s, qs), to64(sOut), 1e-5, 1e-5)
					close64(t, name+" lse", rowsOf(lse, s, a.Heads), to64(sLse), 1e-5, 1e-5)
					close64(t, name+" dq", rowsOf(dq, s, qs), to64(sdq), 1e-5, 1e-5)
					for i := 0; i <= k; i++ {
						close64(t, fmt.Sprintf("%s dk[%d]", name, i), rowsOf(dK[i], s, kvs), to64(sdK[i]), 1e-5, 1e-5)
						close64(t, fmt.Sprintf("%s dv[%d]", name, i), rowsOf(dV[i], s, kvs), to64(sdV[i]), 1e-5, 1e-5)
					}
				}
			})
		}
	}
}
