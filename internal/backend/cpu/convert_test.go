//go:build cgo

package cpu_test

import (
	"math/rand/v2"
	"testing"

	"github.com/specforge/specforge/internal/tensor"
)

// Convert rounds on the AVX512-BF16 conversion where the CPU has it and widens in Go: both must give the
// purego backend's bits (normal values; the hardware flushes float32 subnormals, which random normals
// never are).
func TestConvertAgrees(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{1, 31, 32, 33, 1000, 100003} {
		src := randn(r, n)
		var bits [2][]byte
		for i, be := range []interface {
			Convert(dst, src tensor.Tensor)
		}{backends.cpu, backends.ref} {
			bits[i] = make([]byte, 2*n)
			dst, err := tensor.FromBytes(tensor.BF16, tensor.Host, bits[i], n)
			if err != nil {
				t.Fatal(err)
			}
			be.Convert(dst, f32(src))
			back := make([]float32, n)
			be.Convert(f32(back), dst)
			for j := range back {
				if d := back[j] - src[j]; d > 0x1p-8*abs(src[j]) || -d > 0x1p-8*abs(src[j]) {
					t.Fatalf("n=%d: %g rounds to %g, more than half a bf16 ulp away", n, src[j], back[j])
				}
			}
		}
		for j := range bits[0] {
			if bits[0][j] != bits[1][j] {
				t.Fatalf("n=%d: cpu and purego round element %d differently", n, j/2)
			}
		}
	}
}

func abs(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}
