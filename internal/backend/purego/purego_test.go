package purego

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/blas"
	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/kernels"
	"github.com/specforge/specforge/internal/rope"
	"github.com/specforge/specforge/internal/tensor"
)

func randn(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// TestLinearAgainstNaive checks the prepared-weight product against a float64 triple loop, with and
// without accumulation.
func TestLinearAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	rows, out, in := 5, 7, 11
	w, x, y0 := randn(r, out*in), randn(r, rows*in), randn(r, rows*out)
	b := New()
	pw, err := b.PrepareWeight(tensor.FromF32(w, out, in), out, in, backend.F32Product)
	if err != nil {
		t.Fatal(err)
	}
	for _, acc := range []bool{false, true} {
		y := append([]float32(nil), y0...)
		b.Linear(tensor.FromF32(y), tensor.FromF32(x), pw, rows, acc)
		for i := range rows {
			for o := range out {
				var want float64
				if acc {
					want = float64(y0[i*out+o])
				}
				for k := range in {
					want += float64(x[i*in+k]) * float64(w[o*in+k])
				}
				if d := math.Abs(float64(y[i*out+o]) - want); d > 1e-5*(1+math.Abs(want)) {
					t.Fatalf("acc %v: y[%d,%d] = %g, want %g", acc, i, o, y[i*out+o], want)
				}
			}
		}
	}
	if _, err := b.PrepareWeight(tensor.Tensor{}, 2, 2, backend.F32Product); err == nil {
		t.Error("a nil weight must be refused")
	}
}

// TestNoAllocationAdded: a call through the backend allocates no more than the kernel it wraps, at the
// sizes of a decoding step.
func TestNoAllocationAdded(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	dim, heads, d, past := 64, 4, 16, 30
	x, w, out := randn(r, dim), randn(r, dim), make([]float32, dim)
	k, v := randn(r, (past+1)*dim), randn(r, (past+1)*dim)
	tab := rope.NewTable([]float64{1, 0.1, 0.01, 0.001, 1e-4, 1e-5, 1e-6, 1e-7}, 1, []int32{7})
	wt := randn(r, dim*dim)
	b := New()
	pw, err := b.PrepareWeight(tensor.FromF32(wt, dim, dim), dim, dim, backend.F32Product)
	if err != nil {
		t.Fatal(err)
	}
	bits := make([]byte, 2*dim*dim)
	for i := range dim * dim {
		bits[2*i+1] = byte(half.BF16FromF32(wt[i]) >> 8)
	}
	wbf, err := tensor.FromBytes(tensor.BF16, tensor.Host, bits, dim, dim)
	if err != nil {
		t.Fatal(err)
	}
	pbf, err := b.PrepareWeight(wbf, dim, dim, backend.BF16Product)
	if err != nil {
		t.Fatal(err)
	}
	a := backend.Attention{Heads: heads, KVHeads: heads, HeadDim: d, Scale: 0.25}
	m := backend.Mask{Past: past}
	X, W, O, K, V := tensor.FromF32(x), tensor.FromF32(w), tensor.FromF32(out), tensor.FromF32(k), tensor.FromF32(v)
	for _, c := range []struct {
		name            string
		through, kernel func()
	}{
		{"linear", func() { b.Linear(O, X, pw, 1, false) }, func() { blas.SgemmGo(false, true, 1, dim, dim, 1, x, dim, wt, dim, 0, out, dim) }},
		{"linear bf16", func() { b.Linear(O, X, pbf, 1, false) }, func() { blas.SgemmGo(false, true, 1, dim, dim, 1, x, dim, wt, dim, 0, out, dim) }},
		{"embedding bf16", func() { b.Embedding(O, wbf, []int32{3}, dim) }, func() { kernels.Embedding(out, k, []int32{3}, dim) }},
		{"rmsnorm", func() { b.RMSNormForward(O, tensor.Tensor{}, X, W, 1, dim, 1e-5) }, func() { kernels.RMSNorm(out, x, w, 1, dim, 1e-5) }},
		{"rope", func() { b.RoPEForward(O, tab, 1, heads) }, func() { tab.Apply(out, 1, heads) }},
		{"swiglu", func() { b.SwiGLUForward(O, X, W) }, func() { kernels.SwiGLUGo(out, x, w) }},
		{"attention", func() { b.AttentionForward(O, X, K, V, 1, a, m) }, func() { kernels.Attention(a).ForwardGo(out, x, k, v, 1, kernels.Mask(m)) }},
		{"embedding", func() { b.Embedding(O, K, []int32{3}, dim) }, func() { kernels.Embedding(out, k, []int32{3}, dim) }},
		{"add", func() { b.Add(O, X) }, func() { kernels.Add(out, x) }},
		{"argmax", func() { b.Argmax(X) }, func() { kernels.Argmax(x) }},
	} {
		if through, kernel := testing.AllocsPerRun(50, c.through), testing.AllocsPerRun(50, c.kernel); through > kernel {
			t.Errorf("%s: %v allocations through the backend, %v in the kernel", c.name, through, kernel)
		}
	}
}
