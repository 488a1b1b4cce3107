package regen

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/dataset"
)

// ServerOptions of a regeneration by an OpenAI-compatible server.
type ServerOptions struct {
	// URL is the API root (http://host:port/v1); a URL without a path gets /v1.
	URL   string
	Model string
	// APIKey is sent as a bearer token when not empty; APIKeyEnv, the variable it came from, is named in
	// errors.
	APIKey, APIKeyEnv string
	// Concurrency is the number of rows in flight.
	Concurrency int
	MaxTokens   int
	Temperature float64
	// TopP is sent when above 0.
	TopP float64
	// Timeout bounds one request attempt (0: DefaultTimeout).
	Timeout time.Duration
	// Attempts per request before a retryable failure (429, 5xx, timeout, lost connection) stops the
	// regeneration (0: DefaultAttempts). Retries wait Backoff (0: DefaultBackoff), doubled at each attempt
	// up to MaxBackoff (0: DefaultMaxBackoff), with jitter, or what the server's Retry-After asks.
	Attempts            int
	Backoff, MaxBackoff time.Duration
	// MaxResponseBytes bounds one response body (0: DefaultMaxResponseBytes).
	MaxResponseBytes int64
	// Limit caps the number of input rows (0: all).
	Limit int
	// Schema says how the input rows are read; the output rows use its prompt and completion fields.
	Schema      dataset.SchemaOptions
	MaxRowBytes int
	// Progress, if set, is called as rows finish (in input order), with the rows failed so far.
	Progress func(done, total, failed int)
}

// Defaults of ServerOptions.
const (
	DefaultTimeout    = 10 * time.Minute
	DefaultAttempts   = 10
	DefaultBackoff    = 500 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
	// maxRetryAfter is the longest Retry-After honoured: a server that asks for more is down, not busy.
	maxRetryAfter = 5 * time.Minute
	// DefaultMaxResponseBytes: an answer of 1M tokens is a few MB of JSON.
	DefaultMaxResponseBytes = 64 << 20
	// maxFailureExamples bounds Summary.FailedExamples.
	maxFailureExamples = 100
)

// Summary counts what a regeneration by a server did, the rows of earlier (resumed) runs included.
type Summary struct {
	Server string `json:"server"`
	Model  string `json:"model"`
	// Rows is the number of input rows; Regenerated of them were written, Failed (by reason) were not.
	Rows        int            `json:"rows"`
	Regenerated int            `json:"regenerated"`
	Failed      map[string]int `json:"failed"`
	// FailedExamples lists the first maxFailureExamples failed rows, with what was wrong.
	FailedExamples []string `json:"failed_examples,omitempty"`
	// Resumed rows were found done in the progress file of an earlier run.
	Resumed int `json:"resumed"`
	// Answers is the number of answers the server wrote (a chat row has one per user turn); LengthCapped
	// of them stopped at MaxTokens.
	Answers          int   `json:"answers"`
	LengthCapped     int   `json:"length_capped"`
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	// Seconds this run took.
	Seconds float64 `json:"seconds"`
}

// FailedRows is the number of rows that failed, whatever the reason.
func (s *Summary) FailedRows() int {
	n := 0
	for _, c := range s.Failed {
		n += c
	}
	return n
}

// FailureReasons lists "reason: count" by decreasing count.
func (s *Summary) FailureReasons() []string {
	reasons := make([]string, 0, len(s.Failed))
	for r := range s.Failed {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool {
		ci, cj := s.Failed[reasons[i]], s.Failed[reasons[j]]
		return ci > cj || ci == cj && reasons[i] < reasons[j]
	})
	for i, r := range reasons {
		reasons[i] = fmt.Sprintf("%s: %d", r, s.Failed[r])
	}
	return reasons
}

// APIRoot returns the API root of a server URL: a URL without a path gets /v1, where SGLang, vLLM,
// llama.cpp, ollama and specforge serve the OpenAI API.
func APIRoot(server string) string {
	u, err := url.Parse(server)
	if err == nil && (u.Path == "" || u.Path == "/") {
		u.Path = "/v1"
		return u.String()
	}
	return strings.TrimSuffix(server, "/")
}

