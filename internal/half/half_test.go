package half

import (
	"math"
	"testing"

	"github.com/specforge/specforge/internal/tensor"
)

func TestBF16RoundTrip(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{-2, 0xc000},
		{0, 0},
		{float32(math.Inf(1)), 0x7f80},
		// 1 + 2^-8 is exactly halfway between 1 and 1+2^-7: ties to even gives 1.
		{math.Float32frombits(0x3f808000), 0x3f80},
		// 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6: ties to even rounds up.
		{math.Float32frombits(0x3f818000), 0x3f82},
		{math.Float32frombits(0x3f808001), 0x3f81},
		{math.MaxFloat32, 0x7f80}, // rounds to infinity, like PyTorch
	}
	for _, c := range cases {
		if got := BF16FromF32(c.in); got != c.want {
			t.Errorf("BF16FromF32(%g) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	if b := BF16FromF32(float32(math.NaN())); math.Float32frombits(uint32(b)<<16) == math.Float32frombits(uint32(b)<<16) {
		t.Errorf("NaN became %#04x, not a NaN", b)
	}
	src := []uint16{0x3f80, 0xc049, 0x0001, 0x7f80}
	dst := make([]float32, len(src))
	BF16ToF32(dst, src)
	back := make([]uint16, len(src))
	F32ToBF16(back, dst)
	for i := range src {
		if back[i] != src[i] {
			t.Errorf("bf16 %#04x -> %g -> %#04x", src[i], dst[i], back[i])
		}
	}
}

func TestRoundToBF16(t *testing.T) {
	src := []float32{1, math.Float32frombits(0x3f808000), math.Float32frombits(0x3f818000), -3.3e-5, float32(math.Inf(-1))}
	dst := make([]float32, len(src))
	RoundToBF16(dst, src)
	for i, v := range src {
		if want := math.Float32frombits(uint32(BF16FromF32(v)) << 16); dst[i] != want {
			t.Errorf("RoundToBF16(%g) = %g, want %g", v, dst[i], want)
		}
	}
}

func TestF16(t *testing.T) {
	cases := []struct {
		bits uint16
		want float32
	}{
		{0x3c00, 1},
		{0xc000, -2},
		{0x7bff, 65504},
		{0x0001, 5.960464477539063e-08}, // smallest subnormal
		{0x3555, 0.333251953125},
	}
	src := make([]uint16, len(cases))
	for i, c := range cases {
		src[i] = c.bits
	}
	dst := make([]float32, len(src))
	F16ToF32(dst, src)
	for i, c := range cases {
		if dst[i] != c.want {
			t.Errorf("f16 %#04x = %g, want %g", c.bits, dst[i], c.want)
		}
	}
	back := make([]uint16, len(dst))
	F32ToF16(back, dst)
	for i := range src {
		if back[i] != src[i] {
			t.Errorf("f16 round trip %#04x -> %#04x", src[i], back[i])
		}
	}
}

func TestWiden(t *testing.T) {
	x := []float32{1.5, -2, 0.25}
	if got, err := Widen(tensor.FromF32(x)); err != nil || &got[0] != &x[0] {
		t.Errorf("an F32 tensor must come back as it is: %v, %v", got, err)
	}
	for _, d := range []tensor.DType{tensor.BF16, tensor.F16} {
		bits := make([]uint16, len(x))
		if d == tensor.BF16 {
			F32ToBF16(bits, x)
		} else {
			F32ToF16(bits, x)
		}
		raw := make([]byte, 2*len(bits))
		for i, b := range bits {
			raw[2*i], raw[2*i+1] = byte(b), byte(b>>8)
		}
		h, err := tensor.FromBytes(d, tensor.Host, raw, len(x))
		if err != nil {
			t.Fatal(err)
		}
		got, err := Widen(h)
		if err != nil || len(got) != len(x) {
			t.Fatalf("%s: %v, %v", d, got, err)
		}
		for i := range x {
			if got[i] != x[i] { // every value is exact in both formats
				t.Errorf("%s: [%d] = %g, want %g", d, i, got[i], x[i])
			}
		}
	}
	i8, err := tensor.FromBytes(tensor.I8, tensor.Host, make([]byte, 2), 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Widen(i8); err == nil {
		t.Error("an I8 tensor must be refused")
	}
}
