package regen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// peer is an OpenAI-compatible test server: it answers chat/completions with "re:<last user turn>#<number
// of messages>" (and a reasoning_content for user turns that start with "think") and completions with
// "<prompt> continued", and records every request body. fault, when set, may answer a request instead.
type peer struct {
	*httptest.Server
	mu       sync.Mutex
	bodies   []map[string]any
	auth     []string // the Authorization header of each request
	inFlight atomic.Int32
	maxConc  atomic.Int32
	// fault answers the request (returning true) instead of the peer; n is the request's number, from 0.
	fault func(w http.ResponseWriter, r *http.Request, body map[string]any, n int) bool
	delay func(body map[string]any) time.Duration
}

func newPeer(t *testing.T) *peer {
	p := &peer{}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

func (p *peer) URL() string { return p.Server.URL + "/v1" }

func (p *peer) serve(w http.ResponseWriter, r *http.Request) {
	c := p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	for m := p.maxConc.Load(); c > m && !p.maxConc.CompareAndSwap(m, c); m = p.maxConc.Load() {
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	n := len(p.bodies)
	p.bodies = append(p.bodies, body)
	p.auth = append(p.auth, r.Header.Get("Authorization"))
	p.mu.Unlock()
	if p.fault != nil && p.fault(w, r, body, n) {
		return
	}
	if p.delay != nil {
		time.Sleep(p.delay(body))
	}
	w.Header().Set("Content-Type", "application/json")
	usage := map[string]any{"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
	switch r.URL.Path {
	case "/v1/chat/completions":
		msgs := body["messages"].([]any)
		last := msgs[len(msgs)-1].(map[string]any)["content"].(string)
		msg := map[string]any{"role": "assistant", "content": fmt.Sprintf("re:%s#%d", last, len(msgs))}
		if strings.HasPrefix(last, "think") {
			msg["reasoning_content"] = "because " + last
		}
		if last == "think forever" { // cut at max_tokens inside its reasoning
			msg["content"] = ""
		}
		json.NewEncoder(w).Encode(map[string]any{"id": "c1", "object": "chat.completion", "created": 1, "model": body["model"],
			"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": "stop"}}, "usage": usage})
	case "/v1/completions":
		json.NewEncoder(w).Encode(map[string]any{"id": "c2", "object": "text_completion", "created": 1, "model": body["model"],
			"choices": []any{map[string]any{"index": 0, "text": body["prompt"].(string) + " continued", "finish_reason": "length", "logprobs": nil}}, "usage": usage})
	default:
		http.NotFound(w, r)
	}
}

// requests returns the bodies received so far.
func (p *peer) requests() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.bodies...)
}

// lastUser is the last message of a recorded chat request.
func lastUser(body map[string]any) string {
	msgs := body["messages"].([]any)
	return msgs[len(msgs)-1].(map[string]any)["content"].(string)
}

