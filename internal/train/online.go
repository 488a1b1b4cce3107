package train

import (
	"fmt"

	"github.com/specforge/specforge/internal/batch"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/tensor"
)

// BatchSource yields TTT batches (tokens, aux hidden states, teacher) by sample index.
type BatchSource interface {
	Len() int
	Batch(idx []int) (*draft.Batch, error)
}

// Online runs the target on every batch (SpecForge's online mode).
type Online struct {
	Target    *model.Model
	Data      *dataset.File
	AuxLayers []int
	Used      []int64 // target ids of the draft vocabulary
	out       *model.Output
	hidden    []float32
	logits    []float32
}

// Len implements BatchSource.
func (o *Online) Len() int { return o.Data.Len() }

// teacherChunkValues bounds the [rows, V] logits computed at once for the teacher.
const teacherChunkValues = 1 << 24

// Batch implements BatchSource.
func (o *Online) Batch(idx []int) (*draft.Batch, error) { return o.batchOf(o.Data.Pad(idx)) }

func (o *Online) batchOf(p *batch.Tokens) (*draft.Batch, error) {
	out, err := o.Target.Forward(*p, nil,
		model.Request{AuxLayers: o.AuxLayers, Logits: model.NoLogits, Reuse: o.out})
	if err != nil {
		return nil, fmt.Errorf("target forward: %w", err)
	}
	o.out = out
	b := &draft.Batch{Tokens: *p, Aux: out.Aux, Teacher: draft.NewTeacherOn(o.Target.Backend(), p.B*p.T, len(o.Used))}
	o.hidden, o.logits = TeacherFromHidden(b.Teacher, out.Hidden, p.B, p.T, o.Target, o.Used, o.hidden, o.logits)
	return b, nil
}

// LMHead turns final hidden states into full-vocabulary logits: the target's lm_head.
type LMHead interface {
	VocabSize() int
	LogitsOf(dst, hidden []float32, rows []int) []float32
}

// TeacherFromHidden fills the teacher from the target's final hidden states [B*T, H]: row b*T+t learns the
// logits at position t+1 (the last row of each sequence gets the zero row, which is always masked). Logits
// are computed a chunk of rows at a time, so [B*T, V] never exists. The scratch buffers are returned for
// reuse.
func TeacherFromHidden(tc *draft.Teacher, hidden []float32, B, T int, lm LMHead, used []int64, scratch, logits []float32) ([]float32, []float32) {
	H := len(hidden) / (B * T)
	rows := B * T
	vocab := lm.VocabSize()
	chunk := max(1, teacherChunkValues/vocab)
	for lo := 0; lo < rows; lo += chunk {
		n := min(chunk, rows-lo)
		scratch = tensor.Resize(scratch, n*H)
		clear(scratch)
		for i := 0; i < n; i++ {
			r := lo + i
			if (r+1)%T != 0 { // not the last position of its sequence
				copy(scratch[i*H:(i+1)*H], hidden[(r+1)*H:(r+2)*H])
			}
		}
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		logits = lm.LogitsOf(logits, scratch[:n*H], idx)
		tc.SetRows(lo, logits, n, vocab, used)
	}
	return scratch, logits
}
