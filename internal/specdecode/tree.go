package specdecode

import (
	"math"
	"sort"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/tensor"
)

// node is a drafted token of the tree.
type node struct {
	token  int32
	parent int // index into nodes; -1 for children of the root
	depth  int
	score  float64 // sum of the draft's log-probabilities along the path
	hidden []float32
}

// topK returns the k draft tokens of a logits row with the highest log-probabilities (normalised on be, the
// draft's backend), ties broken by the lower index. One pass keeps the best k in order: a tree drafts from
// every row, so no full sort.
func topK(be backend.Backend, logits []float32, k int) ([]int, []float64) {
	k = min(k, len(logits))
	idx := make([]int, 0, k+1)
	floor := float32(math.Inf(-1)) // the k-th best value once k are kept: most entries stop at it
	for i, x := range logits {
		if len(idx) == k && x <= floor {
			continue
		}
		j := len(idx)
		idx = append(idx, i)
		for ; j > 0 && logits[idx[j-1]] < x; j-- {
			idx[j] = idx[j-1]
		}
		idx[j] = i
		idx = idx[:min(len(idx), k)]
		if len(idx) == k {
			floor = logits[idx[k-1]]
		}
	}
	lse := be.LogSumExp(tensor.Vec(logits))
	scores := make([]float64, k)
	for i, j := range idx {
		scores[i] = float64(logits[j]) - lse
	}
	return idx, scores
}

// treeRound drafts an EAGLE-2 dynamic tree (Depth expansions of the TopK best candidates), verifies the
// DraftTokens-1 best nodes and the newest token in one target forward with a tree mask, and keeps the
// longest path the target agrees with.
func (st *state) treeRound() error {
	o, d := st.o, st.d
	H := d.Draft.Config.HiddenSize
	base := st.sess.Len
	var nodes []node
	// Depth 1: the best TopK tokens after the newest token.
	ids, scores := topK(d.Draft.Backend(), st.sess.Logits(st.hLast, 1), o.TopK)
	for i, id := range ids {
		nodes = append(nodes, node{token: d.Draft.TargetID(id), parent: -1, depth: 1, score: scores[i]})
	}
	frontier := make([]int, len(nodes))
	for i := range frontier {
		frontier[i] = i
	}
	rowOf := map[int]int{} // node -> its row in the draft cache, relative to base
	for depth := 1; depth < o.Depth; depth++ {
		// Run the draft on the frontier: each node's row sees the verified prefix and its ancestors' rows.
		n := len(frontier)
		toks := make([]int32, n)
		hs := make([]float32, n*H)
		pos := make([]int32, n)
		first := st.sess.Len - base
		cols := first + n
		tree := make([]bool, n*cols)
		for i, f := range frontier {
			nd := &nodes[f]
			toks[i] = nd.token
			if nd.parent < 0 {
				copy(hs[i*H:], st.hLast)
			} else {
				copy(hs[i*H:], nodes[nd.parent].hidden)
			}
			pos[i] = int32(base + nd.depth - 1)
			tree[i*cols+first+i] = true
			for a := nd.parent; a >= 0; a = nodes[a].parent {
				tree[i*cols+rowOf[a]] = true
			}
			rowOf[f] = first + i
		}
		out := st.sess.Forward(toks, hs, pos, tree, base)
		logits := st.sess.Logits(out, n)
		Vd := d.Draft.Config.DraftVocabSize
		type cand struct {
			parent, id int
			score      float64
		}
		var cands []cand
		for i, f := range frontier {
			nodes[f].hidden = out[i*H : (i+1)*H]
			ids, scores := topK(d.Draft.Backend(), logits[i*Vd:(i+1)*Vd], o.TopK)
			for k, id := range ids {
				cands = append(cands, cand{f, id, nodes[f].score + scores[k]})
			}
		}
		sort.SliceStable(cands, func(a, b int) bool { return cands[a].score > cands[b].score })
		cands = cands[:min(o.TopK, len(cands))]
		frontier = frontier[:0]
		for _, c := range cands {
			nodes = append(nodes, node{token: d.Draft.TargetID(c.id), parent: c.parent, depth: depth + 1, score: c.score})
			frontier = append(frontier, len(nodes)-1)
		}
	}
	st.sess.Truncate(base)

	// Keep the DraftTokens-1 best nodes (a child never scores above its parent; ties keep the parent first
	// by index), ordered so that parents come first.
	order := make([]int, len(nodes))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return nodes[order[a]].score > nodes[order[b]].score })
	chosen := map[int]bool{}
	for _, i := range order {
		if len(chosen) >= o.DraftTokens-1 {
			break
		}
		path := []int{}
		for a := i; a >= 0 && !chosen[a]; a = nodes[a].parent {
			path = append(path, a)
		}
		if len(chosen)+len(path) > o.DraftTokens-1 {
			continue
		}
		for _, a := range path {
			chosen[a] = true
		}
	}
	sel := make([]int, 0, len(chosen))
	for i := range chosen {
		sel = append(sel, i)
	}
	sort.Ints(sel) // node indices grow with depth: parents before children
	verifyRow := map[int]int{}
	verify := []int32{st.next}
	positions := []int32{int32(st.n)}
	for r, i := range sel {
		verifyRow[i] = r + 1
		verify = append(verify, nodes[i].token)
		positions = append(positions, int32(st.n+nodes[i].depth))
	}
	T := len(verify)
	tree := make([]bool, T*T)
	tree[0] = true
	for r, i := range sel {
		row := r + 1
		tree[row*T] = true
		tree[row*T+row] = true
		for a := nodes[i].parent; a >= 0; a = nodes[a].parent {
			tree[row*T+verifyRow[a]] = true
		}
	}
	res, err := d.Target.Forward(model.Batch{B: 1, T: T, IDs: verify, Positions: positions, Tree: tree}, st.cache,
		model.Request{AuxLayers: d.Draft.Config.AuxLayers, Logits: model.AllLogits, Reuse: &st.verify})
	if err != nil {
		return err
	}
	// Walk down from the root while the target's choice is a drafted child.
	V := d.Target.Config.VocabSize
	keep := []int{0}
	var accepted []int32
	cur := -1 // node of the current row; -1 is the root
	row := 0
	var bonus int32
	for depth := 1; ; depth++ {
		best := int32(d.Target.Backend().Argmax(tensor.Vec(res.Logits[row*V : (row+1)*V])))
		next := -1
		for _, i := range sel {
			if nodes[i].parent == cur && nodes[i].token == best {
				next = i
				break
			}
		}
		hasChildren := false
		for _, i := range sel {
			if nodes[i].parent == cur {
				hasChildren = true
				break
			}
		}
		if hasChildren {
			st.stats.count(depth, next >= 0)
		}
		if next < 0 {
			bonus = best
			break
		}
		accepted = append(accepted, best)
		cur, row = next, verifyRow[next]
		keep = append(keep, row)
	}
	st.accept(accepted, bonus, res.Aux, keep)
	return nil
}
