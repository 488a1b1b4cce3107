package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/specforge/specforge/internal/capture"
	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/pipeline"
	"github.com/specforge/specforge/internal/tensor"
)

// captureGen are the gen-hidden options of the capture tests: shards of 6 samples in batches of 4, so that
// batches end at shard boundaries too; the servers take the same.
var captureGen = pipeline.CaptureOptions{DType: tensor.BF16, Batch: 4, SamplesPerShard: 6, MaxInFlight: 16}

// testServer is a capture server run in the test process on a loopback port.
type testServer struct {
	t      *testing.T
	addr   string
	srv    *capture.Server
	cancel context.CancelFunc
	done   chan error
}

// overridesOf are the --set values of train arguments.
func overridesOf(args []string) []string {
	var out []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--set" {
			out = append(out, args[i+1])
		}
	}
	return out
}

// startServer serves the states of the run of args (plus extra overrides) on addr ("" picks a port).
func startServer(t *testing.T, args []string, addr string, extra ...string) *testServer {
	return startServerOn(t, args, addr, nil, extra...)
}

// startServerOn is startServer with the listener wrapped by wrap (nil: not wrapped).
func startServerOn(t *testing.T, args []string, addr string, wrap func(net.Listener) net.Listener, extra ...string) *testServer {
	t.Helper()
	cfg, err := config.LoadRun("../../configs/stories260k.yaml", append(overridesOf(args), extra...))
	if err != nil {
		t.Fatal(err)
	}
	srv, closeAll, err := pipeline.NewCaptureServer(context.Background(), cfg, captureGen, nil)
	if err != nil {
		t.Fatal(err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lis net.Listener
	for try := 0; ; try++ { // a restarted server takes its port back once the old listener is gone
		if lis, err = net.Listen("tcp", addr); err == nil || try == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		lis = wrap(lis)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{t: t, addr: lis.Addr().String(), srv: srv, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := srv.Serve(ctx, lis, nil, 0)
		closeAll()
		s.done <- err
	}()
	t.Cleanup(s.stop)
	return s
}

// stop ends the server at once (no grace): the streams under way break, as when it is killed.
func (s *testServer) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	if err := <-s.done; err != nil {
		s.t.Error(err)
	}
	s.cancel = nil
}

func (s *testServer) sent() int64 {
	st, _ := s.srv.Stats(context.Background(), nil)
	return st.Samples
}

// trainVia trains the run of args with data.hidden_states set to states, in out, and returns the draft's bytes.
func trainVia(t *testing.T, args []string, states, out string) ([]byte, string) {
	t.Helper()
	a := append(append([]string(nil), args...), "--set", "data.hidden_states="+states, "--set", "train.output_dir="+out)
	log, err := run(a...)
	if err != nil {
		t.Fatalf("train from %s: %v\n%s", states, err, log)
	}
	raw, err := os.ReadFile(filepath.Join(out, "draft", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	return raw, log
}

// offlineDraft generates the shards of the run of args (with captureGen's options) and trains from them.
func offlineDraft(t *testing.T, args []string, dir string) []byte {
	t.Helper()
	hiddenDir := filepath.Join(dir, "hidden")
	gen := append(append([]string{"gen-hidden"}, args[1:]...), "--out", hiddenDir, "--batch", "4", "--samples-per-shard", "6")
	if log, err := run(gen...); err != nil {
		t.Fatalf("gen-hidden: %v\n%s", err, log)
	}
	want, _ := trainVia(t, args, hiddenDir, filepath.Join(dir, "offline"))
	return want
}

// TestCaptureEqualsOffline trains through two capture servers on loopback and requires the draft the
// offline run (gen-hidden's shards, the same storage type) writes, byte for byte; then again with one
// server stopped after a few samples and restarted on its port while the run goes on, which must cost no
// sample and repeat none.
func TestCaptureEqualsOffline(t *testing.T) {
	goldentest.Shared(t)
	dir := t.TempDir()
	args := tinyTrainArgs(t, dir)
	want := offlineDraft(t, args, dir)

	a, b := startServer(t, args, ""), startServer(t, args, "")
	got, log := trainVia(t, args, "grpc://"+a.addr+","+b.addr, filepath.Join(dir, "capture"))
	if !strings.Contains(log, "capture") {
		t.Errorf("the run does not say it trains from capture servers:\n%s", log)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the draft trained through capture servers differs from the offline run's")
	}
	if a.sent() == 0 || b.sent() == 0 {
		t.Errorf("requests not spread: the servers sent %d and %d samples", a.sent(), b.sent())
	}

	// Kill a in the middle of a stream (its connections break after a few samples' bytes, as when the
	// process dies) and restart it on its port while b answers.
	addr := a.addr
	a.stop()
	killed := make(chan bool, 1)
	var once sync.Once
	a = startServerOn(t, args, addr, func(l net.Listener) net.Listener {
		return &breakingListener{Listener: l, limit: 60 << 10, broke: func() {
			once.Do(func() {
				go func() {
					a.stop()
					startServer(t, args, addr)
					killed <- true
				}()
			})
		}}
	})
	got, log = trainVia(t, args, "grpc://"+addr+","+b.addr, filepath.Join(dir, "killed"))
	select {
	case <-killed:
	default:
		t.Errorf("the run ended before the server was killed")
	}
	if !strings.Contains(log, "asking the others") {
		t.Errorf("no request was outstanding on the killed server:\n%s", log)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the draft trained through a killed and restarted server differs from the offline run's\n%s", log)
	}
}

// breakingListener breaks every connection once the server has written limit bytes over all of them, and
// calls broke: the trainer sees what a killed server leaves, streams cut in the middle.
type breakingListener struct {
	net.Listener
	limit   int64
	written atomic.Int64
	broke   func()
}

func (l *breakingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &breakingConn{Conn: c, l: l}, nil
}

type breakingConn struct {
	net.Conn
	l *breakingListener
}

func (c *breakingConn) Write(p []byte) (int, error) {
	if c.l.written.Add(int64(len(p))) > c.l.limit {
		c.Conn.Close()
		c.l.broke()
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

// TestCaptureRefusesOtherTargetsAndLayers: a trainer refuses, with the reason, a server of another target
// (one weight changed), a server of another aux-layer setting, and servers that disagree among themselves.
func TestCaptureRefusesOtherTargetsAndLayers(t *testing.T) {
	goldentest.Shared(t)
	dir := t.TempDir()
	args := tinyTrainArgs(t, dir)
	other := filepath.Join(dir, "other")
	if err := os.CopyFS(other, os.DirFS(goldentest.Shared(t, "assets", "models", "stories260K"))); err != nil {
		t.Fatal(err)
	}
	weights := filepath.Join(other, "model.safetensors")
	raw, err := os.ReadFile(weights)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 1 // the last weight's lowest bits: it loads, and is another target
	if err := os.WriteFile(weights, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	same := startServer(t, args, "")
	otherTarget := startServer(t, args, "", "target.path="+other)
	otherLayers := startServer(t, args, "", "draft.aux_layers=[1, 2, 4]")
	for _, c := range []struct {
		name, servers, want string
	}{
		{"another target", otherTarget.addr, "runs another target"},
		{"another target among the servers", same.addr + "," + otherTarget.addr, "runs another target"},
		{"another aux-layer setting", otherLayers.addr, "the capture servers capture aux layers [1 2 4], this run's draft reads [1 2 3]"},
		{"servers that disagree", same.addr + "," + otherLayers.addr, "captures aux layers [1 2 4]"},
	} {
		a := append(append([]string(nil), args...), "--set", "data.hidden_states=grpc://"+c.servers, "--set", "train.output_dir="+filepath.Join(dir, "run"))
		log, err := run(a...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q\n%s", c.name, err, c.want, log)
		}
	}
}

// TestKilledCaptureTrainerResumes kills a trainer fed by a capture server with SIGKILL after its third
// checkpoint and during a checkpoint write, runs it again each time, and requires the draft of the offline
// run on the same samples byte for byte.
func TestKilledCaptureTrainerResumes(t *testing.T) {
	goldentest.Shared(t)
	dir := t.TempDir()
	args := killArgs(t, dir, filepath.Join(dir, "cache"))
	want := offlineDraft(t, args, dir)
	srv := startServer(t, args, "")
	out := filepath.Join(dir, "capture")
	a := append(append([]string(nil), args...), "--set", "data.hidden_states=grpc://"+srv.addr, "--set", "train.output_dir="+out)
	ckpts := filepath.Join(out, "checkpoints")
	for _, cond := range []func() bool{
		func() bool { return hasEntry(ckpts, "step_00000003", "") },
		func() bool { return hasEntry(ckpts, ".step_", ".tmp-") },
	} {
		if !killWhen(t, a, cond) {
			t.Log("the run ended before the kill")
		}
	}
	cmd, log := startCLI(t, a)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("resumed run: %v\n%s", err, log)
	}
	if !strings.Contains(log.String(), "resumed from") {
		t.Errorf("the last run did not resume:\n%s", log)
	}
	got, err := os.ReadFile(filepath.Join(out, "draft", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the draft of the killed and resumed capture run differs from the offline run's\n%s", log)
	}
}

// TestCaptureServerCommand starts `specforge capture-server`, waits until its health service says SERVING,
// stops it with SIGTERM and requires a clean exit (status 0, its totals printed); a non-loopback address
// without TLS is refused.
func TestCaptureServerCommand(t *testing.T) {
	goldentest.Shared(t)
	dir := t.TempDir()
	args := tinyTrainArgs(t, dir)
	if _, err := run(append([]string{"capture-server", "--listen", "0.0.0.0:0"}, args[1:]...)...); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Errorf("non-loopback --listen without TLS: %v", err)
	}
	free := func() string {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer lis.Close()
		return lis.Addr().String()
	}
	addr, metrics := free(), free()
	cmd, out := startCLI(t, append([]string{"capture-server", "--listen", addr, "--metrics", metrics}, args[1:]...))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("health %v, %v\n%s", h, err, out)
	}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "\nspecforge_capture_samples_total 0\n") || !strings.Contains(string(page), "# TYPE specforge_capture_queued gauge") {
		t.Errorf("/metrics:\n%s", page)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("capture-server after SIGTERM: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "capture server stopped: 0 samples") {
		t.Errorf("output:\n%s", out)
	}
}
