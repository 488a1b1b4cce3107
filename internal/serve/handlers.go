package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/specforge/specforge/internal/chat"
)

// Handler routes the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", s.instrument("models", s.models))
	mux.HandleFunc("POST /v1/completions", s.instrument("completions", s.completions))
	mux.HandleFunc("POST /v1/chat/completions", s.instrument("chat_completions", s.chatCompletions))
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error",
			Message: fmt.Sprintf("no route %s %s: this server answers GET /v1/models, POST /v1/completions, POST /v1/chat/completions and GET /metrics", r.Method, r.URL.Path)})
	})
	return mux
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushes, write deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) instrument(endpoint string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		s.metrics.requests.WithLabelValues(endpoint, fmt.Sprint(sw.status)).Inc()
		s.metrics.duration.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
	}
}

func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": []map[string]any{
		{"id": s.cfg.ModelName, "object": "model", "created": s.created, "owned_by": "specforge"},
	}})
}

// checkModel refuses a request for another model than the one served.
func (s *Server) checkModel(name string) *apiError {
	if name != "" && name != s.cfg.ModelName {
		code := "model_not_found"
		return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: &code,
			Message: fmt.Sprintf("the model %q does not exist: this server serves %q", name, s.cfg.ModelName)}
	}
	return nil
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	if e := decodeBody(w, r, s.cfg.MaxBodyBytes, &req); e != nil {
		writeError(w, e)
		return
	}
	if e := s.checkModel(req.Model); e != nil {
		writeError(w, e)
		return
	}
	switch {
	case req.Echo:
		writeError(w, badRequest("echo", "echo is not supported"))
		return
	case req.BestOf != nil && *req.BestOf != 1:
		writeError(w, badRequest("best_of", "best_of=%d: this server returns one choice per request", *req.BestOf))
		return
	case req.Suffix != nil && *req.Suffix != "":
		writeError(w, badRequest("suffix", "suffix is not supported"))
		return
	}
	p, e := req.params(req.MaxTokens)
	if e != nil {
		writeError(w, e)
		return
	}
	text, ids, e := parsePrompt(req.Prompt, s.cfg.Target.Config.VocabSize)
	if e != nil {
		writeError(w, e)
		return
	}
	if ids == nil {
		var err error
		if ids, err = s.cfg.Tokenizer.Encode(text, true); err != nil {
			writeError(w, badRequest("prompt", "prompt: %v", err))
			return
		}
		if len(ids) == 0 {
			writeError(w, badRequest("prompt", "the prompt encodes to no tokens"))
			return
		}
	}
	s.generate(w, r, "cmpl", ids, p, nil)
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if e := decodeBody(w, r, s.cfg.MaxBodyBytes, &req); e != nil {
		writeError(w, e)
		return
	}
	if e := s.checkModel(req.Model); e != nil {
		writeError(w, e)
		return
	}
	if s.cfg.Chat == nil {
		writeError(w, badRequest("messages", "%s has no chat template: start the server with --chat-template, or use /v1/completions", s.cfg.ModelName))
		return
	}
	if len(req.Tools) > 0 && string(req.Tools) != "null" && string(req.Tools) != "[]" {
		writeError(w, badRequest("tools", "tools are not supported"))
		return
	}
	maxTokens := req.MaxCompletionTokens
	if maxTokens == nil {
		maxTokens = req.MaxTokens
	}
	p, e := req.params(maxTokens)
	if e != nil {
		writeError(w, e)
		return
	}
	msgs, e := conversation(req.Messages)
	if e != nil {
		writeError(w, e)
		return
	}
	rendered, err := s.cfg.Chat.Render(chat.Conversation{Messages: msgs, AddGenerationPrompt: true})
	if err != nil {
		writeError(w, badRequest("messages", "the chat template cannot render these messages: %v", err))
		return
	}
	ids, err := s.cfg.Tokenizer.Encode(rendered, false)
	if err != nil || len(ids) == 0 {
		writeError(w, badRequest("messages", "the rendered conversation does not encode: %v", err))
		return
	}
	p.stops = append(p.stops, s.cfg.ChatStops...)
	s.generate(w, r, "chatcmpl", ids, p, &chatShape{})
}

// chatShape marks a chat response (nil: a text completion).
type chatShape struct{ roleSent bool }

