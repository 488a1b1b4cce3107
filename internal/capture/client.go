package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/specforge/specforge/internal/capture/capturepb"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/tensor"
)

// Scheme prefixes data.hidden_states when the states come from capture servers: grpc://host:port[,host:port...].
const Scheme = "grpc://"

// ParseAddrs reads grpc://host:port[,host:port...].
func ParseAddrs(url string) ([]string, error) {
	rest, ok := strings.CutPrefix(url, Scheme)
	if !ok {
		return nil, fmt.Errorf("%q: want grpc://host:port[,host:port...]", url)
	}
	var addrs []string
	for _, a := range strings.Split(rest, ",") {
		if a = strings.TrimSpace(a); a == "" || !strings.Contains(a, ":") {
			return nil, fmt.Errorf("%q: %q is not host:port", url, a)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// Limits on what a server may send, which the trainer trusts no more than a shard file.
const (
	// maxMessageBytes bounds one sample's message: 8,192 tokens of three aux layers and the final state of an
	// 8,192-wide target in bf16 is 256 MiB uncompressed, and states compress.
	maxMessageBytes = 512 << 20
	// maxDecodedBytes bounds what one sample's states may decode to (zstd's window and output, and the
	// float32 states).
	maxDecodedBytes = 2 << 30
	// chunk is the most samples asked of one server at once.
	chunk = 64
)

// ClientOptions say how a trainer reaches its capture servers.
type ClientOptions struct {
	Addrs []string
	// Creds secure the connections (TLS, mutual with a client certificate); nil connects in plain text.
	Creds credentials.TransportCredentials
	// Fingerprint is the trainer's own target's: a server of another target is refused.
	Fingerprint string
	// Timeout is how long a sample may go unanswered, over retries on every server, before the run fails.
	Timeout time.Duration
	// Window bounds the samples asked for and not yet answered.
	Window int
	// Log receives a line for each failed server and retry; nil discards them.
	Log io.Writer
}

// Client holds the connections to the capture servers of a run.
type Client struct {
	o       ClientOptions
	info    *capturepb.InfoReply // the servers agree on it, datasets aside
	servers []*server
	dec     *zstd.Decoder
	slots   []int
	window  chan struct{}

	mu    sync.Mutex
	next  int   // round robin
	fatal error // a server that answers for another target or layout: the run stops
}

type server struct {
	addr   string
	conn   *grpc.ClientConn
	client capturepb.CaptureClient
	mu     sync.Mutex
	down   time.Time     // until when it is not asked
	wait   time.Duration // the next backoff
}

// Dial connects to every server and reads their Info: at least one must answer, and all that answer must
// run the trainer's target with the same aux layers, storage type and dataset. A server that does not answer
// now is asked again when requests are spread, and checked then (each answer names its target and layout).
func Dial(ctx context.Context, o ClientOptions) (*Client, error) {
	if o.Window < 1 {
		o.Window = 2 * chunk
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	creds := o.Creds
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	c := &Client{o: o, window: make(chan struct{}, o.Window)}
	var err error
	if c.dec, err = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxDecodedBytes)); err != nil {
		return nil, err
	}
	for _, addr := range o.Addrs {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes)))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("capture server %s: %w", addr, err)
		}
		c.servers = append(c.servers, &server{addr: addr, conn: conn, client: capturepb.NewCaptureClient(conn), wait: 100 * time.Millisecond})
	}
	// Servers load the target and prepare the data before they listen: a trainer started beside them waits,
	// up to the timeout, for the first to answer.
	deadline := time.Now().Add(o.Timeout)
	for waited := false; ; waited = true {
		var failures []string
		for _, s := range c.servers {
			ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
			info, err := s.client.Info(ictx, &capturepb.InfoRequest{})
			cancel()
			if err != nil {
				failures = append(failures, fmt.Sprintf("%s: %v", s.addr, status.Convert(err).Message()))
				s.fail()
				continue
			}
			if err := c.agree(s.addr, info); err != nil {
				c.Close()
				return nil, err
			}
		}
		if c.info != nil {
			for _, f := range failures {
				c.logf("capture server %s did not answer; it is asked again later", f)
			}
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.Close()
			return nil, fmt.Errorf("no capture server answered within %s: %s", o.Timeout, strings.Join(failures, "; "))
		}
		if !waited {
			c.logf("waiting for a capture server to answer (%s)", strings.Join(failures, "; "))
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
}

// agree checks a server's Info against the trainer's target and the servers before it.
func (c *Client) agree(addr string, info *capturepb.InfoReply) error {
	if info.Target == nil || info.Target.Fingerprint != c.o.Fingerprint {
		fp := ""
		if info.Target != nil {
			fp = info.Target.Fingerprint
		}
		return fmt.Errorf("capture server %s runs another target (fingerprint %.16s, this run's target.path has %.16s): refused", addr, fp, c.o.Fingerprint)
	}
	if _, err := tensor.ParseShortName(info.Dtype); err != nil {
		return fmt.Errorf("capture server %s: %w", addr, err)
	}
	if h := info.Target.HiddenSize; h < 1 || len(info.AuxLayers) < 1 || len(info.AuxLayers) > 64 {
		return fmt.Errorf("capture server %s: hidden size %d with %d aux layers", addr, h, len(info.AuxLayers))
	}
	if c.info == nil {
		c.info = info
		layers := make([]int, len(info.AuxLayers))
		for i, l := range info.AuxLayers {
			layers[i] = int(l)
		}
		c.slots = hidden.AuxSlots(layers)
		return nil
	}
	switch {
	case !slices.Equal(info.AuxLayers, c.info.AuxLayers):
		return fmt.Errorf("capture server %s captures aux layers %v, %s captures %v: refused", addr, info.AuxLayers, c.servers[0].addr, c.info.AuxLayers)
	case info.Dtype != c.info.Dtype:
		return fmt.Errorf("capture server %s sends %s states, the others %s: refused", addr, info.Dtype, c.info.Dtype)
	case datasetKey(info) != datasetKey(c.info):
		return fmt.Errorf("capture server %s serves dataset %s, the others %s: start every server on the same data", addr, datasetKey(info), datasetKey(c.info))
	}
	return nil
}

func datasetKey(info *capturepb.InfoReply) string {
	if len(info.Datasets) == 0 {
		return ""
	}
	return info.Datasets[0].Key
}

// Info is what the servers serve.
func (c *Client) Info() *capturepb.InfoReply { return c.info }

// AuxLayers are the layers the servers capture.
func (c *Client) AuxLayers() []int {
	out := make([]int, len(c.info.AuxLayers))
	for i, l := range c.info.AuxLayers {
		out[i] = int(l)
	}
	return out
}

// Dataset is the servers' split of the given name, nil when they have none.
func (c *Client) Dataset(split string) *capturepb.Dataset {
	for _, d := range c.info.Datasets {
		if d.Split == split {
			return d
		}
	}
	return nil
}

func (c *Client) logf(format string, args ...any) {
	if c.o.Log != nil {
		fmt.Fprintf(c.o.Log, format+"\n", args...)
	}
}

// Close closes the connections.
func (c *Client) Close() error {
	for _, s := range c.servers {
		s.conn.Close()
	}
	if c.dec != nil {
		c.dec.Close()
	}
	return nil
}

// fail keeps s out of the rotation for a backoff that doubles, up to 5 s, until it answers again.
func (s *server) fail() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = time.Now().Add(s.wait)
	s.wait = min(2*s.wait, 5*time.Second)
}

