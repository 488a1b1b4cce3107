package draft

import (
	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/backend/auto"
	"github.com/specforge/specforge/internal/batch"
)

// Teacher is what the target teaches one batch, on the draft vocabulary: row r = b*T+t holds the target's
// prediction for the token after input position t+1 (the shift of EAGLE3.md §2).
type Teacher struct {
	P []float32 // [rows, Vd] softmax of the target logits restricted to the draft vocabulary
	// Argmax is the most likely draft token of P's row (first max); TargetID the target's argmax over its
	// full vocabulary.
	Argmax, TargetID []int32
	be               backend.Backend
}

// NewTeacher allocates a teacher for rows rows and a draft vocabulary of vd tokens, computing on the backend
// of this build (backend/auto).
func NewTeacher(rows, vd int) *Teacher { return NewTeacherOn(auto.Default(), rows, vd) }

// NewTeacherOn is NewTeacher computing on backend be (the target's, whose logits it reads).
func NewTeacherOn(be backend.Backend, rows, vd int) *Teacher {
	return &Teacher{P: make([]float32, rows*vd), Argmax: make([]int32, rows), TargetID: make([]int32, rows), be: be}
}

// SetRows fills teacher rows [from, from+n) from full-vocabulary target logits [n, V]; used lists the
// target ids of the draft vocabulary (ascending). Callers pass logits in row chunks, so a [B,T,V] tensor
// never needs to exist.
func (tc *Teacher) SetRows(from int, logits []float32, n, v int, used []int64) {
	vd := len(used)
	tc.be.GatherSoftmax(t32(tc.P[from*vd:(from+n)*vd]), t32(logits[:n*v]), used, tc.Argmax[from:from+n], tc.TargetID[from:from+n], n, v)
}

// Batch is one TTT training batch: B rows of T tokens (right-padded), what the target produced for them,
// and the teacher.
type Batch struct {
	batch.Tokens           // IDs are the raw token ids (not shifted); LossMask and AttentionMask are set
	Aux          []float32 // [B*T, AuxWidth] target hidden states after the aux layers (not shifted)
	Teacher      *Teacher
	// Starts [B*T], in a packed batch (Pack), is for each token the index within its row of the first token
	// of its sample (the row's padding counts as one more sample); it does not decrease along a row. nil
	// means one sample per row.
	Starts []int32
}

// start is the row index of the first token of the sample of token i (flat index b*T+t).
func (b *Batch) start(i int) int {
	if b.Starts == nil {
		return 0
	}
	return int(b.Starts[i])
}

// sameSample reports whether tokens t and u (row positions, t <= u) of row r belong to one sample: u is in
// the row and no sample starts in (t, u].
func (b *Batch) sameSample(r, t, u int) bool {
	return u < b.T && b.start(r*b.T+u) == b.start(r*b.T+t)
}

// PositionMask is pm_0 of EAGLE3.md §2: a row trains when it carries loss, the target's choice is in the
// draft vocabulary, and the next token is real and of the same sample.
func (b *Batch) PositionMask(t2d []bool) []bool { return b.positionMask(nil, t2d) }

// positionMask is PositionMask in pm, reallocated only when its capacity is short.
func (b *Batch) positionMask(pm []bool, t2d []bool) []bool {
	pm = resizeZero(pm, b.B*b.T)
	for r := 0; r < b.B; r++ {
		for t := 0; t+1 < b.T; t++ {
			i := r*b.T + t
			pm[i] = b.LossMask[i] && t2d[b.Teacher.TargetID[i]] && b.AttentionMask[i+1] && b.sameSample(r, t, t+1)
		}
	}
	return pm
}
