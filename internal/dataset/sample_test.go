package dataset

import (
	"errors"
	"strings"
	"testing"
)

func TestToSampleSchemas(t *testing.T) {
	cases := []struct {
		name   string
		fields map[string]any
		opt    SchemaOptions
		check  func(*Sample) bool
	}{
		{"sharegpt", map[string]any{"id": "x", "conversations": []any{
			map[string]any{"from": "human", "value": "hi", "markdown": nil},
			map[string]any{"from": "gpt", "value": "hello"}}}, SchemaOptions{},
			func(s *Sample) bool {
				return s.Kind == Chat && s.Messages[0]["role"] == "user" && s.Messages[1]["content"] == "hello" &&
					len(s.Messages[0]) == 2 && s.Vars["id"] == nil
			}},
		{"openai with parts", map[string]any{"prompt_id": "p", "messages": []any{
			map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "a"}, map[string]any{"type": "text", "text": "b"}}},
			map[string]any{"role": "assistant", "content": "c"}}}, SchemaOptions{},
			func(s *Sample) bool { return s.Messages[0]["content"] == "ab" && s.Vars["prompt_id"] == "p" }},
		{"gsm8k", map[string]any{"question": "q", "answer": "a"}, SchemaOptions{},
			func(s *Sample) bool {
				return s.Kind == Chat && len(s.Messages) == 2 && s.Messages[1]["role"] == "assistant"
			}},
		{"plain text", map[string]any{"text": "once upon"}, SchemaOptions{},
			func(s *Sample) bool { return s.Kind == PlainText && s.Text == "once upon" }},
		{"preformatted", map[string]any{"text": "<|im_start|>..."}, SchemaOptions{Format: "preformatted"},
			func(s *Sample) bool { return s.Kind == Preformatted }},
		{"completion", map[string]any{"src": "2+2=", "dst": "4"}, SchemaOptions{PromptField: "src", CompletionField: "dst"},
			func(s *Sample) bool { return s.Kind == Completion && s.Prompt == "2+2=" && s.Completion == "4" }},
		{"reasoning kept", map[string]any{"messages": []any{map[string]any{"role": "user", "content": "q"},
			map[string]any{"role": "assistant", "content": "a", "thinking": "hmm"}}}, SchemaOptions{KeepReasoning: true},
			func(s *Sample) bool { return s.Messages[1]["reasoning_content"] == "hmm" }},
		{"reasoning dropped", map[string]any{"messages": []any{map[string]any{"role": "user", "content": "q"},
			map[string]any{"role": "assistant", "content": "a", "reasoning_content": "hmm"}}}, SchemaOptions{},
			func(s *Sample) bool { return s.Messages[1]["reasoning_content"] == nil }},
		{"tool calls as strings", map[string]any{"tools": `[{"type": "function", "function": {"name": "f"}}]`, "messages": []any{
			map[string]any{"role": "user", "content": "q"},
			map[string]any{"role": "assistant", "content": "", "tool_calls": `[{"function": {"name": "f", "arguments": "{\"b\": 1, \"a\": 2}"}, "extra": 1}]`}}},
			SchemaOptions{},
			func(s *Sample) bool {
				calls := s.Messages[1]["tool_calls"].([]any)
				fn := calls[0].(map[string]any)["function"].(map[string]any)
				return len(s.Tools) == 1 && calls[0].(map[string]any)["type"] == "function" && fn["name"] == "f" && fn["arguments"] != nil
			}},
	}
	for _, c := range cases {
		s, err := ToSample(Row{Where: "f:1", Fields: c.fields}, c.opt)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !c.check(s) {
			t.Errorf("%s: unexpected sample %+v", c.name, s)
		}
	}
}

func TestToSampleRejections(t *testing.T) {
	cases := []struct {
		fields map[string]any
		reason string
	}{
		{map[string]any{"foo": 1}, reasonNoFields},
		{map[string]any{"conversations": "x"}, reasonWrongType},
		{map[string]any{"conversations": []any{}}, reasonEmpty},
		{map[string]any{"conversations": []any{"x"}}, reasonMessage},
		{map[string]any{"conversations": []any{map[string]any{"value": "no role"}}}, reasonMessage},
		{map[string]any{"messages": []any{map[string]any{"role": "user", "content": 3}}}, reasonMessage},
		{map[string]any{"messages": []any{map[string]any{"role": "user", "content": "x"}}, "tools": "{bad"}, reasonTools},
		{map[string]any{"text": ""}, reasonEmpty},
		{map[string]any{"text": 5}, reasonWrongType},
	}
	for _, c := range cases {
		_, err := ToSample(Row{Where: "data.jsonl:7", Fields: c.fields}, SchemaOptions{})
		var rej *Rejection
		if !errors.As(err, &rej) || rej.Reason != c.reason || !strings.HasPrefix(rej.Error(), "data.jsonl:7: ") {
			t.Errorf("%v: got %v, want reason %q", c.fields, err, c.reason)
		}
	}
}

func TestValidateRoles(t *testing.T) {
	msg := func(roles ...string) []map[string]any {
		var out []map[string]any
		for _, r := range roles {
			out = append(out, map[string]any{"role": r, "content": r})
		}
		return out
	}
	roles := func(ms []map[string]any) string {
		var r []string
		for _, m := range ms {
			r = append(r, m["role"].(string))
		}
		return strings.Join(r, ",")
	}
	cases := []struct {
		in, want  []string
		violation bool
	}{
		{[]string{"user", "assistant"}, []string{"system", "user", "assistant"}, false},
		{[]string{"system", "user", "assistant"}, []string{"system", "user", "assistant"}, false},
		{[]string{"assistant", "user", "assistant"}, []string{"system", "user", "assistant"}, false}, // leading non-user dropped
		{[]string{"user", "assistant", "assistant", "user"}, []string{"system", "user", "assistant"}, true},
		{[]string{"user", "tool"}, []string{"system", "user"}, true},
		{[]string{"user", "assistant", "tool", "tool", "assistant"}, []string{"system", "user", "assistant", "tool", "tool", "assistant"}, false},
	}
	for _, c := range cases {
		s := &Sample{Messages: msg(c.in...)}
		s.ValidateRoles("sys")
		if got := roles(s.Messages); got != strings.Join(c.want, ",") || (s.RoleViolation != "") != c.violation {
			t.Errorf("%v: got %s (violation %q), want %v", c.in, got, s.RoleViolation, c.want)
		}
	}
	s := &Sample{Messages: msg("user")}
	s.ValidateRoles("")
	if roles(s.Messages) != "user" {
		t.Errorf("empty system prompt inserted: %v", s.Messages)
	}
}