func writeInput(t *testing.T, lines ...string) string {
	path := filepath.Join(t.TempDir(), "in.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFile(t *testing.T, path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func asJSON(v any) string {
	raw, _ := json.Marshal(v)
	return string(raw)
}

// msgs builds the messages of a chat request: role, content, role, content...
func msgs(rc ...string) []any {
	var out []any
	for i := 0; i+1 < len(rc); i += 2 {
		out = append(out, map[string]any{"role": rc[i], "content": rc[i+1]})
	}
	return out
}

func fastOptions(url string) ServerOptions {
	return ServerOptions{URL: url, Model: "m", Concurrency: 1, MaxTokens: 16, Timeout: 5 * time.Second,
		Attempts: 3, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
}

// TestServerChatTurns regenerates ShareGPT and OpenAI-messages conversations turn by turn: each request
// holds the system and user turns with the earlier turns' new answers, and the rows that cannot be
// regenerated (a 400 among them, not retried) are counted by reason.
func TestServerChatTurns(t *testing.T) {
	p := newPeer(t)
	in := writeInput(t,
		`{"id": "r0", "conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "hi"}, {"from": "gpt", "value": "old 1"}, {"from": "human", "value": "more"}, {"from": "gpt", "value": "old 2"}]}`,
		`{"messages": [{"role": "assistant", "content": "I start"}, {"role": "user", "content": "q"}]}`,
		`{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}`,
		`{"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "42"}]}`,
		`{"messages": []}`,
		`{"messages": [{"role": "user", "content": "think twice"}, {"role": "assistant", "content": "old", "reasoning_content": "old thoughts"}, {"role": "user", "content": "so?"}]}`,
		`{"messages": [{"role": "user", "content": "think forever"}]}`,
		`{"messages": [{"role": "user", "content": "too long"}]}`,
	)
	// A 400 is the row's failure, not retried.
	p.fault = func(w http.ResponseWriter, r *http.Request, body map[string]any, n int) bool {
		if lastUser(body) != "too long" {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error": {"message": "context length exceeded", "type": "invalid_request_error"}}`)
		return true
	}
	out := filepath.Join(t.TempDir(), "regen.jsonl")
	sum, err := FromServer(context.Background(), in, out, fastOptions(p.URL()))
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]any{"model": "m", "max_tokens": 16.0, "temperature": 0.0}
	req := func(m []any) string {
		r := map[string]any{"messages": m}
		for k, v := range base {
			r[k] = v
		}
		return asJSON(r)
	}
	want := []string{
		req(msgs("system", "be brief", "user", "hi")),
		req(msgs("system", "be brief", "user", "hi", "assistant", "re:hi#2", "user", "more")),
		req(msgs("user", "a")),
		req(msgs("user", "a", "assistant", "re:a#1", "user", "b")),
		req(msgs("user", "x")),
		req(msgs("user", "think twice")),
		// The reasoning of an earlier answer is not sent back, as in SpecForge.
		req(msgs("user", "think twice", "assistant", "re:think twice#1", "user", "so?")),
		req(msgs("user", "think forever")),
		req(msgs("user", "too long")),
	}
	got := p.requests()
	if len(got) != len(want) {
		t.Fatalf("%d requests, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if asJSON(got[i]) != want[i] {
			t.Errorf("request %d:\n%s\nwant\n%s", i, asJSON(got[i]), want[i])
		}
	}
	wantOut := `{"id":"r0","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"re:hi#2"},{"role":"user","content":"more"},{"role":"assistant","content":"re:more#4"}]}
{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"re:a#1"},{"role":"user","content":"b"},{"role":"assistant","content":"re:b#3"}]}
{"messages":[{"role":"user","content":"think twice"},{"role":"assistant","content":"re:think twice#1","reasoning_content":"because think twice"},{"role":"user","content":"so?"},{"role":"assistant","content":"re:so?#3"}]}
`
	if g := readFile(t, out); g != wantOut {
		t.Errorf("output:\n%s\nwant\n%s", g, wantOut)
	}
	wantSum := Summary{Server: p.URL(), Model: "m", Rows: 8, Regenerated: 3, Answers: 7, PromptTokens: 49, CompletionTokens: 21,
		Failed: map[string]int{"starts with an assistant turn": 1, "unsupported role": 1, "unreadable row: empty text, completion or conversation": 1, "empty answer": 1, "HTTP 400": 1},
		FailedExamples: []string{in + ":2: starts with an assistant turn: the conversation has no question to answer first",
			in + `:4: unsupported role: turn 1 has role "tool" (only system, user and assistant are regenerated)`,
			in + `:5: empty text, completion or conversation: field "messages" is empty`,
			in + ":7: empty answer: the server answered turn 0 with nothing",
			in + ":8: HTTP 400: HTTP 400 Bad Request: context length exceeded"}}
	sum.Seconds = 0
	if !reflect.DeepEqual(*sum, wantSum) {
		t.Errorf("summary %+v, want %+v", *sum, wantSum)
	}
	var meta Summary
	if err := json.Unmarshal([]byte(readFile(t, MetaPath(out))), &meta); err != nil {
		t.Fatal(err)
	}
	meta.Seconds = 0
	if !reflect.DeepEqual(meta, wantSum) {
		t.Errorf("%s: %+v, want %+v", MetaPath(out), meta, wantSum)
	}
	if _, err := os.Stat(progressPath(out)); !os.IsNotExist(err) {
		t.Errorf("the progress file is left: %v", err)
	}
}

// TestServerCompletion continues the prompts of prompt/completion rows (fields named as the schema says)
// through the completions API, sending top_p when set, and the key of api_key_env only, not the
// environment's OPENAI_API_KEY.
func TestServerCompletion(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "ambient")
	p := newPeer(t)
	in := writeInput(t, `{"q": "Once upon", "a": "old", "source": "tinystories"}`, `{"q": "The cat", "a": "old"}`)
	out := filepath.Join(t.TempDir(), "regen.jsonl")
	o := fastOptions(p.URL())
	o.Temperature, o.TopP = 0.5, 0.9
	o.Schema.PromptField, o.Schema.CompletionField = "q", "a"
	sum, err := FromServer(context.Background(), in, out, o)
	if err != nil {
		t.Fatal(err)
	}
	for i, prompt := range []string{"Once upon", "The cat"} {
		want := asJSON(map[string]any{"model": "m", "prompt": prompt, "max_tokens": 16.0, "temperature": 0.5, "top_p": 0.9})
		if g := asJSON(p.requests()[i]); g != want {
			t.Errorf("request %d: %s, want %s", i, g, want)
		}
	}
	want := `{"a":"Once upon continued","q":"Once upon","source":"tinystories"}
{"a":"The cat continued","q":"The cat"}
`
	if g := readFile(t, out); g != want {
		t.Errorf("output:\n%s\nwant\n%s", g, want)
	}
	if sum.Regenerated != 2 || sum.LengthCapped != 2 || sum.FailedRows() != 0 {
		t.Errorf("summary %+v", sum)
	}
	if !reflect.DeepEqual(p.auth, []string{"", ""}) {
		t.Errorf("Authorization headers %q, want none", p.auth)
	}
	o.APIKey, o.APIKeyEnv = "k3y", "MY_KEY"
	if _, err := FromServer(context.Background(), in, filepath.Join(t.TempDir(), "regen.jsonl"), o); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.auth[2:], []string{"Bearer k3y", "Bearer k3y"}) {
		t.Errorf("Authorization headers %q, want the key", p.auth[2:])
	}
	o.Limit = 1
	limited := filepath.Join(t.TempDir(), "regen.jsonl")
	if sum, err := FromServer(context.Background(), in, limited, o); err != nil || sum.Rows != 1 {
		t.Fatalf("limit 1: %v, %+v", err, sum)
	}
	if g, want := readFile(t, limited), `{"a":"Once upon continued","q":"Once upon","source":"tinystories"}`+"\n"; g != want {
		t.Errorf("limit 1: %s, want %s", g, want)
	}
}

