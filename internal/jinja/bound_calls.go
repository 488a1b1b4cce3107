package jinja

import (
	"strings"
	"unicode/utf8"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// Filters, methods and globals in the render's budget: each result is charged to maxAllocBytes, and the ones
// whose result a small argument can make huge (a width, a count, a separator) are checked before they run.

// gonjaFilters are the names in builtins.Filters (gonja offers no way to list a FilterSet).
var gonjaFilters = []string{"abs", "attr", "batch", "capitalize", "center", "default", "d", "dictsort", "e",
	"escape", "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "join",
	"items", "last", "length", "count", "list", "lower", "map", "max", "min", "pprint", "random", "rejectattr",
	"reject", "replace", "reverse", "round", "safe", "selectattr", "select", "slice", "sort", "string",
	"striptags", "sum", "title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "urlize",
	"wordcount", "wordwrap", "xmlattr"}

// sizeOf is what a value counts against maxAllocBytes.
func sizeOf(v *exec.Value) int64 {
	switch {
	case v == nil || v.IsError() || isPyNone(v):
		return 0
	case v.IsString():
		return int64(len(v.String()))
	case v.IsList() || v.IsDict():
		return mulSize(int64(v.Len()), itemBytes)
	}
	return 0
}

// argAt is argument pos (none when pos < 0), or else keyword kw.
func argAt(args *exec.VarArgs, pos int, kw string) (*exec.Value, bool) {
	if pos >= 0 && len(args.Args) > pos {
		return args.Args[pos], true
	}
	v, ok := args.KwArgs[kw]
	return v, ok
}

// intArg is argument pos, or keyword kw, when it is an int.
func intArg(args *exec.VarArgs, pos int, kw string) (int, bool) {
	if v, ok := argAt(args, pos, kw); ok && v.IsInteger() {
		return v.Integer(), true
	}
	return 0, false
}

// strArg is argument pos, or keyword kw, when it is a string.
func strArg(args *exec.VarArgs, pos int, kw string) (string, bool) {
	if v, ok := argAt(args, pos, kw); ok && v.IsString() {
		return v.String(), true
	}
	return "", false
}

// replaceSize is the size of s.replace(old, new).
func replaceSize(s, old, new string) int64 {
	n := int64(utf8.RuneCountInString(s) + 1)
	if old != "" {
		n = int64(strings.Count(s, old))
	}
	return int64(len(s)) + mulSize(n, int64(len(new)))
}

// filterSize is, for the filters that can build far more than they are given, an upper bound of what they
// build (0: nothing to check before).
func filterSize(name string, in *exec.Value, args *exec.VarArgs) int64 {
	switch name {
	case "center":
		w, _ := intArg(args, 0, "width")
		return int64(w)
	case "indent":
		lines := int64(strings.Count(in.String(), "\n") + 1)
		if w, ok := intArg(args, 0, "width"); ok {
			return int64(len(in.String())) + mulSize(lines, int64(max(w, 0)))
		}
		w, _ := strArg(args, 0, "width")
		return int64(len(in.String())) + mulSize(lines, int64(len(w)))
	case "join":
		d, _ := strArg(args, 0, "d")
		return mulSize(int64(in.Len()), int64(len(d)))
	case "replace":
		old, _ := strArg(args, 0, "old")
		new, _ := strArg(args, 1, "new")
		return replaceSize(in.String(), old, new)
	case "batch", "slice":
		n, _ := intArg(args, 0, map[string]string{"batch": "linecount", "slice": "slices"}[name])
		return mulSize(int64(max(n, 0)), itemBytes)
	case "tojson":
		indent, ok := intArg(args, 1, "indent")
		if !ok {
			s, _ := strArg(args, 1, "indent")
			indent = len(s)
		}
		nodes, depth := shape(in.Interface(), 0)
		return mulSize(mulSize(int64(max(indent, 0)), nodes+1), depth+1)
	}
	return 0
}

// shape is the number of items in a value and how deep they nest.
func shape(v any, level int) (items, depth int64) {
	if level > maxCallDepth {
		return 1, int64(level)
	}
	var children []any
	switch x := v.(type) {
	case PyList:
		children = x
	case []any:
		children = x
	case *exec.Dict:
		for _, p := range x.Pairs {
			children = append(children, p.Value.Interface())
		}
	case map[string]any:
		for _, c := range x {
			children = append(children, c)
		}
	default:
		return 1, int64(level)
	}
	items, depth = 1, int64(level)
	for _, c := range children {
		n, d := shape(c, level+1)
		items, depth = items+n, max(depth, d)
	}
	return items, depth
}

// boundFilter is fn in b.
func boundFilter(b *budget, name string, fn exec.FilterFunction) exec.FilterFunction {
	what := "the " + name + " filter"
	return func(e *exec.Evaluator, in *exec.Value, args *exec.VarArgs) *exec.Value {
		if err := b.fits(filterSize(name, in, args), what); err != nil {
			return exec.AsValue(err)
		}
		out := fn(e, in, args)
		if err := b.allocate(sizeOf(out), what); err != nil {
			return exec.AsValue(err)
		}
		return out
	}
}

// methodSize is filterSize for str methods.
func methodSize(name, self string, args *exec.VarArgs) int64 {
	switch name {
	case "center", "ljust", "rjust", "zfill":
		w, _ := intArg(args, 0, "width")
		return int64(w)
	case "expandtabs":
		size, ok := intArg(args, 0, "tabsize")
		if !ok {
			size = 8
		}
		return int64(len(self)) + mulSize(int64(strings.Count(self, "\t")), int64(max(size, 0)))
	case "join":
		if len(args.Args) > 0 && args.Args[0].IsIterable() {
			return mulSize(int64(args.Args[0].Len()), int64(len(self)))
		}
	case "replace":
		old, _ := strArg(args, 0, "")
		new, _ := strArg(args, 1, "")
		return replaceSize(self, old, new)
	case "format", "format_map":
		return largestNumber(self) // a width or precision in a replacement field
	}
	return 0
}

// largestNumber is the largest run of decimal digits in s (saturating).
func largestNumber(s string) int64 {
	var best, n int64
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= '0' && c <= '9' {
			if n = n*10 + int64(c-'0'); n > 1<<40 {
				n = 1 << 40
			}
			best = max(best, n)
		} else {
			n = 0
		}
	}
	return best
}

