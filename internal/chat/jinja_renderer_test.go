package chat

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/jinja"
	"github.com/specforge/specforge/internal/tokenizer"
)

// goldenRender is one case of the shared golden renders (Python Jinja2 with transformers' settings).
type goldenRender struct {
	Template            string                       `json:"template"`
	Case                string                       `json:"case"`
	Messages            []map[string]json.RawMessage `json:"messages"`
	AddGenerationPrompt bool                         `json:"add_generation_prompt"`
	EnableThinking      *bool                        `json:"enable_thinking"`
	Rendered            string                       `json:"rendered"`
	Tokenizer           string                       `json:"tokenizer"`
	InputIDs            []int32                      `json:"input_ids"`
}

// conversation builds the renderer input with every nested value decoded in source key order.
func (c *goldenRender) conversation(t *testing.T) Conversation {
	conv := Conversation{AddGenerationPrompt: c.AddGenerationPrompt, Vars: map[string]any{}}
	for _, m := range c.Messages {
		msg := map[string]any{}
		for k, raw := range m {
			v, err := jinja.DecodeJSON(raw)
			if err != nil {
				t.Fatal(err)
			}
			msg[k] = v
		}
		conv.Messages = append(conv.Messages, msg)
	}
	if c.EnableThinking != nil {
		conv.Vars["enable_thinking"] = *c.EnableThinking
	}
	return conv
}

func sharedRenderer(t *testing.T, name string) *JinjaRenderer {
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

// TestGoldenRenders renders the shared golden cases byte for byte and tokenizes them to the golden ids.
func TestGoldenRenders(t *testing.T) {
	saved := jinja.Now
	jinja.Now = func() time.Time { return time.Date(2024, 7, 26, 0, 0, 0, 0, time.UTC) }
	t.Cleanup(func() { jinja.Now = saved })
	raw, err := os.ReadFile(goldentest.Shared(t, "assets", "chat_templates", "golden_renders.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenRender
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	toks := map[string]*tokenizer.Tokenizer{}
	for _, c := range cases {
		got, err := sharedRenderer(t, c.Template).Render(c.conversation(t))
		if err != nil {
			t.Fatalf("%s/%s: %v", c.Template, c.Case, err)
		}
		if got != c.Rendered {
			t.Errorf("%s/%s:\n got %q\nwant %q", c.Template, c.Case, got, c.Rendered)
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

// TestJinjaRendererVariables checks the variables a conversation becomes, as transformers passes them:
// messages with role and content first, tools None when absent but a list when empty, documents None.
func TestJinjaRendererVariables(t *testing.T) {
	r, err := NewJinjaRenderer("{{ bos_token }}{% for m in messages %}{{ m|tojson }}{% endfor %}|{{ tools|tojson }}|"+
		"{{ documents }}|{{ add_generation_prompt }}|{{ enable_thinking is defined }}|{{ n }}{{ eos_token }}", "<s>", "</s>")
	if err != nil {
		t.Fatal(err)
	}
	msg := map[string]any{"zeta": 1.0, "tool_calls": []any{map[string]any{"b": nil, "a": 2.5}}, "content": "hi", "role": "user"}
	for _, c := range []struct {
		conv Conversation
		want string
	}{
		{Conversation{Messages: []map[string]any{msg}, Vars: map[string]any{"n": 3.0}},
			`<s>{"role": "user", "content": "hi", "tool_calls": [{"a": 2.5, "b": null}], "zeta": 1}|null|None|False|False|3</s>`},
		{Conversation{Tools: []any{}, AddGenerationPrompt: true, EnableThinking: true},
			`<s>|[]|None|True|True|</s>`},
	} {
		got, err := r.Render(c.conv)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
}
