package jinja

import (
	"fmt"
	"io"
	"strings"

	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
)

// rootTemplateID is the one name sourceLoader serves.
const rootTemplateID = "chat_template"

// sourceLoader serves the chat template's own source and nothing else: {% include %}, {% import %} and
// {% extends %} cannot read files (a FileSystemLoader("") would let an untrusted chat template read any
// file, e.g. /etc/passwd).
type sourceLoader string

func (s sourceLoader) Read(path string) (io.Reader, error) {
	if path != rootTemplateID {
		return nil, fmt.Errorf("template loading is disabled (requested %q)", path)
	}
	return strings.NewReader(string(s)), nil
}

func (s sourceLoader) Resolve(path string) (string, error) {
	if path != rootTemplateID {
		return "", fmt.Errorf("template loading is disabled (requested %q)", path)
	}
	return path, nil
}

func (s sourceLoader) Inherit(from string) (loaders.Loader, error) { return s, nil }

var _ loaders.Loader = sourceLoader("")

// maxRange mirrors jinja2.sandbox.MAX_RANGE: transformers renders chat templates with it.
const maxRange = 100000

// sandboxRange replaces gonja's range, which is unbounded (and goroutine/channel based); its list counts
// against b.
func sandboxRange(b *budget) func(args *exec.VarArgs) (PyList, error) {
	return func(args *exec.VarArgs) (PyList, error) {
		n, start, step, err := rangeLen(args)
		if le, ok := err.(*LimitError); ok {
			return nil, b.fail(le)
		} else if err != nil {
			return nil, err
		}
		if err := b.allocate(int64(n)*itemBytes, "range()"); err != nil {
			return nil, err
		}
		out := make(PyList, n)
		for i := range out {
			out[i] = start + i*step
		}
		return out, nil
	}
}

// rangeLen is the length, start and step of range(args).
func rangeLen(args *exec.VarArgs) (n, start, step int, err error) {
	start, stop, step := 0, 0, 1
	ints := make([]int, len(args.Args))
	for i, a := range args.Args {
		if !a.IsInteger() {
			return 0, 0, 0, fmt.Errorf("range() arguments must be integers")
		}
		ints[i] = a.Integer()
	}
	switch len(ints) {
	case 1:
		stop = ints[0]
	case 2:
		start, stop = ints[0], ints[1]
	case 3:
		start, stop, step = ints[0], ints[1], ints[2]
	default:
		return 0, 0, 0, fmt.Errorf("range expected 1 to 3 arguments, got %d", len(ints))
	}
	if step == 0 {
		return 0, 0, 0, fmt.Errorf("range() arg 3 must not be zero")
	}
	if step > 0 && stop > start {
		n = (stop - start + step - 1) / step
	} else if step < 0 && stop < start {
		n = (start - stop - step - 1) / -step
	}
	if n > maxRange || n < 0 {
		return 0, 0, 0, &LimitError{Limit: "maxRange", What: fmt.Sprintf("range() over %d items (jinja2's sandbox MAX_RANGE)", maxRange)}
	}
	return n, start, step, nil
}
