package dataset

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/specforge/specforge/internal/jinja"
)

// Kind says how a sample is tokenized and where its loss is.
type Kind int

const (
	// Chat samples are message lists rendered with the chat template; loss on assistant turns.
	Chat Kind = iota
	// Preformatted samples are text already rendered with the template; loss on the assistant spans in it.
	Preformatted
	// PlainText samples (base models) carry loss on every token.
	PlainText
	// Completion samples are a prompt and a completion; loss on the completion.
	Completion
)

// Format selects how rows are read: "auto" recognises chats (conversations/messages, question/answer) and
// prompt/completion pairs and takes a text field as plain text; "preformatted" takes the text field as
// rendered chat.
type Format string

// Formats are the accepted values of Format.
var Formats = []Format{"auto", "chat", "preformatted", "text", "completion"}

// SchemaOptions say which fields hold what.
type SchemaOptions struct {
	Format          Format
	TextField       string // default "text"
	PromptField     string // default "prompt"
	CompletionField string // default "completion"
	// KeepReasoning keeps reasoning_content (or thinking) in assistant messages for templates that render it.
	KeepReasoning bool
}

func (o *SchemaOptions) defaults() {
	if o.Format == "" {
		o.Format = "auto"
	}
	if o.TextField == "" {
		o.TextField = "text"
	}
	if o.PromptField == "" {
		o.PromptField = "prompt"
	}
	if o.CompletionField == "" {
		o.CompletionField = "completion"
	}
}

// Sample is one training example before tokenization.
type Sample struct {
	Where    string
	Kind     Kind
	Messages []map[string]any
	Tools    []any
	// Vars are the row's other fields, passed to the chat template as SpecForge does.
	Vars       map[string]any
	Text       string
	Prompt     string
	Completion string
	// RoleViolation is set when the conversation was cut at its first out-of-order message.
	RoleViolation string
}

// Rejection is a row that cannot become a sample. Reason is the category counted in the statistics,
// Detail what exactly was wrong.
type Rejection struct {
	Where, Reason, Detail string
}

func (r *Rejection) Error() string { return r.Where + ": " + r.Reason + ": " + r.Detail }

// Rejection reasons.
const (
	reasonNoFields  = "no recognised fields"
	reasonWrongType = "field of the wrong type"
	reasonEmpty     = "empty text, completion or conversation"
	reasonMessage   = "malformed message"
	reasonTools     = "malformed tools"
	reasonTooLong   = "row over data.max_line_bytes"
)

