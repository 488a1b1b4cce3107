// Package half converts between float32 and the 16-bit float formats that checkpoints store:
// bfloat16 (the top half of a float32) and IEEE 754 binary16.
package half

import (
	"math"

	"github.com/specforge/specforge/internal/parallel"
	"github.com/x448/float16"
)

const grain = 1 << 14

// BF16ToF32 widens bfloat16 bit patterns to float32; exact.
func BF16ToF32(dst []float32, src []uint16) {
	parallel.For(len(src), grain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = math.Float32frombits(uint32(src[i]) << 16)
		}
	})
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

// F16ToF32 widens IEEE binary16 bit patterns to float32; exact, subnormals included.
func F16ToF32(dst []float32, src []uint16) {
	parallel.For(len(src), grain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = float16.Frombits(src[i]).Float32()
		}
	})
}

// F32ToF16 rounds float32 values to binary16 (nearest, ties to even; overflow becomes infinity).
func F32ToF16(dst []uint16, src []float32) {
	parallel.For(len(src), grain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = float16.Fromfloat32(src[i]).Bits()
		}
	})
}
