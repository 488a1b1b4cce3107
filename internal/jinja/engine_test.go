package jinja

import (
	"errors"
	"strings"
	"testing"
)

// TestPythonSemantics renders small templates whose wanted text is Python Jinja2's in transformers'
// environment (testdata/jinja_reference.py's compile_tpl), one case per behaviour this package replaces in
// gonja. Each variable is JSON decoded in key order.
func TestPythonSemantics(t *testing.T) {
	for _, c := range []struct {
		name, src string
		vars      map[string]string
		want      string
	}{
		{"negative index", `{{ xs[-2] }}|{{ 'a</think>b'.split('</think>')[-1] }}`, map[string]string{"xs": `[1, 2]`}, `1|b`},
		{"none data", `{{ x is defined }}|{{ x is none }}|{{ x }}|{% if x %}t{% else %}f{% endif %}|{{ x == none }}`, map[string]string{"x": `null`}, `True|True|None|f|True`},
		{"tojson", `{{ d|tojson }}|{{ d|tojson(indent=2) }}|{{ d|tojson(sort_keys=true, ensure_ascii=true) }}`, map[string]string{"d": `{"z": [1, 2.5, 1e-07, null, true], "a": "é\"\n"}`}, `{"z": [1, 2.5, 1e-07, null, true], "a": "é\"\n"}|{
  "z": [
    1,
    2.5,
    1e-07,
    null,
    true
  ],
  "a": "é\"\n"
}|{"a": "\u00e9\"\n", "z": [1, 2.5, 1e-07, null, true]}`},
		{"items dictsort", `{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{{ d|dictsort }}|{{ d|items|list }}`, map[string]string{"d": `{"b": 1, "A": 2}`}, `b=1;A=2;|[('A', 2), ('b', 1)]|[('b', 1), ('A', 2)]`},
		{"str methods", `{{ ' a b '.split() }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ 'xxhixx'.strip('x') }}|{{ 'hello'.find('l') }}|{{ 'ab'|reverse }}|{{ [3, 1, 2]|reverse|list }}`, map[string]string{}, `['a', 'b']|['a,b', 'c']|hi|2|ba|[2, 1, 3]`},
		{"round trim", "{{ 2.5|round }}|{{ 0.125|round(2) }}|{{ '\x1c a \x1f'|trim }}", map[string]string{}, `2.0|0.12|a`},
		{"range", `{{ range(5, 0, -2)|list }}`, map[string]string{}, `[5, 3, 1]`},
		{"generation", `{% generation %}x{{ 1 }}{% endgeneration %}y`, map[string]string{}, `x1y`},
		{"dict get", `{{ d.get('a') }}|{{ d.get('q', 'dflt') }}|{{ d.get('q') }}|{{ d.keys()|list }}`, map[string]string{"d": `{"b": 1, "a": 2}`}, `2|dflt|None|['b', 'a']`},
	} {
		vars := map[string]any{}
		for k, raw := range c.vars {
			v, err := DecodeJSON([]byte(raw))
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			vars[k] = v
		}
		tpl, err := Compile(c.src)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got, err := tpl.Render(vars)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		} else if got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

// TestSandbox checks what the sandbox refuses, as jinja2's ImmutableSandboxedEnvironment does (the messages
// differ), and that raise_exception's message comes back as a *TemplateError.
func TestSandbox(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"{{ range(100001)|length }}", "(maxRange)"},
		{"{% include 'x' %}", "template loading is disabled"},
		{"{{ {'a': 1}.update({'b': 2}) }}", ""},
	} {
		tpl, err := Compile(c.src)
		if err == nil {
			_, err = tpl.Render(nil)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one with %q", c.src, err, c.want)
		}
	}
	tpl, err := Compile("a{{ raise_exception('boom') }}")
	if err != nil {
		t.Fatal(err)
	}
	out, err := tpl.Render(nil)
	var te *TemplateError
	if !errors.As(err, &te) || te.Message != "boom" || out != "" {
		t.Errorf("raise_exception: %q, %v; want a TemplateError boom", out, err)
	}
}
