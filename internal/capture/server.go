// Package capture decouples the target from the draft (SpecForge v0.3's capture servers): a Server holds the
// target and streams over gRPC, per sample, the record gen-hidden would store (token ids, loss mask, aux and
// final hidden states in the storage type, zstd over byte planes); a Source, on a trainer, asks the servers
// for the samples each batch needs, retries elsewhere what a failed server left outstanding, and decodes the
// records with the code that reads offline shards, so that a run fed by servers equals the offline run bit
// for bit.
package capture

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/specforge/specforge/internal/capture/capturepb"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/tensor"
)

// ServerOptions configure a Server.
type ServerOptions struct {
	Target      *model.Model
	Fingerprint string // Fingerprint of the target's folder
	AuxLayers   []int
	DType       tensor.DType // storage type of the states: BF16, F16 or F32
	DatasetKey  string       // the prepared dataset's content hash
	Splits      map[string]*dataset.File
	// Batch and SamplesPerShard are gen-hidden's --batch and --samples-per-shard: a requested sample is
	// computed in the batch gen-hidden computes it in (hidden.BatchOf), so that the states are its bit for
	// bit. With Batch 1 every sample is computed alone and nothing is computed twice.
	Batch, SamplesPerShard int
	// MaxInFlight bounds the samples admitted at once (queued, computing, computed and not yet sent), and
	// separately the samples computed beside a requested one and kept for their own request: memory holds at
	// most 2*MaxInFlight samples.
	MaxInFlight int
}

// maxIDsPerRequest bounds one request: a trainer asks for a batch or two at a time.
const maxIDsPerRequest = 1 << 16

// Server serves the target's states (capturepb.CaptureServer).
type Server struct {
	capturepb.UnimplementedCaptureServer
	o     ServerOptions
	info  *capturepb.InfoReply
	aux32 []int32
	encs  chan *hidden.RecordEncoder // one per CPU: records are encoded in parallel
	admit chan struct{}              // MaxInFlight slots
	start time.Time

	mu      sync.Mutex
	queue   []key          // requested samples not yet computed, oldest first
	pending map[key]*entry // requested samples, until computed
	cache   map[key]*hidden.Record
	order   []key // cache keys, oldest first
	wake    chan struct{}

	samples, tokens, bytes, forwards, inFlight, clients atomic.Int64
}

type key struct {
	split string
	id    int
}

type entry struct {
	done chan struct{}
	rec  *hidden.Record
	err  error
}

// NewServer prepares a server; Serve runs it. It counts the loss tokens of the train split once, for the
// trainers' draft vocabulary.
func NewServer(o ServerOptions) (*Server, error) {
	if o.Batch < 1 || o.SamplesPerShard < 1 || o.MaxInFlight < 1 {
		return nil, fmt.Errorf("capture server: batch, samples per shard and max in flight must be positive")
	}
	if o.DType.ShortName() == "" {
		return nil, fmt.Errorf("capture server: states are sent as bf16, f16 or f32, not %s", o.DType)
	}
	cfg := o.Target.Config
	s := &Server{o: o, pending: map[key]*entry{}, cache: map[key]*hidden.Record{}, wake: make(chan struct{}, 1),
		admit: make(chan struct{}, o.MaxInFlight), encs: make(chan *hidden.RecordEncoder, runtime.NumCPU()), start: time.Now()}
	for _, l := range o.AuxLayers {
		s.aux32 = append(s.aux32, int32(l))
	}
	for range cap(s.encs) {
		enc, err := hidden.NewRecordEncoder(o.DType, o.AuxLayers, cfg.HiddenSize)
		if err != nil {
			return nil, err
		}
		s.encs <- enc
	}
	s.info = &capturepb.InfoReply{
		Target: &capturepb.Target{Fingerprint: o.Fingerprint, Architecture: cfg.Architecture, HiddenSize: int32(cfg.HiddenSize),
			NumLayers: int32(cfg.NumLayers), VocabSize: int32(cfg.VocabSize)},
		AuxLayers: s.aux32, Dtype: o.DType.ShortName(), Batch: int32(o.Batch), SamplesPerShard: int32(o.SamplesPerShard),
	}
	for _, name := range slices.Sorted(maps.Keys(o.Splits)) {
		f := o.Splits[name]
		d := &capturepb.Dataset{Key: o.DatasetKey, Split: name, Samples: int64(f.Len()), Tokens: f.Tokens()}
		if name == "train" {
			counts, err := f.CountLossTokens(cfg.VocabSize)
			if err != nil {
				return nil, fmt.Errorf("capture server: train split: %w", err)
			}
			d.LossTokenCounts = counts.Counts
		}
		s.info.Datasets = append(s.info.Datasets, d)
	}
	return s, nil
}

