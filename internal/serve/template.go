package serve

import (
	"fmt"
	"os"
	"strings"

	"github.com/specforge/specforge/internal/chat"
)

// ChatRenderer picks how /v1/chat/completions renders a conversation: choice "" takes the chat template of
// targetDir's tokenizer_config.json (none when it has none), a path to a .jinja file compiles that template
// (with the tokenizer's BOS and EOS strings), and a name from chat.Templates renders with its headers. stops
// are the strings that end an assistant turn (a named template's end-of-turn marker).
func ChatRenderer(targetDir, choice string) (r chat.Renderer, stops []string, err error) {
	_, bos, eos, ok, err := chat.TokenizerTemplate(targetDir)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case choice == "":
		if !ok {
			return nil, nil, nil
		}
		jr, _, err := chat.TokenizerRenderer(targetDir)
		return jr, nil, err
	case strings.HasSuffix(choice, ".jinja"):
		raw, err := os.ReadFile(choice)
		if err != nil {
			return nil, nil, fmt.Errorf("--chat-template: %w", err)
		}
		jr, err := chat.NewJinjaRenderer(string(raw), bos, eos)
		if err != nil {
			return nil, nil, fmt.Errorf("--chat-template %s: %w", choice, err)
		}
		jr.Source = choice
		return jr, nil, nil
	}
	t, err := chat.Lookup(choice)
	if err != nil {
		return nil, nil, fmt.Errorf("--chat-template: %w (or give a .jinja file)", err)
	}
	if eot := strings.TrimSpace(t.EndOfTurn); eot != "" {
		stops = []string{eot}
	}
	return chat.HeaderRenderer{Template: t, BOS: bos}, stops, nil
}
