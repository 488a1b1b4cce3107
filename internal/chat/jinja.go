package chat

// Hugging Face chat templates (Jinja) rendered with github.com/nikolalohinski/gonja/v2.
//
// Mirrors transformers' _compile_jinja_template:
//   ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
//   filters["tojson"] = json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
//   globals["raise_exception"], globals["strftime_now"]
//
// Data model expected by the templates (see DecodeJSON):
//   JSON object (non-empty) -> *exec.Dict   (ordered pairs: keeps Python dict insertion order)
//   JSON object (empty)     -> map[string]any{} (so that `{% if obj %}` is false, like Python)
//   JSON array              -> PyList        (fixes gonja's negative-index bug)
//   JSON number             -> int when written without '.'/'e', else float64
//   JSON null               -> None (PyNone sentinel: defined, falsy, prints "None")
//   string/bool             -> string/bool
// Pass tools=None / documents=None when absent, as transformers does.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nikolalohinski/gonja/v2"
	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
	"github.com/nikolalohinski/gonja/v2/nodes"
	"github.com/nikolalohinski/gonja/v2/parser"
	"github.com/nikolalohinski/gonja/v2/tokens"
)

// ---------------------------------------------------------------------------------------------
// Data model

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

// PyTuple is what items()/dictsort yield: indexable like PyList, printed like a Python tuple.
type PyTuple []any

func (t PyTuple) GetItem(key any) (*exec.Value, bool) { return PyList(t).GetItem(key) }
func (t PyTuple) String() string {
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
//	`x == none` -> True (the lowercase `none` is a context variable in gonja, bound to None below).
type PyNone []struct{}

func (PyNone) String() string { return "None" }

// None is the value to use for Python None in template variables.
var None = PyNone{}

func isPyNone(v *exec.Value) bool {
	_, ok := v.Interface().(PyNone)
	return ok
}

// DecodeJSON decodes JSON into the data model above (order-preserving).
func DecodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			d := exec.NewDict()
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				d.Pairs = append(d.Pairs, &exec.Pair{Key: exec.AsValue(kt.(string)), Value: exec.AsValue(v)})
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			if len(d.Pairs) == 0 {
				return map[string]any{}, nil // exec.Dict is always truthy; empty map is falsy
			}
			return d, nil
		case '[':
			l := PyList{}
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return l, nil
		}
	case json.Number:
		s := string(t)
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return int(i), nil
			}
		}
		return strconv.ParseFloat(s, 64)
	case nil:
		return None, nil
	}
	return tok, nil
}

// ---------------------------------------------------------------------------------------------
// Environment

// Now is used by strftime_now; tests pin it for deterministic output.
var Now = time.Now

func hfConfig() *config.Config {
	c := config.New()
	c.TrimBlocks = true           // jinja2 trim_blocks=True
	c.LeftStripBlocks = true      // jinja2 lstrip_blocks=True
	c.KeepTrailingNewline = false // jinja2 default
	c.AutoEscape = false
	c.StrictUndefined = false // jinja2 default Undefined (lenient)
	return c
}

func buildEnv() *exec.Environment {
	// Copy filter/test sets: builtins.* are package-level singletons shared by every gonja user.
	filters := exec.NewFilterSet(map[string]exec.FilterFunction{}).Update(builtins.Filters)
	for name, fn := range map[string]exec.FilterFunction{
		"tojson":   filterToJSON,
		"items":    filterItems,
		"dictsort": filterDictSort,
		"reverse":  filterReverse,
		"trim":     filterTrim,
		"round":    filterRound,
	} {
		if err := filters.Replace(name, fn); err != nil {
			panic(err)
		}
	}
	tests := exec.NewTestSet(map[string]exec.TestFunction{}).Update(builtins.Tests)
	for name, fn := range map[string]exec.TestFunction{
		// Jinja's `sequence` test is true for str/list/dict (anything with len() and [])
		"sequence": func(_ *exec.Context, in *exec.Value, _ *exec.VarArgs) (bool, error) {
			return !isPyNone(in) && (in.IsString() || in.IsList() || in.IsDict()), nil
		},
		"iterable": func(_ *exec.Context, in *exec.Value, _ *exec.VarArgs) (bool, error) {
			return !isPyNone(in) && in.IsIterable(), nil
		},
		"none": func(_ *exec.Context, in *exec.Value, _ *exec.VarArgs) (bool, error) {
			return in.IsNil() || isPyNone(in), nil
		},
	} {
		if err := tests.Replace(name, fn); err != nil {
			panic(err)
		}
	}
	// transformers' AssistantTracker extension: {% generation %}...{% endgeneration %} renders its body
	controls := exec.NewControlStructureSet(map[string]parser.ControlStructureParser{}).Update(builtins.ControlStructures)
	if err := controls.Register("generation", generationParser); err != nil {
		panic(err)
	}

	ctx := exec.EmptyContext().Update(builtins.GlobalFunctions).Update(builtins.GlobalVariables)
	ctx.Set("none", None)          // `None` (capitalised) stays gonja's nil literal
	ctx.Set("range", sandboxRange) // gonja's range is unbounded (and goroutine/channel based)
	ctx.Set("raise_exception", raiseException)
	ctx.Set("strftime_now", strftimeNow)

	return &exec.Environment{
		Context:           ctx,
		Filters:           filters,
		Tests:             tests,
		ControlStructures: controls, // builtins include break/continue (loopcontrols)
		Methods: exec.Methods{
			Bool:  builtins.Methods.Bool,
			Int:   builtins.Methods.Int,
			Float: builtins.Methods.Float,
			Str:   strMethods(),
			Dict:  dictMethods(),
			List:  listMethods(),
		},
	}
}

