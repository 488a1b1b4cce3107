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
	e, err := t.EncodeOffsets(text, addSpecial)
	if err != nil {
		return nil, err
	}
	return e.IDs, nil
}

// Encoding is a tokenized text with, for each token, the byte range [start, end) of the input it came from
// (empty ranges for tokens the post-processor added).
type Encoding struct {
	IDs     []int32
	Offsets [][2]int
	// segments are the stretches between added tokens, which the tokenizer encodes independently.
	segments []encodedSegment
	// prefix and suffix count the post-processor's tokens around the text's own.
	prefix, suffix int
}

type encodedSegment struct {
	start, end int // bytes of the input
	firstToken int
	added      bool
}

// Special is the number of tokens the post-processor put before the text's own (BOS).
func (e *Encoding) Special() int { return e.prefix }

// EncodeOffsets tokenizes text and records where each token came from in it.
func (t *Tokenizer) EncodeOffsets(text string, addSpecial bool) (*Encoding, error) {
	e := &Encoding{}
	if addSpecial {
		e.prefix, e.suffix = len(t.prefix), len(t.suffix)
		for _, id := range t.prefix {
			e.IDs, e.Offsets = append(e.IDs, id), append(e.Offsets, [2]int{0, 0})
		}
	}
	pos := 0
	for _, seg := range t.splitAdded(text, false) {
		segStart := pos
		pos += len(seg.text)
		e.segments = append(e.segments, encodedSegment{start: segStart, end: pos, firstToken: len(e.IDs), added: seg.added >= 0})
		if seg.added >= 0 {
			e.IDs, e.Offsets = append(e.IDs, seg.added), append(e.Offsets, [2]int{segStart, pos})
			continue
		}
		normalized, align := seg.text, []int(nil)
		for _, n := range t.normalizers {
			var a []int
			normalized, a = n(normalized)
			align = composeAlign(align, a)
		}
		orig := func(i int) int {
			if align == nil {
				return segStart + i
			}
			return segStart + align[i]
		}
		npos := 0
		for _, sub := range t.splitAdded(normalized, true) {
			subStart := npos
			npos += len(sub.text)
			if sub.added >= 0 {
				e.IDs, e.Offsets = append(e.IDs, sub.added), append(e.Offsets, [2]int{orig(subStart), orig(npos)})
				continue
			}
			if err := t.encodePiece(e, sub.text, subStart, orig); err != nil {
				return nil, err
			}
		}
	}
	if addSpecial {
		for _, id := range t.suffix {
			e.IDs, e.Offsets = append(e.IDs, id), append(e.Offsets, [2]int{len(text), len(text)})
		}
	}
	return e, nil
}

// PrefixTokenCount returns the position in e = EncodeOffsets(text, addSpecial) where the tokens of
// text[:c] end: the post-processor's leading tokens (when e has them) plus len(Encode(text[:c], false)). The
// tokens of the segments before the one holding c are reused and only that segment's part before c is
// encoded again. SpecForge finds loss-mask boundaries this way (encoding prefixes), so masks match it token
// for token.
func (t *Tokenizer) PrefixTokenCount(text string, e *Encoding, c int) (int, error) {
	for i, seg := range e.segments {
		if c > seg.end {
			continue
		}
		if c == seg.start {
			return seg.firstToken, nil
		}
		if c == seg.end { // segments are encoded independently: the prefix holds this one whole
			if i+1 < len(e.segments) {
				return e.segments[i+1].firstToken, nil
			}
			return len(e.IDs) - e.suffix, nil
		}
		if seg.added { // c cuts an added token: the prefix tokenizes differently
			ids, err := t.Encode(text[:c], false)
			return e.prefix + len(ids), err
		}
		ids, err := t.Encode(text[seg.start:c], false)
		return seg.firstToken + len(ids), err
	}
	return len(e.IDs) - e.suffix, nil
}

// composeAlign chains alignments: outer maps the input of the second normaliser to the original text.
func composeAlign(outer, inner []int) []int {
	if outer == nil {
		return inner
	}
	out := make([]int, len(inner))
	for i, v := range inner {
		out[i] = outer[v]
	}
	return out
}

// encodePiece runs the pre-tokenizer and the model over normalised text that starts at byte base of the
// normalised segment; orig maps normalised positions to the original text.
func (t *Tokenizer) encodePiece(e *Encoding, text string, base int, orig func(int) int) error {
	var pieces []string
	if t.split != nil {
		var err error
		if pieces, err = t.split.split(text); err != nil {
			return err
		}
	} else {
		pieces = chunk(text)
	}
	at := base
	for _, p := range pieces {
		word := p
		if t.byteLevel {
			word = byteMap(p)
		}
		ids, sizes, err := t.encodeWord(word)
		if err != nil {
			return err
		}
		for i, id := range ids {
			e.IDs = append(e.IDs, id)
			e.Offsets = append(e.Offsets, [2]int{orig(at), orig(at + int(sizes[i]))})
			at += int(sizes[i])
		}
	}
	return nil
}

// chunk cuts text that has no pre-tokenizer (SentencePiece-style models, which run BPE over the whole
// normalised text) into pieces of at most maxChunkBytes, so one long input does not become one BPE word
// (about 30 bytes of memory per byte). The cut is, when the window has one, where a ▁ (U+2581, the
// metaspace) follows another character: SentencePiece pieces start at ▁ and only runs of ▁ contain more
// than one, so no token spans such a point and the cut changes nothing. Otherwise it is at the last
// character boundary.
func chunk(text string) []string {
	const meta = "\u2581"
	var out []string
	for len(text) > maxChunkBytes {
		cut := runeStartBefore(text, maxChunkBytes)
		for i := strings.LastIndex(text[:cut], meta); i > 0; i = strings.LastIndex(text[:i], meta) {
			if !strings.HasSuffix(text[:i], meta) {
				cut = i
				break
			}
		}
		out = append(out, text[:cut])
		text = text[cut:]
	}
	return append(out, text)
}

// maxCached bounds the pre-token cache, as the tokenizers library's does.
const (
	maxCached      = 1 << 17
	maxCachedBytes = 256
)

type cachedWord struct {
	ids, sizes []int32
}

func (t *Tokenizer) encodeWord(word string) ([]int32, []int32, error) {
	if v, ok := t.cache.Load(word); ok {
		c := v.(cachedWord)
		return c.ids, c.sizes, nil
	}
	ids, sizes, err := t.model.tokenize(nil, nil, word, t.byteLevel)
	if err != nil {
		return nil, nil, err
	}
	if len(word) <= maxCachedBytes {
		t.cacheMu.Lock()
		if t.cached < maxCached {
			t.cached++
			t.cache.Store(word, cachedWord{ids, sizes})
		}
		t.cacheMu.Unlock()
	}
	return ids, sizes, nil
}

func byteMap(s string) string {
	var b strings.Builder
	b.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteToRune[s[i]])
	}
	return b.String()
}

// Decode turns ids back into text; skipSpecial drops special added tokens. Ids past the tokenizer's
// vocabulary decode to nothing, as in Hugging Face's tokenizers: a model's embedding is often padded beyond
// its tokenizer (Qwen's 151,936 rows for 151,665 tokens), and an untrained row can still win an argmax.
func (t *Tokenizer) Decode(ids []int32, skipSpecial bool) (string, error) {
	tokens := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 {
			return "", fmt.Errorf("token id %d is negative", id)
		}
		if int(id) >= len(t.idToToken) {
			continue
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