// generate queues the prompt, decodes it and answers, streamed or in one piece.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, kind string, prompt []int32, p genParams, chatResp *chatShape) {
	ctxLen := s.cfg.Target.Config.MaxPositionEmbeddings
	promptParam := "prompt"
	if chatResp != nil {
		promptParam = "messages"
	}
	if len(prompt) >= ctxLen {
		writeError(w, badRequest(promptParam, "this model's maximum context length is %d tokens, the prompt has %d", ctxLen, len(prompt)))
		return
	}
	if p.maxTokens == 0 {
		p.maxTokens = min(s.cfg.MaxTokens, ctxLen-len(prompt))
	} else if p.maxTokens > s.cfg.MaxTokens {
		writeError(w, badRequest("max_tokens", "max_tokens is %d, this server allows at most %d", p.maxTokens, s.cfg.MaxTokens))
		return
	} else if len(prompt)+p.maxTokens > ctxLen {
		writeError(w, badRequest("max_tokens", "this model's maximum context length is %d tokens, but %d were requested (%d in the prompt, %d in the completion)",
			ctxLen, len(prompt)+p.maxTokens, len(prompt), p.maxTokens))
		return
	}
	ct, err := newCompletionText(s.cfg.Tokenizer, prompt, s.cfg.Target.Config.EOSTokenIDs, p.stops)
	if err != nil {
		writeError(w, &apiError{Status: http.StatusInternalServerError, Type: "server_error", Message: err.Error()})
		return
	}
	id := fmt.Sprintf("%s-%d-%d", kind, s.created, s.seq.Add(1))
	st := &stream{w: w, rc: http.NewResponseController(w), s: s, id: id, chat: chatResp, includeUsage: p.includeUsage}
	var textErr error
	j := &job{ctx: r.Context(), prompt: prompt, params: p, done: make(chan jobResult, 1)}
	start := time.Now()
	var firstToken time.Duration
	j.onTokens = func(tokens []int32) bool {
		if firstToken == 0 {
			firstToken = time.Since(start)
		}
		for _, t := range tokens {
			more, err := ct.add(t)
			if err != nil {
				textErr = err
				return false
			}
			if !more {
				break
			}
		}
		if len(ct.ids) >= p.maxTokens && ct.finish == "" {
			ct.finish = "length"
		}
		if p.stream && ct.finish == "" {
			if d := ct.delta(false); d != "" && !st.chunk(d, "") {
				return false
			}
		}
		return ct.finish == ""
	}
	if e := s.submit(j); e != nil {
		writeError(w, e)
		return
	}
	res := <-j.done
	if res.err == nil {
		res.err = textErr
	}
	if res.err == nil && ct.finish == "" {
		ct.finish = "length" // the target's context or the budget ran out
	}
	u := usage{PromptTokens: len(prompt), CompletionTokens: len(ct.ids), TotalTokens: len(prompt) + len(ct.ids)}
	s.metrics.record(u, time.Since(start)-firstToken, res.stats, res.err)
	if res.err != nil {
		var e *apiError
		switch {
		case errors.As(res.err, &e):
		case errors.Is(res.err, context.Canceled) || errors.Is(res.err, context.DeadlineExceeded):
			// The client went away, or the server's grace period ran out: say so to whoever still listens.
			e = errUnavailable("the request was cancelled: the client disconnected or the server shut down")
		default:
			e = &apiError{Status: http.StatusInternalServerError, Type: "server_error", Message: res.err.Error()}
		}
		if st.started {
			st.event(map[string]*apiError{"error": e})
		} else {
			writeError(w, e)
		}
		fmt.Fprintf(s.cfg.Log, "serve: %s: %v\n", id, res.err)
		return
	}
	if p.stream {
		if d := ct.delta(true); d != "" {
			st.chunk(d, "")
		}
		st.chunk("", ct.finish)
		if p.includeUsage {
			st.usage(u)
		}
		st.done()
		return
	}
	text := ct.delta(true)
	body := map[string]any{"id": id, "created": time.Now().Unix(), "model": s.cfg.ModelName, "usage": u}
	if chatResp != nil {
		body["object"] = "chat.completion"
		body["choices"] = []map[string]any{{"index": 0, "message": map[string]any{"role": "assistant", "content": text},
			"logprobs": nil, "finish_reason": ct.finish}}
	} else {
		body["object"] = "text_completion"
		body["choices"] = []map[string]any{{"index": 0, "text": text, "logprobs": nil, "finish_reason": ct.finish}}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}

// stream writes server-sent events in OpenAI's shape: "data: {json}\n\n" chunks, then "data: [DONE]\n\n".
type stream struct {
	w            http.ResponseWriter
	rc           *http.ResponseController
	s            *Server
	id           string
	chat         *chatShape
	includeUsage bool
	started      bool
	failed       bool
}

// event writes one event and flushes it; it reports false once the client cannot be written to.
func (st *stream) event(v any) bool {
	if st.failed {
		return false
	}
	if !st.started {
		h := st.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("Connection", "keep-alive")
		st.w.WriteHeader(http.StatusOK)
		st.started = true
	}
	raw, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintf(st.s.cfg.Log, "serve: %s: %v\n", st.id, err)
		st.failed = true
		return false
	}
	st.rc.SetWriteDeadline(time.Now().Add(st.s.cfg.WriteTimeout))
	if _, err := fmt.Fprintf(st.w, "data: %s\n\n", raw); err != nil {
		st.failed = true
		return false
	}
	if err := st.rc.Flush(); err != nil {
		st.failed = true
	}
	return !st.failed
}

// chunk streams a piece of text, or the final chunk with its finish reason.
func (st *stream) chunk(text, finish string) bool {
	var reason any
	if finish != "" {
		reason = finish
	}
	c := map[string]any{"id": st.id, "created": time.Now().Unix(), "model": st.s.cfg.ModelName}
	if st.includeUsage {
		c["usage"] = nil
	}
	if st.chat != nil {
		c["object"] = "chat.completion.chunk"
		delta := map[string]any{}
		if text != "" || finish == "" {
			delta["content"] = text
		}
		if !st.chat.roleSent {
			delta["role"] = "assistant"
			st.chat.roleSent = true
		}
		c["choices"] = []map[string]any{{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": reason}}
	} else {
		c["object"] = "text_completion"
		c["choices"] = []map[string]any{{"index": 0, "text": text, "logprobs": nil, "finish_reason": reason}}
	}
	return st.event(c)
}

// usage streams the last chunk stream_options.include_usage asks for: no choices, the counts.
func (st *stream) usage(u usage) {
	object := "text_completion"
	if st.chat != nil {
		object = "chat.completion.chunk"
	}
	st.event(map[string]any{"id": st.id, "object": object, "created": time.Now().Unix(), "model": st.s.cfg.ModelName,
		"choices": []any{}, "usage": u})
}

func (st *stream) done() {
	if st.failed {
		return
	}
	st.rc.SetWriteDeadline(time.Now().Add(st.s.cfg.WriteTimeout))
	fmt.Fprint(st.w, "data: [DONE]\n\n")
	st.rc.Flush()
}
