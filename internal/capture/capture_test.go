package capture

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/specforge/specforge/internal/capture/capturepb"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/tensor"
)

// fixture is the stories260K target and a small tokenized dataset of samples of varied lengths.
type fixture struct {
	dir    string
	target *model.Model
	data   *dataset.File
	fp     string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := goldentest.Shared(t, "assets", "models", "stories260K")
	target, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Close() })
	r := mrand.New(mrand.NewPCG(3, 3))
	var samples []*dataset.Tokenized
	for range 10 {
		s := &dataset.Tokenized{IDs: make([]int32, 5+r.IntN(40))}
		s.LossMask = make([]uint8, len(s.IDs))
		for i := range s.IDs {
			s.IDs[i], s.LossMask[i] = int32(r.IntN(512)), uint8(r.IntN(2))
		}
		samples = append(samples, s)
	}
	path := filepath.Join(t.TempDir(), "train.safetensors")
	if err := dataset.WriteTokenized(path, samples, nil); err != nil {
		t.Fatal(err)
	}
	data, err := dataset.OpenTokenized(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { data.Close() })
	fp, err := Fingerprint(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dir: dir, target: target, data: data, fp: fp}
}

func (f *fixture) options(aux []int) ServerOptions {
	return ServerOptions{Target: f.target, Fingerprint: f.fp, AuxLayers: aux, DType: tensor.BF16, DatasetKey: "key",
		Splits: map[string]*dataset.File{"train": f.data}, Batch: 4, SamplesPerShard: 6, MaxInFlight: 16}
}

// serve runs a server of o on addr ("" picks a loopback port) until the returned stop is called.
func serve(t *testing.T, o ServerOptions, addr string, creds credentials.TransportCredentials) (*Server, string, func()) {
	t.Helper()
	srv, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lis net.Listener
	for try := 0; ; try++ {
		if lis, err = net.Listen("tcp", addr); err == nil || try == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis, creds, time.Second) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return srv, lis.Addr().String(), stop
}

