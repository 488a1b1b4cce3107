package tokenizer

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/specforge/specforge/internal/goldentest"
)

func loadShared(t testing.TB, name string) *Tokenizer {
	t.Helper()
	dir := goldentest.Shared(t, "assets", "tokenizers", name)
	var tok *Tokenizer
	var err error
	if name == "gpt2" {
		tok, err = LoadVocabMerges(filepath.Join(dir, "vocab.json"), filepath.Join(dir, "merges.txt"))
	} else {
		tok, err = Load(dir)
	}
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestVectors runs llama.cpp's tokenizer test vectors (made with Hugging Face tokenizers,
// add_special_tokens=False) and checks that decoding gives the text back.
func TestVectors(t *testing.T) {
	for _, c := range []struct{ vectors, tokenizer string }{
		{"ggml-vocab-gpt-2.gguf", "gpt2"},
		{"ggml-vocab-llama-bpe.gguf", "llama3"},
		{"ggml-vocab-qwen2.gguf", "qwen3"},
	} {
		t.Run(c.tokenizer, func(t *testing.T) {
			tok := loadShared(t, c.tokenizer)
			base := goldentest.Shared(t, "assets", "tokenizers", "test_vectors", c.vectors)
			inp, err := os.ReadFile(base + ".inp")
			if err != nil {
				t.Fatal(err)
			}
			out, err := os.ReadFile(base + ".out")
			if err != nil {
				t.Fatal(err)
			}
			// Every case, the last included, ends with the separator line.
			texts := strings.Split(strings.TrimSuffix(string(inp), "\n__ggml_vocab_test__\n"), "\n__ggml_vocab_test__\n")
			wants := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			if len(texts) != len(wants) {
				t.Fatalf("%d inputs, %d outputs", len(texts), len(wants))
			}
			for i, text := range texts {
				got, err := tok.Encode(text, false)
				if err != nil {
					t.Fatalf("case %d %q: %v", i, text, err)
				}
				var want []int32
				for _, f := range strings.Fields(wants[i]) {
					id, _ := strconv.Atoi(f)
					want = append(want, int32(id))
				}
				if !equalIDs(got, want) {
					t.Errorf("case %d %q:\n got %v\nwant %v", i, text, got, want)
					continue
				}
				back, err := tok.Decode(got, false)
				if err != nil {
					t.Fatal(err)
				}
				if c.tokenizer != "llama3" && back != text { // llama3 cleans up spaces on decode
					t.Errorf("case %d: decode(encode(%q)) = %q", i, text, back)
				}
			}
		})
	}
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestOffsets checks that byte-level token offsets tile the input and that each token's bytes are exactly
// the input bytes its offsets name.
func TestOffsets(t *testing.T) {
	for _, name := range []string{"llama3", "qwen3"} {
		tok := loadShared(t, name)
		// The last text is not valid UTF-8 (a Latin-1 é, stray bytes): each byte is kept as one byte.
		texts := []string{"Hello world, it's 2024!\n\n  indented\tcode()", "<|im_start|>user\nHi 🤗 café<|im_end|>\n", "e\u0301 combining", "caf\xe9 ok \xff\xfe!"}
		for _, text := range texts {
			e, err := tok.EncodeOffsets(text, false)
			if err != nil {
				t.Fatal(err)
			}
			at := 0
			for i, id := range e.IDs {
				off := e.Offsets[i]
				if off[0] != at {
					t.Fatalf("%s %q: token %d starts at %d, want %d", name, text, i, off[0], at)
				}
				at = off[1]
				if tok.addedByID[id] != nil {
					if text[off[0]:off[1]] != tok.Token(id) {
						t.Errorf("%s: added token %q at %v", name, tok.Token(id), off)
					}
					continue
				}
				if name == "qwen3" && strings.Contains(text, "\u0301") {
					continue // NFC composed the text: offsets name the original characters
				}
				b := decodeByteLevel([]string{tok.Token(id)})[0]
				if b != text[off[0]:off[1]] && !strings.Contains(b, "\uFFFD") && utf8.ValidString(text) {
					t.Errorf("%s: token %q decodes to %q but covers %q", name, tok.Token(id), b, text[off[0]:off[1]])
				}
			}
			if at != len(text) {
				t.Errorf("%s %q: offsets end at %d of %d", name, text, at, len(text))
			}
		}
	}
}

// TestInvalidUTF8ByteFallback encodes bytes that are not UTF-8 with a SentencePiece-style model: each
// becomes its <0xNN> byte token, covering one byte.
func TestInvalidUTF8ByteFallback(t *testing.T) {
	tok, err := Load(goldentest.Shared(t, "assets", "models", "stories260K"))
	if err != nil {
		t.Fatal(err)
	}
	text := "caf\xe9 ok"
	e, err := tok.EncodeOffsets(text, false)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for i, id := range e.IDs {
		if tok.Token(id) == "<0xE9>" {
			found = e.Offsets[i] == [2]int{3, 4}
		}
	}
	if !found || e.Offsets[len(e.Offsets)-1][1] != len(text) {
		t.Errorf("tokens %v offsets %v: want <0xE9> covering byte 3", e.IDs, e.Offsets)
	}
}

func TestLossyUTF8(t *testing.T) {
	cases := map[string]string{
		"ok é":         "ok é",
		"\xe2\x82A":    "\uFFFDA",            // truncated 3-byte sequence: one replacement
		"\xff\xfe":     "\uFFFD\uFFFD",       // two invalid bytes: two replacements
		"\xf0\x9f\x98": "\uFFFD",             // truncated emoji
		"\xed\xa0\x80": "\uFFFD\uFFFD\uFFFD", // surrogate: ED A0 is not a valid prefix
		"a\xc3":        "a\uFFFD",
	}
	for in, want := range cases {
		if got := lossyUTF8([]byte(in)); got != want {
			t.Errorf("lossyUTF8(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPrefixTokenCount compares the shortcut with encoding every prefix of chat-formatted text.
func TestPrefixTokenCount(t *testing.T) {
	tok := loadShared(t, "qwen3")
	text := "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nMy name  is\n\nQwen.<|im_end|>\n"
	e, err := tok.EncodeOffsets(text, false)
	if err != nil {
		t.Fatal(err)
	}
	for c := 0; c <= len(text); c++ {
		want, err := tok.Encode(text[:c], false)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tok.PrefixTokenCount(text, e, c)
		if err != nil {
			t.Fatal(err)
		}
		if got != len(want) {
			t.Fatalf("prefix %q: %d tokens, want %d", text[:c], got, len(want))
		}
	}
	// With the post-processor's tokens (stories260K adds BOS), positions count the leading ones too.
	stories, err := Load(goldentest.Shared(t, "assets", "models", "stories260K"))
	if err != nil {
		t.Fatal(err)
	}
	text = "Once upon a time, there was a cat."
	e, err = stories.EncodeOffsets(text, true)
	if err != nil {
		t.Fatal(err)
	}
	for c := 0; c <= len(text); c++ {
		want, _ := stories.Encode(text[:c], false)
		if got, err := stories.PrefixTokenCount(text, e, c); err != nil || got != 1+len(want) {
			t.Fatalf("stories prefix %q: %d tokens (%v), want BOS + %d", text[:c], got, err, len(want))
		}
	}
}
