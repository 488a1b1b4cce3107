package jinja

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/exec"
)

// Python's str, list and dict methods as an ImmutableSandboxedEnvironment offers them.

// optString is positional argument i as a string; has is false when it is absent or None.
func optString(args *exec.VarArgs, i int) (s string, has bool) {
	if len(args.Args) > i && !isNone(args.Args[i]) {
		return args.Args[i].String(), true
	}
	return "", false
}

// optInt is positional argument i as an int, def when it is absent or None.
func optInt(args *exec.VarArgs, i int, def int) int {
	if len(args.Args) > i && !isNone(args.Args[i]) {
		return args.Args[i].Integer()
	}
	return def
}

// Python-style slice bounds over runes -> byte offsets.
func runeWindow(s string, args *exec.VarArgs, from int) (sub string, startRunes int) {
	r := []rune(s)
	n := len(r)
	start := optInt(args, from, 0)
	end := optInt(args, from+1, n)
	if start < 0 {
		start = max(0, start+n)
	}
	if end < 0 {
		end = max(0, end+n)
	}
	start, end = min(start, n), min(end, n)
	if start > end {
		return "", start
	}
	return string(r[start:end]), start
}

func pySplitWhitespace(s string, maxsplit int, fromRight bool) PyList {
	fields := strings.FieldsFunc(s, isPySpace)
	out := PyList{}
	if maxsplit < 0 || maxsplit >= len(fields)-1 {
		for _, f := range fields {
			out = append(out, f)
		}
		return out
	}
	if !fromRight {
		rest := s
		for i := 0; i < maxsplit; i++ {
			rest = strings.TrimLeftFunc(rest, isPySpace)
			j := strings.IndexFunc(rest, isPySpace)
			out = append(out, rest[:j])
			rest = rest[j:]
		}
		rest = strings.TrimLeftFunc(rest, isPySpace)
		return append(out, rest)
	}
	rest := s
	var tail []any
	for i := 0; i < maxsplit; i++ {
		rest = strings.TrimRightFunc(rest, isPySpace)
		j := strings.LastIndexFunc(rest, isPySpace)
		_, w := utf8.DecodeRuneInString(rest[j:])
		tail = append([]any{rest[j+w:]}, tail...)
		rest = rest[:j]
	}
	rest = strings.TrimRightFunc(rest, isPySpace)
	return append(append(out, rest), tail...)
}