func (s *server) ok() {
	s.mu.Lock()
	s.down, s.wait = time.Time{}, 100*time.Millisecond
	s.mu.Unlock()
}

// pick is the next server in the rotation that is not backing off, or the one that is back soonest.
func (c *Client) pick() (*server, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	var soonest *server
	var wait time.Duration
	for k := range c.servers {
		s := c.servers[(c.next+k)%len(c.servers)]
		s.mu.Lock()
		down := s.down
		s.mu.Unlock()
		if !down.After(now) {
			c.next = (c.next + k + 1) % len(c.servers)
			return s, 0
		}
		if soonest == nil || down.Sub(now) < wait {
			soonest, wait = s, down.Sub(now)
		}
	}
	return soonest, wait
}

// Source serves one split's samples to training (train.SampleStore): Sample asks the servers for the
// sample, together with the others asked for at the same time.
type Source struct {
	c     *Client
	split *capturepb.Dataset
	queue chan *request
}

type request struct {
	id    int
	since time.Time
	done  chan struct{}
	s     *hidden.Sample
	err   error
}

// Source is the split of the given name; its requests are sent until ctx is cancelled.
func (c *Client) Source(ctx context.Context, split string) (*Source, error) {
	d := c.Dataset(split)
	if d == nil {
		return nil, fmt.Errorf("the capture servers hold no %s split", split)
	}
	src := &Source{c: c, split: d, queue: make(chan *request, c.o.Window)}
	go src.dispatch(ctx)
	return src, nil
}

// Len implements train.SampleStore.
func (s *Source) Len() int { return int(s.split.Samples) }

// Layout implements train.SampleStore.
func (s *Source) Layout() (int, int) { return int(s.c.info.Target.HiddenSize), len(s.c.info.AuxLayers) }

// Sample implements train.SampleStore. Safe for concurrent use; at most the client's window of samples are
// outstanding at once.
func (s *Source) Sample(i int) (*hidden.Sample, error) {
	if i < 0 || i >= s.Len() {
		return nil, fmt.Errorf("sample %d outside [0, %d)", i, s.Len())
	}
	s.c.window <- struct{}{}
	defer func() { <-s.c.window }()
	r := &request{id: i, since: time.Now(), done: make(chan struct{})}
	s.queue <- r
	<-r.done
	return r.s, r.err
}

