package tokenizer

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// testdata/split_reference.json holds splits made by Python's regex module (testdata/split_reference.py).
func TestPatternSplitsMatchReference(t *testing.T) {
	raw, err := os.ReadFile("testdata/split_reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref map[string]struct {
		Pattern string   `json:"pattern"`
		Cases   [][2]any `json:"cases"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	for name, r := range ref {
		p, err := compilePattern(r.Pattern)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, c := range r.Cases {
			text := c[0].(string)
			var want []string
			for _, w := range c[1].([]any) {
				want = append(want, w.(string))
			}
			got, err := p.split(text)
			if err != nil {
				t.Fatalf("%s: split(%q): %v", name, text, err)
			}
			if strings.Join(got, "\x00") != strings.Join(want, "\x00") || len(got) != len(want) {
				t.Errorf("%s: split(%q) = %q, want %q", name, text, got, want)
			}
		}
	}
}

func TestPatternErrors(t *testing.T) {
	for _, bad := range []string{`(abc`, `[abc`, `\p{Xyz}`, `a+?`, `^a`, `(?<name>a)`} {
		if _, err := compilePattern(bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}