// genHidden writes the fixture's shards as gen-hidden does (batches of 4, shards of 6) and opens them.
func (f *fixture) genHidden(t *testing.T, aux []int) *hidden.Store {
	t.Helper()
	out := filepath.Join(t.TempDir(), "hidden")
	if _, err := hidden.Generate(hidden.GenOptions{Target: f.target, TargetPath: f.dir, AuxLayers: aux, Data: f.data, DataKey: "key",
		Out: out, DType: tensor.BF16, SamplesPerShard: 6, Batch: 4}); err != nil {
		t.Fatal(err)
	}
	store, err := hidden.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

func sameSample(a, b *hidden.Sample) bool {
	if len(a.IDs) != len(b.IDs) || len(a.Aux) != len(b.Aux) || len(a.Hidden) != len(b.Hidden) {
		return false
	}
	for i := range a.IDs {
		if a.IDs[i] != b.IDs[i] || a.LossMask[i] != b.LossMask[i] {
			return false
		}
	}
	for _, p := range [][2][]float32{{a.Aux, b.Aux}, {a.Hidden, b.Hidden}} {
		for i := range p[0] {
			if math.Float32bits(p[0][i]) != math.Float32bits(p[1][i]) {
				return false
			}
		}
	}
	return true
}

func dial(t *testing.T, f *fixture, creds credentials.TransportCredentials, addrs ...string) (*Client, error) {
	c, err := Dial(context.Background(), ClientOptions{Addrs: addrs, Creds: creds, Fingerprint: f.fp, Timeout: time.Second})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// TestServerSendsGenHiddensStates: two clients ask for the odd and the even samples at once, in shuffled
// order; every sample equals gen-hidden's stored one bit for bit, and each of gen-hidden's batches is
// computed once for both clients.
func TestServerSendsGenHiddensStates(t *testing.T) {
	f := newFixture(t)
	aux := []int{1, 2, 2}
	want := f.genHidden(t, aux)
	srv, addr, _ := serve(t, f.options(aux), "", nil)
	var wg sync.WaitGroup
	for parity := range 2 {
		c, err := dial(t, f, nil, addr)
		if err != nil {
			t.Fatal(err)
		}
		src, err := c.Source(context.Background(), "train")
		if err != nil {
			t.Fatal(err)
		}
		ids := mrand.New(mrand.NewPCG(uint64(parity), 9)).Perm(f.data.Len())
		for _, i := range ids {
			if i%2 != parity {
				continue
			}
			wg.Go(func() {
				got, err := src.Sample(i)
				if err != nil {
					t.Error(err)
					return
				}
				w, err := want.Sample(i)
				if err != nil {
					t.Error(err)
					return
				}
				if !sameSample(got, w) {
					t.Errorf("sample %d differs from gen-hidden's", i)
				}
			})
		}
	}
	wg.Wait()
	st, _ := srv.Stats(context.Background(), nil)
	// Samples 0-9 in shards of 6 and batches of 4: [0,4) [4,6) [6,10).
	if st.Samples != 10 || st.Forwards != 3 || st.Tokens != f.data.Tokens() || st.Bytes == 0 {
		t.Errorf("stats %+v: want 10 samples of %d tokens sent after 3 forwards", st, f.data.Tokens())
	}
}

// TestInFlightIsBounded: with MaxInFlight 2 and requests for every sample from three clients, the server
// never holds more than 2 admitted samples, and answers them all; its health service says SERVING.
func TestInFlightIsBounded(t *testing.T) {
	f := newFixture(t)
	o := f.options([]int{1, 2, 3})
	o.MaxInFlight, o.Batch = 2, 1
	srv, addr, _ := serve(t, o, "", nil)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health %v, %v: want SERVING", h, err)
	}
	done, polled := make(chan struct{}), make(chan struct{})
	var most int64
	go func() {
		defer close(polled)
		for {
			select {
			case <-done:
				return
			default:
			}
			st, _ := srv.Stats(context.Background(), nil)
			most = max(most, st.InFlight)
		}
	}()
	var wg sync.WaitGroup
	for range 3 {
		c, err := dial(t, f, nil, addr)
		if err != nil {
			t.Fatal(err)
		}
		src, _ := c.Source(context.Background(), "train")
		for i := range f.data.Len() {
			wg.Go(func() {
				if _, err := src.Sample(i); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	close(done)
	<-polled
	st, _ := srv.Stats(context.Background(), nil)
	if most > 2 || st.Samples != 30 || st.InFlight != 0 {
		t.Errorf("at most %d samples in flight (want <= 2), %d sent (want 30), %d left in flight", most, st.Samples, st.InFlight)
	}
}

// TestRestartedServerOfAnotherSettingIsRefused: a server restarted on its port with other aux layers, or
// another target, is refused by the trainer that was using it, with the reason.
func TestRestartedServerOfAnotherSettingIsRefused(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		name   string
		change func(*ServerOptions)
		want   string
	}{
		{"aux layers", func(o *ServerOptions) { o.AuxLayers = []int{1, 2, 4} }, "captures aux layers [1 2 4], the trainer reads [1 2 3]"},
		{"target", func(o *ServerOptions) { o.Fingerprint = strings.Repeat("0", 64) }, "another target"},
		{"dtype", func(o *ServerOptions) { o.DType = tensor.F16 }, "sends f16 states, the trainer expects bf16"},
	} {
		_, addr, stop := serve(t, f.options([]int{1, 2, 3}), "", nil)
		cl, err := dial(t, f, nil, addr)
		if err != nil {
			t.Fatal(err)
		}
		src, _ := cl.Source(context.Background(), "train")
		if _, err := src.Sample(0); err != nil {
			t.Fatal(err)
		}
		stop()
		o := f.options([]int{1, 2, 3})
		c.change(&o)
		serve(t, o, addr, nil)
		if _, err := src.Sample(1); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
}

// TestMutualTLS serves over TLS with a client CA: a trainer with a certificate of that CA is served; one
// without a certificate, with one of another CA, or trusting another CA is refused.
func TestMutualTLS(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	ca, caKey := newCA(t, dir, "ca")
	other, otherKey := newCA(t, dir, "other")
	leaf(t, dir, "server", ca, caKey, true)
	leaf(t, dir, "client", ca, caKey, false)
	leaf(t, dir, "stranger", other, otherKey, false)
	p := func(name string) string { return filepath.Join(dir, name) }
	serverCreds, err := ServerTLS(p("server.pem"), p("server.key"), p("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	_, addr, _ := serve(t, f.options([]int{1, 2, 3}), "", serverCreds)
	for _, c := range []struct {
		name          string
		ca, cert, key string
		ok            bool
	}{
		{"client certificate of the CA", "ca.pem", "client.pem", "client.key", true},
		{"no client certificate", "ca.pem", "", "", false},
		{"client certificate of another CA", "ca.pem", "stranger.pem", "stranger.key", false},
		{"trusting another CA", "other.pem", "client.pem", "client.key", false},
	} {
		cert, key := "", ""
		if c.cert != "" {
			cert, key = p(c.cert), p(c.key)
		}
		creds, err := ClientTLS(p(c.ca), cert, key, "")
		if err != nil {
			t.Fatal(err)
		}
		cl, err := dial(t, f, creds, addr)
		if c.ok {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			src, _ := cl.Source(context.Background(), "train")
			if _, err := src.Sample(3); err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
		} else if err == nil {
			t.Errorf("%s: served", c.name)
		}
	}
	if _, err := dial(t, f, nil, addr); err == nil {
		t.Error("plain-text client served by a TLS server")
	}
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

var serial int64

func template(name string) *x509.Certificate {
	serial++
	return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
}

func newCA(t *testing.T, dir, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := template(name)
	tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func leaf(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, server bool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := template(name)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	raw, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".key"), "EC PRIVATE KEY", raw)
}

func TestParseAddrs(t *testing.T) {
	for _, c := range []struct {
		url  string
		want []string
		err  string
	}{
		{"grpc://127.0.0.1:50051", []string{"127.0.0.1:50051"}, ""},
		{"grpc://a:1, b:2", []string{"a:1", "b:2"}, ""},
		{"grpc://[::1]:7", []string{"[::1]:7"}, ""},
		{"http://a:1", nil, "want grpc://"},
		{"grpc://a:1,", nil, `"" is not host:port`},
		{"grpc://a", nil, `"a" is not host:port`},
	} {
		got, err := ParseAddrs(c.url)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.url, err, c.err)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%s: %v, %v; want %v", c.url, got, err, c.want)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:50051": true, "localhost:1": true, "[::1]:1": true, "127.1.2.3:1": true,
		"0.0.0.0:1": false, ":50051": false, "10.0.0.7:1": false, "example.com:1": false, "nonsense": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v", addr, got)
		}
	}
}

// TestTrainerWaitsForItsServer: a trainer started before its server (which loads the target first) waits
// for it, and one whose servers never answer fails after the timeout, naming them.
func TestTrainerWaitsForItsServer(t *testing.T) {
	f := newFixture(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	go func() {
		time.Sleep(300 * time.Millisecond)
		serve(t, f.options([]int{1, 2, 3}), addr, nil)
	}()
	c, err := Dial(context.Background(), ClientOptions{Addrs: []string{addr}, Fingerprint: f.fp, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	start := time.Now()
	_, err = Dial(context.Background(), ClientOptions{Addrs: []string{"127.0.0.1:1"}, Fingerprint: f.fp, Timeout: 500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no capture server answered within 500ms: 127.0.0.1:1") || time.Since(start) > 5*time.Second {
		t.Errorf("error %v after %s", err, time.Since(start))
	}
}

// forger answers Info as a real server does and States with what forge makes of the real answer.
type forger struct {
	capturepb.UnimplementedCaptureServer
	real  *Server
	forge func(*capturepb.SampleStates)
}

func (f *forger) Info(ctx context.Context, r *capturepb.InfoRequest) (*capturepb.InfoReply, error) {
	return f.real.Info(ctx, r)
}

func (f *forger) States(req *capturepb.StatesRequest, stream grpc.ServerStreamingServer[capturepb.SampleStates]) error {
	return f.real.States(req, &forgingStream{ServerStreamingServer: stream, forge: f.forge})
}

type forgingStream struct {
	grpc.ServerStreamingServer[capturepb.SampleStates]
	forge func(*capturepb.SampleStates)
}

func (s *forgingStream) Send(m *capturepb.SampleStates) error {
	c := proto.Clone(m).(*capturepb.SampleStates)
	s.forge(c)
	return s.ServerStreamingServer.Send(c)
}

// TestForgedAnswersAreRefused: a peer that sends a sample not asked for, a record whose parts do not add
// up, a token outside the vocabulary, a record declaring more tokens than its bytes can hold, or an answer
// for another target is refused with the reason, before anything is sized from it.
func TestForgedAnswersAreRefused(t *testing.T) {
	f := newFixture(t)
	real, err := NewServer(f.options([]int{1, 2, 3}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go real.work(ctx)
	for _, c := range []struct {
		name  string
		forge func(*capturepb.SampleStates)
		want  string
	}{
		{"not asked", func(m *capturepb.SampleStates) { m.Id += 5 }, "not asked for or sent twice"},
		{"parts", func(m *capturepb.SampleStates) { m.AuxBytes++ }, "in a record of"},
		{"token", func(m *capturepb.SampleStates) { m.Record[0], m.Record[1] = 0xff, 0xff }, "outside the target's vocabulary of 512"},
		{"expansion", func(m *capturepb.SampleStates) {
			m.Tokens, m.AuxBytes, m.HiddenBytes, m.Record = 1<<20, 0, 0, make([]byte, 5<<20)
		}, "more than 65536x"},
		{"decoded size", func(m *capturepb.SampleStates) { m.Tokens = 1 << 30 }, "bytes of float32 states, more than"},
		{"target", func(m *capturepb.SampleStates) { m.Fingerprint = "x" }, "answers for another target"},
		{"layers", func(m *capturepb.SampleStates) { m.AuxLayers = []int32{1, 2, 4} }, "answers with aux layers [1 2 4]"},
	} {
		g := grpc.NewServer()
		capturepb.RegisterCaptureServer(g, &forger{real: real, forge: c.forge})
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go g.Serve(lis)
		cl, err := dial(t, f, nil, lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		src, _ := cl.Source(context.Background(), "train")
		if _, err := src.Sample(0); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
		g.Stop()
	}
}