var loggerOnce sync.Once

// Compile parses a chat template with its own Environment copy. The result may be executed
// concurrently (verified with -race), but gonja guards every global/filter/test lookup with a
// plain sync.Mutex on the Environment, so concurrent renders of one *exec.Template contend;
// use TemplatePool for parallel throughput.
func Compile(src string) (t *exec.Template, err error) {
	loggerOnce.Do(func() { gonja.SetLoggerOutput(io.Discard) }) // gonja logs via logrus otherwise
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("chat template parse panic: %v", r)
		}
	}()
	// A single-source loader: {% include %}/{% import %}/{% extends %} cannot read files
	// (a FileSystemLoader("") would let an untrusted chat template read any file, e.g. /etc/passwd).
	return exec.NewTemplate(rootTemplateID, hfConfig(), sourceLoader(src), buildEnv())
}

// TemplatePool keeps independently compiled copies of one template (each with its own
// Environment, hence its own mutexes) so that parallel renders do not contend.
type TemplatePool struct{ pool sync.Pool }

func NewTemplatePool(src string) (*TemplatePool, error) {
	first, err := Compile(src) // surface parse errors once, up front
	if err != nil {
		return nil, err
	}
	p := &TemplatePool{}
	p.pool.New = func() any {
		t, err := Compile(src)
		if err != nil {
			panic(err) // cannot happen: the same source compiled above
		}
		return t
	}
	p.pool.Put(first)
	return p, nil
}

func (p *TemplatePool) Render(vars map[string]any) (string, error) {
	t := p.pool.Get().(*exec.Template)
	defer p.pool.Put(t)
	return Execute(t, vars)
}

const rootTemplateID = "chat_template"

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

