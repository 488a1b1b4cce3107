package jinja

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/nikolalohinski/gonja/v2/exec"
)

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
	if isNone(v) {
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
		rv := elem(v)
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
