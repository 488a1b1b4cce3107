package generate

import (
	"context"
	"testing"

	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/model"
)

// TestGenerateBatchMatchesSingle decodes three prompts together and one by one: greedy outputs agree.
func TestGenerateBatchMatchesSingle(t *testing.T) {
	m, err := model.Load(goldentest.Shared(t, "assets", "models", "stories260K"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prompts := [][]int32{{1, 403, 407}, {1, 300, 420}, {1, 261, 376}}
	batch, err := GenerateBatch(context.Background(), m, prompts, 20, SamplingParams{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range prompts {
		single, err := Generate(context.Background(), m, p, Options{MaxNewTokens: 20})
		if err != nil {
			t.Fatal(err)
		}
		if len(single.Tokens) != len(batch[i]) {
			t.Fatalf("prompt %d: batch gives %d tokens, single %d", i, len(batch[i]), len(single.Tokens))
		}
		for k := range single.Tokens {
			if single.Tokens[k] != batch[i][k] {
				t.Fatalf("prompt %d: batch %v, single %v", i, batch[i], single.Tokens)
			}
		}
	}
}