// Execute renders with panic recovery (gonja can panic at runtime, e.g. on `'%s' % x` or `x % 0`).
// A raise_exception() call is returned as *TemplateError (gonja's own error chain does not
// support errors.As, so the exception is captured through a per-render closure).
func Execute(t *exec.Template, vars map[string]any) (out string, err error) {
	var raised *TemplateError
	v := make(map[string]any, len(vars)+1)
	for k, x := range vars {
		v[k] = x
	}
	v["raise_exception"] = func(args *exec.VarArgs) (any, error) {
		_, e := raiseException(args)
		if raised == nil {
			raised = e.(*TemplateError)
		}
		return nil, e
	}
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

type generationBlock struct {
	location *tokens.Token
	wrapper  *nodes.Wrapper
}

func (g *generationBlock) Position() *tokens.Token { return g.location }
func (g *generationBlock) String() string {
	return fmt.Sprintf("GenerationControlStructure(Line=%d Col=%d)", g.location.Line, g.location.Col)
}
func (g *generationBlock) Execute(r *exec.Renderer, _ *nodes.ControlStructureBlock) error {
	return r.Inherit().ExecuteWrapper(g.wrapper) // CallBlock body: own scope, output passes through
}

func generationParser(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
	g := &generationBlock{location: p.Current()}
	if !args.End() {
		return nil, args.Error("generation takes no arguments", nil)
	}
	wrapper, endargs, err := p.WrapUntil("endgeneration")
	if err != nil {
		return nil, err
	}
	if !endargs.End() {
		return nil, endargs.Error("Arguments not allowed here.", nil)
	}
	g.wrapper = wrapper
	return g, nil
}

// ---------------------------------------------------------------------------------------------
// Globals

// TemplateError mirrors jinja2.exceptions.TemplateError raised by HF's raise_exception.
type TemplateError struct{ Message string }

func (e *TemplateError) Error() string { return e.Message }

func raiseException(args *exec.VarArgs) (any, error) { // also registered globally (Compile-only users)
	msg := ""
	if len(args.Args) > 0 {
		msg = args.Args[0].String()
	}
	return nil, &TemplateError{Message: msg}
}

// MaxRange mirrors jinja2.sandbox.MAX_RANGE.
const MaxRange = 100000

func sandboxRange(args *exec.VarArgs) (PyList, error) {
	start, stop, step := 0, 0, 1
	ints := make([]int, len(args.Args))
	for i, a := range args.Args {
		if !a.IsInteger() {
			return nil, fmt.Errorf("range() arguments must be integers")
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
		return nil, fmt.Errorf("range expected 1 to 3 arguments, got %d", len(ints))
	}
	if step == 0 {
		return nil, fmt.Errorf("range() arg 3 must not be zero")
	}
	n := 0
	if step > 0 && stop > start {
		n = (stop - start + step - 1) / step
	} else if step < 0 && stop < start {
		n = (start - stop - step - 1) / -step
	}
	if n > MaxRange {
		return nil, fmt.Errorf("Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", MaxRange)
	}
	out := make(PyList, n)
	for i := range out {
		out[i] = start + i*step
	}
	return out, nil
}

func strftimeNow(args *exec.VarArgs) (string, error) {
	if len(args.Args) != 1 || !args.Args[0].IsString() {
		return "", fmt.Errorf("strftime_now(format) takes one string argument")
	}
	return Strftime(Now(), args.Args[0].String()), nil
}

// Strftime implements the C/Python strftime directives used by chat templates (glibc flavour,
// including the '-' no-padding flag, e.g. "%-d").
func Strftime(t time.Time, f string) string {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '%' || i+1 >= len(f) {
			b.WriteByte(c)
			continue
		}
		i++
		nopad := false
		if f[i] == '-' && i+1 < len(f) {
			nopad = true
			i++
		}
		num := func(v, width int) {
			if nopad {
				b.WriteString(strconv.Itoa(v))
			} else {
				fmt.Fprintf(&b, "%0*d", width, v)
			}
		}
		switch f[i] {
		case 'a':
			b.WriteString(t.Weekday().String()[:3])
		case 'A':
			b.WriteString(t.Weekday().String())
		case 'b', 'h':
			b.WriteString(t.Month().String()[:3])
		case 'B':
			b.WriteString(t.Month().String())
		case 'd':
			num(t.Day(), 2)
		case 'e':
			if nopad {
				b.WriteString(strconv.Itoa(t.Day()))
			} else {
				fmt.Fprintf(&b, "%2d", t.Day())
			}
		case 'm':
			num(int(t.Month()), 2)
		case 'y':
			num(t.Year()%100, 2)
		case 'Y':
			b.WriteString(strconv.Itoa(t.Year()))
		case 'H':
			num(t.Hour(), 2)
		case 'I':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			num(h, 2)
		case 'M':
			num(t.Minute(), 2)
		case 'S':
			num(t.Second(), 2)
		case 'p':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'j':
			num(t.YearDay(), 3)
		case 'f':
			fmt.Fprintf(&b, "%06d", t.Nanosecond()/1000)
		case 'w':
			b.WriteString(strconv.Itoa(int(t.Weekday())))
		case 'u':
			w := int(t.Weekday())
			if w == 0 {
				w = 7
			}
			b.WriteString(strconv.Itoa(w))
		case 'Z':
			name, _ := t.Zone()
			b.WriteString(name)
		case 'z':
			b.WriteString(t.Format("-0700"))
		case 'F':
			b.WriteString(t.Format("2006-01-02"))
		case 'T', 'X':
			b.WriteString(t.Format("15:04:05"))
		case 'D', 'x':
			b.WriteString(t.Format("01/02/06"))
		case 'c':
			b.WriteString(t.Format("Mon Jan _2 15:04:05 2006"))
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			if nopad {
				b.WriteByte('-')
			}
			b.WriteByte(f[i])
		}
	}
	return b.String()
}

// ---------------------------------------------------------------------------------------------
// Filters

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
	rv := v.Val
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		rv = rv.Elem()
	}
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

