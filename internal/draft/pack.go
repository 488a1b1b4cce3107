package draft

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/specforge/specforge/internal/batch"
)

// Pack lays the samples of an unpacked batch (row r is sample r, b.Lens[r] tokens, right-padded) side by
// side in rows of at most maxLen tokens, so that a batch of short samples is not mostly padding. Samples
// go first-fit in decreasing length (ties in sample order, so the layout is a function of the lengths); a
// sample longer than maxLen gets a row of its own. The packed T is the longest row used, not maxLen, so a
// batch of short samples never grows. Every token keeps its id, masks, aux row and teacher row (the row of
// a sample's last token included: it is masked, its next token being another sample's); Starts records
// where each sample begins, and TTT then trains each sample as it would alone (block-diagonal attention,
// positions from 0 per sample, no step crossing a sample's end). Lens become the rows' used lengths.
// Positions and Tree, which TTT does not read, are not carried.
func Pack(b *Batch, maxLen int) (*Batch, error) {
	N := b.B * b.T
	switch {
	case maxLen < 1:
		return nil, fmt.Errorf("pack: row length %d, want at least 1", maxLen)
	case b.Starts != nil:
		return nil, fmt.Errorf("pack: the batch is packed already")
	case len(b.Lens) != b.B:
		return nil, fmt.Errorf("pack: %d sample lengths for %d rows", len(b.Lens), b.B)
	case b.Teacher == nil || len(b.IDs) != N || len(b.LossMask) != N || len(b.AttentionMask) != N:
		return nil, fmt.Errorf("pack: batch of %d x %d rows lacks a teacher, ids or masks of that size", b.B, b.T)
	}
	if N == 0 {
		return b, nil
	}
	if len(b.Aux)%N != 0 || len(b.Teacher.P)%N != 0 || len(b.Teacher.Argmax) != N || len(b.Teacher.TargetID) != N {
		return nil, fmt.Errorf("pack: aux (%d) or teacher (%d) values are not whole rows of %d x %d", len(b.Aux), len(b.Teacher.P), b.B, b.T)
	}
	aw, vd := len(b.Aux)/N, len(b.Teacher.P)/N
	for r, n := range b.Lens {
		if n < 0 || n > b.T {
			return nil, fmt.Errorf("pack: sample %d has %d tokens, want 0 to %d", r, n, b.T)
		}
	}

	order := make([]int, b.B)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(b.Lens[y], b.Lens[x]) })
	var used []int                                 // tokens in each packed row
	row, off := make([]int, b.B), make([]int, b.B) // where each sample goes
	for _, s := range order {
		n, r := b.Lens[s], 0
		for r < len(used) && used[r]+n > maxLen {
			r++
		}
		if r == len(used) {
			used = append(used, 0)
		}
		row[s], off[s] = r, used[r]
		used[r] += n
	}
	T := slices.Max(used)
	B := len(used)
	M := B * T
	p := &Batch{
		Tokens: batch.Tokens{B: B, T: T, IDs: make([]int32, M), LossMask: make([]bool, M), AttentionMask: make([]bool, M), Lens: used},
		Aux:    make([]float32, M*aw), Teacher: NewTeacherOn(b.Teacher.be, M, vd), Starts: make([]int32, M),
	}
	for r, n := range used { // the padding of each row is a sample of its own
		for t := n; t < T; t++ {
			p.Starts[r*T+t] = int32(n)
		}
	}
	for s, n := range b.Lens {
		src, dst := s*b.T, row[s]*T+off[s]
		copy(p.IDs[dst:dst+n], b.IDs[src:src+n])
		copy(p.LossMask[dst:dst+n], b.LossMask[src:src+n])
		copy(p.AttentionMask[dst:dst+n], b.AttentionMask[src:src+n])
		copy(p.Aux[dst*aw:(dst+n)*aw], b.Aux[src*aw:(src+n)*aw])
		copy(p.Teacher.P[dst*vd:(dst+n)*vd], b.Teacher.P[src*vd:(src+n)*vd])
		copy(p.Teacher.Argmax[dst:dst+n], b.Teacher.Argmax[src:src+n])
		copy(p.Teacher.TargetID[dst:dst+n], b.Teacher.TargetID[src:src+n])
		for t := range n {
			p.Starts[dst+t] = int32(off[s])
		}
	}
	return p, nil
}
