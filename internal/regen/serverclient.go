package regen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/respjson"

	"github.com/specforge/specforge/internal/dataset"
)

// client asks one server, with retries.
type client struct {
	o   ServerOptions
	api openai.Client
}

func newClient(o ServerOptions) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = o.Concurrency
	return &client{o: o, api: openai.NewClient(
		option.WithBaseURL(o.URL),
		option.WithAPIKey(o.APIKey), // also clears an OPENAI_API_KEY of the environment: only api_key_env counts
		option.WithHTTPClient(&http.Client{Transport: tr}),
		option.WithMaxRetries(0), // retries are ours: the SDK does not retry a timed-out attempt
		option.WithMiddleware(func(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
			res, err := next(req)
			if res != nil && res.Body != nil {
				res.Body = &limitedBody{rc: res.Body, left: o.MaxResponseBytes}
			}
			return res, err
		}),
	)}
}

// limitedBody fails a read past the bound on what a server may send.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

var errTooLarge = errors.New("the answer is too large")

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// rowError is a row that cannot be regenerated: it is counted by Reason and left out.
type rowError struct{ reason, detail string }

func (e *rowError) Error() string { return e.reason + ": " + e.detail }

// regenerate returns the record of one input row; an error stops the whole regeneration. The row's other
// fields (an id, metadata) are kept, as SpecForge keeps them.
func (c *client) regenerate(ctx context.Context, row dataset.Row, schema dataset.SchemaOptions) (*record, error) {
	r := &record{}
	out := map[string]any{}
	for k, v := range row.Fields {
		out[k] = v
	}
	s, err := dataset.ToSample(row, schema)
	if err == nil {
		switch s.Kind {
		case dataset.Chat:
			var conv []message
			if conv, err = c.chat(ctx, s, r); err == nil {
				for _, k := range []string{"conversations", "messages", "question", "answer"} {
					delete(out, k)
				}
				out["messages"] = conv
			}
		case dataset.Completion:
			var text string
			if text, err = c.complete(ctx, s, r); err == nil {
				cf := schema.CompletionField
				if cf == "" {
					cf = "completion"
				}
				out[cf] = text
			}
		default:
			err = &rowError{"not a chat or prompt/completion row", "a text row has no prompt to answer"}
		}
	}
	var rej *dataset.Rejection
	var re *rowError
	switch {
	case errors.As(err, &rej):
		r.Failed, r.Detail = "unreadable row: "+rej.Reason, rej.Error()
		return r, nil
	case errors.As(err, &re):
		r.Failed, r.Detail = re.reason, row.Where+": "+re.Error()
		return r, nil
	case err != nil:
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, err
	}
	r.Row = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	return r, nil
}

// message is a turn of a regenerated conversation.
type message struct {
	Role             string `json:"role"`
	Content          string `json:"content"`
	ReasoningContent string `json:"reasoning_content,omitempty"`
}

