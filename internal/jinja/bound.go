package jinja

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"unsafe"

	controlStructures "github.com/nikolalohinski/gonja/v2/builtins/control_structures"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/nodes"
	"github.com/nikolalohinski/gonja/v2/tokens"
)

// gonja evaluates operators and runs block bodies in code that has no hook, so bound() rewrites the parsed
// template instead: `a * b`, `a + b`, `a ~ b` and `a ** b` become calls of the functions below (which do
// what gonja does, after checking the size of the result), and every block body (macro, loop, if, set
// block, ...) runs inside a guard that counts its depth, its loop iterations and the bytes it writes. The
// functions are bound to names a template cannot write (they are not identifiers), so it cannot call or
// replace them.
const (
	opAdd     = "#add"
	opMul     = "#mul"
	opConcat  = "#concat"
	opPow     = "#pow"
	opIterate = "#iterate" // wraps a loop's `if` filter, which runs for each item
)

// boundOps are the operator functions for env's Context.
func boundOps(b *budget) map[string]any {
	return map[string]any{
		opAdd:     func(args *exec.VarArgs) (*exec.Value, error) { return b.add(args.Args[0], args.Args[1]) },
		opMul:     func(args *exec.VarArgs) (*exec.Value, error) { return b.mul(args.Args[0], args.Args[1]) },
		opConcat:  func(args *exec.VarArgs) (*exec.Value, error) { return b.concat(args.Args[0], args.Args[1]) },
		opPow:     func(args *exec.VarArgs) (*exec.Value, error) { return pow(args.Args[0], args.Args[1]), nil },
		opIterate: func(args *exec.VarArgs) (*exec.Value, error) { return args.Args[0], b.iterate() },
	}
}

// add is gonja's `+` (list concatenation, float, string or int addition), bounded.
func (b *budget) add(l, r *exec.Value) (*exec.Value, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	switch {
	case l.IsList():
		if !r.IsList() {
			return nil, fmt.Errorf("unable to concatenate list to %s", r.String())
		}
		if err := b.allocate(mulSize(int64(l.Len())+int64(r.Len()), itemBytes), "list + list"); err != nil {
			return nil, err
		}
		out := make([]any, 0, l.Len()+r.Len()) // gonja's type for a concatenated list
		for _, v := range []*exec.Value{l, r} {
			for i := 0; i < v.Len(); i++ {
				out = append(out, v.Index(i).Interface())
			}
		}
		return exec.AsValue(out), nil
	case l.IsFloat() || r.IsFloat():
		return exec.AsValue(l.Float() + r.Float()), nil
	case l.IsString() || r.IsString():
		return b.join(l.String(), r.String(), "string + string")
	}
	return exec.AsValue(l.Integer() + r.Integer()), nil
}

// concat is `~`.
func (b *budget) concat(l, r *exec.Value) (*exec.Value, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	return b.join(pyStr(l), pyStr(r), "~")
}

func (b *budget) join(l, r, what string) (*exec.Value, error) {
	if err := b.allocate(int64(len(l))+int64(len(r)), what); err != nil {
		return nil, err
	}
	return exec.AsValue(l + r), nil
}

// mul is `*`: float and int products as gonja computes them, and Python's repetition of a string or a list
// by an int (gonja repeats strings only, unbounded, and panics on a negative count).
func (b *budget) mul(l, r *exec.Value) (*exec.Value, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	if l.IsInteger() && (r.IsString() || r.IsList()) {
		l, r = r, l
	}
	switch {
	case l.IsFloat() || r.IsFloat():
		return exec.AsValue(l.Float() * r.Float()), nil
	case l.IsString():
		s, n := l.String(), max(r.Integer(), 0)
		if err := b.allocate(mulSize(int64(len(s)), int64(n)), "string * int"); err != nil {
			return nil, err
		}
		return exec.AsValue(strings.Repeat(s, n)), nil
	case l.IsList() && r.IsInteger():
		n := max(r.Integer(), 0)
		if err := b.allocate(mulSize(mulSize(int64(l.Len()), int64(n)), itemBytes), "list * int"); err != nil {
			return nil, err
		}
		out := make(PyList, 0, l.Len()*n)
		if l.Len() == 0 {
			return exec.AsValue(out), nil // [] * 10**10 costs nothing, and must not loop 10**10 times
		}
		for range n {
			for i := 0; i < l.Len(); i++ {
				out = append(out, l.Index(i).Interface())
			}
		}
		return exec.AsValue(out), nil
	}
	return exec.AsValue(l.Integer() * r.Integer()), nil
}

// pow is `**`: Python's int for int ** non-negative int when it fits in an int (so `'x' * 10**10` is a string
// repetition, as in Python, not gonja's float product), else gonja's float.
func pow(l, r *exec.Value) *exec.Value {
	if l.IsInteger() && r.IsInteger() && r.Integer() >= 0 {
		base, exp := l.Integer(), r.Integer()
		switch {
		case exp == 0 || base == 1:
			return exec.AsValue(1)
		case base == 0:
			return exec.AsValue(0)
		case base == -1:
			return exec.AsValue(1 - 2*(exp%2))
		}
		out := 1
		for ; exp > 0; exp-- { // |base| >= 2: overflows within 63 steps
			if out > math.MaxInt/absInt(base) || out < math.MinInt/absInt(base) {
				return exec.AsValue(math.Pow(l.Float(), r.Float()))
			}
			out *= base
		}
		return exec.AsValue(out)
	}
	return exec.AsValue(math.Pow(l.Float(), r.Float()))
}