func reject(where, reason, format string, args ...any) *Rejection {
	return &Rejection{Where: where, Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// ToSample interprets a row. Rows that do not fit the schema return a *Rejection.
func ToSample(row Row, opt SchemaOptions) (*Sample, error) {
	opt.defaults()
	if row.Oversize > 0 {
		return nil, reject(row.Where, reasonTooLong, "the record has %d bytes", row.Oversize)
	}
	f := row.Fields
	s := &Sample{Where: row.Where}
	str := func(key string) (string, bool, *Rejection) {
		v, ok := f[key]
		if !ok || v == nil {
			return "", false, nil
		}
		sv, isStr := v.(string)
		if !isStr {
			return "", true, reject(row.Where, reasonWrongType, "field %q: want a string, got %s", key, jsonType(v))
		}
		return sv, true, nil
	}
	format := opt.Format
	if format == "auto" {
		switch {
		case f["conversations"] != nil || f["messages"] != nil || f["question"] != nil && f["answer"] != nil:
			format = "chat"
		case f[opt.PromptField] != nil && f[opt.CompletionField] != nil:
			format = "completion"
		case f[opt.TextField] != nil:
			format = "text"
		default:
			return nil, reject(row.Where, reasonNoFields, "no conversations, messages, %s or %s/%s field", opt.TextField, opt.PromptField, opt.CompletionField)
		}
	}
	switch format {
	case "chat":
		s.Kind = Chat
		return s, s.readChat(f, opt)
	case "preformatted", "text":
		s.Kind = PlainText
		if format == "preformatted" {
			s.Kind = Preformatted
		}
		text, ok, bad := str(opt.TextField)
		if bad != nil {
			return nil, bad
		}
		if !ok || text == "" {
			return nil, reject(row.Where, reasonEmpty, "field %q is missing or empty", opt.TextField)
		}
		s.Text = text
		return s, nil
	case "completion":
		s.Kind = Completion
		p, okP, bad := str(opt.PromptField)
		if bad != nil {
			return nil, bad
		}
		c, okC, bad := str(opt.CompletionField)
		if bad != nil {
			return nil, bad
		}
		if !okP || !okC || c == "" {
			return nil, reject(row.Where, reasonEmpty, "fields %q and %q are required, the completion non-empty", opt.PromptField, opt.CompletionField)
		}
		s.Prompt, s.Completion = p, c
		return s, nil
	}
	return nil, fmt.Errorf("data format %q is not supported (supported: %v)", format, Formats)
}

// readChat normalises the messages of a chat row the way SpecForge's parser does: ShareGPT from/value
// become role/content, human/gpt become user/assistant, and only role, content, tool_calls (and, with
// KeepReasoning, reasoning_content) are kept.
func (s *Sample) readChat(f map[string]any, opt SchemaOptions) error {
	key := "conversations"
	if f[key] == nil {
		key = "messages"
	}
	var raw []any
	switch {
	case f[key] != nil:
		list, ok := f[key].([]any)
		if !ok {
			return reject(s.Where, reasonWrongType, "field %q: want a list of messages, got %s", key, jsonType(f[key]))
		}
		raw = list
	case f["question"] != nil && f["answer"] != nil: // GSM8K-style rows
		raw = []any{map[string]any{"role": "user", "content": f["question"]}, map[string]any{"role": "assistant", "content": f["answer"]}}
	default:
		return reject(s.Where, reasonNoFields, "no conversations or messages field")
	}
	if len(raw) == 0 {
		return reject(s.Where, reasonEmpty, "field %q is empty", key)
	}
	for i, item := range raw {
		m, ok := item.(map[string]any)
		if !ok {
			return reject(s.Where, reasonMessage, "%s[%d]: want a message object, got %s", key, i, jsonType(item))
		}
		msg, err := normalizeMessage(m, opt.KeepReasoning)
		if err != nil {
			return reject(s.Where, reasonMessage, "%s[%d]: %v", key, i, err)
		}
		s.Messages = append(s.Messages, msg)
	}
	if tools, ok := f["tools"]; ok && tools != nil {
		parsed, err := parseTools(tools)
		if err != nil {
			return reject(s.Where, reasonTools, "field \"tools\": %v", err)
		}
		s.Tools = parsed
	}
	s.Vars = map[string]any{}
	for k, v := range f {
		switch k {
		case "conversations", "messages", "tools", "id", "question", "answer":
		default:
			s.Vars[k] = v
		}
	}
	return nil
}

func normalizeMessage(m map[string]any, keepReasoning bool) (map[string]any, error) {
	role, _ := m["role"].(string)
	if role == "" {
		role, _ = m["from"].(string)
	}
	switch role {
	case "human", "user":
		role = "user"
	case "gpt", "assistant":
		role = "assistant"
	case "":
		return nil, fmt.Errorf("message has no role (or from)")
	}
	content, err := messageContent(m)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"role": role, "content": content}
	if tc, ok := m["tool_calls"]; ok && tc != nil {
		calls, err := sanitizeToolCalls(tc)
		if err != nil {
			return nil, err
		}
		if calls != nil {
			out["tool_calls"] = calls
		}
	}
	if keepReasoning {
		for _, k := range []string{"reasoning_content", "thinking", "reasoning"} {
			if r, ok := m[k].(string); ok && r != "" {
				out["reasoning_content"] = r
				break
			}
		}
	}
	return out, nil
}

// messageContent reads content (or value): a string, or OpenAI's list of {type: text, text} parts.
func messageContent(m map[string]any) (string, error) {
	v := m["content"]
	if v == nil || v == "" {
		v = m["value"]
	}
	switch c := v.(type) {
	case nil:
		return "", nil
	case string:
		return c, nil
	case []any:
		var b strings.Builder
		for i, part := range c {
			p, ok := part.(map[string]any)
			if !ok || p["type"] != "text" {
				return "", fmt.Errorf("content[%d]: only text parts are supported", i)
			}
			t, _ := p["text"].(string)
			b.WriteString(t)
		}
		return b.String(), nil
	}
	return "", fmt.Errorf("content: want a string or a list of text parts, got %s", jsonType(v))
}

// sanitizeToolCalls keeps id, type and function{name, arguments} of each call, parsing JSON strings
// (the calls themselves or their arguments) as SpecForge does. Arguments parsed from a string keep their key
// order, since templates print them with tojson.
func sanitizeToolCalls(v any) ([]any, error) {
	if s, ok := v.(string); ok {
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return nil, fmt.Errorf("tool_calls: invalid JSON string: %v", err)
		}
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("tool_calls: want a list, got %s", jsonType(v))
	}
	var out []any
	for _, item := range list {
		tc, ok := item.(map[string]any)
		if !ok {
			continue
		}
		id, _ := tc["id"].(string)
		typ, _ := tc["type"].(string)
		if typ == "" {
			typ = "function"
		}
		clean := map[string]any{"id": id, "type": typ}
		if fn, ok := tc["function"].(map[string]any); ok {
			name, _ := fn["name"].(string)
			args := fn["arguments"]
			if args == nil {
				args = map[string]any{}
			}
			if as, ok := args.(string); ok {
				parsed, err := jinja.DecodeJSON([]byte(as))
				if err != nil {
					return nil, fmt.Errorf("tool_calls: arguments of %q: invalid JSON: %v", name, err)
				}
				args = parsed
			}
			clean["function"] = map[string]any{"name": name, "arguments": args}
		}
		out = append(out, clean)
	}
	return out, nil
}

