package purego

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/tensor"
)

// halfTensor rounds x to dtype d (BF16 or F16) as a tensor of the given shape, and returns the values it
// holds, widened.
func halfTensor(d tensor.DType, x []float32, dims ...int) (tensor.Tensor, []float32) {
	bits := make([]uint16, len(x))
	wide := make([]float32, len(x))
	if d == tensor.BF16 {
		half.F32ToBF16(bits, x)
		half.BF16ToF32(wide, bits)
	} else {
		half.F32ToF16(bits, x)
		half.F16ToF32(wide, bits)
	}
	raw := make([]byte, 2*len(bits))
	for i, b := range bits {
		raw[2*i], raw[2*i+1] = byte(b), byte(b>>8)
	}
	t, err := tensor.FromBytes(d, tensor.Host, raw, dims...)
	if err != nil {
		panic(err)
	}
	return t, wide
}

// operand is x as a product reads it next to a 16-bit operand of dtype d: rounded to bf16 when d is BF16.
func operand(d tensor.DType, x []float32) []float32 {
	if d != tensor.BF16 {
		return x
	}
	r := make([]float32, len(x))
	half.RoundToBF16(r, x)
	return r
}

// near fails unless got matches the float64 sum want within float32 summation error: k products of
// magnitude up to scale each rounded once, so a few ulps of k*scale.
func near(t *testing.T, name string, got float32, want, scale float64, k int) {
	t.Helper()
	if d := math.Abs(float64(got) - want); d > 4*float64(k)*scale*0x1p-24+1e-30 || math.IsNaN(float64(got)) {
		t.Fatalf("%s = %g, want %g (diff %g)", name, got, want, math.Abs(float64(got)-want))
	}
}