// TestServerRetries: 429 (honouring Retry-After), 500, 503, a timed-out attempt and a truncated answer are
// retried, and the output is as without them.
func TestServerRetries(t *testing.T) {
	truncate := func(w http.ResponseWriter) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		fmt.Fprint(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"id\": \"c1\", \"choi")
		conn.Close()
	}
	for _, c := range []struct {
		name string
		// fail answers the first `times` attempts.
		fail    func(w http.ResponseWriter, r *http.Request)
		times   int
		minTime time.Duration
	}{
		{"429 with Retry-After", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error": {"message": "slow down"}}`, http.StatusTooManyRequests)
		}, 1, time.Second},
		{"500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) }, 2, 0},
		{"503 with Retry-After-Ms", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After-Ms", "300")
			w.WriteHeader(http.StatusServiceUnavailable)
		}, 1, 300 * time.Millisecond},
		{"timeout", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, 1, 200 * time.Millisecond},
		{"truncated answer", func(w http.ResponseWriter, r *http.Request) { truncate(w) }, 2, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPeer(t)
			p.fault = func(w http.ResponseWriter, r *http.Request, body map[string]any, n int) bool {
				if n < c.times {
					c.fail(w, r)
					return true
				}
				return false
			}
			in := writeInput(t, `{"messages": [{"role": "user", "content": "hi"}]}`)
			out := filepath.Join(t.TempDir(), "regen.jsonl")
			o := fastOptions(p.URL())
			o.Timeout = 200 * time.Millisecond
			start := time.Now()
			if _, err := FromServer(context.Background(), in, out, o); err != nil {
				t.Fatal(err)
			}
			if el := time.Since(start); el < c.minTime {
				t.Errorf("took %s, want at least %s", el, c.minTime)
			}
			if n := len(p.requests()); n != c.times+1 {
				t.Errorf("%d requests, want %d", n, c.times+1)
			}
			if g, want := readFile(t, out), `{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"re:hi#1"}]}`+"\n"; g != want {
				t.Errorf("output %s, want %s", g, want)
			}
		})
	}
}

