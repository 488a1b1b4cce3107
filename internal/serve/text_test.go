package serve

import (
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/tokenizer"
)

// TestCompletionText feeds a completion token by token, streaming what delta calls settled: the streamed
// pieces add up to the text cut before the earliest stop string, no piece shows part of a stop string
// before it is known not to be one, and the completion ends at the token that completes the stop.
func TestCompletionText(t *testing.T) {
	tok, err := tokenizer.Load(goldentest.Shared(t, "assets", "models", "stories260K"))
	if err != nil {
		t.Fatal(err)
	}
	prompt, err := tok.Encode("Once upon a time,", true)
	if err != nil {
		t.Fatal(err)
	}
	const eos = 2
	cases := []struct {
		name, completion string
		stops            []string
		want             string
		finish           string
		tokens           int // tokens taken before the completion ended (0: all)
	}{
		{"no stop", "there was a little girl named Lily.", nil, " there was a little girl named Lily.", "", 0},
		// The completion is "▁there ▁was ▁a ▁little ▁g ir l ▁named ▁Lily .": " named" is the token "▁named",
		// "rl na" spans "ir", "l" and "▁named".
		{"stop on a token", "there was a little girl named Lily.", []string{" named"}, " there was a little girl", "stop", 8},
		{"stop across tokens", "there was a little girl named Lily.", []string{"rl na"}, " there was a little gi", "stop", 8},
		{"earliest of two stops", "there was a little girl named Lily.", []string{"Lily", "little"}, " there was a ", "stop", 4},
		{"stop never completed", "there was a little girl named Lily.", []string{"Lily!"}, " there was a little girl named Lily.", "", 0},
		{"byte-fallback character", "the sun 日 rose", []string{"rose!"}, " the sun 日 rose", "", 0},
	}
	for _, c := range cases {
		ids, err := tok.Encode(c.completion, false)
		if err != nil {
			t.Fatal(err)
		}
		ct, err := newCompletionText(tok, prompt, []int{eos}, c.stops)
		if err != nil {
			t.Fatal(err)
		}
		var streamed strings.Builder
		taken := 0
		for _, id := range ids {
			taken++
			more, err := ct.add(id)
			if err != nil {
				t.Fatal(err)
			}
			if !more {
				break
			}
			d := ct.delta(false)
			if strings.ContainsRune(d, '\uFFFD') {
				t.Errorf("%s: streamed a partial character: %q", c.name, d)
			}
			streamed.WriteString(d)
			for _, s := range c.stops {
				if strings.Contains(streamed.String(), s) {
					t.Errorf("%s: streamed %q, past the stop %q", c.name, streamed.String(), s)
				}
			}
		}
		streamed.WriteString(ct.delta(true))
		if streamed.String() != c.want || ct.finish != c.finish || c.tokens != 0 && taken != c.tokens {
			t.Errorf("%s: streamed %q (finish %q, %d tokens), want %q (finish %q, %d tokens)", c.name, streamed.String(), ct.finish, taken, c.want, c.finish, c.tokens)
		}
	}
	// An end-of-sequence token ends the completion and adds no text.
	ct, err := newCompletionText(tok, prompt, []int{eos}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := tok.Encode("the end", false)
	for _, id := range append(ids, eos) {
		ct.add(id)
	}
	if d := ct.delta(true); d != " the end" || ct.finish != "stop" {
		t.Errorf("eos: %q, finish %q", d, ct.finish)
	}
}
