//go:build cgo

package bfgemm

import (
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/specforge/specforge/internal/blas"
	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/tensor"
)

func needKernels(t testing.TB) {
	if !Available() {
		t.Skip("this CPU has no AVX512-BF16; backend tests cover the fallback")
	}
}

// operands holds a matrix as float32 and as its bf16 rounding, in both tensor forms.
type testMatrix struct {
	f32     []float32
	rounded []float32 // f32 rounded to bf16, widened back
	bits    []uint16
}

func newTestMatrix(r *rand.Rand, n int) testMatrix {
	o := testMatrix{f32: make([]float32, n), rounded: make([]float32, n), bits: make([]uint16, n)}
	for i := range o.f32 {
		o.f32[i] = float32(r.NormFloat64())
	}
	half.F32ToBF16(o.bits, o.f32)
	half.BF16ToF32(o.rounded, o.bits)
	return o
}

func (o testMatrix) tensor(bf16 bool) tensor.Tensor {
	if !bf16 {
		return tensor.FromF32(o.f32)
	}
	raw := make([]byte, 2*len(o.bits))
	for i, v := range o.bits {
		raw[2*i], raw[2*i+1] = byte(v), byte(v>>8)
	}
	t, err := tensor.FromBytes(tensor.BF16, tensor.Host, raw, len(o.bits))
	if err != nil {
		panic(err)
	}
	return t
}

// reference computes alpha*op(a)*op(b) + beta*c in float64 from the bf16-rounded operands, and the bound
// of a float32 sum of k products: k * 2^-23 * sum |products| (plus the rounding of alpha, beta and c).
func reference(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) (want, bound []float64) {
	want, bound = make([]float64, m*n), make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, abs float64
			for p := 0; p < k; p++ {
				ai, bi := i*lda+p, p*ldb+j
				if transA {
					ai = p*lda + i
				}
				if transB {
					bi = j*ldb + p
				}
				av, bv := a[ai], b[bi]
				s += float64(av) * float64(bv)
				abs += math.Abs(float64(av) * float64(bv))
			}
			cv := float64(c[i*ldc+j])
			want[i*n+j] = float64(alpha)*s + float64(beta)*cv
			bound[i*n+j] = (float64(k)+2)*0x1p-23*(math.Abs(float64(alpha))*abs+math.Abs(float64(beta)*cv)) + 1e-30
		}
	}
	return want, bound
}

// forEachKernel runs f on the AVX512-BF16 kernels and, where the CPU has them, on the AMX ones.
func forEachKernel(t *testing.T, f func(t *testing.T, amxOn bool)) {
	needKernels(t)
	kernels := []bool{false}
	if amx {
		kernels = append(kernels, true)
	}
	for _, on := range kernels {
		t.Run(map[bool]string{false: "avx512bf16", true: "amx"}[on], func(t *testing.T) {
			defer setAMX(setAMX(on))
			f(t, on)
		})
	}
}

func TestGemmMatchesReference(t *testing.T) { forEachKernel(t, testGemmMatchesReference) }

func testGemmMatchesReference(t *testing.T, _ bool) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		transA, transB bool
		m, n, k        int
		alpha, beta    float32
	}{
		{false, true, 1, 1, 1, 1, 0},
		{false, true, 3, 37, 5, 1, 0},
		{false, true, 13, 70, 257, 1, 1},
		{false, false, 25, 33, 300, 0.5, 0},
		{true, false, 17, 65, 513, 1, 0.25},
		{true, true, 12, 32, 256, 2, 1},
		{false, true, 400, 100, 600, 1, 0},    // more rows than columns: the rows split across goroutines
		{false, true, 100, 300, 700, 1, 0.5},  // the columns split, sharing one packing of A
		{false, false, 60, 200, 2500, 1, 1},   // the same with k over two blocks
		{false, true, 300, 70, 4500, 1, 0.5},  // AMX: k over three blocks, rows over three panel sets
		{true, false, 40, 290, 2100, 1, 0},    // AMX: a transposed A transposed into rows, two k blocks
		{true, false, 300, 1100, 131, 1, 0.5}, // B packed 512 columns at a time, two A blocks, an odd k
		{false, false, 40, 1300, 77, 1, 0},    // few rows by a B stored [k, n] over several column chunks
		{false, true, 700, 600, 65, 1, 1},     // the rows split, each over two column chunks
	} {
		for _, bfA := range []bool{false, true} {
			for _, bfB := range []bool{false, true} {
				lda, ldb, ldc := c.k+3, c.n+1, c.n+2
				if c.transA {
					lda = c.m + 3
				}
				if c.transB {
					ldb = c.k + 1
				}
				rowsA, rowsB := c.m, c.k
				if c.transA {
					rowsA = c.k
				}
				if c.transB {
					rowsB = c.n
				}
				a, b := newTestMatrix(r, rowsA*lda), newTestMatrix(r, rowsB*ldb)
				out := make([]float32, c.m*ldc)
				for i := range out {
					out[i] = float32(r.NormFloat64())
				}
				want, bound := reference(c.transA, c.transB, c.m, c.n, c.k, c.alpha, a.rounded, lda, b.rounded, ldb, c.beta, out, ldc)
				Gemm(c.transA, c.transB, c.m, c.n, c.k, c.alpha, a.tensor(bfA), lda, b.tensor(bfB), ldb, c.beta, out, ldc)
				for i := 0; i < c.m; i++ {
					for j := 0; j < c.n; j++ {
						if d := math.Abs(float64(out[i*ldc+j]) - want[i*c.n+j]); !(d <= bound[i*c.n+j]) {
							t.Fatalf("%+v bf16 a=%v b=%v: c[%d,%d] = %g, want %g (bound %g)", c, bfA, bfB, i, j, out[i*ldc+j], want[i*c.n+j], bound[i*c.n+j])
						}
					}
				}
			}
		}
	}
}

