package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/specforge/specforge/internal/rope"
)

// fdGrad returns the central finite-difference gradient of f at x (float64, so it is accurate).
func fdGrad(x []float64, f func([]float64) float64) []float64 {
	g := make([]float64, len(x))
	const h = 1e-6
	for i := range x {
		old := x[i]
		x[i] = old + h
		fp := f(x)
		x[i] = old - h
		fm := f(x)
		x[i] = old
		g[i] = (fp - fm) / (2 * h)
	}
	return g
}

func to64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

func weightedSum(y []float64, w []float32) float64 {
	var s float64
	for i := range y {
		s += y[i] * float64(w[i])
	}
	return s
}

func TestRMSNormBackwardFD(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	rows, dim := 5, 12
	x, w, dy := randn(r, rows*dim, 2), randn(r, dim, 1), randn(r, rows*dim, 1)
	const eps = 1e-5
	ref := func(x, w []float64) []float64 {
		y := make([]float64, len(x))
		for i := 0; i < rows; i++ {
			var ss float64
			for j := 0; j < dim; j++ {
				ss += x[i*dim+j] * x[i*dim+j]
			}
			inv := 1 / math.Sqrt(ss/float64(dim)+eps)
			for j := 0; j < dim; j++ {
				y[i*dim+j] = w[j] * x[i*dim+j] * inv
			}
		}
		return y
	}
	out, rstd := make([]float32, rows*dim), make([]float32, rows)
	RMSNormForward(out, rstd, x, w, rows, dim, eps)
	close64(t, "forward", out, ref(to64(x), to64(w)), 1e-5, 1e-5)
	dx, dw := make([]float32, rows*dim), make([]float32, dim)
	RMSNormBackward(dx, dw, dy, x, w, rstd, rows, dim)
	w64 := to64(w)
	close64(t, "dx", dx, fdGrad(to64(x), func(x []float64) float64 { return weightedSum(ref(x, w64), dy) }), 1e-4, 1e-4)
	x64 := to64(x)
	close64(t, "dw", dw, fdGrad(to64(w), func(w []float64) float64 { return weightedSum(ref(x64, w), dy) }), 1e-4, 1e-4)
}

