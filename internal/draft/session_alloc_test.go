//go:build cgo

package draft

import (
	"testing"

	"github.com/specforge/specforge/internal/goldentest"
)

// The pure-Go build (backend/purego) is left out: its products (gonum) and its blocked attention allocate
// scratch per call, below the draft.

// TestDraftStepAllocatesNothing checks that a drafting step (logits of the newest row, then the next row
// through the layer, fed its own previous output) reuses the session's buffers.
func TestDraftStepAllocatesNothing(t *testing.T) {
	c := goldentest.First(t, goldentest.TTT)
	d := loadGoldenDraft(t, c)
	H := d.Config.HiddenSize
	s, err := d.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	const ctx = 20
	ids, pos := make([]int32, ctx), make([]int32, ctx)
	for i := range ids {
		ids[i], pos[i] = int32(i%d.Config.VocabSize), int32(i)
	}
	s.Forward(ids, make([]float32, ctx*H), pos, nil, 0)
	h := make([]float32, H)
	step := func() {
		s.Truncate(ctx)
		s.Logits(h, 1)
		out := s.Forward(ids[:1], h, pos[:1], nil, 0)
		s.Forward(ids[1:2], out, pos[1:2], nil, 0)
	}
	step()
	if n := testing.AllocsPerRun(20, step); n != 0 {
		t.Errorf("a drafting step allocates %v times", n)
	}
}