// TestServerErrors: a server that cannot be used stops the regeneration with an error naming its URL, the
// rows already finished stay in the progress file, and a later run with a working server resumes after
// them.
func TestServerErrors(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL + "/v1"
	closed.Close()
	for _, c := range []struct {
		name string
		// fault breaks the requests after the first row's.
		fault  func(w http.ResponseWriter)
		keyEnv string
		url    string
		want   string
	}{
		{"401", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error": {"message": "bad key", "type": "invalid_request_error"}}`)
		}, "SPECFORGE_TEST_KEY", "", "HTTP 401 Unauthorized: bad key: the server refused the API key of $SPECFORGE_TEST_KEY"},
		{"401 without a key", func(w http.ResponseWriter) { w.WriteHeader(http.StatusUnauthorized) }, "", "",
			"name the environment variable holding it in data.regenerate.api_key_env"},
		{"404", func(w http.ResponseWriter) { http.NotFound(w, nil) }, "", "", `serving model "m"?`},
		{"malformed JSON", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"id": "c1", "choices": [oops]}`)
		}, "", "", "malformed JSON"},
		{"truncated", func(w http.ResponseWriter) {
			conn, _, _ := w.(http.Hijacker).Hijack()
			fmt.Fprint(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"id\"")
			conn.Close()
		}, "", "", "gave up after 3 attempts: the answer was truncated"},
		{"unreachable", nil, "", closedURL, "gave up after 3 attempts: cannot reach the server"},
		{"too large", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id": "c1", "choices": [], "x": "%s"}`, strings.Repeat("a", 4096))
		}, "", "", "the answer is larger than 1024 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPeer(t)
			p.fault = func(w http.ResponseWriter, r *http.Request, body map[string]any, n int) bool {
				if c.fault == nil || lastUser(body) == "row0" {
					return false
				}
				c.fault(w)
				return true
			}
			in := writeInput(t, `{"messages": [{"role": "user", "content": "row0"}]}`, `{"messages": [{"role": "user", "content": "row1"}]}`,
				`{"messages": [{"role": "user", "content": "row2"}]}`)
			out := filepath.Join(t.TempDir(), "regen.jsonl")
			o := fastOptions(p.URL())
			o.APIKeyEnv, o.APIKey = c.keyEnv, "secret"
			o.MaxResponseBytes = 1024
			url := p.URL()
			if c.url != "" {
				// Row 0 was regenerated by an earlier run, which left its progress.
				line := `{"i":0,"row":{"messages":[{"role":"user","content":"row0"},{"role":"assistant","content":"re:row0#1"}]},"answers":1}` + "\n"
				if err := os.WriteFile(progressPath(out), []byte(line), 0o644); err != nil {
					t.Fatal(err)
				}
				url, o.URL = c.url, c.url
			}
			_, err := FromServer(context.Background(), in, out, o)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), url+"/chat/completions") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want one naming %s and saying %q", err, url, c.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the key", err)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("a failed regeneration wrote its output: %v", err)
			}
			kept := readFile(t, progressPath(out))
			if !strings.HasPrefix(kept, `{"i":0,"row":{"messages":[{"role":"user","content":"row0"},{"role":"assistant","content":"re:row0#1"}]}`) || strings.Count(kept, "\n") != 1 {
				t.Errorf("progress file %q, want row 0 only", kept)
			}
			p.fault = nil
			p.mu.Lock()
			p.bodies = nil
			p.mu.Unlock()
			o.URL = p.URL()
			if _, err := FromServer(context.Background(), in, out, o); err != nil {
				t.Fatal(err)
			}
			var asked []string
			for _, b := range p.requests() {
				asked = append(asked, lastUser(b))
			}
			if !reflect.DeepEqual(asked, []string{"row1", "row2"}) {
				t.Errorf("resumed run asked %v, want [row1 row2]", asked)
			}
			if n := strings.Count(readFile(t, out), "\n"); n != 3 {
				t.Errorf("%d rows written, want 3", n)
			}
		})
	}
}