func TestSwiGLUBackwardFD(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	n := 50
	g, u, dy := randn(r, n, 3), randn(r, n, 1), randn(r, n, 1)
	ref := func(g, u []float64) []float64 {
		y := make([]float64, n)
		for i := range y {
			y[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
		}
		return y
	}
	dg, du := make([]float32, n), make([]float32, n)
	SwiGLUBackward(dg, du, dy, g, u)
	u64, g64 := to64(u), to64(g)
	close64(t, "dgate", dg, fdGrad(to64(g), func(g []float64) float64 { return weightedSum(ref(g, u64), dy) }), 1e-5, 1e-4)
	close64(t, "dup", du, fdGrad(to64(u), func(u []float64) float64 { return weightedSum(ref(g64, u), dy) }), 1e-5, 1e-4)
}

func TestRopeBackward(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	rows, heads, d := 4, 2, 8
	x := randn(r, rows*heads*d, 1)
	orig := append([]float32(nil), x...)
	tab := rope.NewTable([]float64{1, 0.3, 0.01, 0.002}, 1, []int32{3, 0, 9, 100})
	tab.Apply(x, rows, heads)
	tab.ApplyInverse(x, rows, heads) // the rotation is orthogonal: its transpose undoes it
	close64(t, "inverse", x, to64(orig), 1e-6, 1e-6)
	// <R x, y> = <x, R^T y>: the gradient of a linear map is its transpose.
	y := randn(r, len(x), 1)
	rx := append([]float32(nil), orig...)
	tab.Apply(rx, rows, heads)
	rty := append([]float32(nil), y...)
	tab.ApplyInverse(rty, rows, heads)
	var a, b float64
	for i := range x {
		a += float64(rx[i]) * float64(y[i])
		b += float64(orig[i]) * float64(rty[i])
	}
	if math.Abs(a-b) > 1e-5*math.Abs(a) {
		t.Errorf("<Rx,y> = %g, <x,R^T y> = %g", a, b)
	}
}

func TestSoftCrossEntropyFD(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	rows, v := 4, 30
	z := randn(r, rows*v, 2)
	p := make([]float32, rows*v)
	for i := 0; i < rows; i++ {
		var s float32
		for j := 0; j < v; j++ {
			p[i*v+j] = float32(math.Exp(r.NormFloat64()))
			s += p[i*v+j]
		}
		for j := 0; j < v; j++ {
			p[i*v+j] /= s
		}
	}
	coef := []float32{0.5, 0, 1.25, 0.1}
	var refLoss func([]float64, bool) float64
	ref := func(z []float64) float64 { return refLoss(z, true) }
	refLoss = func(z []float64, weighted bool) float64 {
		var total float64
		for i := 0; i < rows; i++ {
			w := float64(coef[i])
			if !weighted && w != 0 {
				w = 1
			}
			m := math.Inf(-1)
			for j := 0; j < v; j++ {
				m = math.Max(m, z[i*v+j])
			}
			var s float64
			for j := 0; j < v; j++ {
				s += math.Exp(z[i*v+j] - m)
			}
			lse := m + math.Log(s)
			for j := 0; j < v; j++ {
				total -= w * float64(p[i*v+j]) * (z[i*v+j] - lse)
			}
		}
		return total
	}
	z64 := to64(z)
	want := refLoss(z64, false)
	grad := append([]float32(nil), z...)
	pred := make([]int32, rows)
	loss := SoftCrossEntropy(grad, p, coef, pred, rows, v)
	if math.Abs(loss-want) > 1e-5*math.Abs(want) {
		t.Errorf("loss %g, want %g", loss, want)
	}
	close64(t, "dlogits", grad, fdGrad(z64, ref), 1e-5, 1e-4)
	for i := 0; i < rows; i++ {
		best := 0
		for j := 0; j < v; j++ {
			if z[i*v+j] > z[i*v+best] {
				best = j
			}
		}
		if int(pred[i]) != best {
			t.Errorf("row %d: pred %d, want %d", i, pred[i], best)
		}
	}
}

// tttReference is the TTT attention written plainly in float64: scores over the step-0 keys s <= t that are
// valid plus the same-row keys of steps 1..k.
func tttReference(a TTTAttention, q []float64, keys, values [][]float64, valid []bool, B, T int) []float64 {
	d, group := a.HeadDim, a.Heads/a.KVHeads
	qs, kvs := a.Heads*d, a.KVHeads*d
	k := len(keys) - 1
	out := make([]float64, B*T*qs)
	for b := 0; b < B; b++ {
		for h := 0; h < a.Heads; h++ {
			kvh := h / group
			for t := 0; t < T; t++ {
				qr := q[(b*T+t)*qs+h*d : (b*T+t)*qs+h*d+d]
				var sc []float64
				var vs [][]float64
				for s := 0; s <= t; s++ {
					if !valid[b*T+s] {
						continue
					}
					off := (b*T+s)*kvs + kvh*d
					var dot float64
					for c := 0; c < d; c++ {
						dot += qr[c] * keys[0][off+c]
					}
					sc = append(sc, dot*float64(a.Scale))
					vs = append(vs, values[0][off:off+d])
				}
				for i := 1; i <= k; i++ {
					off := (b*T+t)*kvs + kvh*d
					var dot float64
					for c := 0; c < d; c++ {
						dot += qr[c] * keys[i][off+c]
					}
					sc = append(sc, dot*float64(a.Scale))
					vs = append(vs, values[i][off:off+d])
				}
				m := math.Inf(-1)
				for _, x := range sc {
					m = math.Max(m, x)
				}
				var z float64
				for i := range sc {
					sc[i] = math.Exp(sc[i] - m)
					z += sc[i]
				}
				o := out[(b*T+t)*qs+h*d : (b*T+t)*qs+h*d+d]
				for i, p := range sc {
					for c := 0; c < d; c++ {
						o[c] += p / z * vs[i][c]
					}
				}
			}
		}
	}
	return out
}

func TestTTTAttentionFD(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	a := TTTAttention{Heads: 4, KVHeads: 2, HeadDim: 4, Scale: 0.5}
	B, T, K := 2, 6, 3
	valid := []bool{true, true, true, true, true, true, true, true, true, true, false, false}
	qs, kvs := a.Heads*a.HeadDim, a.KVHeads*a.HeadDim
	for k := 0; k < K; k++ {
		q := randn(r, B*T*qs, 1)
		var keys, values [][]float32
		for i := 0; i <= k; i++ {
			keys = append(keys, randn(r, B*T*kvs, 1))
			values = append(values, randn(r, B*T*kvs, 1))
		}
		out, lse := make([]float32, B*T*qs), make([]float32, B*T*a.Heads)
		a.Forward(out, lse, q, keys, values, valid, nil, B, T)
		k64 := func(x [][]float32) [][]float64 {
			var o [][]float64
			for _, v := range x {
				o = append(o, to64(v))
			}
			return o
		}
		close64(t, "forward", out, tttReference(a, to64(q), k64(keys), k64(values), valid, B, T), 1e-5, 1e-5)

		dout := randn(r, len(out), 1)
		dq := make([]float32, len(q))
		dK, dV := make([][]float32, k+1), make([][]float32, k+1)
		for i := range dK {
			dK[i], dV[i] = make([]float32, B*T*kvs), make([]float32, B*T*kvs)
		}
		a.Backward(dq, dK, dV, dout, out, lse, q, keys, values, valid, nil, B, T)
		q64, kk, vv := to64(q), k64(keys), k64(values)
		close64(t, "dq", dq, fdGrad(to64(q), func(x []float64) float64 {
			return weightedSum(tttReference(a, x, kk, vv, valid, B, T), dout)
		}), 1e-4, 1e-4)
		for i := 0; i <= k; i++ {
			close64(t, "dk", dK[i], fdGrad(to64(keys[i]), func(x []float64) float64 {
				ks := append([][]float64(nil), kk...)
				ks[i] = x
				return weightedSum(tttReference(a, q64, ks, vv, valid, B, T), dout)
			}), 1e-4, 1e-4)
			close64(t, "dv", dV[i], fdGrad(to64(values[i]), func(x []float64) float64 {
				vs := append([][]float64(nil), vv...)
				vs[i] = x
				return weightedSum(tttReference(a, q64, kk, vs, valid, B, T), dout)
			}), 1e-4, 1e-4)
		}
	}
}

// TestSoftCrossEntropyAcceptFD checks the LK kernel against finite differences of a float64 reference, for
// both forms of the acceptance term (linear, as lk_lambda weighs it, and logarithmic, as lk_alpha), with
// random inputs that keep every |p - q| far from the min's kink.
func TestSoftCrossEntropyAcceptFD(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	rows, v := 5, 24
	z := randn(r, rows*v, 1.5)
	p := make([]float32, rows*v)
	for i := 0; i < rows; i++ {
		var s float32
		for j := 0; j < v; j++ {
			p[i*v+j] = float32(math.Exp(1.5 * r.NormFloat64()))
			s += p[i*v+j]
		}
		for j := 0; j < v; j++ {
			p[i*v+j] /= s
		}
	}
	klCoef := []float32{0.5, 0, 1.25, 0.1, 0.7}
	accCoef := []float32{-0.3, -1, 0, -0.8, -0.05}
	for _, logAccept := range []bool{false, true} {
		// rows computes each row's cross-entropy and acceptance in float64.
		rowsOf := func(z []float64) (ce, acc []float64) {
			for i := 0; i < rows; i++ {
				m := math.Inf(-1)
				for j := 0; j < v; j++ {
					m = math.Max(m, z[i*v+j])
				}
				var s float64
				for j := 0; j < v; j++ {
					s += math.Exp(z[i*v+j] - m)
				}
				lse := m + math.Log(s)
				var c, a float64
				for j := 0; j < v; j++ {
					c -= float64(p[i*v+j]) * (z[i*v+j] - lse)
					a += math.Min(float64(p[i*v+j]), math.Exp(z[i*v+j]-lse))
				}
				ce, acc = append(ce, c), append(acc, a)
			}
			return ce, acc
		}
		loss := func(z []float64) float64 {
			ce, acc := rowsOf(z)
			var total float64
			for i := range ce {
				a := acc[i]
				if logAccept {
					a = math.Log(a)
				}
				total += float64(klCoef[i])*ce[i] + float64(accCoef[i])*a
			}
			return total
		}
		z64 := to64(z)
		ce, acc := rowsOf(z64)
		grad := append([]float32(nil), z...)
		pred := make([]int32, rows)
		accept := make([]float64, rows)
		got := SoftCrossEntropyAccept(grad, p, klCoef, accCoef, logAccept, accept, pred, rows, v)
		var want float64
		for i := range ce {
			want += ce[i]
			if math.Abs(accept[i]-acc[i]) > 1e-6 {
				t.Errorf("log %v row %d: acceptance %g, want %g", logAccept, i, accept[i], acc[i])
			}
		}
		if math.Abs(got-want) > 1e-5*math.Abs(want) {
			t.Errorf("log %v: cross-entropy %g, want %g", logAccept, got, want)
		}
		close64(t, "dlogits", grad, fdGrad(z64, loss), 1e-5, 1e-4)
	}
}

// TestSoftCrossEntropyAcceptTies takes torch.minimum's subgradient at a tie (half to each side) and gives a
// row of zero acceptance no gradient from log(accept).
func TestSoftCrossEntropyAcceptTies(t *testing.T) {
	// Uniform logits against the uniform target: every q_v ties with p_v, g = 1/2, sum g q = 1/2, so the
	// acceptance gradient q_j (1/2 - 1/2) is 0, as is the cross-entropy's.
	v := 4
	z := []float32{0, 0, 0, 0}
	p := []float32{0.25, 0.25, 0.25, 0.25}
	accept := make([]float64, 1)
	SoftCrossEntropyAccept(z, p, []float32{1}, []float32{-1}, false, accept, make([]int32, 1), 1, v)
	if accept[0] != 1 || slices.ContainsFunc(z, func(x float32) bool { return x != 0 }) {
		t.Errorf("tie: acceptance %g, gradient %v", accept[0], z)
	}
	// A target on a token the logits give probability exp(-200) ~ 0 in float32: acceptance 0, no gradient.
	z = []float32{200, 0}
	p = []float32{0, 1}
	SoftCrossEntropyAccept(z, p, []float32{0}, []float32{-1}, true, accept, make([]int32, 1), 1, 2)
	if accept[0] != 0 || z[0] != 0 || z[1] != 0 {
		t.Errorf("zero acceptance: %g, gradient %v", accept[0], z)
	}
}
