package draft

import (
	"fmt"
	"math"
	"testing"

	"github.com/specforge/specforge/internal/tensor"
)

// A workspace carries buffers from one TTT call to the next, and a call may not read what the one before
// left in them: TTT on a batch after another batch, in the same workspace, must give a fresh workspace's
// losses and gradients bit for bit, in both precisions and for every draft variant (a second batch of
// other lengths makes every buffer change size or keep stale contents past its new end).
func TestWorkspaceReuseIsExact(t *testing.T) {
	const K = 3
	for _, v := range draftVariants {
		for _, precision := range []tensor.DType{tensor.F32, tensor.BF16} {
			t.Run(fmt.Sprint(v.name, precision), func(t *testing.T) {
				d := randomDraft(t, 5, v.edit)
				first, second := randomBatch(t, d, []int{21, 9, 14}, 3), randomBatch(t, d, []int{17, 12}, 4)
				reused := &Workspace{Precision: precision}
				g := NewWeights(&d.Config)
				if _, err := d.TTT(first, K, &g, reused, 1); err != nil {
					t.Fatal(err)
				}
				gotGrad, wantGrad := NewWeights(&d.Config), NewWeights(&d.Config)
				got, err := d.TTT(second, K, &gotGrad, reused, 1)
				if err != nil {
					t.Fatal(err)
				}
				want, err := d.TTT(second, K, &wantGrad, &Workspace{Precision: precision}, 1)
				if err != nil {
					t.Fatal(err)
				}
				for k := range K {
					if math.Float64bits(got.Loss[k]) != math.Float64bits(want.Loss[k]) || math.Float64bits(got.Acc[k]) != math.Float64bits(want.Acc[k]) {
						t.Fatalf("step %d: loss %v acc %v after another batch, %v %v fresh", k, got.Loss[k], got.Acc[k], want.Loss[k], want.Acc[k])
					}
				}
				gs, ws := gotGrad.Slices(&d.Config), wantGrad.Slices(&d.Config)
				for i := range gs {
					for j := range gs[i] {
						if math.Float32bits(gs[i][j]) != math.Float32bits(ws[i][j]) {
							t.Fatalf("gradient %d[%d] = %g after another batch, %g fresh", i, j, gs[i][j], ws[i][j])
						}
					}
				}
			})
		}
	}
}
