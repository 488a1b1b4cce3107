package draft

import (
	"testing"

	"github.com/specforge/specforge/internal/golden"
)

// TestSessionFollowsTTT decodes one row of golden case e with the inference session, step by step, and
// compares the hidden states with the TTT unroll's (hidden_steps): drafting at inference time is the TTT
// computation for the last row.
func TestSessionFollowsTTT(t *testing.T) {
	c := golden.Open(t, "e_ttt_basic")
	d := loadGoldenDraft(t, c)
	ids := c.Ints(t, "inputs.safetensors", "input_ids")
	aux := f32(c.Floats(t, "inputs.safetensors", "aux_hidden"))
	steps := c.Floats(t, "intermediates_f64.safetensors", "hidden_steps") // [K, B, T, H]
	const T, B, H, row = 24, 2, 64, 10
	s, err := d.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	n := row + 1
	tokens := make([]int32, n)
	positions := make([]int32, n)
	for i := range tokens {
		tokens[i], positions[i] = int32(ids[i+1]), int32(i)
	}
	h := s.FC(aux[:n*3*H], n)
	out := s.Forward(tokens, h, positions, nil, 0)
	last := out[row*H : (row+1)*H]
	tol := c.F32Tolerance(t, "intermediates_f64.safetensors", "hidden_steps")
	for k := 0; k < 4; k++ {
		want := steps[((k*B)*T+row)*H : ((k*B)*T+row+1)*H]
		for i := range last {
			if d := float64(last[i]) - want[i]; d > tol.Atol || -d > tol.Atol {
				t.Fatalf("step %d: h[%d] = %g, want %g", k, i, last[i], want[i])
			}
		}
		next := []int32{int32(ids[row+2+k])}
		last = s.Forward(next, last, []int32{int32(row + 1 + k)}, nil, 0)
	}
}

// BenchmarkDraftStep measures one drafting step (a row through the layer, then its logits) after 100 rows,
// on the stories260K-shaped draft of golden case e: the cost a chain pays per drafted token.
func BenchmarkDraftStep(b *testing.B) {
	c := golden.Open(b, "e_ttt_basic")
	d := loadGoldenDraft(b, c)
	H := d.Config.HiddenSize
	s, err := d.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	const ctx = 100
	ids, pos := make([]int32, ctx), make([]int32, ctx)
	for i := range ids {
		ids[i], pos[i] = int32(i%d.Config.VocabSize), int32(i)
	}
	h := s.Forward(ids, make([]float32, ctx*H), pos, nil, 0)[(ctx-1)*H:]
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Truncate(ctx)
		s.Logits(h, 1)
		s.Forward(ids[:1], h, pos[:1], nil, 0)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "us/step")
}
