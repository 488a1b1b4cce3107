package tokenizer

import (
	"container/heap"
	"fmt"
	"unicode/utf8"
)

// bpe is a byte-pair-encoding model: merges applied by rank, lowest first, leftmost first among equals,
// as the tokenizers library's Word::merge_all does.
type bpe struct {
	vocab        map[string]int32
	merges       map[[2]int32]merge
	unk          int32 // -1: none
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	byteIDs      [256]int32 // <0xXX> tokens for byte fallback, -1 when absent
}

type merge struct {
	rank int32
	id   int32
}

type symbol struct {
	id         int32
	prev, next int32
	size       int32 // input bytes covered; 0 once merged into its left neighbour
}

type mergeItem struct {
	rank, pos, id int32
}

type mergeQueue []mergeItem

func (q mergeQueue) Len() int { return len(q) }
func (q mergeQueue) Less(i, j int) bool {
	if q[i].rank != q[j].rank {
		return q[i].rank < q[j].rank
	}
	return q[i].pos < q[j].pos
}
func (q mergeQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *mergeQueue) Push(x any)   { *q = append(*q, x.(mergeItem)) }
func (q *mergeQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// tokenize encodes one pre-token and appends its ids to dst and, for each id, the number of input bytes it
// covers to sizes. A byte-mapped word (byte-level models) stands for one input byte per rune.
func (m *bpe) tokenize(dst, sizes []int32, word string, byteMapped bool) ([]int32, []int32, error) {
	// Characters are taken as the bytes they span, so that a byte that is not valid UTF-8 stays one byte
	// (for the byte fallback and the offsets) instead of becoming a 3-byte U+FFFD.
	inputBytes := func(s string) int32 {
		if byteMapped {
			return int32(utf8.RuneCountInString(s))
		}
		return int32(len(s))
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[word]; ok {
			return append(dst, id), append(sizes, inputBytes(word)), nil
		}
	}
	syms := make([]symbol, 0, len(word))
	pendingUnk := false
	for i := 0; i < len(word); {
		r, w := utf8.DecodeRuneInString(word[i:])
		s := word[i : i+w]
		i += w
		if id, ok := m.vocab[s]; ok {
			syms = append(syms, symbol{id: id, size: inputBytes(s)})
			pendingUnk = false
			continue
		}
		if m.byteFallback {
			ok := true
			for i := 0; i < len(s); i++ {
				ok = ok && m.byteIDs[s[i]] >= 0
			}
			if ok {
				for i := 0; i < len(s); i++ {
					syms = append(syms, symbol{id: m.byteIDs[s[i]], size: 1})
				}
				pendingUnk = false
				continue
			}
		}
		if m.unk < 0 {
			return dst, sizes, fmt.Errorf("character %q is not in the vocabulary and the model has no unk token", r)
		}
		if m.fuseUnk && pendingUnk {
			syms[len(syms)-1].size += inputBytes(s) // consecutive unknown characters become one unk
			continue
		}
		syms = append(syms, symbol{id: m.unk, size: inputBytes(s)})
		pendingUnk = true
	}
	for i := range syms {
		syms[i].prev, syms[i].next = int32(i-1), int32(i+1)
	}
	if len(syms) > 0 {
		syms[len(syms)-1].next = -1
	}
	q := mergeQueue{}
	for i := 0; i+1 < len(syms); i++ {
		if mg, ok := m.merges[[2]int32{syms[i].id, syms[i+1].id}]; ok {
			q = append(q, mergeItem{rank: mg.rank, pos: int32(i), id: mg.id})
		}
	}
	heap.Init(&q)
	for q.Len() > 0 {
		top := heap.Pop(&q).(mergeItem)
		left := &syms[top.pos]
		if left.size == 0 || left.next < 0 {
			continue
		}
		right := &syms[left.next]
		// Skip entries made stale by earlier merges.
		if mg, ok := m.merges[[2]int32{left.id, right.id}]; !ok || mg.id != top.id {
			continue
		}
		left.id = top.id
		left.size += right.size
		right.size = 0
		left.next = right.next
		if left.next >= 0 {
			syms[left.next].prev = top.pos
		}
		if left.prev >= 0 {
			if mg, ok := m.merges[[2]int32{syms[left.prev].id, left.id}]; ok {
				heap.Push(&q, mergeItem{rank: mg.rank, pos: left.prev, id: mg.id})
			}
		}
		if left.next >= 0 {
			if mg, ok := m.merges[[2]int32{left.id, syms[left.next].id}]; ok {
				heap.Push(&q, mergeItem{rank: mg.rank, pos: top.pos, id: mg.id})
			}
		}
	}
	for i := 0; i >= 0 && i < len(syms); i = int(syms[i].next) {
		dst = append(dst, syms[i].id)
		sizes = append(sizes, syms[i].size)
	}
	return dst, sizes, nil
}
