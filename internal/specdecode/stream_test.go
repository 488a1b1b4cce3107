package specdecode

import (
	"context"
	"slices"
	"testing"

	"github.com/specforge/specforge/internal/generate"
)

// TestOnTokens checks the tokens handed out as they come: together they are the output, greedy or sampled,
// chain or tree, and a hook that returns false ends the generation at the end of that round.
func TestOnTokens(t *testing.T) {
	setup(t)
	dec := &Decoder{Target: target, Draft: trained}
	for _, o := range []Options{
		{Steps: 3}, {Depth: 3, TopK: 2, DraftTokens: 6}, {Steps: 4, Sampling: generate.SamplingParams{Temperature: 0.8, Seed: 5}},
	} {
		o.MaxNewTokens, o.StopIDs = 30, target.Config.EOSTokenIDs
		var handed []int32
		rounds := 0
		o.OnTokens = func(tokens []int32) bool {
			handed = append(handed, tokens...)
			rounds++
			return true
		}
		out, st, err := dec.Generate(context.Background(), prompts[0], o)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(handed, out) || rounds != st.Rounds+1 {
			t.Errorf("%+v: handed %v in %d calls, output %v after %d rounds", o, handed, rounds, out, st.Rounds)
		}
		handed = handed[:0]
		o.OnTokens = func(tokens []int32) bool {
			handed = append(handed, tokens...)
			return len(handed) < 8
		}
		out, _, err = dec.Generate(context.Background(), prompts[0], o)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(handed, out) || len(out) < 8 || len(out) >= 30 {
			t.Errorf("%+v: stopped by the hook: handed %v, output %v", o, handed, out)
		}
	}
}
