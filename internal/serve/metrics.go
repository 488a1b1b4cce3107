package serve

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/specforge/specforge/internal/specdecode"
)

// metrics are what /metrics exports.
type metrics struct {
	requests         *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	running          prometheus.Gauge
	promptTokens     prometheus.Counter
	completionTokens prometheus.Counter
	decodeSeconds    prometheus.Counter
	tokensPerSecond  prometheus.Gauge
	rounds           prometheus.Counter
	specTokens       prometheus.Counter
	acceptance       prometheus.Histogram

	mu                   sync.Mutex
	allRounds, allTokens int // of every speculative request, for the acceptance length gauge
}

func newMetrics(reg *prometheus.Registry, queueDepth func() float64) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "specforge_requests_total",
			Help: "HTTP requests answered, by endpoint and status code."}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "specforge_request_duration_seconds",
			Help: "Time to answer a request, queueing included.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}, []string{"endpoint"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{Name: "specforge_requests_running",
			Help: "Requests being decoded (0 or 1: one decoding worker)."}),
		promptTokens: prometheus.NewCounter(prometheus.CounterOpts{Name: "specforge_prompt_tokens_total",
			Help: "Prompt tokens of the requests decoded."}),
		completionTokens: prometheus.NewCounter(prometheus.CounterOpts{Name: "specforge_completion_tokens_total",
			Help: "Tokens generated."}),
		decodeSeconds: prometheus.NewCounter(prometheus.CounterOpts{Name: "specforge_decode_seconds_total",
			Help: "Time spent generating after each request's first token; rate(completion tokens)/rate(this) is the decode speed."}),
		tokensPerSecond: prometheus.NewGauge(prometheus.GaugeOpts{Name: "specforge_decode_tokens_per_second",
			Help: "Decode speed of the last request: tokens after the first per second."}),
		rounds: prometheus.NewCounter(prometheus.CounterOpts{Name: "specforge_verifications_total",
			Help: "Target verifications of speculative decoding."}),
		specTokens: prometheus.NewCounter(prometheus.CounterOpts{Name: "specforge_speculative_tokens_total",
			Help: "Tokens produced by speculative decoding (accepted drafts and the target's own)."}),
		acceptance: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "specforge_request_acceptance_length",
			Help: "Tokens per target verification of each speculative request.", Buckets: []float64{1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8}}),
	}
	reg.MustRegister(m.requests, m.duration, m.running, m.promptTokens, m.completionTokens, m.decodeSeconds,
		m.tokensPerSecond, m.rounds, m.specTokens, m.acceptance,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "specforge_queue_depth",
			Help: "Requests waiting for the decoding worker."}, queueDepth),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "specforge_acceptance_length",
			Help: "Tokens per target verification over every speculative request so far."}, m.acceptanceLength))
	return m
}

func (m *metrics) acceptanceLength() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.allRounds == 0 {
		return 0
	}
	return float64(m.allTokens) / float64(m.allRounds)
}

// record counts a finished generation: decode is its time after the first token, st its speculative
// statistics (nil without a draft or when it failed before producing them).
func (m *metrics) record(u usage, decode time.Duration, st *specdecode.Stats, err error) {
	if err != nil && u.CompletionTokens == 0 {
		return
	}
	m.promptTokens.Add(float64(u.PromptTokens))
	m.completionTokens.Add(float64(u.CompletionTokens))
	if decode > 0 && u.CompletionTokens > 1 {
		m.decodeSeconds.Add(decode.Seconds())
		m.tokensPerSecond.Set(float64(u.CompletionTokens-1) / decode.Seconds())
	}
	if st != nil && st.Rounds > 0 {
		m.rounds.Add(float64(st.Rounds))
		m.specTokens.Add(float64(st.Tokens))
		m.acceptance.Observe(st.AcceptanceLength())
		m.mu.Lock()
		m.allRounds += st.Rounds
		m.allTokens += st.Tokens
		m.mu.Unlock()
	}
}