// ServerKey identifies a regeneration of input by a server, for caching its output: the input's bytes,
// the server, the model, the sampling settings and how rows are read (not the key, the concurrency or the
// retry settings, which do not change what is asked).
func ServerKey(input string, o ServerOptions) (string, error) {
	h := sha256.New()
	f, err := os.Open(input)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", input, err)
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", input, err)
	}
	opts, _ := json.Marshal(struct {
		V, URL, Model    string
		MaxTokens, Limit int
		Temp, TopP       float64
		Schema           dataset.SchemaOptions
	}{"server-v1", APIRoot(o.URL), o.Model, o.MaxTokens, o.Limit, o.Temperature, o.TopP, o.Schema})
	h.Write(opts)
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// MetaPath is the file beside a regeneration's output that holds its Summary.
func MetaPath(out string) string {
	return strings.TrimSuffix(out, filepath.Ext(out)) + ".meta.json"
}

// progressPath is the progress file of a regeneration by a server into out.
func progressPath(out string) string {
	return filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".progress")
}

// record is one line of the progress file: the outcome of input row I.
type record struct {
	I int `json:"i"`
	// Row is the regenerated row, as written to the output; absent when the row failed.
	Row    json.RawMessage `json:"row,omitempty"`
	Failed string          `json:"failed,omitempty"`
	Detail string          `json:"detail,omitempty"`
	// Answers, Capped and the token counts feed the Summary.
	Answers          int   `json:"answers,omitempty"`
	Capped           int   `json:"capped,omitempty"`
	PromptTokens     int64 `json:"prompt_tokens,omitempty"`
	CompletionTokens int64 `json:"completion_tokens,omitempty"`
}

func (s *Summary) add(r *record) {
	if r.Failed != "" {
		s.Failed[r.Failed]++
		if len(s.FailedExamples) < maxFailureExamples {
			s.FailedExamples = append(s.FailedExamples, r.Detail)
		}
	} else {
		s.Regenerated++
	}
	s.Answers += r.Answers
	s.LengthCapped += r.Capped
	s.PromptTokens += r.PromptTokens
	s.CompletionTokens += r.CompletionTokens
}

// FromServer regenerates the rows of the data file input with an OpenAI-compatible server and writes them
// to out (JSONL, atomically) and their Summary to MetaPath(out). A chat row keeps its system and user
// turns and has each assistant turn replaced by the server's answer to the conversation so far (earlier
// answers included), as SpecForge's regenerate_train_data.py does: a user turn without an answer after it
// gets one too. The answer's reasoning_content is kept when the server returns it. A prompt/completion
// row gets the server's continuation of its prompt (the completions API). A row that cannot be
// regenerated (a 400 for that request, an empty answer, a conversation that starts with the assistant)
// is left out and counted by reason.
//
// Each finished row is appended, in input order whatever the concurrency, to a progress file beside out
// with one write and an fsync, so a kill leaves whole lines and at most one torn line, which the next run
// cuts off; that run resumes after the last whole line, so no row is asked twice and none is written
// twice. A server that cannot be used (unreachable, 401/403, 404, malformed or truncated answers, 429 or
// 5xx past the retries) stops the regeneration with an error naming the URL; the rows already finished
// stay in the progress file. Cancelling ctx stops it with an error wrapping ctx.Err().
func FromServer(ctx context.Context, input, out string, o ServerOptions) (*Summary, error) {
	start := time.Now()
	o = o.withDefaults()
	sum := &Summary{Server: o.URL, Model: o.Model, Failed: map[string]int{}}
	var rows []dataset.Row
	err := dataset.ReadRows(input, o.MaxRowBytes, func(r dataset.Row) error {
		if o.Limit > 0 && len(rows) == o.Limit {
			return errLimit
		}
		rows = append(rows, r)
		return nil
	})
	if err != nil && !errors.Is(err, errLimit) {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: no rows to regenerate", input)
	}
	sum.Rows = len(rows)
	progress := progressPath(out)
	done, err := readProgress(progress, len(rows))
	if err != nil {
		return nil, err
	}
	for _, r := range done {
		sum.add(r)
	}
	sum.Resumed = len(done)
	if o.Progress != nil {
		o.Progress(len(done), len(rows), sum.FailedRows())
	}
	if len(done) < len(rows) {
		if err := o.run(ctx, rows, progress, &done, sum); err != nil {
			return sum, err
		}
	}
	sum.Seconds = time.Since(start).Seconds()
	meta, _ := json.MarshalIndent(sum, "", "  ")
	if err := atomicfile.WriteBytes(MetaPath(out), append(meta, '\n')); err != nil {
		return sum, err
	}
	err = atomicfile.Write(out, func(w io.Writer) error {
		for _, r := range done {
			if r.Row == nil {
				continue
			}
			if _, err := w.Write(append(r.Row, '\n')); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return sum, err
	}
	return sum, os.Remove(progress)
}

var errLimit = errors.New("limit reached")

func (o ServerOptions) withDefaults() ServerOptions {
	o.URL = APIRoot(o.URL)
	o.Concurrency = max(o.Concurrency, 1)
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultAttempts
	}
	if o.Backoff <= 0 {
		o.Backoff = DefaultBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	return o
}

// readProgress returns the records of the whole lines of a progress file (none when it is missing) and
// cuts the file after them, dropping the line a kill tore.
func readProgress(path string, rows int) ([]*record, error) {
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("regeneration progress: %w", err)
	}
	var out []*record
	size := 0
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			break
		}
		var r record
		if err := json.Unmarshal(raw[:i], &r); err != nil {
			break
		}
		if r.I != len(out) || r.I >= rows {
			return nil, fmt.Errorf("%s: line %d is row %d, want row %d of %d: remove the file to start afresh", path, len(out)+1, r.I, len(out), rows)
		}
		out = append(out, &r)
		size += i + 1
		raw = raw[i+1:]
	}
	if err := os.Truncate(path, int64(size)); err != nil {
		return nil, fmt.Errorf("regeneration progress: %w", err)
	}
	return out, nil
}

