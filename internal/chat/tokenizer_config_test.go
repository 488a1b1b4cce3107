package chat

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestTokenizerTemplate(t *testing.T) {
	for _, c := range []struct {
		name, config     string // config "" writes no file
		source, bos, eos string
		ok, wantErr      bool
	}{
		{name: "no file"},
		{name: "no template", config: `{"bos_token": "<s>", "eos_token": {"content": "</s>"}}`, bos: "<s>", eos: "</s>"},
		{name: "string", config: `{"chat_template": "{{ x }}", "eos_token": "</s>"}`, source: "{{ x }}", eos: "</s>", ok: true},
		{name: "named", config: `{"chat_template": [{"name": "tool_use", "template": "t"}, {"name": "default", "template": "d"}]}`, source: "d", ok: true},
		{name: "no default", config: `{"chat_template": [{"name": "tool_use", "template": "t"}]}`, wantErr: true},
		{name: "bad JSON", config: `{`, wantErr: true},
	} {
		dir := t.TempDir()
		if c.config != "" {
			if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(c.config), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		source, bos, eos, ok, err := TokenizerTemplate(dir)
		if (err != nil) != c.wantErr {
			t.Errorf("%s: error %v, want error %v", c.name, err, c.wantErr)
			continue
		}
		if source != c.source || bos != c.bos || eos != c.eos || ok != c.ok {
			t.Errorf("%s: got %q %q %q %v, want %q %q %q %v", c.name, source, bos, eos, ok, c.source, c.bos, c.eos, c.ok)
		}
	}
}

// TestTokenizerRendererLimit checks that a render stopped by a limit names the tokenizer_config.json file
// and the limit.
func TestTokenizerRendererLimit(t *testing.T) {
	for _, c := range []struct{ template, limit string }{
		{`{{ 'x' * 10**10 }}`, "(maxAllocBytes)"},
		{`{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}`, "(maxCallDepth)"},
		{`{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}`, "(maxLoopIterations)"},
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "tokenizer_config.json")
		config := `{"chat_template": ` + strconv.Quote(c.template) + `}`
		if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		r, ok, err := TokenizerRenderer(dir)
		if err != nil || !ok {
			t.Fatalf("%s: %v, %v", c.template, ok, err)
		}
		_, err = r.Render(Conversation{Messages: []map[string]any{{"role": "user", "content": "hi"}}})
		if err == nil || !strings.HasPrefix(err.Error(), path+": chat template: ") || !strings.Contains(err.Error(), c.limit) {
			t.Errorf("%s: error %v, want one starting with %s and naming %s", c.template, err, path, c.limit)
		}
	}
}
