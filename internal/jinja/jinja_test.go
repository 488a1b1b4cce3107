package jinja

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/specforge/specforge/internal/goldentest"
)

// referenceCase is one render by testdata/jinja_reference.py: a template and the variables it was given.
type referenceCase struct {
	Template            string                     `json:"template"`
	Case                string                     `json:"case"`
	Messages            json.RawMessage            `json:"messages"`
	AddGenerationPrompt bool                       `json:"add_generation_prompt"`
	Tools               json.RawMessage            `json:"tools"`
	Documents           json.RawMessage            `json:"documents"`
	Kwargs              map[string]json.RawMessage `json:"kwargs"`
	Rendered            *string                    `json:"rendered"`
	Error               *string                    `json:"error"`
}

// vars are the case's variables as jinja_reference.py's render passes them: every value decoded in source
// (Python insertion) key order, an absent tools or documents as None.
func (c *referenceCase) vars(t *testing.T) map[string]any {
	decode := func(raw json.RawMessage) any {
		if len(raw) == 0 {
			return None
		}
		v, err := DecodeJSON(raw)
		if err != nil {
			t.Fatalf("%s/%s: %v", c.Template, c.Case, err)
		}
		return v
	}
	vars := map[string]any{
		"messages":              decode(c.Messages),
		"tools":                 decode(c.Tools),
		"documents":             decode(c.Documents),
		"add_generation_prompt": c.AddGenerationPrompt,
		"bos_token":             "<|begin_of_text|>",
		"eos_token":             "<|end_of_text|>",
	}
	for k, raw := range c.Kwargs {
		vars[k] = decode(raw)
	}
	return vars
}

// pinClock fixes strftime_now to the reference's date.
func pinClock(t *testing.T) {
	saved := Now
	Now = func() time.Time { return time.Date(2024, 7, 26, 0, 0, 0, 0, time.UTC) }
	t.Cleanup(func() { Now = saved })
}

// TestReferenceRenders covers tools, tool calls, reasoning, raise_exception, documents and dates over six
// templates (testdata/jinja_reference_cases.json, made by testdata/make_jinja_reference_cases.py).
func TestReferenceRenders(t *testing.T) {
	pinClock(t)
	raw, err := os.ReadFile("testdata/jinja_reference_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []referenceCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	templates := map[string]*Template{}
	passed := 0
	for _, c := range cases {
		if templates[c.Template] == nil {
			src, err := os.ReadFile(goldentest.Shared(t, "assets", "chat_templates", c.Template+".jinja"))
			if err != nil {
				t.Fatal(err)
			}
			if templates[c.Template], err = Compile(string(src)); err != nil {
				t.Fatalf("%s: %v", c.Template, err)
			}
		}
		got, err := templates[c.Template].Render(c.vars(t))
		switch {
		case c.Error != nil:
			// A template's raise_exception must give the same TemplateError; Python's other errors (TypeErrors
			// that gonja is lenient about) may render.
			if !strings.Contains(*c.Error, "TemplateError") {
				continue
			}
			var te *TemplateError
			if !errors.As(err, &te) || !strings.Contains(*c.Error, te.Message) {
				t.Errorf("%s/%s: error %v, want %s", c.Template, c.Case, err, *c.Error)
			}
		case err != nil:
			t.Errorf("%s/%s: %v", c.Template, c.Case, err)
		case got != *c.Rendered:
			t.Errorf("%s/%s:\n got %q\nwant %q", c.Template, c.Case, got, *c.Rendered)
		default:
			passed++
		}
	}
	t.Logf("%d of %d reference renders equal", passed, len(cases))
}
