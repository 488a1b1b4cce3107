//go:build cgo

package cpu_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/backend/cpu"
	"github.com/specforge/specforge/internal/backend/purego"
	"github.com/specforge/specforge/internal/rope"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/tensor"
)

// The two backends run every operation on the same random inputs, at shapes that take each of the cpu
// backend's paths (few-row kernels with and without a prepared transpose, OpenBLAS single and split, the
// few-query attention kernel and the blocked one), and must agree to float32 rounding. Where both run the
// same Go kernel (RMSNorm, RoPE, the backwards, cross-entropy, embedding) they must agree exactly: that
// checks the cpu backend's wiring.

var backends = struct{ cpu, ref backend.Backend }{cpu.New(), purego.New()}

func randn(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

func clone(x []float32) []float32 { return append([]float32(nil), x...) }

// agree fails unless got and want match within atol + rtol*|want| everywhere.
func agree(t *testing.T, name string, got, want []float32, atol, rtol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		if d := math.Abs(g - w); d > atol+rtol*math.Abs(w) || math.IsNaN(g) != math.IsNaN(w) {
			t.Fatalf("%s[%d]: cpu %g, purego %g (diff %g)", name, i, g, w, d)
		}
	}
}

func f32(x []float32, dims ...int) tensor.Tensor { return tensor.FromF32(x, dims...) }

func TestMatMulAgrees(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		m, n, k        int
		transA, transB bool
		pad            int // extra columns of every stride: views into wider rows
		beta           float32
	}{
		{1, 40, 33, false, true, 0, 0}, {5, 17, 64, false, false, 3, 1}, {8, 300, 96, true, false, 0, 0.5},
		{30, 64, 20, false, true, 2, 1}, {200, 150, 128, false, true, 0, 0}, {64, 513, 100, true, true, 1, 1},
	} {
		t.Run(fmt.Sprintf("%dx%dx%d_tA%v_tB%v", c.m, c.n, c.k, c.transA, c.transB), func(t *testing.T) {
			ar, ac := c.m, c.k
			if c.transA {
				ar, ac = c.k, c.m
			}
			br, bc := c.k, c.n
			if c.transB {
				br, bc = c.n, c.k
			}
			lda, ldb, ldc := ac+c.pad, bc+c.pad, c.n+c.pad
			a, b, c0 := randn(r, ar*lda), randn(r, br*ldb), randn(r, c.m*ldc)
			got, want := clone(c0), clone(c0)
			backends.cpu.MatMul(c.transA, c.transB, c.m, c.n, c.k, 0.75, f32(a), lda, f32(b), ldb, c.beta, f32(got), ldc)
			backends.ref.MatMul(c.transA, c.transB, c.m, c.n, c.k, 0.75, f32(a), lda, f32(b), ldb, c.beta, f32(want), ldc)
			agree(t, "c", got, want, 1e-4, 1e-4)
		})
	}
}

func TestLinearAgrees(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range []struct{ out, in int }{{48, 64}, {1000, 300}} { // with and without a kept transpose
		w := randn(r, s.out*s.in)
		cw, err := backends.cpu.PrepareWeight(f32(w, s.out, s.in), s.out, s.in, backend.F32Product)
		if err != nil {
			t.Fatal(err)
		}
		rw, err := backends.ref.PrepareWeight(f32(w, s.out, s.in), s.out, s.in, backend.F32Product)
		if err != nil {
			t.Fatal(err)
		}
		if cw.Out() != s.out || cw.In() != s.in || &cw.Tensor().F32()[0] != &w[0] {
			t.Fatalf("prepared weight [%d, %d] from [%d, %d]", cw.Out(), cw.In(), s.out, s.in)
		}
		for _, rows := range []int{1, 3, 8, 9, 31, 70} {
			for _, acc := range []bool{false, true} {
				x, y0 := randn(r, rows*s.in), randn(r, rows*s.out)
				got, want := clone(y0), clone(y0)
				backends.cpu.Linear(f32(got), f32(x), cw, rows, acc)
				backends.ref.Linear(f32(want), f32(x), rw, rows, acc)
				agree(t, fmt.Sprintf("linear [%d,%d] rows %d acc %v", s.out, s.in, rows, acc), got, want, 1e-4, 1e-4)
			}
		}
	}
	if _, err := backends.cpu.PrepareWeight(f32(make([]float32, 5)), 2, 3, backend.F32Product); err == nil {
		t.Error("a weight with too few elements must be refused")
	}
}