func strMethods() map[string]exec.Method[string] {
	m := map[string]exec.Method[string]{}
	// keep gonja's implementations that behave like Python for chat-template use
	for _, name := range []string{"capitalize", "casefold", "center", "encode", "endswith", "expandtabs",
		"format", "format_map", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "islower", "isnumeric",
		"isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower", "partition", "removeprefix",
		"removesuffix", "rjust", "rpartition", "splitlines", "startswith", "swapcase", "title", "upper", "zfill"} {
		if fn, ok := builtins.Methods.Str.Get(name); ok {
			m[name] = fn
		}
	}
	strip := func(kind int) exec.Method[string] {
		return func(self string, _ *exec.Value, args *exec.VarArgs) (any, error) {
			chars, has := optString(args, 0)
			if c, ok := args.KwArgs["chars"]; ok && !isNone(c) {
				chars, has = c.String(), true
			}
			f := isPySpace
			if has {
				f = func(r rune) bool { return strings.ContainsRune(chars, r) }
			}
			switch kind {
			case 0:
				return strings.TrimFunc(self, f), nil
			case 1:
				return strings.TrimLeftFunc(self, f), nil
			default:
				return strings.TrimRightFunc(self, f), nil
			}
		}
	}
	m["strip"], m["lstrip"], m["rstrip"] = strip(0), strip(1), strip(2)
	split := func(fromRight bool) exec.Method[string] {
		return func(self string, _ *exec.Value, args *exec.VarArgs) (any, error) {
			sep, has := optString(args, 0)
			if v, ok := args.KwArgs["sep"]; ok && !isNone(v) {
				sep, has = v.String(), true
			}
			maxsplit := optInt(args, 1, -1)
			if v, ok := args.KwArgs["maxsplit"]; ok {
				maxsplit = v.Integer()
			}
			if !has {
				return pySplitWhitespace(self, maxsplit, fromRight), nil
			}
			if sep == "" {
				return nil, fmt.Errorf("ValueError: empty separator")
			}
			var parts []string
			switch {
			case maxsplit < 0:
				parts = strings.Split(self, sep)
			case !fromRight:
				parts = strings.SplitN(self, sep, maxsplit+1)
			default:
				parts = nil
				rest := self
				for i := 0; i < maxsplit; i++ {
					j := strings.LastIndex(rest, sep)
					if j < 0 {
						break
					}
					parts = append([]string{rest[j+len(sep):]}, parts...)
					rest = rest[:j]
				}
				parts = append([]string{rest}, parts...)
			}
			out := make(PyList, len(parts))
			for i, p := range parts {
				out[i] = p
			}
			return out, nil
		}
	}
	m["split"], m["rsplit"] = split(false), split(true)
	m["replace"] = func(self string, _ *exec.Value, args *exec.VarArgs) (any, error) {
		if len(args.Args) < 2 {
			return nil, fmt.Errorf("replace() takes at least 2 arguments")
		}
		return strings.Replace(self, args.Args[0].String(), args.Args[1].String(), optInt(args, 2, -1)), nil
	}
	find := func(last bool) exec.Method[string] {
		return func(self string, _ *exec.Value, args *exec.VarArgs) (any, error) {
			sub, _ := optString(args, 0)
			win, start := runeWindow(self, args, 1)
			var i int
			if last {
				i = strings.LastIndex(win, sub)
			} else {
				i = strings.Index(win, sub)
			}
			if i < 0 {
				return -1, nil
			}
			return start + utf8.RuneCountInString(win[:i]), nil
		}
	}
	m["find"], m["rfind"] = find(false), find(true)
	m["index"] = func(self string, sv *exec.Value, args *exec.VarArgs) (any, error) {
		r, _ := m["find"](self, sv, args)
		if r.(int) < 0 {
			return nil, fmt.Errorf("ValueError: substring not found")
		}
		return r, nil
	}
	m["count"] = func(self string, _ *exec.Value, args *exec.VarArgs) (any, error) {
		sub, _ := optString(args, 0)
		win, _ := runeWindow(self, args, 1)
		if sub == "" {
			return utf8.RuneCountInString(win) + 1, nil
		}
		return strings.Count(win, sub), nil
	}
	return m
}

// List methods: only copy (append/reverse are mutating -> SecurityError in HF's immutable sandbox).
func listMethods() map[string]exec.Method[[]any] {
	m := map[string]exec.Method[[]any]{}
	if fn, ok := builtins.Methods.List.Get("copy"); ok {
		m["copy"] = fn
	}
	return m
}

// Dict methods: gonja passes a map copy (sorted keys); use selfValue to keep insertion order.
func dictMethods() map[string]exec.Method[map[string]any] {
	m := map[string]exec.Method[map[string]any]{}
	// HF renders in an ImmutableSandboxedEnvironment: pop/popitem/setdefault/update/clear raise
	// SecurityError there, so they are left out (they would also mutate the caller's data).
	for _, name := range []string{"copy"} {
		if fn, ok := builtins.Methods.Dict.Get(name); ok {
			m[name] = fn
		}
	}
	m["items"] = func(_ map[string]any, self *exec.Value, args *exec.VarArgs) (any, error) {
		pairs, _ := orderedPairs(self)
		return pairsToList(pairs), nil
	}
	m["keys"] = func(_ map[string]any, self *exec.Value, args *exec.VarArgs) (any, error) {
		pairs, _ := orderedPairs(self)
		out := make(PyList, len(pairs))
		for i, p := range pairs {
			out[i] = p.Key.Interface()
		}
		return out, nil
	}
	m["values"] = func(_ map[string]any, self *exec.Value, args *exec.VarArgs) (any, error) {
		pairs, _ := orderedPairs(self)
		out := make(PyList, len(pairs))
		for i, p := range pairs {
			out[i] = p.Value.Interface()
		}
		return out, nil
	}
	m["get"] = func(_ map[string]any, self *exec.Value, args *exec.VarArgs) (any, error) {
		if len(args.Args) < 1 || len(args.Args) > 2 {
			return nil, fmt.Errorf("get() takes 1 or 2 positional arguments")
		}
		pairs, _ := orderedPairs(self)
		for _, p := range pairs {
			if p.Key.EqualValueTo(args.Args[0]) {
				return p.Value.Interface(), nil
			}
		}
		if len(args.Args) == 2 {
			return args.Args[1].Interface(), nil
		}
		return None, nil
	}
	return m
}
