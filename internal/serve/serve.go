// Package serve is specforge's OpenAI-compatible HTTP server: /v1/models, /v1/completions and
// /v1/chat/completions (the chat rendered with the tokenizer's chat template), streamed as server-sent events
// when asked, decoded speculatively with an EAGLE-3 draft (or by the target alone), and /metrics in the
// Prometheus text format. Requests wait in a bounded FIFO queue for the one decoding worker.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/specforge/specforge/internal/chat"
	"github.com/specforge/specforge/internal/generate"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/specdecode"
	"github.com/specforge/specforge/internal/tokenizer"
)

// Config is what a server decodes with and its limits.
type Config struct {
	// ModelName is the id /v1/models lists and requests name.
	ModelName string
	Target    *model.Model
	Tokenizer *tokenizer.Tokenizer
	// Decoder decodes speculatively; nil decodes with the target alone.
	Decoder *specdecode.Decoder
	// Speculative holds the drafting settings (chain or tree) of Decoder; the request sets the rest. A tree
	// is greedy: sampled requests draft a chain of Steps tokens instead.
	Speculative specdecode.Options
	// Chat renders /v1/chat/completions conversations; nil refuses them. ChatStops are strings that end an
	// assistant turn in the rendered text (a named template's end-of-turn marker), cut like stop strings.
	Chat      chat.Renderer
	ChatStops []string
	// MaxTokens bounds max_tokens (and is its default when the context leaves room).
	MaxTokens int
	// MaxQueue is how many requests may wait for the worker; more are refused with 429.
	MaxQueue int
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64
	// WriteTimeout bounds each write of a streamed chunk: a client that stops reading cannot hold the
	// worker longer than that.
	WriteTimeout time.Duration
	Log          io.Writer
}

// Server answers the OpenAI API.
type Server struct {
	cfg      Config
	queue    chan *job
	draining atomic.Bool
	metrics  *metrics
	registry *prometheus.Registry
	created  int64
	seq      atomic.Uint64
	wg       sync.WaitGroup // the worker
}

// job is one generation waiting for, or run by, the worker.
type job struct {
	ctx    context.Context
	prompt []int32
	params genParams
	// onTokens is handed the tokens as they are produced; returning false ends the generation.
	onTokens func([]int32) bool
	done     chan jobResult
}

type jobResult struct {
	stats *specdecode.Stats // nil without a draft
	err   error
}

// New returns a server; Serve runs it.
func New(cfg Config) (*Server, error) {
	if cfg.Target == nil || cfg.Tokenizer == nil {
		return nil, fmt.Errorf("serve: needs a target with a tokenizer")
	}
	if cfg.MaxTokens <= 0 || cfg.MaxQueue <= 0 || cfg.MaxBodyBytes <= 0 {
		return nil, fmt.Errorf("serve: max tokens, queue depth and body size must be positive")
	}
	if cfg.Decoder != nil {
		o := cfg.Speculative
		o.MaxNewTokens = 1
		if err := o.Validate(); err != nil {
			return nil, fmt.Errorf("serve: drafting settings: %w", err)
		}
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	s := &Server{cfg: cfg, queue: make(chan *job, cfg.MaxQueue), created: time.Now().Unix(), registry: prometheus.NewRegistry()}
	s.metrics = newMetrics(s.registry, func() float64 { return float64(len(s.queue)) })
	return s, nil
}

// Serve answers on ln until ctx is cancelled, then shuts down: it stops accepting, refuses queued requests
// with 503, lets the requests in flight finish for up to grace and then cancels them. It returns nil after a
// clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	reqCtx, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
	}
	workerCtx, stopWorker := context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.work(workerCtx)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	var err error
	select {
	case err = <-served:
	case <-ctx.Done():
		s.draining.Store(true)
		fmt.Fprintf(s.cfg.Log, "serve: shutting down, finishing requests in flight for up to %s\n", grace)
		shutCtx, cancel := context.WithTimeout(context.Background(), grace)
		if hs.Shutdown(shutCtx) != nil {
			fmt.Fprintln(s.cfg.Log, "serve: grace period over, cancelling the requests in flight")
			cancelRequests()
			// The cancelled generations end at their next round and their handlers return; a handler stuck
			// writing to a client is cut off with its connection.
			lastCtx, cancelLast := context.WithTimeout(context.Background(), 5*time.Second)
			if hs.Shutdown(lastCtx) != nil {
				hs.Close()
			}
			cancelLast()
		}
		cancel()
		err = <-served
	}
	stopWorker()
	s.wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// submit queues a job, or refuses it when the queue is full or the server is shutting down.
func (s *Server) submit(j *job) *apiError {
	if s.draining.Load() {
		return errUnavailable("the server is shutting down")
	}
	select {
	case s.queue <- j:
		return nil
	default:
		return &apiError{Status: http.StatusTooManyRequests, Type: "rate_limit_exceeded",
			Message: fmt.Sprintf("the request queue is full (%d waiting): retry later", s.cfg.MaxQueue)}
	}
}

// work runs the queued jobs one after another: one decode already keeps every core busy.
func (s *Server) work(ctx context.Context) {
	defer s.wg.Done()
	for {
		select {
		case <-ctx.Done():
			// Serve stops the worker once every handler has returned: nothing waits in the queue.
			return
		case j := <-s.queue:
			if err := j.ctx.Err(); err != nil {
				j.done <- jobResult{err: err}
				continue
			}
			if s.draining.Load() {
				j.done <- jobResult{err: errUnavailable("the server is shutting down")}
				continue
			}
			s.metrics.running.Set(1)
			j.done <- s.run(j)
			s.metrics.running.Set(0)
		}
	}
}

// run decodes one job.
func (s *Server) run(j *job) jobResult {
	p := j.params
	if s.cfg.Decoder == nil {
		_, err := generate.Generate(j.ctx, s.cfg.Target, j.prompt, generate.Options{
			MaxNewTokens: p.maxTokens, Sampling: p.sampling, StopIDs: s.cfg.Target.Config.EOSTokenIDs,
			OnToken: func(t int32) bool { return j.onTokens([]int32{t}) },
		})
		return jobResult{err: err}
	}
	o := s.cfg.Speculative
	if p.sampling.Temperature > 0 && o.Depth > 0 {
		o.Depth, o.TopK, o.DraftTokens = 0, 0, 0
		if o.Steps <= 0 {
			o.Steps = 5
		}
	}
	o.MaxNewTokens, o.Sampling, o.StopIDs, o.OnTokens = p.maxTokens, p.sampling, s.cfg.Target.Config.EOSTokenIDs, j.onTokens
	_, st, err := s.cfg.Decoder.Generate(j.ctx, j.prompt, o)
	return jobResult{stats: st, err: err}
}
