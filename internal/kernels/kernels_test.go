package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/specforge/specforge/internal/blas"
)

func randn(r *rand.Rand, n int, std float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * std)
	}
	return x
}

// close64 fails the test when got and want differ by more than atol + rtol*|want| anywhere.
func close64(t *testing.T, name string, got []float32, want []float64, atol, rtol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i]) - want[i]); d > atol+rtol*math.Abs(want[i]) || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s[%d] = %g, want %g (diff %g)", name, i, got[i], want[i], d)
		}
	}
}

func TestRMSNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	rows, dim := 7, 96
	x, w := randn(r, rows*dim, 3), randn(r, dim, 1)
	want := make([]float64, rows*dim)
	for i := 0; i < rows; i++ {
		var ss float64
		for j := 0; j < dim; j++ {
			ss += float64(x[i*dim+j]) * float64(x[i*dim+j])
		}
		inv := 1 / math.Sqrt(ss/float64(dim)+1e-5)
		for j := 0; j < dim; j++ {
			want[i*dim+j] = float64(w[j]) * float64(x[i*dim+j]) * inv
		}
	}
	out := make([]float32, rows*dim)
	RMSNorm(out, x, w, rows, dim, 1e-5)
	close64(t, "rmsnorm", out, want, 1e-6, 1e-6)
	RMSNorm(x, x, w, rows, dim, 1e-5) // in place
	close64(t, "rmsnorm in place", x, want, 1e-6, 1e-6)
}

func TestSwiGLUAndSoftmax(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	g, u := randn(r, 1000, 4), randn(r, 1000, 1)
	want := make([]float64, len(g))
	for i := range g {
		x := float64(g[i])
		want[i] = x / (1 + math.Exp(-x)) * float64(u[i])
	}
	out := make([]float32, len(g))
	SwiGLU(out, g, u)
	close64(t, "swiglu", out, want, 1e-6, 1e-6)

	rows, n := 5, 33
	x := randn(r, rows*n, 10)
	x[n+4] = float32(math.Inf(-1)) // a masked entry
	sm := make([]float64, rows*n)
	for i := 0; i < rows; i++ {
		m := math.Inf(-1)
		for j := 0; j < n; j++ {
			m = math.Max(m, float64(x[i*n+j]))
		}
		var s float64
		for j := 0; j < n; j++ {
			sm[i*n+j] = math.Exp(float64(x[i*n+j]) - m)
			s += sm[i*n+j]
		}
		for j := 0; j < n; j++ {
			sm[i*n+j] /= s
		}
	}
	SoftmaxRows(x, rows, n)
	close64(t, "softmax", x, sm, 1e-7, 1e-6)
	allMasked := []float32{float32(math.Inf(-1)), float32(math.Inf(-1))}
	Softmax(allMasked)
	if allMasked[0] != 0.5 || allMasked[1] != 0.5 {
		t.Errorf("fully masked row = %v, want uniform", allMasked)
	}
}

func TestLogSumExp(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	inf := float32(math.Inf(-1))
	for _, x := range [][]float32{randn(r, 512, 8), randn(r, 37, 30), {3}, {inf, 2, inf}, {80, 90, 100}} {
		m := math.Inf(-1)
		for _, v := range x {
			m = math.Max(m, float64(v))
		}
		var s float64
		for _, v := range x {
			s += math.Exp(float64(v) - m)
		}
		want := m + math.Log(s)
		if got := LogSumExp(x); math.Abs(got-want) > 1e-6*(1+math.Abs(want)) {
			t.Errorf("LogSumExp of %d values = %g, want %g", len(x), got, want)
		}
	}
	for _, x := range [][]float32{nil, {inf, inf}} {
		if got := LogSumExp(x); !math.IsInf(got, -1) {
			t.Errorf("LogSumExp(%v) = %g, want -Inf", x, got)
		}
	}
}

func TestEmbedding(t *testing.T) {
	table := []float32{0, 1, 10, 11, 20, 21}
	out := make([]float32, 6)
	Embedding(out, table, []int32{2, 0, 2}, 2)
	want := []float32{20, 21, 0, 1, 20, 21}
	for i := range want {
		if out[i] != want[i] {
			t.Fatalf("embedding = %v, want %v", out, want)
		}
	}
}