func TestNormsAndActivationsAgree(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	rows, dim := 13, 96
	x, w, dy := randn(r, rows*dim), randn(r, dim), randn(r, rows*dim)
	var outs, rstds, dxs, dws [2][]float32
	for i, b := range []backend.Backend{backends.cpu, backends.ref} {
		outs[i], rstds[i] = make([]float32, rows*dim), make([]float32, rows)
		b.RMSNormForward(f32(outs[i]), f32(rstds[i]), f32(x), f32(w), rows, dim, 1e-5)
		dxs[i], dws[i] = make([]float32, rows*dim), make([]float32, dim)
		b.RMSNormBackward(f32(dxs[i]), f32(dws[i]), f32(dy), f32(x), f32(w), f32(rstds[i]), rows, dim)
	}
	agree(t, "rmsnorm", outs[0], outs[1], 1e-6, 1e-6)
	agree(t, "rstd", rstds[0], rstds[1], 0, 0)
	agree(t, "rmsnorm dx", dxs[0], dxs[1], 1e-6, 1e-6)
	agree(t, "rmsnorm dw", dws[0], dws[1], 1e-6, 1e-6)

	n := 40000 // above the split size of the elementwise kernels
	gate, up, dout := randn(r, n), randn(r, n), randn(r, n)
	var sw, dg, du [2][]float32
	for i, b := range []backend.Backend{backends.cpu, backends.ref} {
		sw[i] = make([]float32, n)
		b.SwiGLUForward(f32(sw[i]), f32(gate), f32(up))
		dg[i], du[i] = make([]float32, n), make([]float32, n)
		b.SwiGLUBackward(f32(dg[i]), f32(du[i]), f32(dout), f32(gate), f32(up))
	}
	agree(t, "swiglu", sw[0], sw[1], 1e-6, 1e-5)
	agree(t, "swiglu dgate", dg[0], dg[1], 0, 0)
	agree(t, "swiglu dup", du[0], du[1], 0, 0)

	srows, v := 7, 1000
	logits := randn(r, srows*v)
	logits[3*v+5] = float32(math.Inf(-1))
	got, want := clone(logits), clone(logits)
	backends.cpu.Softmax(f32(got), srows, v)
	backends.ref.Softmax(f32(want), srows, v)
	agree(t, "softmax", got, want, 1e-7, 1e-5)
	if g, w := backends.cpu.LogSumExp(f32(logits[:v])), backends.ref.LogSumExp(f32(logits[:v])); math.Abs(g-w) > 1e-5*math.Abs(w) {
		t.Errorf("logsumexp: cpu %g, purego %g", g, w)
	}

	targets := make([]float32, srows*v)
	for i := range srows {
		copy(targets[i*v:(i+1)*v], want[i*v:(i+1)*v]) // a distribution per row
	}
	coef := []float32{1, 0, 0.5, 1, 2, 0, 1}
	logits[3*v+5] = 0 // a masked logit against a zero target would be 0*Inf
	var losses [2]float64
	var grads [2][]float32
	var preds [2][]int32
	for i, b := range []backend.Backend{backends.cpu, backends.ref} {
		grads[i], preds[i] = clone(logits), make([]int32, srows)
		losses[i] = b.SoftCrossEntropy(f32(grads[i]), f32(targets), f32(coef), preds[i], srows, v)
	}
	if losses[0] != losses[1] || fmt.Sprint(preds[0]) != fmt.Sprint(preds[1]) {
		t.Errorf("cross-entropy: cpu %g %v, purego %g %v", losses[0], preds[0], losses[1], preds[1])
	}
	agree(t, "cross-entropy gradient", grads[0], grads[1], 0, 0)

	table, ids := randn(r, 50*dim), []int32{3, 0, 49, 3, 17}
	var emb [2][]float32
	for i, b := range []backend.Backend{backends.cpu, backends.ref} {
		emb[i] = make([]float32, len(ids)*dim)
		b.Embedding(f32(emb[i]), f32(table), ids, dim)
		b.Add(f32(emb[i]), f32(table[:len(ids)*dim]))
	}
	agree(t, "embedding+add", emb[0], emb[1], 0, 0)
	if g, w := backends.cpu.Argmax(f32(x)), backends.ref.Argmax(f32(x)); g != w {
		t.Errorf("argmax: cpu %d, purego %d", g, w)
	}

	heads, half := 3, 8
	pos := []int32{0, 5, 9, 100}
	cfg, err := rope.ParseScaling(nil, 10000, 2*half, 4096)
	if err != nil {
		t.Fatal(err)
	}
	inv, scale := cfg.Frequencies(128)
	tab := rope.NewTable(inv, scale, pos)
	q := randn(r, len(pos)*heads*2*half)
	var rot [2][]float32
	for i, b := range []backend.Backend{backends.cpu, backends.ref} {
		rot[i] = clone(q)
		b.RoPEForward(f32(rot[i]), tab, len(pos), heads)
	}
	agree(t, "rope", rot[0], rot[1], 0, 0)
	backends.cpu.RoPEBackward(f32(rot[0]), tab, len(pos), heads)
	agree(t, "rope inverse", rot[0], q, 1e-6, 1e-6)
}

