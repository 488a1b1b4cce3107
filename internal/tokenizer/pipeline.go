package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// byteToRune is GPT-2's reversible map from bytes to printable runes: printable Latin-1 bytes map to
// themselves, the others to U+0100 upwards in byte order.
var byteToRune, runeToByte = func() ([256]rune, map[rune]byte) {
	var b2r [256]rune
	r2b := map[rune]byte{}
	next := rune(256)
	for b := 0; b < 256; b++ {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF {
			b2r[b] = rune(b)
		} else {
			b2r[b] = next
			next++
		}
		r2b[b2r[b]] = byte(b)
	}
	return b2r, r2b
}()

// gpt2Pattern is the pre-tokenizer regex of GPT-2's ByteLevel with use_regex.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// normalizer rewrites text and returns, for every output byte (and one past the end), the input byte it
// came from, so token offsets can point into the original text.
type normalizer func(string) (string, []int)

func identityAlign(n int) []int {
	a := make([]int, n+1)
	for i := range a {
		a[i] = i
	}
	return a
}

// unicodeForm normalises with a Unicode form, aligning each normalisation segment to its input.
func unicodeForm(f norm.Form) normalizer {
	return func(s string) (string, []int) {
		if f.IsNormalString(s) {
			return s, identityAlign(len(s))
		}
		var out []byte
		var align []int
		var it norm.Iter
		it.InitString(f, s)
		for !it.Done() {
			start := it.Pos()
			seg := it.Next()
			end := it.Pos()
			same := string(seg) == s[start:end]
			for i := range seg {
				if same {
					align = append(align, start+i)
				} else {
					align = append(align, start)
				}
			}
			out = append(out, seg...)
		}
		return string(out), append(align, len(s))
	}
}

// perRune maps every rune through fn, aligning the output of each rune to its input position.
func perRune(fn func(rune) rune) normalizer {
	return func(s string) (string, []int) {
		var b strings.Builder
		align := make([]int, 0, len(s)+1)
		for i, r := range s {
			n := b.Len()
			b.WriteRune(fn(r))
			for k := n; k < b.Len(); k++ {
				align = append(align, i)
			}
		}
		return b.String(), append(align, len(s))
	}
}

type component struct {
	Type string `json:"type"`
}

