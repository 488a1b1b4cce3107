// Package chat renders conversations with a model's chat template (a tokenizer's Jinja template through
// internal/jinja, or a named template's headers) and finds the assistant spans that carry the training loss.
// Named templates describe, as SpecForge's registry does, the assistant header and end-of-turn marker that
// delimit those spans in the rendered text.
package chat

import (
	"fmt"
	"sort"
	"strings"
)

// Template describes how one model family marks assistant turns.
type Template struct {
	Name            string
	AssistantHeader string
	UserHeader      string
	// SystemPrompt is inserted when a conversation has no system message ("" inserts none).
	SystemPrompt string
	// EndOfTurn closes an assistant turn; it is trained on, as the model must learn to stop.
	EndOfTurn string
	// IgnoreTokens are strings whose tokens never carry loss, e.g. the empty think block that Qwen3's
	// template adds to non-thinking turns.
	IgnoreTokens []string
	// Thinking keeps reasoning_content in assistant messages and renders with enable_thinking=true.
	Thinking bool
}

// Templates are the named templates; they match SpecForge's registry (and fix its entries that lack an
// end-of-turn token).
var Templates = map[string]Template{
	"llama3": {
		AssistantHeader: "<|start_header_id|>assistant<|end_header_id|>\n\n",
		UserHeader:      "<|start_header_id|>user<|end_header_id|>",
		SystemPrompt:    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe.  Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. Please ensure that your responses are socially unbiased and positive in nature.\n\nIf a question does not make any sense, or is not factually coherent, explain why instead of answering something not correct. If you don't know the answer to a question, please don't share false information.",
		EndOfTurn:       "<|eot_id|>",
	},
	"llama4": {
		AssistantHeader: "<|header_start|>assistant<|header_end|>\n\n",
		UserHeader:      "<|header_start|>user<|header_end|>",
		SystemPrompt:    "You are a helpful assistant.",
		EndOfTurn:       "<|eot|>",
	},
	"qwen": {
		AssistantHeader: "<|im_start|>assistant\n",
		UserHeader:      "<|im_start|>user\n",
		SystemPrompt:    "You are a helpful assistant.",
		EndOfTurn:       "<|im_end|>\n",
	},
	"qwen3-instruct": {
		AssistantHeader: "<|im_start|>assistant\n",
		UserHeader:      "<|im_start|>user\n",
		SystemPrompt:    "You are a helpful assistant.",
		EndOfTurn:       "<|im_end|>\n",
		IgnoreTokens:    []string{"<think>\n\n</think>\n\n"},
	},
	"qwen3-thinking": {
		AssistantHeader: "<|im_start|>assistant\n",
		UserHeader:      "<|im_start|>user\n",
		SystemPrompt:    "You are a helpful assistant.",
		EndOfTurn:       "<|im_end|>\n",
		Thinking:        true,
	},
	"deepseek-r1-distill": {
		AssistantHeader: "<｜Assistant｜>",
		UserHeader:      "<｜User｜>",
		EndOfTurn:       "<｜end▁of▁sentence｜>",
	},
	"phi3": {
		AssistantHeader: "<|assistant|>\n",
		UserHeader:      "<|user|>\n",
		SystemPrompt:    "You are a helpful assistant.",
		EndOfTurn:       "<|end|>\n",
	},
	"phi4": {
		AssistantHeader: "<|im_start|>assistant<|im_sep|>",
		UserHeader:      "<|im_start|>user<|im_sep|>",
		SystemPrompt:    "You are a helpful assistant.",
		EndOfTurn:       "<|im_end|>",
	},
	"phi4-mini": {
		AssistantHeader: "<|assistant|>",
		UserHeader:      "<|user|>",
		SystemPrompt:    "You are a helpful assistant.",
		EndOfTurn:       "<|end|>",
	},
	"gemma": {
		AssistantHeader: "<start_of_turn>model\n",
		UserHeader:      "<start_of_turn>user\n",
		SystemPrompt:    "You are a helpful assistant.",
		EndOfTurn:       "<end_of_turn>\n",
	},
}

// Lookup returns a named template.
func Lookup(name string) (Template, error) {
	t, ok := Templates[name]
	if !ok {
		return Template{}, fmt.Errorf("chat template %q is not known (known: %s)", name, strings.Join(TemplateNames(), ", "))
	}
	t.Name = name
	return t, nil
}

// TemplateNames lists the named templates.
func TemplateNames() []string {
	var names []string
	for n := range Templates {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// AssistantSpans returns the byte ranges [start, end) of the assistant turns in rendered text: each starts
// after an assistant header and runs to the end of the following end-of-turn marker, or to the end of the
// text (SpecForge's regex header([\s\S]*?(?:end_of_turn|$))).
func (t Template) AssistantSpans(text string) [][2]int {
	var spans [][2]int
	if t.AssistantHeader == "" {
		return nil
	}
	for pos := 0; ; {
		i := strings.Index(text[pos:], t.AssistantHeader)
		if i < 0 {
			return spans
		}
		start := pos + i + len(t.AssistantHeader)
		end := len(text)
		if strings.HasSuffix(text, "\n") && start < end {
			end-- // Python's $ also matches before a final newline
		}
		if t.EndOfTurn != "" {
			if j := strings.Index(text[start:], t.EndOfTurn); j >= 0 {
				end = start + j + len(t.EndOfTurn)
			}
		}
		spans = append(spans, [2]int{start, end})
		pos = end
	}
}

// IgnoredSpans returns the byte ranges of every occurrence of the ignore tokens.
func (t Template) IgnoredSpans(text string) [][2]int {
	var spans [][2]int
	for _, tok := range t.IgnoreTokens {
		for pos := 0; ; {
			i := strings.Index(text[pos:], tok)
			if i < 0 {
				break
			}
			spans = append(spans, [2]int{pos + i, pos + i + len(tok)})
			pos += i + len(tok)
		}
	}
	return spans
}