func TestAttentionAgrees(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct {
		name               string
		T, past, heads, kv int
		window             int
		padding, tree      bool
	}{
		{"decode", 1, 37, 8, 2, 0, false, false},  // the few-query kernel
		{"verify", 4, 20, 4, 4, 0, false, false},  // few-query, several queries
		{"tree", 5, 12, 2, 1, 0, false, true},     // few-query with an ancestor mask
		{"prefill", 70, 0, 6, 2, 0, false, false}, // blocked
		{"window", 33, 10, 4, 2, 16, false, false},
		{"padding", 9, 0, 4, 2, 0, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := 16
			a := backend.Attention{Heads: c.heads, KVHeads: c.kv, HeadDim: d, Scale: 0.25}
			m := backend.Mask{Past: c.past, Window: c.window}
			nk := c.past + c.T
			if c.padding {
				m.KeyValid = make([]bool, nk)
				for j := range m.KeyValid {
					m.KeyValid[j] = j%4 != 1
				}
			}
			if c.tree {
				m.TreeFrom = c.past
				m.Tree = make([]bool, c.T*c.T)
				for i := range c.T {
					m.Tree[i*c.T+i] = true
					m.Tree[i*c.T] = true
					if i > 1 {
						m.Tree[i*c.T+i-1] = i%2 == 0
					}
				}
			}
			q, k, v := randn(r, c.T*c.heads*d), randn(r, nk*c.kv*d), randn(r, nk*c.kv*d)
			got, want := make([]float32, len(q)), make([]float32, len(q))
			backends.cpu.AttentionForward(f32(got), f32(q), f32(k), f32(v), c.T, a, m)
			backends.ref.AttentionForward(f32(want), f32(q), f32(k), f32(v), c.T, a, m)
			agree(t, "attention", got, want, 1e-5, 1e-4)
		})
	}
}

// TestTTTAttentionAgrees compares the backends' TTT attention on padded rows, one sample each (starts nil)
// and packed with several samples (starts set).
func TestTTTAttentionAgrees(t *testing.T) {
	a := backend.Attention{Heads: 4, KVHeads: 2, HeadDim: 8, Scale: 0.35}
	B, T, K := 2, 40, 3
	packed := make([]int32, B*T) // row 0: samples at 0, 12, 30; row 1: at 0, 7 and padding from 35
	for i := range packed {
		switch t := i % T; {
		case i >= T && t >= 35:
			packed[i] = 35
		case i >= T && t >= 7:
			packed[i] = 7
		case i < T && t >= 30:
			packed[i] = 30
		case i < T && t >= 12:
			packed[i] = 12
		}
	}
	for _, c := range []struct {
		name   string
		starts []int32
	}{{"unpacked", nil}, {"packed", packed}} {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(9, 10))
			valid := make([]bool, B*T)
			for i := range valid {
				valid[i] = i%T < T-5*(i/T)
			}
			qs, kvs := a.Heads*a.HeadDim, a.KVHeads*a.HeadDim
			q, dout := randn(r, B*T*qs), randn(r, B*T*qs)
			var keys, values []tensor.Tensor
			for range K {
				keys, values = append(keys, f32(randn(r, B*T*kvs))), append(values, f32(randn(r, B*T*kvs)))
			}
			var outs, lses, dqs [2][]float32
			var dks, dvs [2][][]float32
			for i, b := range []backend.Backend{backends.cpu, backends.ref} {
				outs[i], lses[i], dqs[i] = make([]float32, B*T*qs), make([]float32, B*T*a.Heads), make([]float32, B*T*qs)
				b.TTTAttentionForward(f32(outs[i]), f32(lses[i]), f32(q), keys, values, valid, c.starts, B, T, a)
				var dK, dV []tensor.Tensor
				for range K {
					dk, dv := make([]float32, B*T*kvs), make([]float32, B*T*kvs)
					dks[i], dvs[i] = append(dks[i], dk), append(dvs[i], dv)
					dK, dV = append(dK, f32(dk)), append(dV, f32(dv))
				}
				b.TTTAttentionBackward(f32(dqs[i]), dK, dV, f32(dout), f32(outs[i]), f32(lses[i]), f32(q), keys, values, valid, c.starts, B, T, a)
			}
			agree(t, "ttt out", outs[0], outs[1], 1e-5, 1e-4)
			agree(t, "ttt lse", lses[0], lses[1], 1e-5, 1e-5)
			agree(t, "ttt dq", dqs[0], dqs[1], 1e-5, 1e-4)
			for i := range K {
				agree(t, fmt.Sprintf("ttt dk[%d]", i), dks[0][i], dks[1][i], 1e-5, 1e-4)
				agree(t, fmt.Sprintf("ttt dv[%d]", i), dvs[0][i], dvs[1][i], 1e-5, 1e-4)
			}
		})
	}
}

