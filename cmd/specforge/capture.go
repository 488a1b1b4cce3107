package main

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/credentials"

	"github.com/specforge/specforge/internal/capture"
	"github.com/specforge/specforge/internal/pipeline"
	"github.com/specforge/specforge/internal/tensor"
)

func captureServerCommand() *cobra.Command {
	var cf configFlags
	var listen, metrics, dtype, cert, key, clientCA string
	var batch, perShard, inFlight int
	var insecureRemote bool
	var statsEvery, grace time.Duration
	cmd := &cobra.Command{
		Use:   "capture-server --config run.yaml [--listen 127.0.0.1:50051]",
		Short: "Hold the target and stream its hidden states to trainers (data.hidden_states: grpc://HOST:PORT)",
		Long: `capture-server loads the target once, prepares the run's data as gen-hidden does, and serves, per sample,
the record gen-hidden would store (aux and final hidden states in --dtype, zstd over byte planes) over gRPC to
trainers whose data.hidden_states is grpc://host:port[,host:port...]. It listens on loopback unless given
--tls-cert, --tls-key and --client-ca (mutual TLS), or --insecure-remote. SIGTERM or Ctrl-C stops it after the
streams under way (at most --grace).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := cf.load(cmd, map[string]string{"target": "target.path", "data": "data.train"})
			if err != nil {
				return err
			}
			d, err := tensor.ParseShortName(dtype)
			if err != nil {
				return fmt.Errorf("--%w", err)
			}
			var creds credentials.TransportCredentials
			switch {
			case cert != "" || key != "" || clientCA != "":
				if cert == "" || key == "" || clientCA == "" {
					return fmt.Errorf("TLS needs --tls-cert, --tls-key and --client-ca together (mutual TLS)")
				}
				if creds, err = capture.ServerTLS(cert, key, clientCA); err != nil {
					return err
				}
			case !capture.IsLoopback(listen) && !insecureRemote:
				return fmt.Errorf("--listen %s is not a loopback address: serve over mutual TLS (--tls-cert, --tls-key, --client-ca) or pass --insecure-remote", listen)
			}
			srv, closeAll, err := pipeline.NewCaptureServer(cmd.Context(), cfg,
				pipeline.CaptureOptions{DType: d, Batch: batch, SamplesPerShard: perShard, MaxInFlight: inFlight}, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer closeAll()
			lis, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "capture server listening on %s (tls %v)\n", lis.Addr(), creds != nil)
			if metrics != "" {
				if !capture.IsLoopback(metrics) && !insecureRemote {
					return fmt.Errorf("--metrics %s is not a loopback address: pass --insecure-remote to serve the metrics beyond this machine", metrics)
				}
				ml, err := net.Listen("tcp", metrics)
				if err != nil {
					return fmt.Errorf("--metrics: %w", err)
				}
				hs := &http.Server{Handler: srv.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second}
				go hs.Serve(ml)
				defer hs.Close()
				fmt.Fprintf(cmd.OutOrStdout(), "metrics on http://%s/metrics\n", ml.Addr())
			}
			if statsEvery > 0 {
				go srv.Log(cmd.Context(), cmd.ErrOrStderr(), statsEvery)
			}
			if err := srv.Serve(cmd.Context(), lis, creds, grace); err != nil {
				return err
			}
			st, _ := srv.Stats(cmd.Context(), nil)
			fmt.Fprintf(cmd.OutOrStdout(), "capture server stopped: %d samples, %d tokens, %d bytes (%.1f bytes/token), %d forwards\n",
				st.Samples, st.Tokens, st.Bytes, float64(st.Bytes)/max(float64(st.Tokens), 1), st.Forwards)
			return nil
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.String("target", "", "target model folder (target.path)")
	f.String("data", "", "training data file (data.train)")
	f.StringVar(&listen, "listen", "127.0.0.1:50051", "address to listen on (host:port)")
	f.StringVar(&metrics, "metrics", "", "also serve Prometheus metrics and /healthz over HTTP on this address (host:port)")
	f.StringVar(&dtype, "dtype", "bf16", "storage type of the states: bf16, f16 or f32 (as gen-hidden --dtype)")
	f.IntVar(&batch, "batch", 4, "samples per target forward (as gen-hidden --batch: the states are gen-hidden's bit for bit; 1 computes nothing twice)")
	f.IntVar(&perShard, "samples-per-shard", 256, "gen-hidden's --samples-per-shard, which bounds its batches")
	f.IntVar(&inFlight, "max-in-flight", 256, "samples admitted at once over all trainers (and kept computed beside them)")
	f.StringVar(&cert, "tls-cert", "", "server certificate (PEM)")
	f.StringVar(&key, "tls-key", "", "server key (PEM)")
	f.StringVar(&clientCA, "client-ca", "", "CA that signs the trainers' certificates (PEM): mutual TLS")
	f.BoolVar(&insecureRemote, "insecure-remote", false, "allow a non-loopback --listen without TLS")
	f.DurationVar(&statsEvery, "stats-every", 30*time.Second, "log throughput and queue this often (0: never)")
	f.DurationVar(&grace, "grace", 10*time.Second, "on SIGTERM, how long the streams under way may take to finish")
	return cmd
}