// Serve answers on lis until ctx is cancelled, then stops taking requests (health NOT_SERVING), lets the
// streams under way finish for up to grace, and returns. creds nil serves in plain text (loopback).
func (s *Server) Serve(ctx context.Context, lis net.Listener, creds credentials.TransportCredentials, grace time.Duration) error {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(1 << 20), // requests name ids, nothing large
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ConnectionTimeout(10 * time.Second),
	}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	g := grpc.NewServer(opts...)
	capturepb.RegisterCaptureServer(g, s)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(capturepb.Capture_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	workCtx, stopWork := context.WithCancel(context.Background())
	defer stopWork()
	go s.work(workCtx)
	served := make(chan error, 1)
	go func() { served <- g.Serve(lis) }()
	select {
	case err := <-served:
		return fmt.Errorf("capture server on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(grace):
		g.Stop()
	}
	return nil
}

// Info implements capturepb.CaptureServer.
func (s *Server) Info(context.Context, *capturepb.InfoRequest) (*capturepb.InfoReply, error) {
	return s.info, nil
}

// Stats implements capturepb.CaptureServer.
func (s *Server) Stats(context.Context, *capturepb.StatsRequest) (*capturepb.StatsReply, error) {
	s.mu.Lock()
	queued, cached := len(s.queue), len(s.cache)
	s.mu.Unlock()
	up := time.Since(s.start).Seconds()
	return &capturepb.StatsReply{UptimeS: up, Samples: s.samples.Load(), Tokens: s.tokens.Load(), Bytes: s.bytes.Load(),
		Forwards: s.forwards.Load(), Queued: int64(queued), InFlight: s.inFlight.Load(), Cached: int64(cached),
		SamplesPerS: float64(s.samples.Load()) / up, TokensPerS: float64(s.tokens.Load()) / up, Clients: int32(s.clients.Load())}, nil
}

// check refuses a request for another dataset, target, aux-layer setting or storage type, or for samples
// the split does not hold.
func (s *Server) check(req *capturepb.StatesRequest) error {
	switch {
	case req.DatasetKey != s.o.DatasetKey:
		return status.Errorf(codes.NotFound, "this server serves dataset %s, not %s: start it on the trainer's data", s.o.DatasetKey, req.DatasetKey)
	case req.Fingerprint != s.o.Fingerprint:
		return status.Errorf(codes.FailedPrecondition, "this server runs target %s (fingerprint %.16s), the trainer expects fingerprint %.16s: another target",
			s.info.Target.Architecture, s.o.Fingerprint, req.Fingerprint)
	case !slices.Equal(req.AuxLayers, s.aux32):
		return status.Errorf(codes.FailedPrecondition, "this server captures aux layers %v, the trainer reads %v", s.aux32, req.AuxLayers)
	case req.Dtype != s.info.Dtype:
		return status.Errorf(codes.FailedPrecondition, "this server sends %s states, the trainer expects %s", s.info.Dtype, req.Dtype)
	case len(req.Ids) > maxIDsPerRequest:
		return status.Errorf(codes.InvalidArgument, "%d ids in one request, at most %d", len(req.Ids), maxIDsPerRequest)
	}
	f, ok := s.o.Splits[req.Split]
	if !ok {
		return status.Errorf(codes.NotFound, "dataset %s has no %q split here", s.o.DatasetKey, req.Split)
	}
	seen := make(map[int64]bool, len(req.Ids))
	for _, id := range req.Ids {
		if id < 0 || id >= int64(f.Len()) || seen[id] {
			return status.Errorf(codes.InvalidArgument, "sample id %d: outside [0, %d) or asked twice", id, f.Len())
		}
		seen[id] = true
	}
	return nil
}

// States implements capturepb.CaptureServer: the samples are admitted one by one (at most MaxInFlight at a
// time over all streams), queued for the worker, and sent in the order asked.
func (s *Server) States(req *capturepb.StatesRequest, stream grpc.ServerStreamingServer[capturepb.SampleStates]) error {
	if err := s.check(req); err != nil {
		return err
	}
	s.clients.Add(1)
	defer s.clients.Add(-1)
	ctx, cancel := context.WithCancel(stream.Context())
	admitted := make(chan *entry, len(req.Ids))
	held := 0 // slots of this stream: taken by the admitting goroutine, given back as samples are sent
	var mu sync.Mutex
	admitting := make(chan struct{})
	defer func() {
		cancel()
		<-admitting
		for range held {
			<-s.admit
			s.inFlight.Add(-1)
		}
	}()
	go func() {
		defer close(admitting)
		defer close(admitted)
		for _, id := range req.Ids {
			select {
			case s.admit <- struct{}{}:
			case <-ctx.Done():
				return
			}
			mu.Lock()
			held++
			mu.Unlock()
			s.inFlight.Add(1)
			admitted <- s.request(key{req.Split, int(id)})
		}
	}()
	i := 0
	for e := range admitted {
		select {
		case <-e.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if e.err != nil {
			return status.Errorf(codes.Internal, "sample %d: %v", req.Ids[i], e.err)
		}
		msg := &capturepb.SampleStates{Id: req.Ids[i], Tokens: int32(e.rec.Tokens), AuxBytes: int32(e.rec.AuxBytes), HiddenBytes: int32(e.rec.HiddenBytes),
			Record: e.rec.Bytes, Fingerprint: s.o.Fingerprint, AuxLayers: s.aux32, Dtype: s.info.Dtype}
		if err := stream.Send(msg); err != nil {
			return err
		}
		s.samples.Add(1)
		s.tokens.Add(int64(e.rec.Tokens))
		s.bytes.Add(int64(len(e.rec.Bytes)))
		mu.Lock()
		held--
		mu.Unlock()
		<-s.admit
		s.inFlight.Add(-1)
		i++
	}
	if i < len(req.Ids) {
		return ctx.Err()
	}
	return nil
}

// request is the entry of sample k: from the cache, shared with another stream's request, or queued.
func (s *Server) request(k key) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec, ok := s.cache[k]; ok {
		delete(s.cache, k)
		s.order = slices.DeleteFunc(s.order, func(c key) bool { return c == k })
		e := &entry{done: make(chan struct{}), rec: rec}
		close(e.done)
		return e
	}
	if e, ok := s.pending[k]; ok {
		return e
	}
	e := &entry{done: make(chan struct{})}
	s.pending[k] = e
	s.queue = append(s.queue, k)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return e
}

// work computes the queued samples, oldest first, each in gen-hidden's batch: the batch's other samples
// answer the requests queued for them (from any stream) and are otherwise kept, up to MaxInFlight, for the
// request that will come.
func (s *Server) work(ctx context.Context) {
	var reuse *model.Output
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.mu.Unlock()
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		k := s.queue[0]
		s.mu.Unlock()
		f := s.o.Splits[k.split]
		lo, hi := hidden.BatchOf(k.id, f.Len(), s.o.SamplesPerShard, s.o.Batch)
		samples, res, err := hidden.Capture(s.o.Target, f, s.o.AuxLayers, lo, hi, reuse)
		reuse = res
		s.forwards.Add(1)
		recs := make([]*hidden.Record, len(samples))
		var wg sync.WaitGroup
		for j := range samples {
			wg.Go(func() {
				enc := <-s.encs
				r := enc.Encode(&samples[j])
				s.encs <- enc
				recs[j] = &r
			})
		}
		wg.Wait()
		s.mu.Lock()
		for id := lo; id < hi; id++ {
			mk := key{k.split, id}
			if e, ok := s.pending[mk]; ok {
				delete(s.pending, mk)
				if err != nil {
					e.err = err
				} else {
					e.rec = recs[id-lo]
				}
				close(e.done)
				continue
			}
			if err != nil || s.cache[mk] != nil {
				continue
			}
			if len(s.order) >= s.o.MaxInFlight {
				delete(s.cache, s.order[0])
				s.order = s.order[1:]
			}
			s.cache[mk] = recs[id-lo]
			s.order = append(s.order, mk)
		}
		s.queue = slices.DeleteFunc(s.queue, func(q key) bool { return q.split == k.split && q.id >= lo && q.id < hi })
		s.mu.Unlock()
	}
}