// A row's result must not depend on how many rows share the product, nor on which columns a call
// covers: a speculative verification of several tokens must equal one-token steps bit for bit. That holds
// up to FewRows rows by a bf16 weight (dot products) and for any row count in packed products (an f32
// weight, or more rows).
// On AMX every row count takes the same path.
func TestGemmRowsAndColumnsIndependent(t *testing.T) {
	forEachKernel(t, testGemmRowsAndColumnsIndependent)
}

func testGemmRowsAndColumnsIndependent(t *testing.T, amxOn bool) {
	r := rand.New(rand.NewPCG(3, 4))
	const n, k = 300, 1000
	w := newTestMatrix(r, n*k)
	cases := []struct {
		bf16 bool
		rows []int
	}{{true, []int{2, 5, 12, 13, 30, FewRows}}, {false, []int{2, 13, 30, FewRows + 1, 500}}}
	if amxOn {
		cases[0].rows = append(cases[0].rows, FewRows+1, 500)
	}
	for _, c := range cases {
		wt := w.tensor(c.bf16)
		for _, m := range c.rows {
			x := newTestMatrix(r, m*k)
			all := make([]float32, m*n)
			Gemm(false, true, m, n, k, 1, x.tensor(false), k, wt, k, 0, all, n)
			one := make([]float32, n)
			for i := 0; i < m; i++ {
				Gemm(false, true, 1, n, k, 1, tensor.FromF32(x.f32[i*k:(i+1)*k]), k, wt, k, 0, one, n)
				for j := range one {
					if one[j] != all[i*n+j] {
						t.Fatalf("bf16 weight %v, m=%d: row %d col %d alone %g, in the product %g", c.bf16, m, i, j, one[j], all[i*n+j])
					}
				}
			}
		}
	}
}

// A product's bits must not depend on how many cores share it: with more rows than columns the rows
// are split across goroutines, and a goroutine's share of 64 or fewer rows must not take the dot products
// that only a product of so few rows takes.
func TestGemmDoesNotDependOnCores(t *testing.T) { forEachKernel(t, testGemmDoesNotDependOnCores) }

func testGemmDoesNotDependOnCores(t *testing.T, _ bool) {
	r := rand.New(rand.NewPCG(7, 8))
	const m, n, k = 2*FewRows - 8, 40, 300 // shares of at most FewRows rows on two or more cores
	x, w := newTestMatrix(r, m*k), newTestMatrix(r, n*k)
	xt, wt := x.tensor(false), w.tensor(true)
	product := func(procs int) []float32 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		c := make([]float32, m*n)
		Gemm(false, true, m, n, k, 1, xt, k, wt, k, 0, c, n)
		return c
	}
	one, all := product(1), product(max(2, runtime.NumCPU()))
	for i := range one {
		if one[i] != all[i] {
			t.Fatalf("c[%d, %d] = %g on one core, %g on %d", i/n, i%n, one[i], all[i], max(2, runtime.NumCPU()))
		}
	}
}

