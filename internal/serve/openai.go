package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"

	"github.com/specforge/specforge/internal/generate"
)

// apiError is an error in the OpenAI error shape: {"error": {"message", "type", "param", "code"}}.
type apiError struct {
	Status  int     `json:"-"`
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) Error() string { return e.Message }

func badRequest(param, format string, args ...any) *apiError {
	e := &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: fmt.Sprintf(format, args...)}
	if param != "" {
		e.Param = &param
	}
	return e
}

func errUnavailable(msg string) *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Type: "server_error", Message: msg}
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(map[string]*apiError{"error": e})
}

// Limits on what a request may ask, whatever the server's own limits.
const (
	maxStops      = 4 // as OpenAI
	maxStopBytes  = 256
	maxMessages   = 1024
	maxPromptIDs  = 1 << 16
	maxTemperture = 2
)

// commonRequest holds the fields /v1/completions and /v1/chat/completions share.
type commonRequest struct {
	Model         string          `json:"model"`
	MaxTokens     *int            `json:"max_tokens"`
	Temperature   *float64        `json:"temperature"`
	TopP          *float64        `json:"top_p"`
	Seed          *int64          `json:"seed"`
	N             *int            `json:"n"`
	Stop          json.RawMessage `json:"stop"`
	Stream        bool            `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Logprobs json.RawMessage `json:"logprobs"`
}

type completionRequest struct {
	commonRequest
	Prompt json.RawMessage `json:"prompt"`
	Echo   bool            `json:"echo"`
	BestOf *int            `json:"best_of"`
	Suffix *string         `json:"suffix"`
}

type chatRequest struct {
	commonRequest
	Messages            []chatMessage   `json:"messages"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Tools               json.RawMessage `json:"tools"`
	TopLogprobs         *int            `json:"top_logprobs"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	Name    string          `json:"name"`
}

// genParams are a request's decoding settings, checked.
type genParams struct {
	maxTokens    int
	sampling     generate.SamplingParams
	stops        []string
	stream       bool
	includeUsage bool
}

// decodeBody reads a JSON request body of at most limit bytes into v.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) *apiError {
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooBig):
			return &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error",
				Message: fmt.Sprintf("the request body is larger than %d bytes", limit)}
		case errors.As(err, &typ):
			// The field path names the embedded struct of the shared fields, which is no part of the JSON.
			field := strings.TrimPrefix(typ.Field, "commonRequest.")
			return badRequest(field, "%s: expected %s, got a JSON %s", field, typ.Type, typ.Value)
		case errors.As(err, &syntax):
			return badRequest("", "the request body is not valid JSON: %v (at byte %d)", err, syntax.Offset)
		}
		return badRequest("", "the request body is not valid JSON: %v", err)
	}
	if dec.More() {
		return badRequest("", "the request body holds more than one JSON value")
	}
	return nil
}

// params checks the shared fields; maxTokens is the request's completion budget (nil: not given).
func (c *commonRequest) params(maxTokens *int) (genParams, *apiError) {
	var p genParams
	if c.N != nil && *c.N != 1 {
		return p, badRequest("n", "n=%d: this server returns one choice per request (n=1)", *c.N)
	}
	if len(c.Logprobs) > 0 && !bytes.Equal(c.Logprobs, []byte("null")) && !bytes.Equal(c.Logprobs, []byte("false")) {
		return p, badRequest("logprobs", "logprobs are not supported")
	}
	if maxTokens != nil {
		if *maxTokens <= 0 {
			return p, badRequest("max_tokens", "max_tokens must be at least 1, got %d", *maxTokens)
		}
		p.maxTokens = *maxTokens
	}
	p.sampling = generate.SamplingParams{Temperature: 1, TopP: 1}
	if t := c.Temperature; t != nil {
		if *t < 0 || *t > maxTemperture || math.IsNaN(*t) {
			return p, badRequest("temperature", "temperature must be in [0, 2], got %g", *t)
		}
		p.sampling.Temperature = *t
	}
	if t := c.TopP; t != nil {
		if *t <= 0 || *t > 1 || math.IsNaN(*t) {
			return p, badRequest("top_p", "top_p must be in (0, 1], got %g", *t)
		}
		p.sampling.TopP = *t
	}
	if c.Seed != nil {
		p.sampling.Seed = uint64(*c.Seed)
	} else {
		p.sampling.Seed = rand.Uint64()
	}
	var err *apiError
	if p.stops, err = parseStop(c.Stop); err != nil {
		return p, err
	}
	p.stream = c.Stream
	if c.StreamOptions != nil {
		if !c.Stream {
			return p, badRequest("stream_options", "stream_options is only allowed with stream: true")
		}
		p.includeUsage = c.StreamOptions.IncludeUsage
	}
	return p, nil
}

// parseStop reads stop: null, a string or a list of up to 4 strings; empty strings stop nothing.
func parseStop(raw json.RawMessage) ([]string, *apiError) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var list []string
	var one string
	if json.Unmarshal(raw, &one) == nil {
		list = []string{one}
	} else if json.Unmarshal(raw, &list) != nil {
		return nil, badRequest("stop", "stop must be a string or a list of strings")
	}
	if len(list) > maxStops {
		return nil, badRequest("stop", "stop lists %d strings, at most %d are allowed", len(list), maxStops)
	}
	var stops []string
	for _, s := range list {
		if len(s) > maxStopBytes {
			return nil, badRequest("stop", "a stop string is %d bytes long, at most %d are allowed", len(s), maxStopBytes)
		}
		if s != "" {
			stops = append(stops, s)
		}
	}
	return stops, nil
}

// parsePrompt reads a completion prompt: a string, a list of one string, or a list of token ids.
func parsePrompt(raw json.RawMessage, vocab int) (text string, ids []int32, err *apiError) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil, badRequest("prompt", "prompt is required")
	}
	if json.Unmarshal(raw, &text) == nil {
		return text, nil, nil
	}
	var texts []string
	if json.Unmarshal(raw, &texts) == nil {
		if len(texts) != 1 {
			return "", nil, badRequest("prompt", "prompt lists %d strings: this server takes one prompt per request", len(texts))
		}
		return texts[0], nil, nil
	}
	var tokens []int64
	if json.Unmarshal(raw, &tokens) != nil {
		return "", nil, badRequest("prompt", "prompt must be a string, a list of one string, or a list of token ids")
	}
	if len(tokens) == 0 || len(tokens) > maxPromptIDs {
		return "", nil, badRequest("prompt", "a token-id prompt needs 1 to %d ids, got %d", maxPromptIDs, len(tokens))
	}
	ids = make([]int32, len(tokens))
	for i, t := range tokens {
		if t < 0 || t >= int64(vocab) {
			return "", nil, badRequest("prompt", "prompt token id %d is outside the vocabulary [0, %d)", t, vocab)
		}
		ids[i] = int32(t)
	}
	return "", ids, nil
}

// messageText reads a message's content: a string or a list of text parts.
func messageText(i int, raw json.RawMessage) (string, *apiError) {
	param := fmt.Sprintf("messages[%d].content", i)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return "", badRequest(param, "%s must be a string or a list of content parts", param)
	}
	var b strings.Builder
	for k, p := range parts {
		if p.Type != "text" {
			return "", badRequest(param, "%s[%d] is of type %q: this model reads text parts only", param, k, p.Type)
		}
		b.WriteString(p.Text)
	}
	return b.String(), nil
}

// conversation turns chat messages into the renderer's form.
func conversation(msgs []chatMessage) ([]map[string]any, *apiError) {
	if len(msgs) == 0 {
		return nil, badRequest("messages", "messages must hold at least one message")
	}
	if len(msgs) > maxMessages {
		return nil, badRequest("messages", "messages holds %d messages, at most %d are allowed", len(msgs), maxMessages)
	}
	out := make([]map[string]any, len(msgs))
	for i, m := range msgs {
		role := m.Role
		switch role {
		case "developer":
			role = "system" // OpenAI's newer name for the system turn; chat templates know "system"
		case "system", "user", "assistant":
		default:
			return nil, badRequest(fmt.Sprintf("messages[%d].role", i), "messages[%d].role is %q: want system, developer, user or assistant", i, m.Role)
		}
		text, err := messageText(i, m.Content)
		if err != nil {
			return nil, err
		}
		out[i] = map[string]any{"role": role, "content": text}
	}
	return out, nil
}

// usage is the token counts of a response.
type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}