// halfOf rounds x to dtype d (BF16 or F16) as a host tensor of the given shape.
func halfOf(t *testing.T, d tensor.DType, x []float32, dims ...int) tensor.Tensor {
	t.Helper()
	st := safetensors.FromFloat32("x", d, dims, x)
	v, err := st.View()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestHalfAgrees: with BF16 and F16 weights, for both products, the cpu backend (tiles on OpenBLAS) agrees
// with purego (tiles on gonum) at shapes within one tile and across several, and the embedding of a 16-bit
// table is the same.
func TestHalfAgrees(t *testing.T) {
	// Once on the bf16 kernels (where the CPU has them), once on the fallback of CPUs without them.
	for _, kernels := range []bool{true, false} {
		t.Run(fmt.Sprintf("bf16_kernels_%v", kernels), func(t *testing.T) {
			cpu.SetBF16Kernels(kernels)
			defer cpu.SetBF16Kernels(true)
			testHalfAgrees(t)
		})
	}
}

func testHalfAgrees(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, d := range []tensor.DType{tensor.BF16, tensor.F16} {
		for _, s := range []struct{ out, in int }{{48, 64}, {300, 96}, {256, 40}} {
			for _, p := range []backend.Product{backend.F32Product, backend.BF16Product} {
				w := halfOf(t, d, randn(r, s.out*s.in), s.out, s.in)
				cw, err := backends.cpu.PrepareWeight(w, s.out, s.in, p)
				if err != nil {
					t.Fatal(err)
				}
				rw, err := backends.ref.PrepareWeight(w, s.out, s.in, p)
				if err != nil {
					t.Fatal(err)
				}
				if cw.Tensor().DType() != d || &cw.Tensor().Raw()[0] != &w.Raw()[0] {
					t.Fatalf("prepared %s weight is %v, not the given tensor", d, cw.Tensor())
				}
				for _, rows := range []int{1, 3, 9, 70} {
					for _, acc := range []bool{false, true} {
						x, y0 := randn(r, rows*s.in), randn(r, rows*s.out)
						got, want := clone(y0), clone(y0)
						backends.cpu.Linear(f32(got), f32(x), cw, rows, acc)
						backends.ref.Linear(f32(want), f32(x), rw, rows, acc)
						agree(t, fmt.Sprintf("%s %v linear [%d,%d] rows %d acc %v", d, p, s.out, s.in, rows, acc), got, want, 1e-4, 1e-4)
					}
				}
			}
		}
		for _, c := range []struct {
			m, n, k        int
			transA, transB bool
			halfA          bool // the 16-bit operand is a, else b
		}{
			{5, 300, 64, false, true, false}, {9, 40, 260, false, false, false}, {200, 30, 50, false, false, true}, {7, 20, 300, true, false, true},
		} {
			ar, ac, br, bc := c.m, c.k, c.k, c.n
			if c.transA {
				ar, ac = c.k, c.m
			}
			if c.transB {
				br, bc = c.n, c.k
			}
			a, b := f32(randn(r, ar*ac)), f32(randn(r, br*bc))
			if c.halfA {
				a = halfOf(t, d, randn(r, ar*ac), ar*ac)
			} else {
				b = halfOf(t, d, randn(r, br*bc), br*bc)
			}
			c0 := randn(r, c.m*c.n)
			got, want := clone(c0), clone(c0)
			backends.cpu.MatMul(c.transA, c.transB, c.m, c.n, c.k, 1, a, ac, b, bc, 0.5, f32(got), c.n)
			backends.ref.MatMul(c.transA, c.transB, c.m, c.n, c.k, 1, a, ac, b, bc, 0.5, f32(want), c.n)
			agree(t, fmt.Sprintf("%s matmul %dx%dx%d tA %v tB %v half a %v", d, c.m, c.n, c.k, c.transA, c.transB, c.halfA), got, want, 1e-4, 1e-4)
		}
		dim, ids := 96, []int32{3, 0, 49, 3, 17}
		table := halfOf(t, d, randn(r, 50*dim), 50, dim)
		var emb [2][]float32
		for i, b := range []backend.Backend{backends.cpu, backends.ref} {
			emb[i] = make([]float32, len(ids)*dim)
			b.Embedding(f32(emb[i]), table, ids, dim)
		}
		agree(t, string(d)+" embedding", emb[0], emb[1], 0, 0)
	}
}
