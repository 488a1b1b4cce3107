package jinja

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// Filters whose gonja versions differ from Jinja's on Python data (tojson has its own file).

func filterItems(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	if in.IsNil() {
		return exec.AsValue(PyList{})
	}
	pairs, ok := orderedPairs(in)
	if !ok {
		return exec.AsValue(fmt.Errorf("items filter: %s is not a mapping", in.String()))
	}
	return exec.AsValue(pairsToList(pairs))
}

func filterDictSort(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	// do_dictsort(value, case_sensitive=False, by='key', reverse=False)
	arg := func(i int, name string, def any) *exec.Value {
		if len(params.Args) > i {
			return params.Args[i]
		}
		return params.GetKeywordArgument(name, def)
	}
	caseSensitive := arg(0, "case_sensitive", false).IsTrue()
	by := arg(1, "by", "key").String()
	reverse := arg(2, "reverse", false).IsTrue()
	pairs, ok := orderedPairs(in)
	if !ok {
		return exec.AsValue(fmt.Errorf("dictsort: %s is not a mapping", in.String()))
	}
	pairs = append([]*exec.Pair(nil), pairs...)
	key := func(p *exec.Pair) *exec.Value {
		if by == "value" {
			return p.Value
		}
		return p.Key
	}
	less := func(a, b *exec.Value) bool {
		if a.IsNumber() && b.IsNumber() {
			return a.Float() < b.Float()
		}
		as, bs := a.String(), b.String()
		if !caseSensitive {
			as, bs = strings.ToLower(as), strings.ToLower(bs)
		}
		return as < bs
	}
	sort.SliceStable(pairs, func(i, j int) bool {
		if reverse {
			return less(key(pairs[j]), key(pairs[i]))
		}
		return less(key(pairs[i]), key(pairs[j]))
	})
	return exec.AsValue(pairsToList(pairs))
}

// round: Python's round() is round-half-even on the exact binary value (gonja: half away from zero).
func filterRound(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	precision := params.GetKeywordArgument("precision", 0).Integer()
	method := params.GetKeywordArgument("method", "common").String()
	if len(params.Args) > 0 {
		precision = params.Args[0].Integer()
	}
	if len(params.Args) > 1 {
		method = params.Args[1].String()
	}
	x := in.Float()
	p := math.Pow10(precision)
	switch method {
	case "common":
		f, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', precision, 64), 64)
		return exec.AsValue(f)
	case "floor":
		return exec.AsValue(math.Floor(x*p) / p)
	case "ceil":
		return exec.AsValue(math.Ceil(x*p) / p)
	}
	return exec.AsValue(fmt.Errorf("round: method must be 'common', 'ceil' or 'floor'"))
}

// gonja's reverse sorts lists (IterateOrder(..., sorted=true)); Python just reverses.
func filterReverse(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	if in.IsString() {
		r := []rune(in.String())
		for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
			r[i], r[j] = r[j], r[i]
		}
		return exec.AsValue(string(r))
	}
	if in.IsList() && !isPyNone(in) {
		rv := elem(in)
		out := make(PyList, rv.Len())
		for i := 0; i < rv.Len(); i++ {
			out[rv.Len()-1-i] = rv.Index(i).Interface()
		}
		return exec.AsValue(out)
	}
	if pairs, ok := orderedPairs(in); ok {
		out := make(PyList, len(pairs))
		for i, p := range pairs {
			out[len(pairs)-1-i] = p.Key.Interface()
		}
		return exec.AsValue(out)
	}
	return exec.AsValue(fmt.Errorf("reverse: cannot reverse %s", in.String()))
}

// trim = Python str(x).strip(chars); gonja errors on non-strings and misses \x1c-\x1f.
func filterTrim(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	s := pyStr(in)
	chars := params.GetKeywordArgument("chars", nil)
	if len(params.Args) > 0 {
		chars = params.Args[0]
	}
	if chars.IsNil() {
		return exec.AsValue(strings.TrimFunc(s, isPySpace))
	}
	return exec.AsValue(strings.Trim(s, chars.String()))
}