// BenchmarkPeak is the bf16 product peak of this CPU on every core, the yardstick of BenchmarkGemm's
// GFLOP/s: register-only vdpbf16ps (avx512bf16) and register-only AMX tile products (amx), then the AMX
// tile products fed by loads from regions that stay in L1 (16 KiB each) or in L2 (512 KiB each), or with
// one operand from each: the most a product kernel can reach when its tiles come from those caches.
func BenchmarkPeak(b *testing.B) {
	needKernels(b)
	workers := runtime.GOMAXPROCS(0)
	b.Run("avx512bf16", func(b *testing.B) {
		for b.Loop() {
			var wg sync.WaitGroup
			for range workers {
				wg.Go(runPeak)
			}
			wg.Wait()
		}
		b.ReportMetric(float64(workers)*peakRounds*24*64*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
	r := rand.New(rand.NewPCG(11, 12))
	for _, s := range []struct {
		name       string
		aKiB, bKiB int
	}{{"amx", 0, 0}, {"amx_L1", 16, 16}, {"amx_L1_L2", 16, 512}, {"amx_L2", 512, 512}} {
		b.Run(s.name, func(b *testing.B) {
			needKernels(b)
			if !amx {
				b.Skip("this CPU has no AMX-BF16")
			}
			defer setAMX(setAMX(true))
			operands := make([][2][]uint16, workers)
			for w := range operands {
				for i, kib := range []int{s.aKiB, s.bKiB} {
					x := newTestMatrix(r, max(kib*512, 1024))
					operands[w][i] = x.bits
				}
			}
			for b.Loop() {
				var wg sync.WaitGroup
				for w := range workers {
					wg.Go(func() { runAMX(operands[w][0], operands[w][1]) })
				}
				wg.Wait()
			}
			b.ReportMetric(float64(workers)*amxRounds*4*16384*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

func BenchmarkGemm(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, s := range []struct {
		name    string
		m, n, k int
	}{{"prefill_512x2048x2048", 512, 2048, 2048}, {"prefill_1024x4096x4096", 1024, 4096, 4096}, {"decode_1x4096x4096", 1, 4096, 4096}, {"verify_8x4096x4096", 8, 4096, 4096},
		{"expert_64x768x2048", 64, 768, 2048}, {"lmhead_1024x32000x2048", 1024, 32000, 2048},
		{"lmhead_1024x151936x2048", 1024, 151936, 2048}} {
		x := newTestMatrix(r, s.m*s.k)
		w := newTestMatrix(r, s.n*s.k)
		c := make([]float32, s.m*s.n)
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		wt, xt := w.tensor(true), x.tensor(false)
		benchKernels(b, s.name, flops, func() { Gemm(false, true, s.m, s.n, s.k, 1, xt, s.k, wt, s.k, 0, c, s.n) })
		b.Run(s.name+"/sgemm", func(b *testing.B) {
			for b.Loop() {
				blas.Sgemm(false, true, s.m, s.n, s.k, 1, x.f32, s.k, w.f32, s.k, 0, c, s.n)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

func TestRoundMatchesHalf(t *testing.T) {
	needKernels(t)
	r := rand.New(rand.NewPCG(7, 8))
	src := make([]float32, 1000)
	for i := range src {
		src[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(20)-10)))
	}
	// Ties (exactly half a bf16 ulp above a value with an even and an odd last bit), infinities, NaN.
	src[0], src[1] = math.Float32frombits(0x3f808000), math.Float32frombits(0x3f818000)
	src[2], src[3], src[4] = float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())
	got, want := make([]uint16, len(src)), make([]uint16, len(src))
	Round(got, src)
	half.F32ToBF16(want, src)
	for i := range src {
		if got[i] != want[i] && !(math.IsNaN(float64(src[i])) && got[i]&0x7f80 == 0x7f80 && got[i]&0x7f != 0) {
			t.Fatalf("Round(%g) = %#04x, want %#04x", src[i], got[i], want[i])
		}
	}
}

// BenchmarkGemmTraining runs the other layouts of a training step's products, at the 1B-shaped draft's
// sizes (T = 1024 tokens): a weight gradient dy^T x (a transposed bf16 A, a float32 B), an input gradient
// dy w (the weight read along its rows), the lm_head's input gradient over 32,000 columns and one block
// of attention scores q k^T in float32 operands (draft_small's heads).
func BenchmarkGemmTraining(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, s := range []struct {
		name           string
		transA, transB bool
		bfA, bfB       bool
		m, n, k        int
	}{{"wgrad_8192x2048x1024", true, false, true, false, 8192, 2048, 1024},
		{"wgrad_2048x8192x1024", true, false, true, false, 2048, 8192, 1024},
		{"dgrad_1024x2048x8192", false, false, true, true, 1024, 2048, 8192},
		{"dgrad_176x2048x32000", false, false, true, true, 176, 2048, 32000},
		{"scores_256x512x64", false, true, false, false, 256, 512, 64}} {
		lda, ldb := s.k, s.n
		if s.transA {
			lda = s.m
		}
		if s.transB {
			ldb = s.k
		}
		x, y := newTestMatrix(r, s.m*s.k), newTestMatrix(r, s.k*s.n)
		c := make([]float32, s.m*s.n)
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		at, bt := x.tensor(s.bfA), y.tensor(s.bfB)
		benchKernels(b, s.name, flops, func() { Gemm(s.transA, s.transB, s.m, s.n, s.k, 1, at, lda, bt, ldb, 0, c, s.n) })
	}
}

// benchKernels runs product, of flops operations, on the AVX512-BF16 kernels (name/avx512bf16) and on the
// AMX ones where the CPU has them (name/amx), and reports GFLOP/s.
func benchKernels(b *testing.B, name string, flops float64, product func()) {
	for _, on := range []bool{false, true} {
		b.Run(name+map[bool]string{false: "/avx512bf16", true: "/amx"}[on], func(b *testing.B) {
			needKernels(b)
			if on && !amx {
				b.Skip("this CPU has no AMX-BF16")
			}
			defer setAMX(setAMX(on))
			for b.Loop() {
				product()
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