// run regenerates rows[len(*done):] with o.Concurrency workers, appending each row's record to the
// progress file in input order and to *done and sum.
func (o ServerOptions) run(ctx context.Context, rows []dataset.Row, progress string, done *[]*record, sum *Summary) error {
	f, err := os.OpenFile(progress, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("regeneration progress: %w", err)
	}
	defer f.Close()
	c := newClient(o)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	// A row is handed out only when fewer than window rows wait to be written, which bounds the records
	// held for reordering while one slow row holds the others back.
	window := 4 * o.Concurrency
	slots := make(chan struct{}, window)
	jobs := make(chan int)
	results := make(chan *record, window)
	go func() {
		defer close(jobs)
		for i := len(*done); i < len(rows); i++ {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Go(func() {
			for i := range jobs {
				r, err := c.regenerate(ctx, rows[i], o.Schema)
				if err != nil {
					cancel(fmt.Errorf("%s: %w", rows[i].Where, err))
					return
				}
				r.I = i
				select {
				case results <- r:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(results)
	}()

	pending := map[int]*record{}
	next := len(*done)
	var buf bytes.Buffer
	writeErr := false
	for r := range results {
		pending[r.I] = r
		if writeErr {
			continue // drain the workers
		}
		// Take the rows that finished during the last fsync too, so that one fsync covers them all.
	drain:
		for {
			select {
			case r, ok := <-results:
				if !ok {
					break drain
				}
				pending[r.I] = r
			default:
				break drain
			}
		}
		buf.Reset()
		var batch []*record
		for ; pending[next] != nil; next++ {
			line, _ := json.Marshal(pending[next]) // Row is JSON this package encoded
			buf.Write(line)
			buf.WriteByte('\n')
			batch = append(batch, pending[next])
			delete(pending, next)
		}
		if len(batch) == 0 {
			continue
		}
		// One write and an fsync for the records that became writable: a kill tears at most the last line.
		_, err := f.Write(buf.Bytes())
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			cancel(fmt.Errorf("regeneration progress: %w", err))
			writeErr = true
			continue
		}
		for _, r := range batch {
			*done = append(*done, r)
			sum.add(r)
			<-slots
		}
		if o.Progress != nil {
			o.Progress(len(*done), len(rows), sum.FailedRows())
		}
	}
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}
