package jinja

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/nikolalohinski/gonja/v2"
	"github.com/nikolalohinski/gonja/v2/exec"
)

// Template is a compiled chat template, safe for concurrent renders. A single *exec.Template may be executed
// concurrently (verified with -race), but gonja guards every global/filter/test lookup with a plain
// sync.Mutex on its Environment, so concurrent renders of one copy contend; Template therefore keeps
// independently compiled copies, each with its own Environment and render budget.
type Template struct{ pool sync.Pool }

// compiled is one copy of a template: its budget is what the render using the copy has spent.
type compiled struct {
	t      *exec.Template
	budget *budget
	ops    map[string]any
}

// Compile parses a chat template; a parse error surfaces here, once.
func Compile(src string) (*Template, error) {
	if err := checkSource(src); err != nil {
		return nil, err
	}
	first, err := compile(src)
	if err != nil {
		return nil, err
	}
	t := &Template{}
	t.pool.New = func() any {
		c, err := compile(src)
		if err != nil {
			panic(err) // cannot happen: the same source compiled above
		}
		return c
	}
	t.pool.Put(first)
	return t, nil
}

// Render renders the template with vars, given in the data model of the package doc, within maxRenderTime.
// A raise_exception() call is returned as *TemplateError, a render stopped by a limit as *LimitError.
func (t *Template) Render(vars map[string]any) (string, error) {
	return t.RenderContext(context.Background(), vars)
}

// RenderContext is Render stopped also by ctx's deadline or cancellation.
func (t *Template) RenderContext(ctx context.Context, vars map[string]any) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, maxRenderTime)
	defer cancel()
	c := t.pool.Get().(*compiled)
	defer t.pool.Put(c)
	c.budget.reset(ctx)
	return execute(c, vars)
}

var loggerOnce sync.Once

// compile parses src with its own Environment and bounds it (bound.go).
func compile(src string) (c *compiled, err error) {
	loggerOnce.Do(func() { gonja.SetLoggerOutput(io.Discard) }) // gonja logs via logrus otherwise
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("chat template parse panic: %v", r)
		}
	}()
	b := &budget{ctx: context.Background()}
	t, err := exec.NewTemplate(rootTemplateID, hfConfig(), sourceLoader(src), buildEnv(b))
	if err != nil {
		return nil, err
	}
	bound(t.Root(), b)
	return &compiled{t: t, budget: b, ops: boundOps(b)}, nil
}

// execute renders with panic recovery (gonja can panic at runtime, e.g. on `'%s' % x` or `x % 0`). gonja's
// own error chain does not support errors.As, so a raise_exception() is captured through a per-render
// global and a limit through the budget instead.
func execute(c *compiled, vars map[string]any) (out string, err error) {
	var raised *TemplateError
	v := make(map[string]any, len(vars)+len(c.ops)+1)
	for k, x := range vars {
		v[k] = x
	}
	for k, fn := range c.ops { // after vars: data cannot replace them
		v[k] = fn
	}
	v["raise_exception"] = raiseException(&raised)
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("chat template render panic: %v", r)
		}
		if raised != nil {
			out, err = "", raised
		}
		if c.budget.err != nil {
			out, err = "", c.budget.err
		}
	}()
	w := &outputWriter{b: c.budget}
	if err := c.t.Execute(w, exec.NewContext(v)); err != nil {
		return "", err
	}
	return w.String(), nil
}
