package pipeline

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/specforge/specforge/internal/capture"
	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/tensor"
	"github.com/specforge/specforge/internal/tokenizer"
	"github.com/specforge/specforge/internal/train"
)

// Capture is where a run's hidden states come from capture servers (data.hidden_states: grpc://...).
const Capture Mode = "capture"

// IsCapture reports whether data.hidden_states names capture servers.
func IsCapture(hiddenStates string) bool { return strings.HasPrefix(hiddenStates, capture.Scheme) }

// CaptureOptions are a capture server's gen-hidden options: its states are gen-hidden's with them.
type CaptureOptions struct {
	DType                  tensor.DType
	Batch, SamplesPerShard int
	MaxInFlight            int
}

// NewCaptureServer loads the target, resolves the aux layers the draft reads and prepares the data as
// gen-hidden does (regenerated first when asked), and returns a server of its states; the caller serves it.
// The returned function closes the target and the data.
func NewCaptureServer(ctx context.Context, cfg *config.Run, o CaptureOptions, log io.Writer) (*capture.Server, func(), error) {
	if cfg.Target.Path == "" {
		return nil, nil, fmt.Errorf("no target: set target.path")
	}
	if log == nil {
		log = io.Discard
	}
	fp, err := capture.Fingerprint(cfg.Target.Path)
	if err != nil {
		return nil, nil, err
	}
	target, dc, _, p, err := loadOnline(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	var files []*dataset.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
		target.Close()
	}
	splits := map[string]*dataset.File{}
	paths := map[string]string{"train": p.TrainPath()}
	if p.Eval.Samples > 0 {
		paths["eval"] = p.EvalPath()
	}
	for name, path := range paths {
		f, err := dataset.OpenTokenized(path)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		files = append(files, f)
		splits[name] = f
	}
	srv, err := capture.NewServer(capture.ServerOptions{Target: target, Fingerprint: fp, AuxLayers: dc.AuxLayers, DType: o.DType,
		DatasetKey: p.Key, Splits: splits, Batch: o.Batch, SamplesPerShard: o.SamplesPerShard, MaxInFlight: o.MaxInFlight})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	fmt.Fprintf(log, "capture: dataset %s (%d train samples, %d eval), aux layers %v, %s states, fingerprint %.16s\n",
		p.Key, p.Train.Samples, p.Eval.Samples, dc.AuxLayers, o.DType.ShortName(), fp)
	return srv, closeAll, nil
}

// captureInputs trains from capture servers: as offline, only the target's embedding and lm_head are
// loaded here, and the target's fingerprint must be the servers'.
func captureInputs(ctx context.Context, cfg *config.Run, log io.Writer) (*inputs, error) {
	addrs, err := capture.ParseAddrs(cfg.Data.HiddenStates)
	if err != nil {
		return nil, fmt.Errorf("data.hidden_states: %w", err)
	}
	head, _, err := model.LoadHead(cfg.Target.Path)
	if err != nil {
		return nil, err
	}
	dc, warm, aux, err := draftConfig(cfg, head)
	if err != nil {
		return nil, err
	}
	fp, err := capture.Fingerprint(cfg.Target.Path)
	if err != nil {
		return nil, err
	}
	o := capture.ClientOptions{Addrs: addrs, Fingerprint: fp, Timeout: time.Duration(cfg.Data.Capture.TimeoutS * float64(time.Second)),
		Window: cfg.Data.Capture.Window, Log: log}
	if cc := cfg.Data.Capture; cc.CA != "" {
		if o.Creds, err = capture.ClientTLS(cc.CA, cc.Cert, cc.Key, cc.ServerName); err != nil {
			return nil, fmt.Errorf("data.capture: %w", err)
		}
	} else if cc.Cert != "" || cc.Key != "" {
		return nil, fmt.Errorf("data.capture: a client certificate needs data.capture.ca, the CA of the servers' certificates")
	}
	client, err := capture.Dial(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("data.hidden_states: %w", err)
	}
	info := client.Info()
	if int(info.Target.HiddenSize) != head.Config.HiddenSize || int(info.Target.VocabSize) != head.Config.VocabSize {
		client.Close()
		return nil, fmt.Errorf("data.hidden_states: the capture servers run a target of hidden size %d and vocabulary %d, target.path has %d and %d",
			info.Target.HiddenSize, info.Target.VocabSize, head.Config.HiddenSize, head.Config.VocabSize)
	}
	// As offline, the servers' layers are the run's unless draft.aux_layers or draft.checkpoint chose others.
	if aux.configured != nil || aux.warm != nil {
		chosen, err := aux.resolve()
		if err == nil && !slices.Equal(chosen, client.AuxLayers()) {
			err = fmt.Errorf("the capture servers capture aux layers %v, this run's draft reads %v (%s): refused; start the servers with the run's draft.aux_layers",
				client.AuxLayers(), chosen, hidden.AuxConvention)
		}
		if err != nil {
			client.Close()
			return nil, err
		}
	}
	aux.shards = &hidden.Manifest{AuxLayers: client.AuxLayers(), AuxConvention: hidden.AuxConvention}
	if dc.AuxLayers, err = aux.resolve(); err != nil {
		client.Close()
		return nil, err
	}
	// The sources outlive a cancelled run context: the step under way and the checkpoint after it still read.
	srcCtx := context.WithoutCancel(ctx)
	trainSrc, err := client.Source(srcCtx, "train")
	if err != nil {
		client.Close()
		return nil, err
	}
	m := warmVocab(warm)
	if m == nil {
		counts := client.Dataset("train").LossTokenCounts
		if len(counts) != head.Config.VocabSize {
			client.Close()
			return nil, fmt.Errorf("capture servers: %d loss-token counts for a vocabulary of %d", len(counts), head.Config.VocabSize)
		}
		tok, err := tokenizer.LoadIfPresent(cfg.Target.Path)
		if err != nil {
			client.Close()
			return nil, err
		}
		if m, err = ChooseVocab(counts, tok, cfg.Draft); err != nil {
			client.Close()
			return nil, err
		}
	}
	in := &inputs{head: head, draft: dc, vocab: m, warm: warm, train: &train.Offline{Store: trainSrc, Head: head, Used: m.Used}}
	if client.Dataset("eval") != nil {
		evalSrc, err := client.Source(srcCtx, "eval")
		if err != nil {
			client.Close()
			return nil, err
		}
		in.eval = &train.Offline{Store: evalSrc, Head: head, Used: m.Used}
	}
	return in, nil
}
