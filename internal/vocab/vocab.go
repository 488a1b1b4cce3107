// Package vocab builds the pruned draft vocabulary of an EAGLE-3 head: the Vd target tokens the draft can
// propose, as the d2t offsets and t2d mask that SGLang and vLLM load (../shared/docs/EAGLE3.md §5).
package vocab

import (
	"fmt"
	"slices"
	"sort"

	"github.com/specforge/specforge/internal/safetensors"
)

// Counter counts target token ids at positions that carry loss.
type Counter struct {
	Counts []int64 // indexed by target id
}

// NewCounter counts over a vocabulary of size v.
func NewCounter(v int) *Counter { return &Counter{Counts: make([]int64, v)} }

// Add counts ids[i] where mask[i] is true. Ids outside the vocabulary are an error.
func (c *Counter) Add(ids []int32, mask []bool) error {
	for i, id := range ids {
		if !mask[i] {
			continue
		}
		if id < 0 || int(id) >= len(c.Counts) {
			return fmt.Errorf("token id %d outside the vocabulary [0, %d)", id, len(c.Counts))
		}
		c.Counts[id]++
	}
	return nil
}

// Mapping is a draft vocabulary: Used[i] is the target id of draft token i (ascending), D2T[i] = Used[i] - i,
// T2D[j] says whether target token j is in the draft vocabulary.
type Mapping struct {
	Used []int64
	D2T  []int64
	T2D  []bool
}

// Build keeps the draftSize most frequent ids of counts (higher count first, then lower id), after the ids in
// always, which are kept whatever their count. With fewer distinct counted ids than draftSize, the smallest
// unused ids fill the rest.
func Build(counts []int64, draftSize int, always []int) (*Mapping, error) {
	v := len(counts)
	if draftSize <= 0 || draftSize > v {
		return nil, fmt.Errorf("draft vocabulary size %d must be in [1, %d] (the target vocabulary)", draftSize, v)
	}
	kept := make([]bool, v)
	n := 0
	for _, id := range always {
		if id < 0 || id >= v {
			return nil, fmt.Errorf("token id %d to keep is outside the vocabulary [0, %d)", id, v)
		}
		if !kept[id] {
			kept[id] = true
			n++
		}
	}
	if n > draftSize {
		return nil, fmt.Errorf("%d tokens must always be kept, more than the draft vocabulary size %d", n, draftSize)
	}
	var ranked []int
	for id, c := range counts {
		if c > 0 && !kept[id] {
			ranked = append(ranked, id)
		}
	}
	sort.Slice(ranked, func(a, b int) bool {
		ca, cb := counts[ranked[a]], counts[ranked[b]]
		if ca != cb {
			return ca > cb
		}
		return ranked[a] < ranked[b]
	})
	for _, id := range ranked {
		if n == draftSize {
			break
		}
		kept[id] = true
		n++
	}
	for id := 0; n < draftSize; id++ { // fewer distinct ids than draftSize: fill with the smallest unused
		if !kept[id] {
			kept[id] = true
			n++
		}
	}
	m := &Mapping{T2D: kept}
	for id, k := range kept {
		if k {
			m.D2T = append(m.D2T, int64(id-len(m.Used)))
			m.Used = append(m.Used, int64(id))
		}
	}
	return m, nil
}

// FromD2T rebuilds a mapping from d2t offsets over a target vocabulary of size v, checking that the ids are
// strictly increasing and inside the vocabulary.
func FromD2T(d2t []int64, v int) (*Mapping, error) {
	m := &Mapping{D2T: d2t, T2D: make([]bool, v), Used: make([]int64, len(d2t))}
	for i, off := range d2t {
		id := int64(i) + off
		if id < 0 || id >= int64(v) {
			return nil, fmt.Errorf("d2t[%d] maps to target id %d, outside the vocabulary [0, %d)", i, id, v)
		}
		if i > 0 && id <= m.Used[i-1] {
			return nil, fmt.Errorf("d2t[%d] maps to target id %d, not above the previous %d", i, id, m.Used[i-1])
		}
		m.Used[i], m.T2D[id] = id, true
	}
	return m, nil
}

// Write stores the mapping as d2t (I64) and t2d (BOOL) tensors, the names and types engines load.
func (m *Mapping) Write(path string) error {
	return safetensors.Write(path, []safetensors.Tensor{
		safetensors.FromInt64("d2t", safetensors.I64, []int{len(m.D2T)}, m.D2T),
		safetensors.FromBool("t2d", []int{len(m.T2D)}, m.T2D),
	}, map[string]string{"format": "pt"})
}

// FromTensors rebuilds a mapping from the d2t and t2d tensors engines load (t2d may be nil), over a target
// vocabulary of size v, checking that t2d marks exactly the ids d2t maps to.
func FromTensors(d2t []int64, t2d []bool, v int) (*Mapping, error) {
	m, err := FromD2T(d2t, v)
	if err != nil {
		return nil, err
	}
	if t2d != nil && !slices.Equal(t2d, m.T2D) {
		return nil, fmt.Errorf("t2d does not mark exactly the target ids d2t maps to")
	}
	return m, nil
}
