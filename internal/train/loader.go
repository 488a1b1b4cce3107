// Package train trains EAGLE-3 drafts: batches from a prepared dataset, the teacher from the target (online)
// or from stored hidden states (offline), the TTT step, AdamW with the warmup-cosine schedule, evaluation,
// metrics, and checkpoints that resume a killed run exactly.
package train

import (
	"math/rand/v2"
)

// Loader walks a dataset in batches, in an order shuffled per epoch from a seed, so that its whole state is
// (Epoch, Pos) and a resumed run sees the same batches.
type Loader struct {
	n, batch int
	seed     uint64
	Epoch    int // epochs completed
	Pos      int // samples of the current epoch already served
	order    []int
	orderOf  int // epoch that order was drawn for
}

// NewLoader serves batches of batch samples out of n.
func NewLoader(n, batch int, seed uint64) *Loader {
	return &Loader{n: n, batch: batch, seed: seed, orderOf: -1}
}

// BatchesPerEpoch counts the batches of one epoch (the last may be short).
func (l *Loader) BatchesPerEpoch() int { return (l.n + l.batch - 1) / l.batch }

// Next returns the sample indices of the next batch.
func (l *Loader) Next() []int {
	if l.Pos >= l.n {
		l.Epoch++
		l.Pos = 0
	}
	if l.orderOf != l.Epoch {
		r := rand.New(rand.NewPCG(l.seed, uint64(l.Epoch)))
		l.order = r.Perm(l.n)
		l.orderOf = l.Epoch
	}
	end := min(l.Pos+l.batch, l.n)
	idx := append([]int(nil), l.order[l.Pos:end]...)
	l.Pos = end
	return idx
}

// Peek returns the indices the next call to Next will return, without advancing.
func (l *Loader) Peek() []int {
	c := *l
	return c.Next()
}
