package chat

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/tokenizer"
)

type renderCase struct {
	Template            string                       `json:"template"`
	Case                string                       `json:"case"`
	Messages            []map[string]json.RawMessage `json:"messages"`
	AddGenerationPrompt bool                         `json:"add_generation_prompt"`
	EnableThinking      *bool                        `json:"enable_thinking"`
	Tools               json.RawMessage              `json:"tools"`
	Documents           json.RawMessage              `json:"documents"`
	Kwargs              map[string]json.RawMessage   `json:"kwargs"`
	Rendered            *string                      `json:"rendered"`
	Error               *string                      `json:"error"`
	Tokenizer           string                       `json:"tokenizer"`
	InputIDs            []int32                      `json:"input_ids"`
}

// conversation builds the renderer input with every nested value decoded in source key order.
func (c *renderCase) conversation(t *testing.T) Conversation {
	conv := Conversation{AddGenerationPrompt: c.AddGenerationPrompt, Vars: map[string]any{}}
	for _, m := range c.Messages {
		msg := map[string]any{}
		for k, raw := range m {
			v, err := DecodeJSON(raw)
			if err != nil {
				t.Fatal(err)
			}
			msg[k] = v
		}
		conv.Messages = append(conv.Messages, msg)
	}
	if len(c.Tools) > 0 && string(c.Tools) != "null" {
		v, err := DecodeJSON(c.Tools)
		if err != nil {
			t.Fatal(err)
		}
		conv.Tools = []any{}
		for _, tool := range v.(PyList) {
			conv.Tools = append(conv.Tools, tool)
		}
	}
	if c.EnableThinking != nil {
		conv.Vars["enable_thinking"] = *c.EnableThinking
	}
	for k, raw := range c.Kwargs {
		v, err := DecodeJSON(raw)
		if err != nil {
			t.Fatal(err)
		}
		conv.Vars[k] = v
	}
	if len(c.Documents) > 0 && string(c.Documents) != "null" {
		v, err := DecodeJSON(c.Documents)
		if err != nil {
			t.Fatal(err)
		}
		conv.Vars["documents"] = v
	}
	return conv
}

func pinClock(t *testing.T) {
	saved := Now
	Now = func() time.Time { return time.Date(2024, 7, 26, 0, 0, 0, 0, time.UTC) }
	t.Cleanup(func() { Now = saved })
}

func renderer(t *testing.T, name string) *JinjaRenderer {
	src, err := os.ReadFile(goldentest.Shared(t, "assets", "chat_templates", name+".jinja"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewJinjaRenderer(string(src), "<|begin_of_text|>", "<|end_of_text|>")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestGoldenRenders renders the shared golden cases (Python Jinja2 with transformers' settings) byte for
// byte and tokenizes them to the golden ids.
func TestGoldenRenders(t *testing.T) {
	pinClock(t)
	raw, err := os.ReadFile(goldentest.Shared(t, "assets", "chat_templates", "golden_renders.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []renderCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	toks := map[string]*tokenizer.Tokenizer{}
	for _, c := range cases {
		got, err := renderer(t, c.Template).Render(c.conversation(t))
		if err != nil {
			t.Fatalf("%s/%s: %v", c.Template, c.Case, err)
		}
		if got != *c.Rendered {
			t.Errorf("%s/%s:\n got %q\nwant %q", c.Template, c.Case, got, *c.Rendered)
			continue
		}
		name := strings.TrimSuffix(c.Tokenizer, "_tokenizer/tokenizer.json")
		if toks[name] == nil {
			if toks[name], err = tokenizer.Load(goldentest.Shared(t, "assets", "tokenizers", name)); err != nil {
				t.Fatal(err)
			}
		}
		ids, err := toks[name].Encode(got, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != len(c.InputIDs) {
			t.Errorf("%s/%s: %d ids, want %d", c.Template, c.Case, len(ids), len(c.InputIDs))
			continue
		}
		for i := range ids {
			if ids[i] != c.InputIDs[i] {
				t.Errorf("%s/%s: id %d = %d, want %d", c.Template, c.Case, i, ids[i], c.InputIDs[i])
				break
			}
		}
	}
}

// TestReferenceRenders covers tools, tool calls, reasoning, raise_exception, documents and dates over six
// templates (testdata/jinja_reference_cases.json, made by testdata/make_jinja_reference_cases.py).
func TestReferenceRenders(t *testing.T) {
	pinClock(t)
	raw, err := os.ReadFile("testdata/jinja_reference_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []renderCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	passed := 0
	for _, c := range cases {
		got, err := renderer(t, c.Template).Render(c.conversation(t))
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