func absInt(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// guard runs a block body (a nodes.Wrapper's nodes) in the render's budget.
type guard struct {
	b        *budget
	loop     bool // the body of a for loop: each run is an iteration
	location *tokens.Token
	body     *nodes.Wrapper
}

func (g *guard) Position() *tokens.Token { return g.location }

func (g *guard) String() string {
	return fmt.Sprintf("block(Line=%d Col=%d)", g.location.Line, g.location.Col)
}

func (g *guard) Execute(r *exec.Renderer, _ *nodes.ControlStructureBlock) error {
	if g.loop {
		if err := g.b.iterate(); err != nil {
			return err
		}
	}
	if err := g.b.enter(); err != nil {
		return err
	}
	defer g.b.leave()
	switch r.Output.(type) {
	case *outputWriter, *bufferWriter:
	default: // a buffer of gonja's: a macro's, a {% set %} block's, ...
		r.Output = &bufferWriter{w: r.Output, b: g.b}
	}
	return nodes.Walk(r, g.body) // the same renderer: the body's {% set %}s land where they did
}

// bound rewrites a parsed template as the const block above says.
func bound(root *nodes.Template, b *budget) {
	w := &rewriter{b: b, seen: map[any]bool{}}
	w.walk(reflect.ValueOf(root))
}

type rewriter struct {
	b    *budget
	seen map[any]bool // nodes are shared (Template.Macros, Call.Parent): each is rewritten once
}

var (
	tokenPtrType = reflect.TypeFor[*tokens.Token]()
	walkedPkgs   = map[string]bool{
		reflect.TypeFor[nodes.Template]().PkgPath():                        true,
		reflect.TypeFor[controlStructures.ForControlStructure]().PkgPath(): true,
		reflect.TypeFor[generationBlock]().PkgPath():                       true, // {% generation %}
	}
)

// walk visits v and what it holds. v is writable: values read from unexported fields (the control
// structures of gonja keep their expressions there) are made so with reflect.NewAt, as the rewrite must
// reach every expression.
func (w *rewriter) walk(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() || v.Type() == tokenPtrType {
			return
		}
		key := [2]any{v.Type(), v.Pointer()}
		if w.seen[key] {
			return
		}
		w.seen[key] = true
		if t := v.Type().Elem(); t.Kind() == reflect.Struct && !walkedPkgs[t.PkgPath()] {
			return
		}
		w.walk(v.Elem())
		w.after(v.Interface())
	case reflect.Interface:
		if v.IsNil() {
			return
		}
		inner := v.Elem()
		w.walk(inner)
		if inner.Kind() == reflect.Pointer {
			if repl := w.replacement(inner.Interface()); repl != nil && reflect.TypeOf(repl).AssignableTo(v.Type()) {
				v.Set(reflect.ValueOf(repl))
			}
		}
	case reflect.Struct:
		if !v.CanAddr() {
			return // a node held by value: gonja's AST holds its nodes by pointer
		}
		for i := range v.NumField() {
			f := v.Field(i)
			w.walk(reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem())
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			w.walk(v.Index(i))
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(iter.Value())
			w.walk(e)
			v.SetMapIndex(iter.Key(), e)
		}
	}
}

// after edits a node whose children are rewritten.
func (w *rewriter) after(n any) {
	switch n := n.(type) {
	case *nodes.Wrapper:
		loc := n.Location
		if loc == nil {
			loc = &tokens.Token{}
		}
		body := &nodes.Wrapper{Location: n.Location, Nodes: n.Nodes, EndTag: n.EndTag, Trim: n.Trim, LStrip: n.LStrip}
		n.Nodes = []nodes.Node{&nodes.ControlStructureBlock{Location: loc, Name: "block",
			ControlStructure: &guard{b: w.b, location: loc, body: body}}}
	case *controlStructures.ForControlStructure:
		if n.BodyWrapper != nil {
			n.BodyWrapper.Nodes[0].(*nodes.ControlStructureBlock).ControlStructure.(*guard).loop = true
		}
		if n.IfCondition != nil {
			n.IfCondition = call(opIterate, n.IfCondition.Position(), n.IfCondition)
		}
	}
}

// replacement is the call a bounded operator becomes, or nil.
func (w *rewriter) replacement(n any) nodes.Expression {
	e, ok := n.(*nodes.BinaryExpression)
	if !ok {
		return nil
	}
	var op string
	switch e.Operator.Token.Type {
	case tokens.Addition:
		op = opAdd
	case tokens.Multiply:
		op = opMul
	case tokens.Tilde:
		op = opConcat
	case tokens.Power:
		op = opPow
	default:
		return nil
	}
	return call(op, e.Operator.Token, e.Left, e.Right)
}

func call(fn string, at *tokens.Token, args ...nodes.Expression) *nodes.Call {
	if at == nil {
		at = &tokens.Token{}
	}
	name := &tokens.Token{Type: tokens.Name, Val: fn, Pos: at.Pos, Line: at.Line, Col: at.Col}
	return &nodes.Call{Location: at, Func: &nodes.Name{Name: name}, Args: args, Kwargs: map[string]nodes.Expression{}}
}
