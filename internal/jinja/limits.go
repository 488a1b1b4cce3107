package jinja

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// A chat template comes from a model folder anyone may publish, so a render is bounded: gonja itself has no
// limits (`'x' * 10**10`, `'x'|center(10**13)` or a macro calling itself exhaust memory or the stack, and a
// stack overflow or out-of-memory kills the process before recover() can run). The real templates (Llama 3,
// Qwen3, DeepSeek, see shared/assets/chat_templates) render a conversation in well under 1 ms, into
// < 100 KB, with loops over the messages and tools only, so each limit below is orders of magnitude above
// what they use and far below what hurts a machine.
const (
	// maxOutputBytes bounds the rendered text: 32 MiB is 8x a 1M-token conversation (~4 MB of text), the
	// longest context windows of today.
	maxOutputBytes = 32 << 20
	// maxAllocBytes bounds the bytes of the strings and lists one render builds (operators, filters, methods,
	// macro and {% set %} block bodies; list items count 16 bytes each). A real template builds a few times
	// its output (each message's content is trimmed, split, concatenated); 256 MiB is 8x maxOutputBytes and
	// still bounds memory when several renders run at once.
	maxAllocBytes = 256 << 20
	// maxLoopIterations bounds the for-loop iterations of one render (each item a loop's `if` looks at and
	// each body run). Real templates loop over the messages and the tools a few times; 2^18 is enough for a
	// 50k-message conversation and stops nested range() loops (10^10 iterations) after under a second (gonja
	// takes ~3 µs an iteration).
	maxLoopIterations = 1 << 18
	// maxCallDepth bounds the nesting of blocks executing at once: macro calls, loop(...) recursion and the
	// if/for bodies around them. Real templates nest under 10 deep, recursive macros (JSON schemas of tool
	// parameters) a few tens; 256 stops endless recursion long before Go's 1 GB stack limit, which is fatal.
	maxCallDepth = 256
	// maxRenderTime bounds a render's wall time (a caller's context may set a shorter deadline): real
	// renders take under 1 ms, and no render within the other limits needs seconds.
	maxRenderTime = 5 * time.Second
)

// LimitError reports a render stopped by one of the limits above; Limit is the constant's name.
type LimitError struct {
	Limit string
	What  string
	Err   error // the context's error, for maxRenderTime
}

func (e *LimitError) Error() string { return "chat template: " + e.What + " (" + e.Limit + ")" }

func (e *LimitError) Unwrap() error { return e.Err }

// itemBytes is what a list item counts against maxAllocBytes (an interface value).
const itemBytes = 16

// budget is what one render has used of the limits. Each compiled copy of a template owns one, reset at the
// start of each render (a copy renders once at a time: Template hands copies out through a sync.Pool).
type budget struct {
	ctx        context.Context
	allocated  int64
	output     int64
	iterations int64
	depth      int
	err        error // the first limit hit: gonja wraps errors in its own text, Render returns this one
}

func (b *budget) reset(ctx context.Context) { *b = budget{ctx: ctx} }

func (b *budget) fail(e *LimitError) error {
	if b.err == nil {
		b.err = e
	}
	return b.err
}

// check fails once a limit has been hit (so a render that gonja keeps going stops at the next step) or the
// deadline has passed.
func (b *budget) check() error {
	if b.err != nil {
		return b.err
	}
	if err := b.ctx.Err(); err != nil {
		what := "render canceled"
		if errors.Is(err, context.DeadlineExceeded) {
			what = fmt.Sprintf("render ran past its deadline (at most %s)", maxRenderTime)
		}
		return b.fail(&LimitError{Limit: "maxRenderTime", What: what, Err: err})
	}
	return nil
}

// fits fails when building n more bytes (what builds them) would pass maxAllocBytes.
func (b *budget) fits(n int64, what string) error {
	if err := b.check(); err != nil {
		return err
	}
	if n < 0 || n > maxAllocBytes-b.allocated {
		return b.fail(&LimitError{Limit: "maxAllocBytes",
			What: fmt.Sprintf("%s would build %s, over the %d bytes a render may build", what, sizeText(n), maxAllocBytes)})
	}
	return nil
}

// allocate charges n bytes built by what.
func (b *budget) allocate(n int64, what string) error {
	if err := b.fits(n, what); err != nil {
		return err
	}
	b.allocated += n
	return nil
}

func sizeText(n int64) string {
	if n < 0 {
		return "more bytes than an int holds"
	}
	return fmt.Sprintf("%d bytes", n)
}

// iterate counts one loop iteration.
func (b *budget) iterate() error {
	if err := b.check(); err != nil {
		return err
	}
	if b.iterations++; b.iterations > maxLoopIterations {
		return b.fail(&LimitError{Limit: "maxLoopIterations", What: fmt.Sprintf("over %d loop iterations", maxLoopIterations)})
	}
	return nil
}

// enter counts one more block executing; leave undoes it.
func (b *budget) enter() error {
	if err := b.check(); err != nil {
		return err
	}
	if b.depth++; b.depth > maxCallDepth {
		return b.fail(&LimitError{Limit: "maxCallDepth", What: fmt.Sprintf("macro calls and blocks nested over %d deep", maxCallDepth)})
	}
	return nil
}

func (b *budget) leave() { b.depth-- }

// mulSize is a*b, or -1 when it overflows (which fits reports as too big).
func mulSize(a, b int64) int64 {
	if a < 0 || b < 0 {
		return -1
	}
	if a != 0 && b > (1<<62)/a {
		return -1
	}
	return a * b
}

// outputWriter is the rendered text: it charges maxOutputBytes.
type outputWriter struct {
	strings.Builder
	b *budget
}

func (w *outputWriter) charge(n int) error {
	if err := w.b.check(); err != nil {
		return err
	}
	if int64(n) > maxOutputBytes-w.b.output {
		return w.b.fail(&LimitError{Limit: "maxOutputBytes", What: fmt.Sprintf("output over %d bytes", maxOutputBytes)})
	}
	w.b.output += int64(n)
	return nil
}

func (w *outputWriter) Write(p []byte) (int, error) {
	if err := w.charge(len(p)); err != nil {
		return 0, err
	}
	return w.Builder.Write(p)
}

// WriteString is how gonja writes (io.WriteString); it saves a copy to []byte.
func (w *outputWriter) WriteString(s string) (int, error) {
	if err := w.charge(len(s)); err != nil {
		return 0, err
	}
	return w.Builder.WriteString(s)
}

// bufferWriter wraps the buffer a macro, {% set %} block, {% filter %} block or caller() renders into: it
// charges maxAllocBytes.
type bufferWriter struct {
	w io.Writer
	b *budget
}

func (w *bufferWriter) Write(p []byte) (int, error) {
	if err := w.b.allocate(int64(len(p)), "a block body"); err != nil {
		return 0, err
	}
	return w.w.Write(p)
}
