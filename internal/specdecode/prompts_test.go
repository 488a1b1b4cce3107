package specdecode

import (
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/goldentest"
)

// TestLoadPrompts reads each named benchmark and a paragraph file, with and without skipping.
func TestLoadPrompts(t *testing.T) {
	dir := goldentest.Shared(t, "assets", "datasets")
	for name := range Benchmarks {
		all, err := LoadPrompts(name, dir, 0, 5)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rest, err := LoadPrompts(name, dir, 2, 3)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(all) != 5 || len(rest) != 3 || rest[0] != all[2] || rest[2] != all[4] || strings.TrimSpace(all[0]) == "" {
			t.Errorf("%s: %d prompts, after skipping 2: %d, %q vs %q", name, len(all), len(rest), rest[0], all[2])
		}
	}
	txt := goldentest.Shared(t, "assets", "datasets", "tinystories", "tinystories_valid_head.txt")
	all, err := LoadPrompts(txt, "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	tail, err := LoadPrompts(txt, "", len(all)-3, 0)
	if err != nil || len(tail) != 3 || tail[2] != all[len(all)-1] || strings.Contains(tail[0], "\n\n") {
		t.Errorf("last 3 paragraphs: %d, %v", len(tail), err)
	}
	if _, err := LoadPrompts(txt, "", len(all), 0); err == nil || !strings.Contains(err.Error(), "no prompts after skipping") {
		t.Errorf("skipping everything: %v", err)
	}
}
