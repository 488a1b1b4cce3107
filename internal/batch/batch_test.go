package batch

import (
	"slices"
	"testing"
)

func TestNew(t *testing.T) {
	for _, c := range []struct {
		lens []int
		T    int
		mask []bool
	}{
		{[]int{3, 1, 2}, 3, []bool{true, true, true, true, false, false, true, true, false}},
		{[]int{2}, 2, []bool{true, true}},
		{[]int{0, 1}, 1, []bool{false, true}},
		{nil, 0, []bool{}},
	} {
		p := New(c.lens)
		N := len(c.lens) * c.T
		if p.B != len(c.lens) || p.T != c.T || !slices.Equal(p.AttentionMask, c.mask) || !slices.Equal(p.Lens, c.lens) {
			t.Errorf("New(%v) = %d x %d, attention %v, lens %v; want %d x %d, attention %v", c.lens, p.B, p.T, p.AttentionMask, p.Lens, len(c.lens), c.T, c.mask)
		}
		if len(p.IDs) != N || len(p.LossMask) != N || p.Positions != nil || p.Tree != nil {
			t.Errorf("New(%v): %d ids, %d loss-mask entries, positions %v, tree %v; want %d, %d, none, none", c.lens, len(p.IDs), len(p.LossMask), p.Positions, p.Tree, N, N)
		}
	}
}
