package tokenizer

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/specforge/specforge/internal/goldentest"
)

// TestLoadRefusesBadIDs: token ids out of range were a panic (negative: index out of range [-1]) or an
// unbounded allocation (huge or sparse ids size the id -> token table); now each is an error naming the
// field, the token and the limit.
func TestLoadRefusesBadIDs(t *testing.T) {
	const tail = `"merges": []}}`
	for _, c := range []struct {
		name, json string
		want       []string
	}{
		{"negative vocab id", `{"model": {"type": "BPE", "vocab": {"a": 0, "b": -1}, ` + tail,
			[]string{"model.vocab", `"b"`, "-1", "maxVocabSize"}},
		{"negative added id", `{"added_tokens": [{"id": -1, "content": "<x>"}], "model": {"type": "BPE", "vocab": {"a": 0}, ` + tail,
			[]string{"added_tokens[0]", `"<x>"`, "-1"}},
		{"vocab id 2^33", `{"model": {"type": "BPE", "vocab": {"a": 8589934592}, ` + tail,
			[]string{"model.vocab", `"a"`, "8589934592", "maxVocabSize"}},
		{"added id 2^33", `{"added_tokens": [{"id": 0, "content": "<s>"}, {"id": 8589934592, "content": "<x>"}], "model": {"type": "BPE", "vocab": {"a": 0}, ` + tail,
			[]string{"added_tokens[1]", `"<x>"`, "8589934592"}},
		{"vocab id past int32", `{"model": {"type": "BPE", "vocab": {"a": 2147483647}, ` + tail,
			[]string{"model.vocab", "2147483647", "maxVocabSize"}},
		{"sparse ids", `{"model": {"type": "BPE", "vocab": {"a": 0, "b": 16000000}, ` + tail,
			[]string{"largest id 16000000", "maxUnusedIDs"}},
		{"sparse added id", `{"added_tokens": [{"id": 100000, "content": "<x>"}], "model": {"type": "BPE", "vocab": {"a": 0}, ` + tail,
			[]string{"largest id 100000", "maxUnusedIDs"}},
		{"post-processor id past the vocabulary", `{"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {"<s>": {"ids": [7]}}}, "model": {"type": "BPE", "vocab": {"a": 0}, ` + tail,
			[]string{"post_processor", "special token id 7"}},
		{"post-processor negative id", `{"post_processor": {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A"}}, {"SpecialToken": {"id": "</s>"}}], "special_tokens": {"</s>": {"ids": [-3]}}}, "model": {"type": "BPE", "vocab": {"a": 0}, ` + tail,
			[]string{"post_processor", "special token id -3"}},
		{"Strip decoder without content", `{"decoder": {"type": "Strip", "content": "", "start": 4611686018427387904}, "model": {"type": "BPE", "vocab": {"a": 0}, ` + tail,
			[]string{"decoder", "Strip content", "not one character"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse("tok.json", []byte(c.json))
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range append(c.want, "tok.json") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestLoadRefusesGzipBomb: a small tokenizer.json.gz that expands past maxFileBytes was read whole.
func TestLoadRefusesGzipBomb(t *testing.T) {
	if testing.Short() {
		t.Skip("expands 128 MiB")
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zeros := make([]byte, 1<<20)
	for range maxFileBytes>>20 + 1 {
		zw.Write(zeros)
	}
	zw.Close()
	path := filepath.Join(t.TempDir(), "tokenizer.json.gz")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(path)
	if err == nil || !strings.Contains(err.Error(), "maxFileBytes") || !strings.Contains(err.Error(), "decompressed") {
		t.Fatalf("got %v, want a maxFileBytes error for the decompressed file", err)
	}
}

// TestPatternCompileErrors: a multi-byte character inside {...} was sliced with a byte index into the
// pattern's runes (slice bounds out of range); bad counts were accepted; deep nesting recursed without
// bound.
func TestPatternCompileErrors(t *testing.T) {
	for _, c := range []struct{ pattern, want string }{
		{`x{ééé}`, "bad repetition"},
		{`x{é}`, "bad repetition"},
		{`\p{L}{日本語}`, "bad repetition"},
		{`a{1,é}`, "bad repetition"},
		{`a{-1}`, "bad repetition"},
		{`a{3,2}`, "bad repetition"},
		{`a{99999999999999999999}`, "bad repetition"},
		{strings.Repeat("(", 1<<20), "maxPatternNesting"},
		{strings.Repeat("(?:", 300) + "a" + strings.Repeat(")", 300), "maxPatternNesting"},
	} {
		_, err := compilePattern(c.pattern)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), quoteShort(c.pattern)) {
			t.Errorf("compile %.40q: got %.200v, want a %q error naming the pattern", c.pattern, err, c.want)
		}
	}
	p, err := compilePattern(`é{2}|\p{L}{1,3}`)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.split("ééébcdé"); err != nil || strings.Join(got, "|") != "éé|ébc|dé" {
		t.Errorf("split = %q, %v; want éé|ébc|dé", got, err)
	}
}

// TestPatternLimits: a catastrophic pattern took more than a minute on 32 characters, and quadratic
// patterns took unbounded time on long text; now each is an error naming the pattern and the limit, in well
// under a second.
func TestPatternLimits(t *testing.T) {
	for _, c := range []struct {
		pattern, text, limit string
	}{
		{`(?:a+)+b`, strings.Repeat("a", 32), "maxMatchSteps"},
		{`(?:a|a)+b`, strings.Repeat("a", 40), "maxMatchSteps"},
		{`(?:\s*)*x`, strings.Repeat(" ", 32) + "!", "maxMatchSteps"},
		{`a+b`, strings.Repeat("a", 1<<20), "matchStepsPerByte"},
		{`\s+(?=\S\S)`, strings.Repeat(" ", 1<<20), "matchStepsPerByte"},
		{`(?:ab)+c`, strings.Repeat("ab", 1<<16), "maxMatchDepth"},
	} {
		p, err := compilePattern(c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.split(c.text)
		if err == nil || !strings.Contains(err.Error(), c.limit) || !strings.Contains(err.Error(), quoteShort(c.pattern)) {
			t.Errorf("%q: got %v, want a %s error naming the pattern", c.pattern, err, c.limit)
		}
	}
}

// TestSplitCapsChunks: a long run of one class was one piece, a BPE word of unbounded size; now no piece
// is longer than maxChunkBytes, pieces tile the text and no character is cut in two.
func TestSplitCapsChunks(t *testing.T) {
	gpt2, err := compilePattern(gpt2Pattern)
	if err != nil {
		t.Fatal(err)
	}
	never, err := compilePattern(`x`)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		p    *pattern
		text string
	}{
		{"letters", gpt2, strings.Repeat("a", 5*maxChunkBytes/2)},
		{"two-byte letters, window cut mid-character", gpt2, "a" + strings.Repeat("é", maxChunkBytes)},
		{"spaces", gpt2, strings.Repeat(" ", 3*maxChunkBytes) + "x"},
		{"text between matches", never, "a" + strings.Repeat("日", maxChunkBytes)},
	} {
		t.Run(c.name, func(t *testing.T) {
			pieces, err := c.p.split(c.text)
			if err != nil {
				t.Fatal(err)
			}
			if len(pieces) < 2 || strings.Join(pieces, "") != c.text {
				t.Fatalf("%d pieces do not tile the text", len(pieces))
			}
			for i, s := range pieces {
				if len(s) > maxChunkBytes+utf8.UTFMax || !utf8.ValidString(s) {
					t.Errorf("piece %d: %d bytes, valid UTF-8 %v", i, len(s), utf8.ValidString(s))
				}
			}
		})
	}
}

// TestEncodeLongRun encodes a 1 MB run of letters (one piece before maxChunkBytes, now 16) with a byte-level
// tokenizer and checks that it decodes back. The BPE's O(n log n) merges make such a run slower than text
// (about 2 MB/s against 14); a 50 MB run takes 25 s on a 2-core machine, with memory bounded by the chunk.
func TestEncodeLongRun(t *testing.T) {
	tok := loadShared(t, "gpt2")
	text := strings.Repeat("a", 16*maxChunkBytes)
	ids, err := tok.Encode(text, false)
	if err != nil {
		t.Fatal(err)
	}
	back, err := tok.Decode(ids, false)
	if err != nil || back != text {
		t.Errorf("decode gave %d bytes (%v), want the %d input bytes", len(back), err, len(text))
	}
}

// TestChunkKeepsSentencePieceTokens: text without a pre-tokenizer (stories260K) is cut before a ▁ that
// follows a word, so a text longer than maxChunkBytes encodes exactly as one BPE word would.
func TestChunkKeepsSentencePieceTokens(t *testing.T) {
	tok, err := Load(goldentest.Shared(t, "assets", "models", "stories260K"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("Once upon a time,   there was a cat. ", 3*maxChunkBytes/37)
	got, err := tok.Encode(text, false)
	if err != nil {
		t.Fatal(err)
	}
	normalized := text
	for _, n := range tok.normalizers {
		normalized, _ = n(normalized)
	}
	if len(chunk(normalized)) < 3 {
		t.Fatalf("the text is not cut")
	}
	want, _, err := tok.model.tokenize(nil, nil, normalized, false)
	if err != nil {
		t.Fatal(err)
	}
	if !equalIDs(got, want) {
		t.Errorf("chunked encoding differs from one BPE word: %d vs %d tokens", len(got), len(want))
	}
}