func pairsToList(pairs []*exec.Pair) PyList {
	out := make(PyList, 0, len(pairs))
	for _, p := range pairs {
		out = append(out, PyTuple{p.Key.Interface(), p.Value.Interface()})
	}
	return out
}

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
		rv := in.Val
		for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
			rv = rv.Elem()
		}
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

// pyStr approximates Python str() for scalars (None -> "None", True -> "True").
func pyStr(v *exec.Value) string {
	switch {
	case v.IsNil() || isPyNone(v):
		return "None"
	case v.IsBool():
		if v.Bool() {
			return "True"
		}
		return "False"
	case v.IsFloat():
		return pyFloatRepr(v.Float())
	}
	return v.String()
}

// filterToJSON reproduces HF's tojson: json.dumps(x, ensure_ascii=False, indent=None,
// separators=None, sort_keys=False), i.e. Python separators (", ", ": "), insertion key order,
// no HTML escaping, raw non-ASCII, Python float repr.
func filterToJSON(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	opts := jsonOpts{}
	names := []string{"ensure_ascii", "indent", "separators", "sort_keys"}
	got := map[string]*exec.Value{}
	for i, a := range params.Args {
		if i < len(names) {
			got[names[i]] = a
		}
	}
	for k, v := range params.KwArgs {
		got[k] = v
	}
	for k := range got {
		switch k {
		case "ensure_ascii", "indent", "separators", "sort_keys":
		default:
			return exec.AsValue(fmt.Errorf("tojson() got an unexpected keyword argument '%s'", k))
		}
	}
	if v, ok := got["ensure_ascii"]; ok {
		opts.ensureASCII = v.IsTrue()
	}
	if v, ok := got["sort_keys"]; ok {
		opts.sortKeys = v.IsTrue()
	}
	if v, ok := got["indent"]; ok && !v.IsNil() {
		opts.hasIndent = true
		if v.IsString() {
			opts.indent = v.String()
		} else if v.IsInteger() {
			opts.indent = strings.Repeat(" ", max(0, v.Integer()))
		} else {
			return exec.AsValue(fmt.Errorf("tojson: indent must be int or str"))
		}
	}
	opts.itemSep, opts.keySep = ", ", ": "
	if opts.hasIndent {
		opts.itemSep = ","
	}
	if v, ok := got["separators"]; ok && !v.IsNil() {
		if !v.IsList() || v.Len() != 2 {
			return exec.AsValue(fmt.Errorf("tojson: separators must be a 2-item sequence"))
		}
		opts.itemSep, opts.keySep = v.Index(0).String(), v.Index(1).String()
	}
	var b strings.Builder
	if err := writeJSON(&b, in, opts, 0); err != nil {
		return exec.AsValue(err)
	}
	return exec.AsSafeValue(b.String())
}

type jsonOpts struct {
	ensureASCII, sortKeys, hasIndent bool
	indent, itemSep, keySep          string
}

func writeJSON(b *strings.Builder, v *exec.Value, o jsonOpts, depth int) error {
	if depth > 512 {
		return fmt.Errorf("tojson: nesting too deep (circular reference?)")
	}
	if v == nil || v.IsNil() || isPyNone(v) {
		b.WriteString("null")
		return nil
	}
	if inner, ok := v.Interface().(*exec.Value); ok {
		return writeJSON(b, inner, o, depth)
	}
	newline := func(d int) {
		if o.hasIndent {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat(o.indent, d))
		}
	}
	switch {
	case v.IsBool():
		if v.Bool() {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case v.IsInteger():
		b.WriteString(strconv.FormatInt(v.Val.Int(), 10))
	case v.IsFloat():
		f := v.Float()
		switch {
		case math.IsNaN(f):
			b.WriteString("NaN")
		case math.IsInf(f, 1):
			b.WriteString("Infinity")
		case math.IsInf(f, -1):
			b.WriteString("-Infinity")
		default:
			b.WriteString(pyFloatRepr(f))
		}
	case v.IsString():
		writeJSONString(b, v.String(), o.ensureASCII)
	case v.IsList():
		rv := v.Val
		for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
			rv = rv.Elem()
		}
		if rv.Len() == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i := 0; i < rv.Len(); i++ {
			if i > 0 {
				b.WriteString(o.itemSep)
			}
			newline(depth + 1)
			if err := writeJSON(b, exec.ToValue(rv.Index(i)), o, depth+1); err != nil {
				return err
			}
		}
		newline(depth)
		b.WriteByte(']')
	default:
		pairs, ok := orderedPairs(v)
		if !ok {
			return fmt.Errorf("Object of type %T is not JSON serializable", v.Interface())
		}
		if len(pairs) == 0 {
			b.WriteString("{}")
			return nil
		}
		if o.sortKeys {
			pairs = append([]*exec.Pair(nil), pairs...)
			sort.SliceStable(pairs, func(i, j int) bool { return pairs[i].Key.String() < pairs[j].Key.String() })
		}
		b.WriteByte('{')
		for i, p := range pairs {
			if i > 0 {
				b.WriteString(o.itemSep)
			}
			newline(depth + 1)
			k := p.Key
			switch {
			case k.IsString():
				writeJSONString(b, k.String(), o.ensureASCII)
			case k.IsNil():
				b.WriteString(`"null"`)
			case k.IsBool() || k.IsNumber():
				var kb strings.Builder
				writeJSON(&kb, k, o, depth+1)
				writeJSONString(b, kb.String(), o.ensureASCII)
			default:
				return fmt.Errorf("keys must be str, int, float, bool or None, not %T", k.Interface())
			}
			b.WriteString(o.keySep)
			if err := writeJSON(b, p.Value, o, depth+1); err != nil {
				return err
			}
		}
		newline(depth)
		b.WriteByte('}')
	}
	return nil
}