// TestLinearHalfIsWidenedProduct: a BF16 Linear prepared for BF16Product equals the f32 product of the
// widened weight and the bf16-rounded activations; for F32Product, and with an F16 weight, that of the
// widened weight and the activations as they are. Weights of one tile, a tile and a row, and several tiles.
func TestLinearHalfIsWidenedProduct(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	b := New()
	for _, c := range []struct {
		d tensor.DType
		p backend.Product
	}{{tensor.BF16, backend.BF16Product}, {tensor.BF16, backend.F32Product}, {tensor.F16, backend.BF16Product}, {tensor.F16, backend.F32Product}} {
		d := c.d
		for _, s := range []struct{ rows, out, in int }{{1, 7, 11}, {3, tileRows, 40}, {9, tileRows + 1, 33}, {2, 3*tileRows + 5, 17}} {
			t.Run(fmt.Sprintf("%s_%v_%dx%dx%d", d, c.p, s.rows, s.out, s.in), func(t *testing.T) {
				w, wide := halfTensor(d, randn(r, s.out*s.in), s.out, s.in)
				pw, err := b.PrepareWeight(w, s.out, s.in, c.p)
				if err != nil {
					t.Fatal(err)
				}
				x, y0 := randn(r, s.rows*s.in), randn(r, s.rows*s.out)
				xr := x
				if c.p == backend.BF16Product {
					xr = operand(d, x)
				}
				for _, acc := range []bool{false, true} {
					y := append([]float32(nil), y0...)
					b.Linear(tensor.FromF32(y), tensor.FromF32(x), pw, s.rows, acc)
					for i := range s.rows {
						for o := range s.out {
							var want, scale float64
							if acc {
								want, scale = float64(y0[i*s.out+o]), math.Abs(float64(y0[i*s.out+o]))
							}
							for k := range s.in {
								p := float64(xr[i*s.in+k]) * float64(wide[o*s.in+k])
								want, scale = want+p, max(scale, math.Abs(p))
							}
							near(t, fmt.Sprintf("acc %v: y[%d,%d]", acc, i, o), y[i*s.out+o], want, scale, s.in+1)
						}
					}
				}
			})
		}
	}
	if _, err := b.PrepareWeight(tensor.FromF32(make([]float32, 4)).Reshape(2, 2), 2, 2, backend.BF16Product); err != nil {
		t.Errorf("an F32 weight: %v", err)
	}
	i8, err := tensor.FromBytes(tensor.I8, tensor.Host, make([]byte, 4), 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.PrepareWeight(i8, 2, 2, backend.F32Product); err == nil {
		t.Error("an I8 weight must be refused")
	}
}

// TestMatMulHalfIsWidenedProduct checks MatMul with a 16-bit a, b or both, in every transposition, with
// padded strides and shapes whose tiled dimension spans several tiles (the k-split tiles accumulate).
func TestMatMulHalfIsWidenedProduct(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	b := New()
	for _, c := range []struct {
		m, n, k        int
		transA, transB bool
		halfA, halfB   tensor.DType
		beta           float32
	}{
		{3, 5, 2*tileRows + 3, false, false, "", tensor.BF16, 0.5},
		{tileRows + 2, 4, 7, false, true, "", tensor.BF16, 0},
		{2, tileRows + 9, 6, true, true, "", tensor.F16, 1},
		{5, 3, tileRows + 1, true, false, "", tensor.BF16, 1},
		{tileRows + 4, 6, 5, false, false, tensor.BF16, "", 0.5},
		{4, 3, tileRows + 7, false, true, tensor.F16, "", 0},
		{6, 2, tileRows + 3, true, false, tensor.BF16, "", 1},
		{tileRows + 1, 5, 4, true, true, tensor.BF16, "", 0},
		{7, 9, 150, false, true, tensor.F16, tensor.BF16, 1},
		{4, 0, 3, false, false, "", tensor.BF16, 1},
		{4, 3, 0, false, false, "", tensor.BF16, 0.5},
	} {
		t.Run(fmt.Sprintf("%dx%dx%d_tA%v_tB%v_%s_%s", c.m, c.n, c.k, c.transA, c.transB, c.halfA, c.halfB), func(t *testing.T) {
			ar, ac, br, bc := c.m, c.k, c.k, c.n
			if c.transA {
				ar, ac = c.k, c.m
			}
			if c.transB {
				br, bc = c.n, c.k
			}
			lda, ldb, ldc := ac+2, bc+1, c.n+3
			av, bv := randn(r, ar*lda), randn(r, br*ldb)
			at, bt := tensor.FromF32(av), tensor.FromF32(bv)
			tiledBF16 := c.halfB == tensor.BF16 || (c.halfB == "" && c.halfA == tensor.BF16)
			if c.halfA != "" {
				at, av = halfTensor(c.halfA, av, len(av))
			} else if tiledBF16 {
				av = operand(tensor.BF16, av)
			}
			if c.halfB != "" {
				bt, bv = halfTensor(c.halfB, bv, len(bv))
			} else if tiledBF16 {
				bv = operand(tensor.BF16, bv)
			}
			c0 := randn(r, c.m*ldc)
			got := append([]float32(nil), c0...)
			b.MatMul(c.transA, c.transB, c.m, c.n, c.k, 0.75, at, lda, bt, ldb, c.beta, tensor.FromF32(got), ldc)
			for i := range c.m {
				for j := range c.n {
					want := float64(c.beta) * float64(c0[i*ldc+j])
					scale := math.Abs(want)
					for p := range c.k {
						ai, bi := i*lda+p, p*ldb+j
						if c.transA {
							ai = p*lda + i
						}
						if c.transB {
							bi = j*ldb + p
						}
						prod := 0.75 * float64(av[ai]) * float64(bv[bi])
						want, scale = want+prod, max(scale, math.Abs(prod))
					}
					near(t, fmt.Sprintf("c[%d,%d]", i, j), got[i*ldc+j], want, scale, c.k+1)
				}
				for j := c.n; j < ldc; j++ {
					if got[i*ldc+j] != c0[i*ldc+j] {
						t.Fatalf("padding c[%d,%d] written", i, j)
					}
				}
			}
		})
	}
}

// TestEmbeddingHalf: the rows of a 16-bit table are widened exactly.
func TestEmbeddingHalf(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	dim, ids := 24, []int32{3, 0, 9, 3}
	for _, d := range []tensor.DType{tensor.BF16, tensor.F16} {
		table, wide := halfTensor(d, randn(r, 10*dim), 10, dim)
		out := make([]float32, len(ids)*dim)
		New().Embedding(tensor.FromF32(out), table, ids, dim)
		for i, id := range ids {
			for j := range dim {
				if out[i*dim+j] != wide[int(id)*dim+j] {
					t.Fatalf("%s: out[%d,%d] = %g, want %g", d, i, j, out[i*dim+j], wide[int(id)*dim+j])
				}
			}
		}
	}
}
