package jinja

import (
	"fmt"
	"io"
	"sync"

	"github.com/nikolalohinski/gonja/v2"
	"github.com/nikolalohinski/gonja/v2/exec"
)

// Template is a compiled chat template, safe for concurrent renders. A single *exec.Template may be executed
// concurrently (verified with -race), but gonja guards every global/filter/test lookup with a plain
// sync.Mutex on its Environment, so concurrent renders of one copy contend; Template therefore keeps
// independently compiled copies, each with its own Environment.
type Template struct{ pool sync.Pool }

// Compile parses a chat template; a parse error surfaces here, once.
func Compile(src string) (*Template, error) {
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

// Render renders the template with vars, given in the data model of the package doc. A raise_exception()
// call is returned as *TemplateError.
func (t *Template) Render(vars map[string]any) (string, error) {
	c := t.pool.Get().(*exec.Template)
	defer t.pool.Put(c)
	return execute(c, vars)
}

var loggerOnce sync.Once

// compile parses src with its own Environment.
func compile(src string) (t *exec.Template, err error) {
	loggerOnce.Do(func() { gonja.SetLoggerOutput(io.Discard) }) // gonja logs via logrus otherwise
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("chat template parse panic: %v", r)
		}
	}()
	return exec.NewTemplate(rootTemplateID, hfConfig(), sourceLoader(src), buildEnv())
}

// execute renders with panic recovery (gonja can panic at runtime, e.g. on `'%s' % x` or `x % 0`). gonja's
// own error chain does not support errors.As, so a raise_exception() is captured through a per-render
// global instead.
func execute(t *exec.Template, vars map[string]any) (out string, err error) {
	var raised *TemplateError
	v := make(map[string]any, len(vars)+1)
	for k, x := range vars {
		v[k] = x
	}
	v["raise_exception"] = raiseException(&raised)
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("chat template render panic: %v", r)
		}
		if raised != nil {
			out, err = "", raised
		}
	}()
	return t.ExecuteToString(exec.NewContext(v))
}
