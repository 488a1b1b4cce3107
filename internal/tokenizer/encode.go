package tokenizer

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// segment is a stretch of input: either an added token or text for the model.
type segment struct {
	text  string
	added int32 // -1 for text
}

// splitAdded cuts text at the added tokens that match raw text (normalized=false ones, or all when
// normalized is true), leftmost-longest, honouring lstrip, rstrip and single_word.
func (t *Tokenizer) splitAdded(text string, normalized bool) []segment {
	var out []segment
	start := 0 // start of pending text
	for i := 0; i < len(text); {
		tok, end := t.addedAt(text, i, normalized)
		if tok == nil {
			i++
			continue
		}
		from := i
		if tok.LStrip {
			for from > start {
				r, size := utf8.DecodeLastRuneInString(text[:from])
				if !unicode.IsSpace(r) {
					break
				}
				from -= size
			}
		}
		if tok.RStrip {
			for end < len(text) {
				r, size := utf8.DecodeRuneInString(text[end:])
				if !unicode.IsSpace(r) {
					break
				}
				end += size
			}
		}
		if from > start {
			out = append(out, segment{text: text[start:from], added: -1})
		}
		out = append(out, segment{text: text[from:end], added: tok.ID})
		start, i = end, end
	}
	if start < len(text) {
		out = append(out, segment{text: text[start:], added: -1})
	}
	return out
}

// addedAt returns the longest added token starting at byte i (and its end), or nil.
func (t *Tokenizer) addedAt(text string, i int, normalized bool) (*AddedToken, int) {
	nf := 0
	if normalized {
		nf = 1
	}
	// Candidates are indexed by first byte, longest first.
	for _, k := range t.addedByFirst[nf][text[i]] {
		a := &t.added[k]
		if !strings.HasPrefix(text[i:], a.Content) {
			continue
		}
		if a.SingleWord && !wordBoundary(text, i, i+len(a.Content)) {
			continue
		}
		return a, i + len(a.Content)
	}
	return nil, 0
}

func wordBoundary(text string, from, to int) bool {
	if from > 0 {
		r, _ := utf8.DecodeLastRuneInString(text[:from])
		if isWordRune(r) {
			return false
		}
	}
	if to < len(text) {
		r, _ := utf8.DecodeRuneInString(text[to:])
		if isWordRune(r) {
			return false
		}
	}
	return true
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' }

// Encode tokenizes text. With addSpecial the post-processor's tokens (e.g. BOS) are added, as
// transformers' encode(add_special_tokens=True) does.
func (t *Tokenizer) Encode(text string, addSpecial bool) ([]int32, error) {
	var ids []int32
	if addSpecial {
		ids = append(ids, t.prefix...)
	}
	for _, seg := range t.splitAdded(text, false) {
		if seg.added >= 0 {
			ids = append(ids, seg.added)
			continue
		}
		normalized := seg.text
		for _, n := range t.normalizers {
			normalized = n(normalized)
		}
		for _, sub := range t.splitAdded(normalized, true) {
			if sub.added >= 0 {
				ids = append(ids, sub.added)
				continue
			}
			var err error
			if ids, err = t.encodePiece(ids, sub.text); err != nil {
				return nil, err
			}
		}
	}
	if addSpecial {
		ids = append(ids, t.suffix...)
	}
	return ids, nil
}

// encodePiece runs the pre-tokenizer and the model over normalised text.
func (t *Tokenizer) encodePiece(ids []int32, text string) ([]int32, error) {
	pieces := []string{text}
	if t.split != nil {
		pieces = t.split.split(text)
	}
	var err error
	for _, p := range pieces {
		if t.byteLevel {
			p = byteMap(p)
		}
		if ids, err = t.encodeWord(ids, p); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// maxCached bounds the pre-token cache, as the tokenizers library's does.
const (
	maxCached      = 1 << 17
	maxCachedBytes = 256
)

func (t *Tokenizer) encodeWord(ids []int32, word string) ([]int32, error) {
	if v, ok := t.cache.Load(word); ok {
		return append(ids, v.([]int32)...), nil
	}
	n := len(ids)
	ids, err := t.model.tokenize(ids, word)
	if err != nil {
		return nil, err
	}
	if len(word) <= maxCachedBytes {
		t.cacheMu.Lock()
		if t.cached < maxCached {
			t.cached++
			t.cache.Store(word, append([]int32(nil), ids[n:]...))
		}
		t.cacheMu.Unlock()
	}
	return ids, nil
}

func byteMap(s string) string {
	var b strings.Builder
	b.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteToRune[s[i]])
	}
	return b.String()
}

// Decode turns ids back into text; skipSpecial drops special added tokens.
func (t *Tokenizer) Decode(ids []int32, skipSpecial bool) (string, error) {
	tokens := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 || int(id) >= len(t.idToToken) {
			return "", fmt.Errorf("token id %d is outside the vocabulary [0, %d)", id, len(t.idToToken))
		}
		if skipSpecial && t.IsSpecial(id) {
			continue
		}
		tokens = append(tokens, t.idToToken[id])
	}
	for _, d := range t.decoders {
		tokens = d(tokens)
	}
	text := strings.Join(tokens, "")
	if t.CleanUpSpaces {
		text = cleanUpTokenization(text)
	}
	return text, nil
}

// cleanUpTokenization is transformers' clean_up_tokenization: it removes the space before punctuation and
// English contractions.
func cleanUpTokenization(s string) string {
	r := strings.NewReplacer(" .", ".", " ?", "?", " !", "!", " ,", ",", " ' ", "'", " n't", "n't", " 'm", "'m", " 's", "'s", " 've", "'ve", " 're", "'re")
	return r.Replace(s)
}
