package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/specforge/specforge/internal/fixturetest"
)

// newTestServer is a server of the stories260K target alone (no chat template) with small limits.
func newTestServer(t *testing.T, maxQueue int) *Server {
	m, tok := fixturetest.StoriesTarget(t)
	s, err := New(Config{ModelName: "stories260K", Target: m, Tokenizer: tok, MaxTokens: 100, MaxQueue: maxQueue, MaxBodyBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// post sends a JSON body and returns the status and the decoded error of an error answer.
func post(t *testing.T, ctx context.Context, url, body string) (int, *apiError) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, nil
	}
	var e struct{ Error *apiError }
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error == nil {
		t.Errorf("%s %s: answer %d is not an OpenAI error: %v", url, body, resp.StatusCode, err)
	}
	return resp.StatusCode, e.Error
}

// TestRequestLimits sends requests the server must refuse, each with the OpenAI error it must answer.
func TestRequestLimits(t *testing.T) {
	s := newTestServer(t, 4)
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	ids := strings.Repeat("5,", 599) + "5"
	for _, c := range []struct {
		path, body string
		status     int
		param      string
		text       string
	}{
		{"/v1/completions", `{"prompt": "` + strings.Repeat("a", 5000) + `"}`, 413, "", "larger than 4096 bytes"},
		{"/v1/completions", `{"prompt": "Once", `, 400, "", "not valid JSON"},
		{"/v1/completions", `{"prompt": "Once"} {}`, 400, "", "more than one JSON value"},
		{"/v1/completions", `{"prompt": 7}`, 400, "prompt", "prompt must be"},
		{"/v1/completions", `{"prompt": [1, 999]}`, 400, "prompt", "outside the vocabulary [0, 512)"},
		{"/v1/completions", `{"prompt": ["a", "b"]}`, 400, "prompt", "one prompt per request"},
		{"/v1/completions", `{"prompt": [` + ids + `]}`, 400, "prompt", "maximum context length is 512 tokens"},
		{"/v1/completions", `{"prompt": [1, 5], "max_tokens": 0}`, 400, "max_tokens", "at least 1"},
		{"/v1/completions", `{"prompt": [1, 5], "max_tokens": 101}`, 400, "max_tokens", "at most 100"},
		{"/v1/completions", `{"prompt": [1, 5], "top_p": 0}`, 400, "top_p", "(0, 1]"},
		{"/v1/completions", `{"prompt": "Once", "stop": ["a", "b", "c", "d", "e"]}`, 400, "stop", "at most 4"},
		{"/v1/completions", `{"prompt": "Once", "stop": 3}`, 400, "stop", "string or a list"},
		{"/v1/completions", `{"prompt": "Once", "max_tokens": "ten"}`, 400, "max_tokens", "expected int"},
		{"/v1/completions", `{"prompt": "Once", "logprobs": 2}`, 400, "logprobs", "not supported"},
		{"/v1/completions", `{"prompt": "Once", "stream_options": {"include_usage": true}}`, 400, "stream_options", "stream: true"},
		{"/v1/completions", `{"model": "other", "prompt": "Once"}`, 404, "", `"other" does not exist`},
		{"/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}]}`, 400, "messages", "no chat template"},
		{"/v1/embeddings", `{}`, 404, "", "no route POST /v1/embeddings"},
	} {
		status, e := post(t, context.Background(), hs.URL+c.path, c.body)
		if e == nil {
			continue
		}
		param := ""
		if e.Param != nil {
			param = *e.Param
		}
		if status != c.status || param != c.param || !strings.Contains(e.Message, c.text) || e.Type == "" {
			t.Errorf("%s %.60s: %d %+v (param %q), want %d, param %q, a message with %q", c.path, c.body, status, e, param, c.status, c.param, c.text)
		}
	}
}

// TestQueue fills the queue of a server whose worker has not started: the next request gets 429, and once
// the server drains, 503; a queued request whose client gave up is dropped when the worker reaches it.
func TestQueue(t *testing.T) {
	s := newTestServer(t, 1)
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan int)
	go func() {
		status, _ := post(t, ctx, hs.URL+"/v1/completions", `{"prompt": "Once", "max_tokens": 5}`)
		first <- status
	}()
	for len(s.queue) == 0 {
		time.Sleep(time.Millisecond)
	}
	if status, e := post(t, context.Background(), hs.URL+"/v1/completions", `{"prompt": "Once"}`); status != 429 || e.Type != "rate_limit_exceeded" {
		t.Errorf("a request past the queue: %d %+v", status, e)
	}
	s.draining.Store(true)
	if status, _ := post(t, context.Background(), hs.URL+"/v1/completions", `{"prompt": "Once"}`); status != 503 {
		t.Errorf("a request while draining: %d", status)
	}
	s.draining.Store(false)
	cancel()
	if status := <-first; status != 0 {
		t.Errorf("the cancelled request was answered %d", status)
	}
	workCtx, stop := context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.work(workCtx)
	for len(s.queue) > 0 {
		time.Sleep(time.Millisecond)
	}
	if status, _ := post(t, context.Background(), hs.URL+"/v1/completions", `{"prompt": "Once", "max_tokens": 5}`); status != 200 {
		t.Errorf("with the worker running: %d", status)
	}
	stop()
	s.wg.Wait()
}

// TestShutdown streams a completion, cancels the server's context after the first chunk (as SIGTERM does),
// and reads the rest: the request in flight is finished, and Serve then returns cleanly and stops listening.
func TestShutdown(t *testing.T) {
	s := newTestServer(t, 4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln, 10*time.Second) }()
	url := "http://" + ln.Addr().String() + "/v1/completions"
	resp, err := http.Post(url, "application/json", strings.NewReader(`{"prompt": "Once upon a time", "max_tokens": 60, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, ct)
	}
	events := bufio.NewScanner(resp.Body)
	var data []string
	for events.Scan() {
		line := events.Text()
		if line == "" {
			continue
		}
		payload, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("line %q is not a server-sent data event", line)
		}
		if len(data) == 0 {
			cancel()
		}
		data = append(data, payload)
	}
	if len(data) < 3 || data[len(data)-1] != "[DONE]" {
		t.Fatalf("events %q", data)
	}
	var last struct {
		Choices []any
		Usage   usage
	}
	if err := json.Unmarshal([]byte(data[len(data)-2]), &last); err != nil || len(last.Choices) != 0 || last.Usage.CompletionTokens != 60 {
		t.Errorf("usage chunk %s (%v)", data[len(data)-2], err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if resp, err := http.Post(url, "application/json", strings.NewReader(`{"prompt": "Once"}`)); err == nil {
		resp.Body.Close()
		t.Errorf("answered %d after shutdown", resp.StatusCode)
	}
}

// TestRunCancelled cancels a request's context while it decodes (as a client that disconnects, or the end
// of the shutdown grace, does): the worker's generation stops at its next step with the context's error.
func TestRunCancelled(t *testing.T) {
	s := newTestServer(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	produced := 0
	j := &job{ctx: ctx, prompt: []int32{1}, params: genParams{maxTokens: 50}, onTokens: func(tokens []int32) bool {
		produced += len(tokens)
		if produced >= 3 {
			cancel()
		}
		return true
	}}
	res := s.run(j)
	if !errors.Is(res.err, context.Canceled) || produced != 3 {
		t.Errorf("after cancelling at 3 tokens: %d produced, error %v", produced, res.err)
	}
}