// chat regenerates the assistant turns of a conversation, in order.
func (c *client) chat(ctx context.Context, s *dataset.Sample, r *record) ([]message, error) {
	if role, _ := s.Messages[0]["role"].(string); role == "assistant" {
		return nil, &rowError{"starts with an assistant turn", "the conversation has no question to answer first"}
	}
	var conv []message
	var params []openai.ChatCompletionMessageParamUnion
	for i, m := range s.Messages {
		role, _ := m["role"].(string)
		content, _ := m["content"].(string)
		switch role {
		case "system":
			conv = append(conv, message{Role: role, Content: content})
			params = append(params, openai.SystemMessage(content))
		case "assistant": // replaced by the answer to the user turn before it
		case "user":
			conv = append(conv, message{Role: role, Content: content})
			params = append(params, openai.UserMessage(content))
			req := openai.ChatCompletionNewParams{Model: c.o.Model, Messages: params, MaxTokens: openai.Int(int64(c.o.MaxTokens)),
				Temperature: openai.Float(c.o.Temperature)}
			if c.o.TopP > 0 {
				req.TopP = openai.Float(c.o.TopP)
			}
			var resp *openai.ChatCompletion
			err := c.retry(ctx, "chat/completions", func(ctx context.Context) (err error) {
				resp, err = c.api.Chat.Completions.New(ctx, req)
				return err
			})
			if err != nil {
				return nil, err
			}
			if len(resp.Choices) == 0 {
				return nil, fmt.Errorf("%s/chat/completions: the answer has no choices: not an OpenAI chat completion", c.o.URL)
			}
			ch := resp.Choices[0]
			answer := message{Role: "assistant", Content: ch.Message.Content, ReasoningContent: reasoning(ch.Message.JSON.ExtraFields)}
			// An answer cut inside its reasoning has no content to train on: it counts as empty.
			if err := c.account(r, ch.FinishReason, answer.Content, resp.Usage, fmt.Sprintf("turn %d", i)); err != nil {
				return nil, err
			}
			conv = append(conv, answer)
			params = append(params, openai.AssistantMessage(answer.Content))
		default:
			return nil, &rowError{"unsupported role", fmt.Sprintf("turn %d has role %q (only system, user and assistant are regenerated)", i, role)}
		}
	}
	if r.Answers == 0 {
		return nil, &rowError{"no user turn", "the conversation has nothing to answer"}
	}
	return conv, nil
}

// reasoning returns the reasoning an answer carries besides its content: SGLang's and vLLM's
// reasoning_content, or the reasoning field of newer vLLM and ollama.
func reasoning(extra map[string]respjson.Field) string {
	for _, k := range []string{"reasoning_content", "reasoning"} {
		var s string
		if f, ok := extra[k]; ok && json.Unmarshal([]byte(f.Raw()), &s) == nil && s != "" {
			return s
		}
	}
	return ""
}

// complete continues the prompt of a completion row.
func (c *client) complete(ctx context.Context, s *dataset.Sample, r *record) (string, error) {
	req := openai.CompletionNewParams{Model: openai.CompletionNewParamsModel(c.o.Model),
		Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String(s.Prompt)},
		MaxTokens: openai.Int(int64(c.o.MaxTokens)), Temperature: openai.Float(c.o.Temperature)}
	if c.o.TopP > 0 {
		req.TopP = openai.Float(c.o.TopP)
	}
	var resp *openai.Completion
	err := c.retry(ctx, "completions", func(ctx context.Context) (err error) {
		resp, err = c.api.Completions.New(ctx, req)
		return err
	})
	if err != nil {
		return "", err
	}
	if len(resp.Choices) == 0 {
		return "", fmt.Errorf("%s/completions: the answer has no choices: not an OpenAI completion", c.o.URL)
	}
	ch := resp.Choices[0]
	if err := c.account(r, string(ch.FinishReason), ch.Text, resp.Usage, "the prompt"); err != nil {
		return "", err
	}
	return ch.Text, nil
}

// account counts one answer into r, or refuses it.
func (c *client) account(r *record, finish, text string, u openai.CompletionUsage, what string) error {
	switch {
	case finish == "content_filter":
		return &rowError{"content filter", "the server filtered its answer to " + what}
	case strings.TrimSpace(text) == "":
		return &rowError{"empty answer", "the server answered " + what + " with nothing"}
	}
	r.Answers++
	if finish == "length" {
		r.Capped++
	}
	r.PromptTokens += u.PromptTokens
	r.CompletionTokens += u.CompletionTokens
	return nil
}

