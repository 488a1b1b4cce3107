// Package half converts between float32 and the 16-bit float formats that checkpoints store:
// bfloat16 (the top half of a float32) and IEEE 754 binary16.
package half

import (
	"fmt"
	"math"

	"github.com/specforge/specforge/internal/parallel"
	"github.com/specforge/specforge/internal/tensor"
	"github.com/x448/float16"
)

// grain is the size of the pieces the conversions split into across cores. Slices of at most one grain
// convert on the caller without building the closure parallel.For needs, so converting a row or a tile
// allocates nothing.
const grain = 1 << 14

// BF16ToF32 widens bfloat16 bit patterns to float32; exact.
func BF16ToF32(dst []float32, src []uint16) {
	if len(src) <= grain {
		bf16ToF32(dst, src)
		return
	}
	parallel.For(len(src), grain, func(lo, hi int) { bf16ToF32(dst[lo:hi], src[lo:hi]) })
}

func bf16ToF32(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, b := range src {
		dst[i] = math.Float32frombits(uint32(b) << 16)
	}
}

// F32ToBF16 rounds float32 values to bfloat16 (round to nearest, ties to even; NaN stays NaN), as PyTorch's
// tensor.to(torch.bfloat16) does.
func F32ToBF16(dst []uint16, src []float32) {
	parallel.For(len(src), grain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = BF16FromF32(src[i])
		}
	})
}

// BF16FromF32 rounds one float32 to bfloat16 bits.
func BF16FromF32(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep it quiet and a NaN
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// RoundBF16 returns f rounded to the nearest bfloat16 value, as a float32.
func RoundBF16(f float32) float32 {
	return math.Float32frombits(uint32(BF16FromF32(f)) << 16)
}

// RoundToBF16 rounds each float32 of src to the nearest bfloat16 value (as RoundBF16), kept as float32:
// the activation operand of a bf16 product.
func RoundToBF16(dst, src []float32) {
	if len(src) <= grain {
		roundToBF16(dst, src)
		return
	}
	parallel.For(len(src), grain, func(lo, hi int) { roundToBF16(dst[lo:hi], src[lo:hi]) })
}

func roundToBF16(dst, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = RoundBF16(v)
	}
}

// F16ToF32 widens IEEE binary16 bit patterns to float32; exact, subnormals included.
func F16ToF32(dst []float32, src []uint16) {
	if len(src) <= grain {
		f16ToF32(dst, src)
		return
	}
	parallel.For(len(src), grain, func(lo, hi int) { f16ToF32(dst[lo:hi], src[lo:hi]) })
}

func f16ToF32(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, b := range src {
		dst[i] = float16.Frombits(b).Float32()
	}
}

// F32ToF16 rounds float32 values to binary16 (nearest, ties to even; overflow becomes infinity).
func F32ToF16(dst []uint16, src []float32) {
	parallel.For(len(src), grain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = float16.Fromfloat32(src[i]).Bits()
		}
	})
}

// Widen returns the values of an F32, BF16 or F16 tensor as float32: an F32 tensor's data as it is (no
// copy), a 16-bit tensor's widened into a new slice (nil for the nil tensor). It is for small tensors and
// samples: the matrices of a checkpoint stay as stored, and the backends widen them tile by tile.
func Widen(t tensor.Tensor) ([]float32, error) {
	switch t.DType() {
	case tensor.F32, "":
		return t.F32(), nil
	case tensor.BF16:
		out := make([]float32, t.Len())
		BF16ToF32(out, t.Bits16())
		return out, nil
	case tensor.F16:
		out := make([]float32, t.Len())
		F16ToF32(out, t.Bits16())
		return out, nil
	}
	return nil, fmt.Errorf("widen %v: dtype %s, want F32, BF16 or F16", t, t.DType())
}