// parseTools accepts a list of tool definitions or a JSON string holding one (decoded in key order).
func parseTools(v any) ([]any, error) {
	if s, ok := v.(string); ok {
		if strings.TrimSpace(s) == "" {
			return nil, nil
		}
		parsed, err := jinja.DecodeJSON([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("invalid JSON string: %v", err)
		}
		list, ok := parsed.(jinja.PyList)
		if !ok {
			return nil, fmt.Errorf("want a list of tools, got %T", parsed)
		}
		if len(list) == 0 {
			return nil, nil
		}
		return []any(list), nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("want a list of tools, got %s", jsonType(v))
	}
	if len(list) == 0 {
		return nil, nil
	}
	return list, nil
}

// ValidateRoles applies SpecForge's role-order rules: a leading system message is kept (else the
// template's system prompt, if any, is inserted), other leading non-user messages are dropped, and the
// conversation is cut before the first tool message that does not follow an assistant or tool message, or
// the first assistant message that does not follow a user or tool message.
func (s *Sample) ValidateRoles(systemPrompt string) {
	msgs := s.Messages
	var out []map[string]any
	if len(msgs) > 0 && msgs[0]["role"] == "system" {
		out = append(out, map[string]any{"role": "system", "content": msgs[0]["content"]})
		msgs = msgs[1:]
	} else if systemPrompt != "" {
		out = append(out, map[string]any{"role": "system", "content": systemPrompt})
	}
	for len(msgs) > 0 && msgs[0]["role"] != "user" {
		msgs = msgs[1:]
	}
	for j, m := range msgs {
		if j > 0 {
			prev := msgs[j-1]["role"]
			role := m["role"]
			if role == "tool" && prev != "assistant" && prev != "tool" ||
				role == "assistant" && prev != "user" && prev != "tool" {
				s.RoleViolation = fmt.Sprintf("%s after %s", role, prev)
				break
			}
		}
		out = append(out, m)
	}
	s.Messages = out
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case float64, int, int64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
