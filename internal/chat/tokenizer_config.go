package chat

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// TokenizerTemplate reads chat_template, bos_token and eos_token from dir/tokenizer_config.json; ok is false
// when the file or the template is absent. A list of named templates uses the "default" one.
func TokenizerTemplate(dir string) (source, bos, eos string, ok bool, err error) {
	path := filepath.Join(dir, "tokenizer_config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return "", "", "", false, nil
		}
		return "", "", "", false, fmt.Errorf("read tokenizer config: %w", err)
	}
	var cfg struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
		BOS          json.RawMessage `json:"bos_token"`
		EOS          json.RawMessage `json:"eos_token"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return "", "", "", false, fmt.Errorf("%s: invalid JSON: %w", path, err)
	}
	bos, eos = tokenString(cfg.BOS), tokenString(cfg.EOS)
	if len(cfg.ChatTemplate) == 0 || string(cfg.ChatTemplate) == "null" {
		return "", bos, eos, false, nil
	}
	if err := json.Unmarshal(cfg.ChatTemplate, &source); err == nil {
		return source, bos, eos, true, nil
	}
	var named []struct{ Name, Template string }
	if err := json.Unmarshal(cfg.ChatTemplate, &named); err != nil {
		return "", "", "", false, fmt.Errorf("%s: chat_template: want a string or a list of {name, template}", path)
	}
	for _, t := range named {
		if t.Name == "default" {
			return t.Template, bos, eos, true, nil
		}
	}
	return "", "", "", false, fmt.Errorf("%s: chat_template lists no \"default\" template", path)
}

// tokenString reads a special token given as a string or as {"content": ...}.
func tokenString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var obj struct{ Content string }
	if json.Unmarshal(raw, &obj) == nil {
		return obj.Content
	}
	return ""
}

// TokenizerRenderer is the renderer of dir/tokenizer_config.json's chat template, with the file named in its
// compile and render errors; ok is false when there is no template (as for TokenizerTemplate).
func TokenizerRenderer(dir string) (r *JinjaRenderer, ok bool, err error) {
	src, bos, eos, ok, err := TokenizerTemplate(dir)
	if err != nil || !ok {
		return nil, ok, err
	}
	path := filepath.Join(dir, "tokenizer_config.json")
	if r, err = NewJinjaRenderer(src, bos, eos); err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	r.Source = path
	return r, true, nil
}