// naiveAttention is the float64 definition: softmax over visible keys of scaled q.k, times v.
func naiveAttention(a Attention, q, k, v []float32, T int, m Mask) []float64 {
	d, group := a.HeadDim, a.Heads/a.KVHeads
	S := m.Past + T
	out := make([]float64, T*a.Heads*d)
	for h := 0; h < a.Heads; h++ {
		kvh := h / group
		for i := 0; i < T; i++ {
			sc := make([]float64, S)
			mx := math.Inf(-1)
			for j := 0; j < S; j++ {
				sc[j] = math.Inf(-1)
				if !m.visible(T, i, j) {
					continue
				}
				var s float64
				for c := 0; c < d; c++ {
					s += float64(q[i*a.Heads*d+h*d+c]) * float64(k[j*a.KVHeads*d+kvh*d+c])
				}
				sc[j] = s * float64(a.Scale)
				mx = math.Max(mx, sc[j])
			}
			var z float64
			for j := range sc {
				sc[j] = math.Exp(sc[j] - mx)
				z += sc[j]
			}
			for j := range sc {
				for c := 0; c < d; c++ {
					out[i*a.Heads*d+h*d+c] += sc[j] / z * float64(v[j*a.KVHeads*d+kvh*d+c])
				}
			}
		}
	}
	return out
}

func TestAttention(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	tree := func(T int) []bool { // a random ancestor mask: each node's parent is an earlier node
		parent := make([]int, T)
		m := make([]bool, T*T)
		for i := 0; i < T; i++ {
			parent[i] = -1
			if i > 0 {
				parent[i] = r.IntN(i)
			}
			for p := i; p >= 0; p = parent[p] {
				m[i*T+p] = true
			}
		}
		return m
	}
	valid := func(n int) []bool {
		kv := make([]bool, n)
		for j := range kv {
			kv[j] = j%5 != 3
		}
		return kv
	}
	cases := []struct {
		name              string
		heads, kv, d, T   int
		past              int
		keyValid, useTree bool
		window            int
	}{
		{"causal mha", 4, 4, 8, 9, 0, false, false, 0},
		{"causal gqa", 8, 2, 16, 300, 0, false, false, 0}, // several query blocks
		{"decode with cache", 4, 2, 8, 1, 20, false, false, 0},
		{"chunk with cache", 6, 3, 8, 7, 11, false, false, 0},
		{"padding", 4, 2, 8, 12, 5, true, false, 0},
		{"tree", 4, 1, 8, 10, 6, false, true, 0},
		{"tree and padding", 4, 2, 8, 10, 6, true, true, 0},
		{"sliding window", 4, 2, 8, 40, 10, false, false, 7},
		// Few queries: the lane kernel (every head size it specialises, and a generic one).
		{"verify chain", 8, 4, 8, 6, 100, false, false, 0},
		{"sixteen lanes", 8, 2, 64, 4, 30, false, false, 0},
		{"head 128", 4, 4, 128, 3, 9, false, false, 0},
		{"head 16", 4, 2, 16, 2, 40, false, false, 0},
		{"head 32", 2, 1, 32, 5, 3, false, false, 0},
		{"odd head", 4, 2, 24, 5, 7, false, false, 0},
		{"small tree", 4, 2, 8, 8, 13, false, true, 0},
		{"tree over cached rows", 4, 2, 8, 6, 13, false, true, -3}, // window -3: TreeFrom 3 rows before Past
		// More query rows per KV head than one vector has lanes.
		{"verify gqa", 8, 2, 64, 6, 40, false, false, 0},
		{"one query, 32 heads per kv head", 32, 1, 16, 1, 20, false, false, 0},
		{"tree of 20, 8 heads per kv head", 16, 2, 8, 20, 9, false, true, 0},
		{"few queries with padding", 8, 2, 16, 6, 10, true, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := Attention{Heads: c.heads, KVHeads: c.kv, HeadDim: c.d, Scale: float32(1 / math.Sqrt(float64(c.d)))}
			S := c.past + c.T
			q := randn(r, c.T*c.heads*c.d, 1)
			k := randn(r, S*c.kv*c.d, 1)
			v := randn(r, S*c.kv*c.d, 1)
			m := Mask{Past: c.past, Window: max(c.window, 0)}
			if c.keyValid {
				m.KeyValid = valid(S)
			}
			if c.useTree {
				m.Tree, m.TreeFrom = tree(c.T), c.past
			}
			if c.window < 0 { // the tree also covers the last -window cached rows, each seen at random
				from, cols := c.past+c.window, c.T-c.window
				m.Tree, m.TreeFrom = make([]bool, c.T*cols), from
				sub := tree(c.T)
				for i := 0; i < c.T; i++ {
					for j := 0; j < -c.window; j++ {
						m.Tree[i*cols+j] = r.IntN(2) == 0
					}
					copy(m.Tree[i*cols-c.window:(i+1)*cols], sub[i*c.T:(i+1)*c.T])
				}
			}
			want := naiveAttention(a, q, k, v, c.T, m)
			out := make([]float32, c.T*c.heads*c.d)
			a.Forward(out, q, k, v, c.T, m)
			close64(t, "attention", out, want, 2e-6, 2e-5)
			// Both implementations, whichever Forward chose.
			a.forwardBlocked(blas.Sgemm, Softmax, out, q, k, v, c.T, m)
			close64(t, "blocked attention", out, want, 2e-6, 2e-5)
			a.ForwardGo(out, q, k, v, c.T, m)
			close64(t, "pure-Go attention", out, want, 2e-6, 2e-5)
			clear(out)
			if ran := a.forwardFew(out, q, k, v, c.T, m); ran {
				close64(t, "few-query attention", out, want, 2e-6, 2e-5)
			} else if haveFewKernel && c.T <= fewQueries && !c.keyValid && c.window <= 0 {
				t.Errorf("the few-query kernel declined a case it serves")
			}
		})
	}
}