// Log reports the server's throughput and queue on w every interval until ctx is cancelled.
func (s *Server) Log(ctx context.Context, w io.Writer, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st, _ := s.Stats(ctx, nil)
			fmt.Fprintf(w, "capture: %d samples (%.1f/s, %.0f tokens/s), %.1f bytes/token, %d forwards, queue %d, in flight %d, cached %d, streams %d\n",
				st.Samples, st.SamplesPerS, st.TokensPerS, float64(st.Bytes)/max(float64(st.Tokens), 1), st.Forwards, st.Queued, st.InFlight, st.Cached, st.Clients)
		}
	}
}

// MetricsHandler serves the server's Stats in Prometheus' text format at /metrics, and /healthz (200 while
// serving).
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		st, _ := s.Stats(r.Context(), nil)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		for _, m := range []struct {
			name, kind, help string
			v                float64
		}{
			{"specforge_capture_uptime_seconds", "gauge", "Seconds since the server started.", st.UptimeS},
			{"specforge_capture_samples_total", "counter", "Samples sent.", float64(st.Samples)},
			{"specforge_capture_tokens_total", "counter", "Tokens of the samples sent.", float64(st.Tokens)},
			{"specforge_capture_bytes_total", "counter", "Record bytes sent.", float64(st.Bytes)},
			{"specforge_capture_forwards_total", "counter", "Target forwards run.", float64(st.Forwards)},
			{"specforge_capture_queued", "gauge", "Samples asked for and not yet computed.", float64(st.Queued)},
			{"specforge_capture_in_flight", "gauge", "Samples admitted and not yet sent.", float64(st.InFlight)},
			{"specforge_capture_cached", "gauge", "Samples computed beside a requested one, kept for their request.", float64(st.Cached)},
			{"specforge_capture_streams", "gauge", "Open States streams.", float64(st.Clients)},
			{"specforge_capture_tokens_per_second", "gauge", "Tokens sent per second since the start.", st.TokensPerS},
		} {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %g\n", m.name, m.help, m.name, m.kind, m.name, m.v)
		}
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "SERVING") })
	return mux
}