// dispatch sends what is queued, a chunk at a time, to the servers in turn.
func (s *Source) dispatch(ctx context.Context) {
	for {
		var batch []*request
		select {
		case r := <-s.queue:
			batch = append(batch, r)
		case <-ctx.Done():
			return
		}
	drain:
		for len(batch) < chunk {
			select {
			case r := <-s.queue:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		srv, wait := s.c.pick()
		if wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
		}
		go s.call(ctx, srv, batch)
	}
}

// call asks srv for batch and delivers what it answers; what it leaves unanswered is queued again for
// another server, unless it is refused (another target or layout) or out of time.
func (s *Source) call(ctx context.Context, srv *server, batch []*request) {
	c := s.c
	if err := c.fatalErr(); err != nil {
		for _, r := range batch {
			r.err = err
			close(r.done)
		}
		return
	}
	left := make(map[int64]*request, len(batch))
	req := &capturepb.StatesRequest{DatasetKey: s.split.Key, Split: s.split.Split, Fingerprint: c.o.Fingerprint, AuxLayers: c.info.AuxLayers, Dtype: c.info.Dtype}
	for _, r := range batch {
		left[int64(r.id)] = r
		req.Ids = append(req.Ids, int64(r.id))
	}
	cctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	err := func() error {
		stream, err := srv.client.States(cctx, req)
		if err != nil {
			return err
		}
		for len(left) > 0 {
			msg, err := stream.Recv()
			if err != nil {
				return err
			}
			r, ok := left[msg.Id]
			if !ok {
				return fatalError{fmt.Errorf("capture server %s sent sample %d, not asked for or sent twice", srv.addr, msg.Id)}
			}
			smp, err := s.decode(srv.addr, msg)
			if err != nil {
				return fatalError{err}
			}
			delete(left, msg.Id)
			r.s = smp
			close(r.done)
		}
		return nil
	}()
	if err == nil {
		srv.ok()
		return
	}
	var fe fatalError
	if errors.As(err, &fe) {
		c.stop(fe.error)
	}
	switch status.Code(err) {
	case codes.FailedPrecondition, codes.NotFound, codes.InvalidArgument:
		c.stop(fmt.Errorf("capture server %s refused the run: %s", srv.addr, status.Convert(err).Message()))
	}
	if c.fatalErr() != nil {
		for _, r := range left {
			r.err = c.fatalErr()
			close(r.done)
		}
		return
	}
	srv.fail()
	if len(left) > 0 {
		c.logf("capture server %s failed with %d samples outstanding (%s); asking the others", srv.addr, len(left), status.Convert(err).Message())
	}
	for _, r := range left {
		if time.Since(r.since) > c.o.Timeout {
			r.err = fmt.Errorf("sample %d: no capture server answered within %s (last: %s: %v)", r.id, c.o.Timeout, srv.addr, err)
			close(r.done)
			continue
		}
		select {
		case s.queue <- r:
		case <-ctx.Done():
			r.err = ctx.Err()
			close(r.done)
		}
	}
}

type fatalError struct{ error }

func (c *Client) stop(err error) {
	c.mu.Lock()
	if c.fatal == nil {
		c.fatal = err
	}
	c.mu.Unlock()
}

func (c *Client) fatalErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fatal
}

// decode checks that a sample comes from the run's target and layout and decodes it as a shard's record.
func (s *Source) decode(addr string, msg *capturepb.SampleStates) (*hidden.Sample, error) {
	info := s.c.info
	switch {
	case msg.Fingerprint != info.Target.Fingerprint:
		return nil, fmt.Errorf("capture server %s answers for another target (fingerprint %.16s, this run's is %.16s): refused", addr, msg.Fingerprint, info.Target.Fingerprint)
	case !slices.Equal(msg.AuxLayers, info.AuxLayers):
		return nil, fmt.Errorf("capture server %s answers with aux layers %v, this run reads %v: refused", addr, msg.AuxLayers, info.AuxLayers)
	case msg.Dtype != info.Dtype:
		return nil, fmt.Errorf("capture server %s answers in %s, this run reads %s: refused", addr, msg.Dtype, info.Dtype)
	}
	d, _ := tensor.ParseShortName(info.Dtype)
	h := int(info.Target.HiddenSize)
	rec := hidden.Record{Tokens: int(msg.Tokens), AuxBytes: int(msg.AuxBytes), HiddenBytes: int(msg.HiddenBytes), Bytes: msg.Record}
	if float := int64(rec.Tokens) * int64(len(s.c.slots)+1) * int64(h) * 4; float > maxDecodedBytes {
		return nil, fmt.Errorf("capture server %s: sample %d of %d tokens: %d bytes of float32 states, more than %d", addr, msg.Id, rec.Tokens, float, int64(maxDecodedBytes))
	}
	if err := hidden.CheckRecord(rec, d, s.c.slots, h); err != nil {
		return nil, fmt.Errorf("capture server %s: sample %d: %w", addr, msg.Id, err)
	}
	smp, err := hidden.DecodeRecord(s.c.dec, rec, d, s.c.slots, h, int(info.Target.VocabSize))
	if err != nil {
		return nil, fmt.Errorf("capture server %s: sample %d: %w", addr, msg.Id, err)
	}
	return smp, nil
}