// boundMethod is fn in b.
func boundMethod[T any](b *budget, name string, fn exec.Method[T], size func(self T, args *exec.VarArgs) int64) exec.Method[T] {
	what := "the " + name + " method"
	return func(self T, sv *exec.Value, args *exec.VarArgs) (any, error) {
		if err := b.fits(size(self, args), what); err != nil {
			return nil, err
		}
		out, err := fn(self, sv, args)
		if err != nil {
			return out, err
		}
		return out, b.allocate(sizeOf(exec.ToValue(out)), what)
	}
}

func boundMethods[T any](b *budget, m map[string]exec.Method[T], size func(name string, self T, args *exec.VarArgs) int64) *exec.MethodSet[T] {
	for name, fn := range m {
		m[name] = boundMethod(b, name, fn, func(self T, args *exec.VarArgs) int64 { return size(name, self, args) })
	}
	return exec.NewMethodSet(m)
}

func noSize[T any](string, T, *exec.VarArgs) int64 { return 0 }

// lipsumWordBytes bounds a lipsum word with its separator.
const lipsumWordBytes = 16

// boundGlobal is gonja's lipsum in b (n paragraphs of up to max words).
func boundLipsum(b *budget, fn func(*exec.Evaluator, *exec.VarArgs) *exec.Value) func(*exec.Evaluator, *exec.VarArgs) *exec.Value {
	return func(e *exec.Evaluator, args *exec.VarArgs) *exec.Value {
		n, ok := intArg(args, 0, "n")
		if !ok {
			n = 5
		}
		words, ok := intArg(args, 3, "max")
		if !ok {
			words = 100
		}
		if err := b.fits(mulSize(mulSize(int64(max(n, 0)), int64(max(words, 0))), lipsumWordBytes), "lipsum()"); err != nil {
			return exec.AsValue(err)
		}
		out := fn(e, args)
		if err := b.allocate(sizeOf(out), "lipsum()"); err != nil {
			return exec.AsValue(err)
		}
		return out
	}
}
