package generate

import (
	"testing"

	"github.com/specforge/specforge/internal/golden"
	"github.com/specforge/specforge/internal/model"
)

// TestGenerateBatchMatchesSingle decodes three prompts together and one by one: greedy outputs agree.
func TestGenerateBatchMatchesSingle(t *testing.T) {
	m, err := model.Load(golden.Shared(t, "assets", "models", "stories260K"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prompts := [][]int32{{1, 403, 407}, {1, 300, 420}, {1, 261, 376}}
	batch, err := GenerateBatch(m, prompts, 20, SamplingParams{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range prompts {
		ids := make([]int, len(p))
		for k, v := range p {
			ids[k] = int(v)
		}
		single, err := Generate(m, ids, Options{MaxNewTokens: 20})
		if err != nil {
			t.Fatal(err)
		}
		for k := range single.Tokens {
			if int32(single.Tokens[k]) != batch[i][k] {
				t.Fatalf("prompt %d: batch %v, single %v", i, batch[i], single.Tokens)
			}
		}
	}
}
