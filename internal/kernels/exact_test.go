package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/specforge/specforge/internal/backend"
)

// exactInputs are n values of scale s with the edge cases of Exp and Argmax mixed in: the bounds of
// float32's exponent range, subnormal results, signed zeros, infinities and NaN.
func exactInputs(r *rand.Rand, n int, s float64) []float32 {
	edges := []float32{0, float32(math.Copysign(0, -1)), 88.72283, 88.72284, 88.5, 88.38, -87.3, -87.4, -100, -103.97208,
		-103.97209, -126 * math.Ln2, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 1e-30, -1e-30}
	x := make([]float32, n)
	for i := range x {
		if r.IntN(8) == 0 {
			x[i] = edges[r.IntN(len(edges))]
		} else {
			x[i] = float32(r.NormFloat64() * s)
		}
	}
	return x
}

func sameBits(t *testing.T, name string, got, want []float32) {
	t.Helper()
	for i := range want {
		g, w := got[i], want[i]
		if math.Float32bits(g) != math.Float32bits(w) && !(g != g && w != w) {
			t.Fatalf("%s[%d] = %g (%#x), want %g (%#x) bit for bit", name, i, g, math.Float32bits(g), w, math.Float32bits(w))
		}
	}
}

// The vectorised kernels must give their pure-Go versions' results bit for bit, at every length (the
// vector loop and its tail) and on the edge cases.
func TestExactKernelsMatchGo(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 7, 16, 17, 33, 100, 1000, 40000} {
		for _, s := range []float64{1, 30, 100} {
			x := exactInputs(r, n, s)
			m := float32(r.NormFloat64())
			got, want := append([]float32(nil), x...), append([]float32(nil), x...)
			expShift(got, m)
			expShiftGo(want, m)
			sameBits(t, "expShift", got, want)

			if n > 1 && r.IntN(2) == 0 {
				x[0] = float32(math.NaN())
			}
			for _, y := range [][]float32{x, got} {
				if g, w := Argmax(y), ArgmaxGo(y); g != w {
					t.Fatalf("n %d: Argmax = %d, want %d", n, g, w)
				}
				for _, m0 := range []float32{float32(math.Inf(-1)), 0.5, float32(math.NaN())} {
					g, w := maxFold(m0, y), maxFoldGo(m0, y)
					if math.Float32bits(g) != math.Float32bits(w) && !(g != g && w != w) {
						t.Fatalf("n %d: maxFold(%g) = %g, want %g", n, m0, g, w)
					}
				}
			}
			// Signed zeros: max(-0, +0) is +0 in either order.
			zeros := make([]float32, n)
			for i := range zeros {
				if r.IntN(2) == 0 {
					zeros[i] = float32(math.Copysign(0, -1))
				}
			}
			for _, m0 := range []float32{float32(math.Copysign(0, -1)), 0} {
				if g, w := maxFold(m0, zeros), maxFoldGo(m0, zeros); math.Float32bits(g) != math.Float32bits(w) {
					t.Fatalf("n %d: maxFold of signed zeros = %#x, want %#x", n, math.Float32bits(g), math.Float32bits(w))
				}
			}

			// The loss rows: exponentials z against a target p that ties some of q = z*inv exactly.
			z, pt := append([]float32(nil), got...), exactInputs(r, n, 0.01)
			inv := float32(1 / sum64Go(z))
			for i := range pt {
				if r.IntN(4) == 0 {
					pt[i] = z[i] * inv
				}
			}
			if g, w := dot64(pt, x), dot64Go(pt, x); math.Float64bits(g) != math.Float64bits(w) && !(g != g && w != w) {
				t.Fatalf("n %d: dot64 = %g, want %g", n, g, w)
			}
			if g, w := sum64(z), sum64Go(z); math.Float64bits(g) != math.Float64bits(w) && !(g != g && w != w) {
				t.Fatalf("n %d: sum64 = %g, want %g", n, g, w)
			}
			z2 := append([]float32(nil), z...)
			a, gq := acceptRow(z, pt, inv)
			a2, gq2 := acceptRowGo(z2, pt, inv)
			sameBits(t, "acceptRow q", z, z2)
			if math.Float64bits(a) != math.Float64bits(a2) && !(a != a && a2 != a2) || math.Float64bits(gq) != math.Float64bits(gq2) && !(gq != gq && gq2 != gq2) {
				t.Fatalf("n %d: acceptRow = %g, %g; want %g, %g", n, a, gq, a2, gq2)
			}
			acceptGrad(z, pt, 0.7, 1.3, float32(gq))
			acceptGradGo(z2, pt, 0.7, 1.3, float32(gq2))
			sameBits(t, "acceptGrad", z, z2)

			gate, up, dout := exactInputs(r, n, s/10), exactInputs(r, n, 1), exactInputs(r, n, 1)
			dg, du := exactInputs(r, n, 1), exactInputs(r, n, 1)
			dg2, du2 := append([]float32(nil), dg...), append([]float32(nil), du...)
			SwiGLUBackward(dg, du, dout, gate, up)
			SwiGLUBackwardGo(dg2, du2, dout, gate, up)
			sameBits(t, "SwiGLUBackward dgate", dg, dg2)
			sameBits(t, "SwiGLUBackward dup", du, du2)

			for _, st := range []backend.AdamWStep{{Decay: 1, Beta1: 0.9, Beta2: 0.999, StepSize: 1e-3, SqrtBC2: 0.03, Eps: 1e-8},
				{Decay: 0.9999, Beta1: 0.8, Beta2: 0.95, StepSize: 3e-4, SqrtBC2: 1, Eps: 1e-6}} {
				p, g := exactInputs(r, n, 1), exactInputs(r, n, s/100)
				mo, v := exactInputs(r, n, 0.01), make([]float32, n)
				for i := range v {
					v[i] = float32(math.Abs(r.NormFloat64()) * 1e-4)
				}
				p2, m2, v2 := append([]float32(nil), p...), append([]float32(nil), mo...), append([]float32(nil), v...)
				AdamW(p, g, mo, v, st)
				AdamWGo(p2, g, m2, v2, st)
				sameBits(t, "AdamW p", p, p2)
				sameBits(t, "AdamW m", mo, m2)
				sameBits(t, "AdamW v", v, v2)
			}
		}
	}
}

// GatherSoftmax must give GatherSoftmaxGo's teacher probabilities bit for bit: rows whose exponentials span
// float64's subnormals and underflow, with -Inf, NaN and tied logits.
func TestGatherSoftmaxMatchesGo(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, v := range []int{1, 9, 100, 5000} {
		for _, s := range []float64{2, 100, 300, 1e37} {
			for _, nan := range []bool{false, true} {
				z := exactInputs(r, v, s)
				for i := range z {
					if !nan && (z[i] != z[i] || math.IsInf(float64(z[i]), 1)) {
						z[i] = 1 // a row of finite maxima: probabilities across the whole range
					}
				}
				ids := make([]int64, 0, v)
				for j := range v {
					if r.IntN(3) > 0 || j == 0 {
						ids = append(ids, int64(j))
					}
				}
				got, want := make([]float32, len(ids)), make([]float32, len(ids))
				if g, w := GatherSoftmax(got, z, ids), GatherSoftmaxGo(want, z, ids); g != w {
					t.Fatalf("v %d scale %g: argmax %d, want %d", v, s, g, w)
				}
				sameBits(t, "GatherSoftmax", got, want)
			}
		}
	}
}