// TestServerResume: a regeneration stopped after three rows, with a torn line at the end of its progress
// file as a kill leaves it, resumes after them and cuts the torn line off (a second stop leaves only whole
// rows); the rows done are never asked again, and the output is the bytes of an uninterrupted run, no row
// twice.
func TestServerResume(t *testing.T) {
	p := newPeer(t)
	var lines []string
	for i := range 6 {
		lines = append(lines, fmt.Sprintf(`{"messages": [{"role": "user", "content": "row%d"}, {"role": "assistant", "content": "x"}, {"role": "user", "content": "again %d"}]}`, i, i))
	}
	in := writeInput(t, lines...)
	whole := filepath.Join(t.TempDir(), "regen.jsonl")
	if _, err := FromServer(context.Background(), in, whole, fastOptions(p.URL())); err != nil {
		t.Fatal(err)
	}
	want := readFile(t, whole)
	o := fastOptions(p.URL())
	out := filepath.Join(t.TempDir(), "regen.jsonl")
	// stopAt runs the regeneration until the server works on the row whose first turn is row, and returns
	// the rows it asked for and the progress file it left.
	stopAt := func(row string) ([]string, string) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		p.fault = func(w http.ResponseWriter, r *http.Request, body map[string]any, n int) bool {
			if lastUser(body) != row {
				return false
			}
			cancel()
			<-r.Context().Done()
			return true
		}
		before := len(p.requests())
		if _, err := FromServer(ctx, in, out, o); !errors.Is(err, context.Canceled) {
			t.Fatalf("run stopped at %s: %v, want context.Canceled", row, err)
		}
		var asked []string
		for _, b := range p.requests()[before:] {
			asked = append(asked, lastUser(b))
		}
		return asked, readFile(t, progressPath(out))
	}
	firstRows := func(progress string) (rows []int) {
		if !strings.HasSuffix(progress, "\n") {
			t.Fatalf("the progress file ends in a torn line: %q", progress)
		}
		for _, line := range strings.Split(strings.TrimSuffix(progress, "\n"), "\n") {
			var r record
			if json.Unmarshal([]byte(line), &r) != nil {
				t.Fatalf("progress line %q is not a whole record", line)
			}
			rows = append(rows, r.I)
		}
		return rows
	}
	asked, progress := stopAt("row3")
	if !reflect.DeepEqual(asked, []string{"row0", "again 0", "row1", "again 1", "row2", "again 2", "row3"}) || !reflect.DeepEqual(firstRows(progress), []int{0, 1, 2}) {
		t.Fatalf("the first run asked %v and left rows %v, want rows 0 to 2", asked, firstRows(progress))
	}
	f, err := os.OpenFile(progressPath(out), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"i":3,"row":{"messages":[{"role":"user","con`)
	f.Close()
	asked, progress = stopAt("row5")
	if !reflect.DeepEqual(asked, []string{"row3", "again 3", "row4", "again 4", "row5"}) || !reflect.DeepEqual(firstRows(progress), []int{0, 1, 2, 3, 4}) {
		t.Fatalf("the second run asked %v and left rows %v, want rows 0 to 4", asked, firstRows(progress))
	}
	p.fault = nil
	before := len(p.requests())
	sum, err := FromServer(context.Background(), in, out, o)
	if err != nil {
		t.Fatal(err)
	}
	if g := readFile(t, out); g != want {
		t.Errorf("resumed output:\n%s\nwant\n%s", g, want)
	}
	asked = nil
	for _, b := range p.requests()[before:] {
		asked = append(asked, lastUser(b))
	}
	if !reflect.DeepEqual(asked, []string{"row5", "again 5"}) {
		t.Errorf("the last run asked %v, want row 5 only", asked)
	}
	if sum.Resumed != 5 || sum.Regenerated != 6 || sum.Answers != 12 {
		t.Errorf("summary %+v, want 5 resumed, 6 regenerated, 12 answers", sum)
	}
}

// TestServerConcurrentOrder: with 8 rows in flight, finishing in reverse order, the output is in input
// order and equal to a one-at-a-time run's.
func TestServerConcurrentOrder(t *testing.T) {
	p := newPeer(t)
	var lines []string
	for i := range 24 {
		lines = append(lines, fmt.Sprintf(`{"messages": [{"role": "user", "content": "%d"}]}`, i))
	}
	in := writeInput(t, lines...)
	one := filepath.Join(t.TempDir(), "one.jsonl")
	if _, err := FromServer(context.Background(), in, one, fastOptions(p.URL())); err != nil {
		t.Fatal(err)
	}
	p.delay = func(body map[string]any) time.Duration {
		var i int
		fmt.Sscan(lastUser(body), &i)
		return time.Duration(24-i) * 2 * time.Millisecond
	}
	many := filepath.Join(t.TempDir(), "many.jsonl")
	o := fastOptions(p.URL())
	o.Concurrency = 8
	if _, err := FromServer(context.Background(), in, many, o); err != nil {
		t.Fatal(err)
	}
	if g, want := readFile(t, many), readFile(t, one); g != want {
		t.Errorf("concurrent output:\n%s\nwant\n%s", g, want)
	}
	if m := p.maxConc.Load(); m < 2 || m > 8 {
		t.Errorf("at most %d requests in flight, want 2..8", m)
	}
}

func TestAPIRoot(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"http://localhost:30000", "http://localhost:30000/v1"},
		{"http://localhost:30000/", "http://localhost:30000/v1"},
		{"http://localhost:8080/v1/", "http://localhost:8080/v1"},
		{"https://api.example.com/openai/v1", "https://api.example.com/openai/v1"},
	} {
		if got := APIRoot(c.in); got != c.want {
			t.Errorf("APIRoot(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestServerKey: the cache key follows what is asked (input, server, model, sampling, schema), not how
// (key, concurrency, retries).
func TestServerKey(t *testing.T) {
	in := writeInput(t, `{"prompt": "a", "completion": "b"}`)
	base := ServerOptions{URL: "http://h:1", Model: "m", MaxTokens: 8, Temperature: 0.5}
	key := func(o ServerOptions) string {
		k, err := ServerKey(in, o)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k0 := key(base)
	for _, c := range []struct {
		name string
		edit func(*ServerOptions)
		same bool
	}{
		{"the API root spelt out", func(o *ServerOptions) { o.URL = "http://h:1/v1" }, true},
		{"the key", func(o *ServerOptions) { o.APIKey, o.APIKeyEnv = "k", "K" }, true},
		{"the concurrency and retries", func(o *ServerOptions) { o.Concurrency, o.Attempts, o.Timeout = 9, 2, time.Second }, true},
		{"the model", func(o *ServerOptions) { o.Model = "n" }, false},
		{"the server", func(o *ServerOptions) { o.URL = "http://h:2" }, false},
		{"max_tokens", func(o *ServerOptions) { o.MaxTokens = 9 }, false},
		{"temperature", func(o *ServerOptions) { o.Temperature = 0.6 }, false},
		{"top_p", func(o *ServerOptions) { o.TopP = 0.9 }, false},
		{"limit", func(o *ServerOptions) { o.Limit = 1 }, false},
		{"the completion field", func(o *ServerOptions) { o.Schema.CompletionField = "c" }, false},
	} {
		o := base
		c.edit(&o)
		if same := key(o) == k0; same != c.same {
			t.Errorf("%s: same key %v, want %v", c.name, same, c.same)
		}
	}
	other := writeInput(t, `{"prompt": "a", "completion": "c"}`)
	if k, _ := ServerKey(other, base); k == k0 {
		t.Error("the key ignores the input's bytes")
	}
}