func parseNormalizer(raw json.RawMessage) ([]normalizer, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var c struct {
		Type        string            `json:"type"`
		Normalizers []json.RawMessage `json:"normalizers"`
		Prepend     string            `json:"prepend"`
		Pattern     struct {
			String *string `json:"String"`
			Regex  *string `json:"Regex"`
		} `json:"pattern"`
		Content string `json:"content"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var out []normalizer
		for _, n := range c.Normalizers {
			sub, err := parseNormalizer(n)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
		return out, nil
	case "NFC":
		return []normalizer{unicodeForm(norm.NFC)}, nil
	case "NFD":
		return []normalizer{unicodeForm(norm.NFD)}, nil
	case "NFKC":
		return []normalizer{unicodeForm(norm.NFKC)}, nil
	case "NFKD":
		return []normalizer{unicodeForm(norm.NFKD)}, nil
	case "Lowercase":
		return []normalizer{perRune(unicode.ToLower)}, nil
	case "Prepend":
		p := c.Prepend
		return []normalizer{func(s string) (string, []int) {
			if s == "" {
				return s, []int{0}
			}
			align := make([]int, len(p), len(p)+len(s)+1) // the prepended bytes point at the first input byte
			return p + s, append(align, identityAlign(len(s))...)
		}}, nil
	case "Replace":
		if c.Pattern.String == nil {
			return nil, fmt.Errorf("Replace with a regex pattern is not supported")
		}
		from, to := *c.Pattern.String, c.Content
		if from == "" {
			return nil, fmt.Errorf("Replace with an empty pattern")
		}
		return []normalizer{func(s string) (string, []int) {
			if !strings.Contains(s, from) {
				return s, identityAlign(len(s))
			}
			var b strings.Builder
			align := make([]int, 0, len(s)+1)
			for i := 0; i < len(s); {
				if strings.HasPrefix(s[i:], from) {
					b.WriteString(to)
					for range len(to) {
						align = append(align, i)
					}
					i += len(from)
					continue
				}
				b.WriteByte(s[i])
				align = append(align, i)
				i++
			}
			return b.String(), append(align, len(s))
		}}, nil
	}
	return nil, fmt.Errorf("type %q is not supported (supported: Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace)", c.Type)
}

func (t *Tokenizer) parsePreTokenizer(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var c struct {
		Type           string                          `json:"type"`
		Pretokenizers  []json.RawMessage               `json:"pretokenizers"`
		Pattern        struct{ String, Regex *string } `json:"pattern"`
		Behavior       string                          `json:"behavior"`
		Invert         bool                            `json:"invert"`
		AddPrefixSpace bool                            `json:"add_prefix_space"`
		UseRegex       *bool                           `json:"use_regex"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	switch c.Type {
	case "Sequence":
		for _, p := range c.Pretokenizers {
			if err := t.parsePreTokenizer(p); err != nil {
				return err
			}
		}
		return nil
	case "Split":
		if t.split != nil || t.byteLevel {
			return fmt.Errorf("only one Split, before ByteLevel, is supported")
		}
		if c.Behavior != "Isolated" || c.Invert {
			return fmt.Errorf("Split behavior %q (invert %v) is not supported (supported: Isolated)", c.Behavior, c.Invert)
		}
		src := ""
		switch {
		case c.Pattern.Regex != nil:
			src = *c.Pattern.Regex
		case c.Pattern.String != nil:
			src = quoteMeta(*c.Pattern.String)
		default:
			return fmt.Errorf("Split without a pattern")
		}
		p, err := compilePattern(src)
		if err != nil {
			return err
		}
		t.split = p
		return nil
	case "ByteLevel":
		if c.AddPrefixSpace {
			return fmt.Errorf("ByteLevel add_prefix_space is not supported")
		}
		t.byteLevel = true
		if c.UseRegex == nil || *c.UseRegex {
			if t.split != nil {
				return fmt.Errorf("ByteLevel with use_regex after a Split is not supported")
			}
			t.split, _ = compilePattern(gpt2Pattern)
		}
		return nil
	}
	return fmt.Errorf("type %q is not supported (supported: Sequence, Split, ByteLevel)", c.Type)
}

func quoteMeta(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteRune('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (t *Tokenizer) parsePostProcessor(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var c struct {
		Type       string            `json:"type"`
		Processors []json.RawMessage `json:"processors"`
		Single     []struct {
			SpecialToken *struct{ ID string } `json:"SpecialToken"`
			Sequence     *struct{ ID string } `json:"Sequence"`
		} `json:"single"`
		SpecialTokens map[string]struct {
			IDs []int32 `json:"ids"`
		} `json:"special_tokens"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	switch c.Type {
	case "Sequence":
		for _, p := range c.Processors {
			if err := t.parsePostProcessor(p); err != nil {
				return err
			}
		}
		return nil
	case "ByteLevel":
		return nil // only adjusts offsets
	case "TemplateProcessing":
		seen := false
		for _, piece := range c.Single {
			switch {
			case piece.Sequence != nil:
				seen = true
			case piece.SpecialToken != nil:
				st, ok := c.SpecialTokens[piece.SpecialToken.ID]
				if !ok {
					return fmt.Errorf("template names special token %q that it does not define", piece.SpecialToken.ID)
				}
				if seen {
					t.suffix = append(t.suffix, st.IDs...)
				} else {
					t.prefix = append(t.prefix, st.IDs...)
				}
			}
		}
		return nil
	}
	return fmt.Errorf("type %q is not supported (supported: Sequence, ByteLevel, TemplateProcessing)", c.Type)
}

// decoder turns the token strings of a sequence into text pieces.
type decoder func(tokens []string) []string

func parseDecoder(raw json.RawMessage) ([]decoder, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var c struct {
		Type     string                   `json:"type"`
		Decoders []json.RawMessage        `json:"decoders"`
		Pattern  struct{ String *string } `json:"pattern"`
		Content  string                   `json:"content"`
		Start    int                      `json:"start"`
		Stop     int                      `json:"stop"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var out []decoder
		for _, d := range c.Decoders {
			sub, err := parseDecoder(d)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
		return out, nil
	case "ByteLevel":
		return []decoder{decodeByteLevel}, nil
	case "Replace":
		if c.Pattern.String == nil {
			return nil, fmt.Errorf("Replace with a regex pattern is not supported")
		}
		from, to := *c.Pattern.String, c.Content
		return []decoder{func(ts []string) []string {
			for i := range ts {
				ts[i] = strings.ReplaceAll(ts[i], from, to)
			}
			return ts
		}}, nil
	case "ByteFallback":
		return []decoder{decodeByteFallback}, nil
	case "Fuse":
		return []decoder{func(ts []string) []string { return []string{strings.Join(ts, "")} }}, nil
	case "Strip":
		content, start, stop := c.Content, c.Start, c.Stop
		// The tokenizers library reads content as one char; an empty one would strip nothing start times,
		// a loop that never ends for a start of 1<<62.
		if utf8.RuneCountInString(content) != 1 {
			return nil, fmt.Errorf("Strip content %q is not one character", content)
		}
		return []decoder{func(ts []string) []string {
			for i := range ts {
				s := ts[i]
				for n := 0; n < start && strings.HasPrefix(s, content); n++ {
					s = s[len(content):]
				}
				for n := 0; n < stop && strings.HasSuffix(s, content); n++ {
					s = s[:len(s)-len(content)]
				}
				ts[i] = s
			}
			return ts
		}}, nil
	}
	return nil, fmt.Errorf("type %q is not supported (supported: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip)", c.Type)
}

// decodeByteLevel maps byte-level runes back to bytes; other runes keep their UTF-8 bytes. Invalid UTF-8 in
// the result becomes U+FFFD, one per maximal ill-formed subsequence, as Rust's String::from_utf8_lossy does.
func decodeByteLevel(ts []string) []string {
	var buf []byte
	for _, s := range ts {
		for _, r := range s {
			if b, ok := runeToByte[r]; ok {
				buf = append(buf, b)
			} else {
				buf = utf8.AppendRune(buf, r)
			}
		}
	}
	return []string{lossyUTF8(buf)}
}

// lossyUTF8 replaces every maximal subpart of an ill-formed UTF-8 sequence with U+FFFD (the Unicode
// recommended practice that Rust and Python follow; Go's strings.ToValidUTF8 merges whole runs instead).
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var out strings.Builder
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || size > 1 {
			out.WriteRune(r)
			i += size
			continue
		}
		out.WriteRune(utf8.RuneError)
		i += maximalSubpart(b[i:])
	}
	return out.String()
}

// maximalSubpart is the length of the longest prefix of b that starts a well-formed sequence (at least 1).
func maximalSubpart(b []byte) int {
	lo, hi := byte(0x80), byte(0xBF)
	var need int
	switch c := b[0]; {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC || c == 0xEE || c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(b); k++ {
		if b[n] < lo || b[n] > hi {
			break
		}
		lo, hi = 0x80, 0xBF
		n++
	}
	return n
}

// decodeByteFallback turns runs of <0xXX> tokens into the text their bytes spell, or one U+FFFD per byte
// when the run is not valid UTF-8.
func decodeByteFallback(ts []string) []string {
	var out []string
	var run []byte
	flush := func() {
		if len(run) == 0 {
			return
		}
		if utf8.Valid(run) {
			out = append(out, string(run))
		} else {
			out = append(out, strings.Repeat("\uFFFD", len(run)))
		}
		run = run[:0]
	}
	for _, s := range ts {
		if len(s) == 6 && strings.HasPrefix(s, "<0x") && s[5] == '>' {
			var b byte
			if _, err := fmt.Sscanf(s[3:5], "%02X", &b); err == nil {
				run = append(run, b)
				continue
			}
		}
		flush()
		out = append(out, s)
	}
	flush()
	return out
}