// TestAttentionFewMatchesSteps: up to fewQueries new queries, each row of a forward is bit for bit that of a
// one-query forward over the same keys, whatever the heads per KV head, in every implementation. Speculative
// verification relies on it: its rows must equal the decoding steps they replace exactly.
func TestAttentionFewMatchesSteps(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	impls := []struct {
		name    string
		forward func(a Attention, out, q, k, v []float32, T int, m Mask)
	}{
		{"Forward", Attention.Forward},
		{"blocked", func(a Attention, out, q, k, v []float32, T int, m Mask) {
			a.forwardBlocked(blas.Sgemm, Softmax, out, q, k, v, T, m)
		}},
		{"ForwardGo", Attention.ForwardGo},
	}
	for _, group := range []int{1, 2, 4, 8} {
		for _, d := range []int{16, 128} {
			for _, T := range []int{1, 2, 5, 6, 8, 17, fewQueries} {
				for _, past := range []int{0, 3, 40} {
					a := Attention{Heads: 2 * group, KVHeads: 2, HeadDim: d, Scale: float32(1 / math.Sqrt(float64(d)))}
					S, qs := past+T, a.Heads*d
					q, k, v := randn(r, T*qs, 1), randn(r, S*a.KVHeads*d, 1), randn(r, S*a.KVHeads*d, 1)
					for _, impl := range impls {
						name := fmt.Sprintf("%s/group%d/d%d/T%d/past%d", impl.name, group, d, T, past)
						all := make([]float32, T*qs)
						impl.forward(a, all, q, k, v, T, Mask{Past: past})
						one := make([]float32, qs)
						for i := 0; i < T; i++ {
							n := (past + i + 1) * a.KVHeads * d
							impl.forward(a, one, q[i*qs:(i+1)*qs], k[:n], v[:n], 1, Mask{Past: past + i})
							for c, x := range one {
								if y := all[i*qs+c]; x != y {
									t.Fatalf("%s: row %d value %d: %g in one step, %g in the forward of %d", name, i, c, x, y, T)
								}
							}
						}
					}
				}
			}
		}
	}
}
