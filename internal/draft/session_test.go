package draft

import (
	"math"
	"testing"

	"github.com/specforge/specforge/internal/goldentest"
)

// TestSessionFollowsTTT decodes one row of each TTT case with the inference session, step by step, and
// compares the hidden states with the TTT unroll's (hidden_steps): drafting at inference time is the TTT
// computation for the last row. The row is the last of the first sequence that leaves room for K drafted
// tokens.
func TestSessionFollowsTTT(t *testing.T) {
	goldentest.ForEach(t, goldentest.TTT, func(t *testing.T, c *goldentest.Case) {
		d := loadGoldenDraft(t, c)
		ids := c.Ints(t, "inputs.safetensors", "input_ids")
		mask := c.Ints(t, "inputs.safetensors", "attention_mask")
		aux := f32(c.Floats(t, "inputs.safetensors", "aux_hidden"))
		steps := c.Floats(t, "intermediates_f64.safetensors", "hidden_steps") // [K, B, T, H]
		shape := c.Shape(t, "intermediates_f64.safetensors", "hidden_steps")
		K, B, T, H := shape[0], shape[1], shape[2], shape[3]
		width := c.Shape(t, "inputs.safetensors", "aux_hidden")[2]
		real := 0
		for real < T && mask[real] == 1 {
			real++
		}
		row := real - 1 - K // step k reads ids[row+1+k]: the last, ids[row+K], is real
		if row < 0 {
			t.Fatalf("the first sequence has %d real tokens, too few for K=%d", real, K)
		}
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
		h := s.FC(aux[:n*width], n)
		out := s.Forward(tokens, h, positions, nil, 0)
		last := out[row*H : (row+1)*H]
		tol := c.F32Tolerance(t, "intermediates_f64.safetensors", "hidden_steps")
		for k := 0; k < K; k++ {
			want := steps[((k*B)*T+row)*H : ((k*B)*T+row+1)*H]
			for i := range last {
				if d := math.Abs(float64(last[i]) - want[i]); d > tol.Atol+tol.Rtol*math.Abs(want[i]) {
					t.Fatalf("step %d: h[%d] = %g, want %g", k, i, last[i], want[i])
				}
			}
			if k+1 < K {
				next := []int32{int32(ids[row+2+k])}
				last = s.Forward(next, last, []int32{int32(row + 1 + k)}, nil, 0)
			}
		}
	})
}

// BenchmarkDraftStep measures one drafting step (a row through the layer, then its logits) after 100 rows,
// on the draft of the first TTT case (case e in the public suite): the cost a chain pays per drafted token.
func BenchmarkDraftStep(b *testing.B) {
	c := goldentest.First(b, goldentest.TTT)
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
