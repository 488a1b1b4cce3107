package tokenizer

import (
	"os"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/goldentest"
)

// BenchmarkEncode reports encode throughput (MB/s) on TinyStories text, one call per paragraph, as a
// dataset is tokenized.
func BenchmarkEncode(b *testing.B) {
	raw, err := os.ReadFile(goldentest.Shared(b, "assets", "datasets", "tinystories", "tinystories_valid_head.txt"))
	if err != nil {
		b.Fatal(err)
	}
	paragraphs := strings.Split(string(raw), "\n")
	for _, name := range []string{"stories260K", "llama3", "qwen3", "gpt2"} {
		b.Run(name, func(b *testing.B) {
			var tok *Tokenizer
			if name == "stories260K" {
				var err error
				if tok, err = Load(goldentest.Shared(b, "assets", "models", "stories260K")); err != nil {
					b.Fatal(err)
				}
			} else {
				tok = loadShared(b, name)
			}
			b.SetBytes(int64(len(raw)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, p := range paragraphs {
					if _, err := tok.Encode(p, false); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