// retry runs one request (to endpoint, for messages) until it succeeds, fails for good or runs out of
// attempts: 408, 409, 429, 5xx, timeouts, lost connections and truncated answers are retried with
// exponential backoff and jitter (or after the server's Retry-After); a 400-class answer other than those
// is the row's failure; 401, 403, 404, malformed answers and exhausted retries are errors naming the URL.
func (c *client) retry(ctx context.Context, endpoint string, do func(context.Context) error) error {
	where := c.o.URL + "/" + endpoint
	var last error
	for attempt := range c.o.Attempts {
		actx, cancel := context.WithTimeout(ctx, c.o.Timeout)
		err := do(actx)
		timedOut := actx.Err() != nil
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("regenerate with %s: %w", where, context.Cause(ctx))
		}
		retry, wait, err := c.classify(where, err, timedOut)
		if !retry {
			return err
		}
		last = err
		if attempt == c.o.Attempts-1 {
			break
		}
		if wait < 0 {
			wait = min(c.o.Backoff<<min(attempt, 20), c.o.MaxBackoff)
			wait = wait/2 + rand.N(wait/2+1) // jitter, so that concurrent rows do not retry together
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("regenerate with %s: %w", where, context.Cause(ctx))
		}
	}
	return fmt.Errorf("%s: gave up after %d attempts: %w", where, c.o.Attempts, last)
}

// classify says what to do about a failed attempt: retry after wait (< 0: the backoff), or return err (the
// row's failure, a *rowError, or the regeneration's).
func (c *client) classify(where string, err error, timedOut bool) (retry bool, wait time.Duration, _ error) {
	var apiErr *openai.Error
	var syntax *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &apiErr):
		status := apiErr.StatusCode
		detail := fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))
		if apiErr.Message != "" {
			detail += ": " + apiErr.Message
		}
		switch {
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			if c.o.APIKeyEnv == "" {
				return false, 0, fmt.Errorf("%s: %s: the server wants an API key: name the environment variable holding it in data.regenerate.api_key_env", where, detail)
			}
			return false, 0, fmt.Errorf("%s: %s: the server refused the API key of $%s", where, detail, c.o.APIKeyEnv)
		case status == http.StatusNotFound:
			return false, 0, fmt.Errorf("%s: %s: is %s the API root (often ending in /v1), serving model %q?", where, detail, c.o.URL, c.o.Model)
		case status == http.StatusRequestTimeout || status == http.StatusConflict || status == http.StatusTooManyRequests || status >= 500:
			wait, ok := retryAfter(apiErr.Response)
			if !ok {
				wait = -1
			} else if wait > maxRetryAfter {
				return false, 0, fmt.Errorf("%s: %s: the server asks to retry in %s", where, detail, wait)
			}
			return true, wait, errors.New(detail)
		}
		return false, 0, &rowError{fmt.Sprintf("HTTP %d", status), detail}
	case timedOut:
		return true, -1, fmt.Errorf("no answer within %s (data.regenerate.timeout)", c.o.Timeout)
	case errors.Is(err, errTooLarge):
		return false, 0, fmt.Errorf("%s: the answer is larger than %d bytes", where, c.o.MaxResponseBytes)
	case errors.As(err, &syntax) || errors.As(err, &typeErr):
		return false, 0, fmt.Errorf("%s: the server's answer is malformed JSON, not an OpenAI response: %v", where, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return true, -1, fmt.Errorf("the answer was truncated (the connection closed before its end): %v", err)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return true, -1, fmt.Errorf("cannot reach the server: %v", uerr.Err)
	}
	return false, 0, fmt.Errorf("%s: %w", where, err)
}

// retryAfter reads the wait a 429 or 503 asks for: Retry-After-Ms, or Retry-After in seconds or as a date.
func retryAfter(res *http.Response) (time.Duration, bool) {
	if res == nil {
		return 0, false
	}
	if ms, err := strconv.ParseFloat(res.Header.Get("Retry-After-Ms"), 64); err == nil && ms >= 0 && ms < 1e12 {
		return time.Duration(ms * float64(time.Millisecond)), true
	}
	v := res.Header.Get("Retry-After")
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 && s < 1e9 {
		return time.Duration(s * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}
