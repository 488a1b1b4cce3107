package jinja

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestLimits renders hostile templates (each exhausted memory, the stack or minutes before the limits):
// each must stop with an error naming the limit it hit.
func TestLimits(t *testing.T) {
	for _, c := range []struct{ name, src, limit string }{
		{"string multiply", `{{ 'x' * 10**10 }}`, "maxAllocBytes"},
		{"int times string", `{{ 10**10 * 'x' }}`, "maxAllocBytes"},
		{"center", `{{ 'x' | center(10**13) }}`, "maxAllocBytes"},
		{"indent", `{{ 'x' | indent(10**13) }}`, "maxAllocBytes"},
		{"indent many lines", `{{ ('a\n' * 10**6) | indent(1000) }}`, "maxAllocBytes"},
		{"lipsum", `{{ lipsum(10**6) }}`, "maxAllocBytes"},
		{"doubling in a namespace", `{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}`, "maxAllocBytes"},
		{"doubling with + in a namespace", `{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}{% endfor %}`, "maxAllocBytes"},
		{"doubling by recursion", `{% macro d(s, n) %}{{ d(s ~ s, n - 1) if n else s|length }}{% endmacro %}{{ d('x', 100) }}`, "maxAllocBytes"},
		{"list multiply", `{{ ([1] * 10**10)|length }}`, "maxAllocBytes"},
		{"list doubling", `{% set ns = namespace(l=[1]) %}{% for i in range(100) %}{% set ns.l = ns.l + ns.l %}{% endfor %}`, "maxAllocBytes"},
		{"join separator", `{{ range(10**5)|join('x' * 10**4) }}`, "maxAllocBytes"},
		{"replace", `{{ ('a' * 10**5)|replace('', 'b' * 10**4) }}`, "maxAllocBytes"},
		{"replace method", `{% set s = 'a' * 10**5 %}{{ s.replace('a', 'b' * 10**4) }}`, "maxAllocBytes"},
		{"format method", `{{ '{:>10000000000}'.format('x') }}`, "maxAllocBytes"},
		{"ljust method", `{{ 'x'.ljust(10**12) }}`, "maxAllocBytes"},
		{"tojson indent", `{{ [1, [2]]|tojson(indent=10**12) }}`, "maxAllocBytes"},
		{"batch fill", `{{ [1]|batch(10**12, 0)|list }}`, "maxAllocBytes"},
		{"macro buffer", `{% macro m() %}{% for i in range(10**5) %}{{ 'x' * 10**4 }}{% endfor %}{% endmacro %}{{ m()|length }}`, "maxAllocBytes"},
		{"output", `{% for i in range(10**5) %}{{ 'y' * 1000 }}{% endfor %}`, "maxOutputBytes"},
		{"macro recursion", `{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}`, "maxCallDepth"},
		{"loop recursion", `{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}`, "maxCallDepth"},
		{"nested ranges", `{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}`, "maxLoopIterations"},
		{"nested ranges filtered", `{% for i in range(10**5) %}{% for j in range(10**5) if false %}{% endfor %}{% endfor %}`, "maxLoopIterations"},
		{"huge range", `{{ range(10**12)|length }}`, "maxRange"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tpl, err := Compile(c.src)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tpl.Render(map[string]any{"messages": PyList{}})
			var le *LimitError
			if !errors.As(err, &le) || le.Limit != c.limit || !strings.Contains(err.Error(), "("+c.limit+")") ||
				!strings.HasPrefix(err.Error(), "chat template: ") {
				t.Errorf("error %v, want a LimitError naming %s", err, c.limit)
			}
		})
	}
}

// TestRenderDeadline checks that a caller's deadline stops a render, named as maxRenderTime.
func TestRenderDeadline(t *testing.T) {
	tpl, err := Compile(`{% for i in range(10) %}{{ i }}{% endfor %}`)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = tpl.RenderContext(ctx, nil)
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != "maxRenderTime" || !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want a maxRenderTime LimitError wrapping context.Canceled", err)
	}
	// The next render of the same copy starts with a fresh budget.
	if out, err := tpl.Render(nil); err != nil || out != "0123456789" {
		t.Errorf("render after a stopped one: %q, %v", out, err)
	}
}

