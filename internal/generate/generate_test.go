package generate

import (
	"context"
	"slices"
	"testing"

	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/model"
)

// TestOnToken hands out each token as it is produced; returning false ends the generation with that token.
func TestOnToken(t *testing.T) {
	m, err := model.Load(goldentest.Shared(t, "assets", "models", "stories260K"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	full, err := Generate(context.Background(), m, []int32{1}, Options{MaxNewTokens: 20})
	if err != nil {
		t.Fatal(err)
	}
	var handed []int32
	res, err := Generate(context.Background(), m, []int32{1}, Options{MaxNewTokens: 20, OnToken: func(tok int32) bool {
		handed = append(handed, tok)
		return len(handed) < 5
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(handed, res.Tokens) || !slices.Equal(res.Tokens, full.Tokens[:5]) {
		t.Errorf("handed %v, result %v, want the first 5 of %v", handed, res.Tokens, full.Tokens)
	}
}
