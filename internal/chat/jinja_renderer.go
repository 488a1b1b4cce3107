package chat

import (
	"fmt"
	"sort"

	"github.com/specforge/specforge/internal/jinja"
)

// JinjaRenderer renders with a tokenizer's Jinja chat_template, as transformers' apply_chat_template does.
type JinjaRenderer struct {
	template *jinja.Template
	// Special-token strings the template may print.
	BOS, EOS string
	// Source names where the template came from (its file); render errors start with it. A chat template
	// comes from a model folder, so a user must be told which file a render stopped in.
	Source string
}

// NewJinjaRenderer compiles a chat template.
func NewJinjaRenderer(source, bos, eos string) (*JinjaRenderer, error) {
	t, err := jinja.Compile(source)
	if err != nil {
		return nil, fmt.Errorf("compile chat template: %w", err)
	}
	return &JinjaRenderer{template: t, BOS: bos, EOS: eos}, nil
}

// Render implements Renderer.
func (r *JinjaRenderer) Render(c Conversation) (string, error) {
	vars := map[string]any{}
	for k, v := range c.Vars {
		vars[k] = jinja.ValueOf(v)
	}
	msgs := make(jinja.PyList, len(c.Messages))
	for i, m := range c.Messages {
		msgs[i] = messageValue(m)
	}
	vars["messages"] = msgs
	vars["tools"] = jinja.None
	if c.Tools != nil { // an empty list is not None: Llama templates then still announce tool use
		vars["tools"] = jinja.ValueOf(c.Tools)
	}
	vars["documents"] = jinja.None
	vars["add_generation_prompt"] = c.AddGenerationPrompt
	vars["bos_token"] = r.BOS
	vars["eos_token"] = r.EOS
	if c.EnableThinking {
		vars["enable_thinking"] = true
	}
	out, err := r.template.Render(vars)
	if err != nil && r.Source != "" {
		return "", fmt.Errorf("%s: %w", r.Source, err)
	}
	return out, err
}

// messageKeyOrder is the key order of a normalised message (SpecForge builds role, content first).
var messageKeyOrder = map[string]int{"role": 0, "content": 1, "reasoning_content": 2, "tool_calls": 3}

func messageValue(m map[string]any) any {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		oi, iKnown := messageKeyOrder[keys[i]]
		oj, jKnown := messageKeyOrder[keys[j]]
		switch {
		case iKnown && jKnown:
			return oi < oj
		case iKnown != jKnown:
			return iKnown
		}
		return keys[i] < keys[j]
	})
	return jinja.OrderedDict(keys, m)
}
