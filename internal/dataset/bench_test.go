package dataset

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/goldentest"
)

// writeConversations generates n ShareGPT conversations of 2 to 6 turns with TinyStories sentences.
func writeConversations(b *testing.B, path string, n int) int64 {
	raw, err := os.ReadFile(goldentest.Shared(b, "assets", "datasets", "tinystories", "tinystories_valid_head.txt"))
	if err != nil {
		b.Fatal(err)
	}
	sentences := strings.Split(string(raw), ". ")
	r := rand.New(rand.NewPCG(9, 9))
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := 0; i < n; i++ {
		var conv []map[string]string
		turns := 2 + 2*r.IntN(3)
		for j := 0; j < turns; j++ {
			from := "human"
			if j%2 == 1 {
				from = "gpt"
			}
			var text []string
			for k := 0; k < 1+r.IntN(4); k++ {
				text = append(text, strings.TrimSpace(sentences[r.IntN(len(sentences))]))
			}
			conv = append(conv, map[string]string{"from": from, "value": strings.Join(text, ". ") + "."})
		}
		line, _ := json.Marshal(map[string]any{"id": fmt.Sprint(i), "conversations": conv})
		w.Write(append(line, '\n'))
	}
	w.Flush()
	f.Close()
	st, _ := os.Stat(path)
	return st.Size()
}

// BenchmarkPrepare100k prepares 100,000 generated conversations with the Qwen3 tokenizer and the Qwen2.5
// chat template (rendering, tokenization, loss masks, cache write).
func BenchmarkPrepare100k(b *testing.B) {
	dir := b.TempDir()
	data := filepath.Join(dir, "conversations.jsonl")
	size := writeConversations(b, data, 100000)
	opt := qwenPrepare(b, []string{data}, "")
	opt.MaxLength = 2048
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		opt.CacheDir = filepath.Join(dir, fmt.Sprint("cache", i))
		p, err := Prepare(opt)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(p.Train.Samples), "samples")
		b.ReportMetric(float64(p.Train.Tokens)/p.Seconds, "tokens/s")
	}
	b.SetBytes(size)
}
