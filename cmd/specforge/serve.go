package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/specforge/specforge/internal/chat"
	"github.com/specforge/specforge/internal/generate"
	"github.com/specforge/specforge/internal/pipeline"
	"github.com/specforge/specforge/internal/serve"
)

func serveCommand() *cobra.Command {
	var (
		targetDir, draftDir, listen, name, chatTemplate string
		maxTokens, maxQueue                             int
		maxBody                                         int64
		grace                                           time.Duration
		df                                              decodingFlags
	)
	cmd := &cobra.Command{
		Use:   "serve --target DIR [--draft DIR] [--listen 127.0.0.1:8000]",
		Short: "Serve the OpenAI completions and chat API, decoding speculatively with a draft",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dec, err := pipeline.LoadDecoding(targetDir, draftDir, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer dec.Close()
			if dec.Tokenizer == nil {
				return fmt.Errorf("%s has no tokenizer.json: serve needs it to encode prompts", targetDir)
			}
			warnUnused(cmd, dec.Target)
			renderer, stops, err := serve.ChatRenderer(targetDir, chatTemplate)
			if err != nil {
				return err
			}
			if name == "" {
				name = filepath.Base(filepath.Clean(targetDir))
			}
			cfg := serve.Config{ModelName: name, Target: dec.Target, Tokenizer: dec.Tokenizer, Chat: renderer, ChatStops: stops,
				MaxTokens: maxTokens, MaxQueue: maxQueue, MaxBodyBytes: maxBody, Log: cmd.ErrOrStderr()}
			decoding := "the target alone"
			if dec.Draft != nil {
				cfg.Decoder, cfg.Speculative = dec.Decoder(), df.options(0, generate.SamplingParams{}, nil)
				decoding = "speculative, " + df.describe()
			}
			srv, err := serve.New(cfg)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen %s: %w", listen, err)
			}
			chatNote := "no chat template: /v1/chat/completions refused"
			switch {
			case renderer != nil && chatTemplate == "":
				chatNote = "the tokenizer's chat template"
			case renderer != nil:
				chatNote = "chat template " + chatTemplate
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "serving %s on http://%s (%s; %s)\n", name, ln.Addr(), decoding, chatNote)
			return srv.Serve(cmd.Context(), ln, grace)
		},
	}
	f := cmd.Flags()
	f.StringVar(&targetDir, "target", "", "target model folder (config.json, safetensors, tokenizer.json)")
	f.StringVar(&draftDir, "draft", "", "draft folder (an SGLang, vLLM or speculators export, or a specforge checkpoint): decode speculatively")
	f.StringVar(&listen, "listen", "127.0.0.1:8000", "address to listen on (port 0: any free port)")
	f.StringVar(&name, "served-model-name", "", "model id of the API (default: the target folder's name)")
	f.StringVar(&chatTemplate, "chat-template", "", "chat template when the tokenizer has none, or to replace its own: a .jinja file, or one of "+strings.Join(chat.TemplateNames(), ", "))
	f.IntVar(&maxTokens, "max-tokens", 1024, "largest max_tokens a request may ask (and the default, within the context)")
	f.IntVar(&maxQueue, "max-queue", 64, "requests that may wait for the decoding worker; more get 429")
	f.Int64Var(&maxBody, "max-body-bytes", 1<<20, "largest request body")
	f.DurationVar(&grace, "shutdown-grace", 30*time.Second, "on SIGTERM, how long requests in flight may run before they are cancelled")
	df.register(cmd)
	cmd.MarkFlagRequired("target")
	return cmd
}