// TestBoundedOperators checks that the rewritten operators compute what gonja (or, where gonja is wrong,
// Python) does.
func TestBoundedOperators(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`{{ 1 + 2 }}|{{ 1.5 + 1 }}|{{ 'a' + 'b' }}|{{ [1] + [2] }}`, `3|2.5|ab|[1, 2]`},
		{`{{ 'ab' * 2 }}|{{ 2 * 'ab' }}|{{ [1, 2] * 2 }}|{{ 3 * 4 }}|{{ 1.5 * 2 }}|{{ 'a' * -1 }}`, `abab|abab|[1, 2, 1, 2]|12|3.0|`},
		{`{{ 'a' ~ 1 ~ none ~ true }}|{{ 2 ** 10 }}|{{ 2 ** -1 }}|{{ 10 ** 30 }}|{{ (-1) ** 3 }}|{{ 0 ** 0 }}|{{ (-2) ** 3 }}`, `a1NoneTrue|1024|0.5|1e+30|-1|1|-8`},
		{`{% set ns = namespace(s='') %}{% for m in xs if m > 1 %}{% set ns.s = ns.s ~ m %}{% endfor %}{{ ns.s }}`, `23`},
		{`{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}`, `321`},
		// Jinja scopes a {% set %} in a loop body to one iteration, so this "doubling" stays 'xx'.
		{`{% set s = 'x' %}{% for i in range(100) %}{% set s = s ~ s %}{% endfor %}{{ s }}`, `x`},
		{`{% set x %}a{{ 'b' * 2 }}{% endset %}{{ x }}|{{ 'ab'|center(6) }}|{{ 'a\nb'|indent(2) }}`, "abb|  ab  |a\n  b"},
	} {
		tpl, err := Compile(c.src)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		got, err := tpl.Render(map[string]any{"xs": PyList{1, 2, 3}})
		if err != nil || got != c.want {
			t.Errorf("%s: got %q, %v; want %q", c.src, got, err, c.want)
		}
	}
}

// hostileSeeds are FuzzRender seeds beyond the committed corpus: the cases of TestLimits.
var hostileSeeds = []string{
	`{{ 'x' * 10**10 }}`, `{{ 'x' | center(10**13) }}`, `{{ 'x' | indent(10**13) }}`, `{{ lipsum(10**6) }}`,
	`{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}`,
	`{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}`,
	`{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}`,
	`{{ range(10**12) }}`, `{{ [1] * 10**10 }}`,
}

// FuzzRender renders any template source over a small conversation: it may fail, never panic or hang.
func FuzzRender(f *testing.F) {
	for _, s := range hostileSeeds {
		f.Add(s)
	}
	f.Add(`{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}`)
	vars := func() map[string]any {
		msgs, err := DecodeJSON([]byte(`[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi\nthere"},
			{"role": "assistant", "content": "<think>x</think>Hello", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}]`))
		if err != nil {
			f.Fatal(err)
		}
		return map[string]any{"messages": msgs, "tools": None, "documents": None, "add_generation_prompt": true,
			"bos_token": "<s>", "eos_token": "</s>"}
	}
	f.Fuzz(func(t *testing.T, src string) {
		tpl, err := Compile(src)
		if err != nil {
			return
		}
		out, err := tpl.Render(vars())
		if err == nil && len(out) > maxOutputBytes {
			t.Errorf("output of %d bytes passed maxOutputBytes", len(out))
		}
	})
}

// TestParseLimits: 100,000 nested parentheses overflowed the stack in gonja's parser, killing the process;
// now deep nesting and huge sources are refused before parsing, and real nesting passes.
func TestParseLimits(t *testing.T) {
	for _, c := range []struct{ name, src, limit string }{
		{"parentheses", "{{ " + strings.Repeat("(", 100000) + "1" + strings.Repeat(")", 100000) + " }}", "maxParseNesting"},
		{"lists", "{{ " + strings.Repeat("[", 300) + strings.Repeat("]", 300) + " }}", "maxParseNesting"},
		{"ifs", strings.Repeat("{% if true %}", 300) + "x" + strings.Repeat("{% endif %}", 300), "maxParseNesting"},
		{"fors", strings.Repeat("{%- for i in [1] -%}", 300) + strings.Repeat("{% endfor %}", 300), "maxParseNesting"},
		{"size", strings.Repeat("x", maxTemplateBytes+1), "maxTemplateBytes"},
	} {
		_, err := Compile(c.src)
		var le *LimitError
		if !errors.As(err, &le) || le.Limit != c.limit {
			t.Errorf("%s: %v, want a %s error", c.name, err, c.limit)
		}
	}
	ok := strings.Repeat("{% if true %}(", 200) + "x" + strings.Repeat("){% endif %}", 200) + ":) :) :)" + strings.Repeat("{% if true %}{% endif %}", 1000)
	tpl, err := Compile(ok)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := tpl.Render(nil); err != nil || !strings.HasPrefix(out, strings.Repeat("(", 200)+"x") {
		t.Errorf("render: %q %v", out[:min(len(out), 20)], err)
	}
}
