package tokenizer

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/specforge/specforge/internal/goldentest"
	"golang.org/x/text/unicode/norm"
)

// checkEncoding fails t unless e's ids are tokens of tok and its offsets are ordered ranges inside text.
func checkEncoding(t *testing.T, tok *Tokenizer, text string, e *Encoding) {
	t.Helper()
	if len(e.Offsets) != len(e.IDs) {
		t.Fatalf("%d ids, %d offsets", len(e.IDs), len(e.Offsets))
	}
	last := 0
	for i, id := range e.IDs {
		if id < 0 || int(id) >= tok.VocabSize() {
			t.Fatalf("token %d: id %d out of [0, %d)", i, id, tok.VocabSize())
		}
		o := e.Offsets[i]
		if o[0] < last || o[1] < o[0] || o[1] > len(text) {
			t.Fatalf("token %d: offsets %v after %d, text of %d bytes", i, o, last, len(text))
		}
		last = o[0]
	}
}

// FuzzLoad parses tokenizer.json bytes: a bad file must be an error, never a panic, and a tokenizer that
// loads must encode and decode. The committed seeds in testdata/fuzz/FuzzLoad are cut from the shared
// tokenizers (stories260K whole; Qwen3 and Llama 3 with the byte alphabet, their first 200 usable merges
// and first 8 added tokens, ids renumbered densely).
func FuzzLoad(f *testing.F) {
	const model = `"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<0x41>": 3}, "merges": ["a b"], "byte_fallback": true, "unk_token": "a"}`
	valid := `{"added_tokens": [{"id": 4, "content": "<s>", "special": true}], "normalizer": {"type": "NFC"}, ` +
		`"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\p{L}{1,3}| ?[^\\s\\p{L}]+|\\s+(?!\\S)"}, "behavior": "Isolated"}, ` +
		`"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {"<s>": {"ids": [4]}}}, ` +
		`"decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1}]}, ` + model + `}`
	f.Add([]byte(valid))
	f.Add([]byte(valid[:len(valid)/2]))
	f.Add([]byte(`{` + model + `}`))
	f.Add([]byte(`{"pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}, ` + model + `}`))
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": -1}}}`))
	f.Add([]byte(`{"added_tokens": [{"id": -1, "content": "x"}], "model": {"type": "BPE", "vocab": {}}}`))
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": 8589934592}}}`))
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 16777215}}}`))
	f.Add([]byte(`{"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "x{ééé}"}, "behavior": "Isolated"}, ` + model + `}`))
	f.Add([]byte(`{"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(?:a+)+b"}, "behavior": "Isolated"}, ` + model + `}`))
	f.Add([]byte(`{"normalizer": {"type": "Replace", "pattern": {"String": "a"}, "content": "aa"}, ` + model + `}`))
	f.Add([]byte(`{"model": {"type": "WordPiece"}}`))
	f.Add([]byte(`[]`))
	texts := []string{"", "ab ba", "aaaa bbbb  \n\tA", "<s>ab</s>", "é\xff", strings.Repeat("a", 100)}
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := parse("fuzz.json", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.json: ") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, text := range texts {
			e, err := tok.EncodeOffsets(text, true)
			if err != nil {
				continue // a character the vocabulary lacks, or a pattern past its budget
			}
			checkEncoding(t, tok, text, e)
			if _, err := tok.Decode(e.IDs, false); err != nil {
				t.Fatalf("decode %v: %v", e.IDs, err)
			}
		}
	})
}

// FuzzEncode encodes text with real tokenizers: ids must be tokens, offsets ordered ranges inside the text,
// and decoding must give the text back where the tokenizer is lossless: GPT-2 and Qwen3 (byte-level, no
// space clean-up) for valid UTF-8, Qwen3 only for NFC text since it normalises to NFC.
func FuzzEncode(f *testing.F) {
	for _, s := range []string{
		"Hello world, it's 2024!\n\n  indented\tcode()",
		"<|im_start|>user\nHi 🤗 café<|im_end|>\n<|endoftext|>",
		"e\u0301 combining, 日本語のテキスト, العربية",
		"caf\xe9 ok \xff\xfe!",
		"   \n\n\r\n   x   ",
		"I'LL SHOUT, you'd've 12345678 3.14",
	} {
		f.Add(s)
	}
	gpt2, qwen3 := loadShared(f, "gpt2"), loadShared(f, "qwen3")
	stories, err := Load(goldentest.Shared(f, "assets", "models", "stories260K"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string) {
		for _, c := range []struct {
			name      string
			tok       *Tokenizer
			roundTrip bool
		}{
			{"gpt2", gpt2, utf8.ValidString(text)},
			{"qwen3", qwen3, utf8.ValidString(text) && norm.NFC.IsNormalString(text)},
			{"stories260K", stories, false},
		} {
			e, err := c.tok.EncodeOffsets(text, true)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			checkEncoding(t, c.tok, text, e)
			back, err := c.tok.Decode(e.IDs, false)
			if err != nil {
				t.Fatalf("%s: decode: %v", c.name, err)
			}
			if c.roundTrip && back != text {
				t.Fatalf("%s: decode(encode(%q)) = %q", c.name, text, back)
			}
		}
	})
}

// FuzzRegex compiles a pattern and splits text with it: no panic, an error or pieces that tile the text,
// none longer than maxChunkBytes (a gap by at most the rest of a character); the fuzzer's own deadline
// catches a split that does not end.
func FuzzRegex(f *testing.F) {
	f.Add(gpt2Pattern, "Hello world, it's 2024!\n\n  x")
	f.Add(`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`, "I'LL go   \n\n 123456 ÀB")
	f.Add(`x{ééé}`, "xxx")
	f.Add(`(?:a+)+b`, strings.Repeat("a", 32))
	f.Add(`(?:a|aa)*c|[\x41-\u00ff]{2,}|\.(?=\d)`, "aaaaaaaaaaaaaaaaaaaaaaaaaaaa AÀÿ .5")
	f.Add(`[^\S\n]+|[\p{Han}\p{Hiragana}\p{Katakana}]|\w+|\D`, "日本語 のテキスト \n\t word_1")
	f.Fuzz(func(t *testing.T, src, text string) {
		p, err := compilePattern(src)
		if err != nil {
			return
		}
		pieces, err := p.split(text)
		if err != nil {
			return
		}
		if strings.Join(pieces, "") != text {
			t.Fatalf("pieces %q do not tile %q", pieces, text)
		}
		for _, s := range pieces {
			if s == "" || len(s) > maxChunkBytes+utf8.UTFMax {
				t.Fatalf("piece of %d bytes", len(s))
			}
		}
	})
}
