package chat

import "strings"

// Conversation is what a renderer turns into text.
type Conversation struct {
	Messages []map[string]any
	// Tools is passed to the template as tools (nil: None, as transformers passes when there are none).
	Tools               []any
	Vars                map[string]any // extra template variables
	AddGenerationPrompt bool
	EnableThinking      bool
}

// Renderer turns a conversation into the text the model sees.
type Renderer interface {
	Render(c Conversation) (string, error)
}

// HeaderRenderer renders with a named template's headers when the tokenizer has no chat_template:
// BOS, the system prompt, then each user turn as header+content and each assistant turn as
// header+content+end-of-turn (SpecForge's fallback rendering).
type HeaderRenderer struct {
	Template Template
	BOS      string
}

// Render implements Renderer.
func (r HeaderRenderer) Render(c Conversation) (string, error) {
	var b strings.Builder
	b.WriteString(r.BOS)
	for _, m := range c.Messages {
		content, _ := m["content"].(string)
		switch m["role"] {
		case "system":
			b.WriteString(content)
		case "user":
			b.WriteString(r.Template.UserHeader + content)
		case "assistant":
			b.WriteString(r.Template.AssistantHeader + content + r.Template.EndOfTurn)
		}
	}
	if c.AddGenerationPrompt {
		b.WriteString(r.Template.AssistantHeader)
	}
	return b.String(), nil
}
