package serve

import (
	"slices"
	"strings"

	"github.com/specforge/specforge/internal/tokenizer"
)

// anchorTokens is how many prompt tokens are decoded before the completion so that its first token's text
// is what it is in context (SentencePiece decoders strip the leading space at the start of a text).
const anchorTokens = 4

// completionText follows a completion's text token by token: it cuts it at the first stop string and tells
// which part of it is settled enough to stream (no trailing piece of a character still being spelt out in
// bytes, nor a tail that may be the start of a stop string).
type completionText struct {
	tok        *tokenizer.Tokenizer
	stopIDs    []int
	stops      []string
	anchor     []int32
	anchorText string
	ids        []int32 // the completion's tokens so far
	text       string  // its text, cut at a stop string once one is found
	searched   int     // text before this offset holds no stop string
	sent       int     // bytes of text already streamed
	// finish is "stop" once a stop token or string ended the completion, "length" when the budget did.
	finish string
}

func newCompletionText(tok *tokenizer.Tokenizer, prompt []int32, stopIDs []int, stops []string) (*completionText, error) {
	c := &completionText{tok: tok, stopIDs: stopIDs, stops: stops, anchor: prompt[max(0, len(prompt)-anchorTokens):]}
	var err error
	c.anchorText, err = tok.Decode(c.anchor, true)
	return c, err
}

// add takes the next token and reports whether the completion goes on.
func (c *completionText) add(id int32) (bool, error) {
	c.ids = append(c.ids, id)
	if slices.Contains(c.stopIDs, int(id)) {
		c.finish = "stop"
	}
	full, err := c.tok.Decode(append(slices.Clone(c.anchor), c.ids...), true)
	if err != nil {
		return false, err
	}
	text, ok := strings.CutPrefix(full, c.anchorText)
	if !ok {
		// The anchor decodes differently in context: the completion's own text is the best left.
		if text, err = c.tok.Decode(c.ids, true); err != nil {
			return false, err
		}
	}
	c.text = text
	from := min(c.searched, len(text))
	cut := -1
	for _, s := range c.stops {
		if i := strings.Index(text[from:], s); i >= 0 && (cut < 0 || from+i < cut) {
			cut = from + i
		}
	}
	if cut >= 0 {
		c.text = text[:cut]
		c.finish = "stop"
	}
	// A stop string can only begin in the last longest-1 bytes of the text searched so far, or later.
	longest := 0
	for _, s := range c.stops {
		longest = max(longest, len(s))
	}
	c.searched = max(0, len(strings.TrimRight(c.text, "\uFFFD"))-longest+1)
	return c.finish == "", nil
}

// delta returns the text not streamed yet that is settled: all of it once the completion ended (final).
func (c *completionText) delta(final bool) string {
	end := len(c.text)
	if !final {
		// A byte-fallback character whose bytes are not all there yet decodes as U+FFFD for now.
		end = len(strings.TrimRight(c.text, "\uFFFD"))
		// Hold back a tail that a stop string starts with: the next tokens may complete it.
		hold := 0
		for _, s := range c.stops {
			for k := min(len(s)-1, end-c.sent); k > hold; k-- {
				if strings.HasSuffix(c.text[:end], s[:k]) {
					hold = k
					break
				}
			}
		}
		end -= hold
	}
	if end <= c.sent {
		return ""
	}
	d := c.text[c.sent:end]
	c.sent = end
	return d
}
