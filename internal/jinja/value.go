package jinja

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// PyList is a list with Python indexing semantics: gonja v2.9.1's Value.GetItem rejects
// xs[-n] when n == len(xs) (so `[x][-1]`, `'a'.split('</think>')[-1]` give undefined).
// gonja consults the exec.ItemGetter interface before its own logic, so wrapping fixes it.
type PyList []any

func (l PyList) GetItem(key any) (*exec.Value, bool) {
	i, ok := key.(int)
	if !ok {
		return exec.AsValue(nil), false
	}
	if i < 0 {
		i += len(l)
	}
	if i < 0 || i >= len(l) {
		return exec.AsValue(nil), false
	}
	return exec.ToValue(l[i]), true
}

// pyTuple is what items()/dictsort yield: indexable like PyList, printed like a Python tuple.
type pyTuple []any

func (t pyTuple) GetItem(key any) (*exec.Value, bool) { return PyList(t).GetItem(key) }

func (t pyTuple) String() string {
	parts := make([]string, len(t))
	for i, x := range t {
		v := exec.ToValue(x)
		if v.IsString() {
			parts[i] = "'" + v.String() + "'"
		} else {
			parts[i] = pyStr(v)
		}
	}
	if len(t) == 1 {
		return "(" + parts[0] + ",)"
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// PyNone is a sentinel for Python None in *data* (JSON null, tools=None, ...). gonja itself has a
// single nil for both Undefined and None, so `x is defined` is False and `{{ x }}` prints "" for a
// None value. With the sentinel (an empty slice type: falsy, non-nil, prints "None"):
//
//	`is defined` -> True, `is none` -> True (test overridden), `if x` -> False, `{{ x }}` -> "None",
//	`x == none` -> True (the lowercase `none` is a context variable in gonja, bound to None by buildEnv).
type PyNone []struct{}

func (PyNone) String() string { return "None" }

// None is the value to use for Python None in template variables.
var None = PyNone{}

func isPyNone(v *exec.Value) bool {
	_, ok := v.Interface().(PyNone)
	return ok
}

// isNone is Python's `x is None` for a template value: gonja's nil (Undefined or None) or the sentinel.
func isNone(v *exec.Value) bool { return v == nil || v.IsNil() || isPyNone(v) }

// ValueOf converts decoded Go data to the data model: maps become ordered dicts (sorted keys, as the source
// order is unknown), lists PyList, nil None, integral numbers int. Values already in the model (from
// DecodeJSON) pass through.
func ValueOf(v any) any {
	switch x := v.(type) {
	case nil:
		return None
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return OrderedDict(keys, x)
	case []any:
		out := make(PyList, len(x))
		for i, e := range x {
			out[i] = ValueOf(e)
		}
		return out
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int(x)
		}
		return x
	case float32:
		return ValueOf(float64(x))
	case int32:
		return int(x)
	case int64:
		return int(x)
	}
	return v
}

// OrderedDict is m as a template dict whose keys iterate in the order given, each value converted by ValueOf.
func OrderedDict(keys []string, m map[string]any) any {
	if len(keys) == 0 {
		return map[string]any{} // an empty dict must be falsy, which *exec.Dict never is
	}
	d := exec.NewDict()
	for _, k := range keys {
		d.Pairs = append(d.Pairs, &exec.Pair{Key: exec.AsValue(k), Value: exec.AsValue(ValueOf(m[k]))})
	}
	return d
}

// elem is the value behind a template value's pointers and interfaces, for reflection over lists and maps.
func elem(v *exec.Value) reflect.Value {
	rv := v.Val
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		rv = rv.Elem()
	}
	return rv
}

// orderedPairs returns the key/value pairs of a mapping in Python iteration order
// (*exec.Dict: insertion order; Go map: sorted keys as a deterministic fallback).
func orderedPairs(v *exec.Value) ([]*exec.Pair, bool) {
	if v == nil || v.IsNil() {
		return nil, false
	}
	switch d := v.Interface().(type) {
	case *exec.Dict:
		return d.Pairs, true
	case exec.Dict:
		return d.Pairs, true
	}
	rv := elem(v)
	if rv.Kind() != reflect.Map {
		return nil, false
	}
	keys := rv.MapKeys()
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i].Interface()) < fmt.Sprint(keys[j].Interface()) })
	out := make([]*exec.Pair, 0, len(keys))
	for _, k := range keys {
		out = append(out, &exec.Pair{Key: exec.ToValue(k), Value: exec.ToValue(rv.MapIndex(k))})
	}
	return out, true
}

// pairsToList is items(): the pairs as a list of (key, value) tuples.
func pairsToList(pairs []*exec.Pair) PyList {
	out := make(PyList, 0, len(pairs))
	for _, p := range pairs {
		out = append(out, pyTuple{p.Key.Interface(), p.Value.Interface()})
	}
	return out
}