// writeJSONString follows CPython's json encoder (py_encode_basestring[_ascii]).
func writeJSONString(b *strings.Builder, s string, ensureASCII bool) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r < 0x20:
				fmt.Fprintf(b, `\u%04x`, r)
			case ensureASCII && r > 0x7e:
				if r >= 0x10000 {
					r -= 0x10000
					fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
				} else {
					fmt.Fprintf(b, `\u%04x`, r)
				}
			default:
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// pyFloatRepr = Python repr(float): shortest round-trip digits, exponent form if exp < -4 or >= 16.
func pyFloatRepr(f float64) string {
	if math.IsInf(f, 0) {
		if f > 0 {
			return "inf"
		}
		return "-inf"
	}
	if math.IsNaN(f) {
		return "nan"
	}
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	es := strconv.FormatFloat(f, 'e', -1, 64) // e.g. -1.5e-07
	mant, expS, _ := strings.Cut(es, "e")
	exp, _ := strconv.Atoi(expS)
	neg := strings.HasPrefix(mant, "-")
	mant = strings.TrimPrefix(mant, "-")
	digits := strings.Replace(mant, ".", "", 1)
	sign := ""
	if neg {
		sign = "-"
	}
	if exp < -4 || exp >= 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		es := "+"
		if exp < 0 {
			es = "-"
			exp = -exp
		}
		return fmt.Sprintf("%s%se%s%02d", sign, m, es, exp)
	}
	if exp < 0 {
		return sign + "0." + strings.Repeat("0", -exp-1) + digits
	}
	if len(digits) <= exp+1 {
		return sign + digits + strings.Repeat("0", exp+1-len(digits)) + ".0"
	}
	return sign + digits[:exp+1] + "." + digits[exp+1:]
}

// ---------------------------------------------------------------------------------------------
// Methods

// Python str.isspace (unicode.IsSpace lacks \x1c-\x1f).
func isPySpace(r rune) bool { return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f) }

func optString(args *exec.VarArgs, i int) (string, bool) {
	if len(args.Args) > i && !args.Args[i].IsNil() && !isPyNone(args.Args[i]) {
		return args.Args[i].String(), true
	}
	return "", false
}

func optInt(args *exec.VarArgs, i int, def int) int {
	if len(args.Args) > i && !args.Args[i].IsNil() && !isPyNone(args.Args[i]) {
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

func strMethods() *exec.MethodSet[string] {
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
			if c, ok := args.KwArgs["chars"]; ok && !c.IsNil() && !isPyNone(c) {
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
			if v, ok := args.KwArgs["sep"]; ok && !v.IsNil() && !isPyNone(v) {
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
	return exec.NewMethodSet(m)
}

// List methods: only copy (append/reverse are mutating -> SecurityError in HF's immutable sandbox).
func listMethods() *exec.MethodSet[[]any] {
	m := map[string]exec.Method[[]any]{}
	if fn, ok := builtins.Methods.List.Get("copy"); ok {
		m["copy"] = fn
	}
	return exec.NewMethodSet(m)
}

// Dict methods: gonja passes a map copy (sorted keys); use selfValue to keep insertion order.
func dictMethods() *exec.MethodSet[map[string]any] {
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
	return exec.NewMethodSet(m)
}
