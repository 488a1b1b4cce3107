package pipeline

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/progress"
	"github.com/specforge/specforge/internal/regen"
)

// ServerOptions turns data.regenerate into the options of a regeneration by a server, reading the API key
// from the environment variable api_key_env names.
func ServerOptions(cfg *config.Run) (regen.ServerOptions, error) {
	o := serverOptions(cfg)
	if env := cfg.Data.Regenerate.APIKeyEnv; env != "" {
		key, ok := os.LookupEnv(env)
		if !ok || key == "" {
			return o, fmt.Errorf("data.regenerate.api_key_env: the environment variable %s that should hold the API key of %s is not set", env, o.URL)
		}
		o.APIKey = key
	}
	return o, nil
}

// serverOptions are ServerOptions without the key.
func serverOptions(cfg *config.Run) regen.ServerOptions {
	rc, d := cfg.Data.Regenerate, cfg.Data
	o := regen.ServerOptions{URL: rc.Server, Model: rc.Model, APIKeyEnv: rc.APIKeyEnv, Concurrency: rc.Concurrency,
		MaxTokens: rc.MaxTokens, Temperature: rc.Temperature, TopP: rc.TopP, Timeout: time.Duration(rc.Timeout * float64(time.Second)),
		Limit: rc.Limit, MaxRowBytes: d.MaxLineBytes,
		Schema: dataset.SchemaOptions{Format: dataset.Format(d.Format), TextField: d.TextField, PromptField: d.PromptField, CompletionField: d.CompletionField}}
	return o
}

// RegenerateFromServer lets the server of data.regenerate.server answer the rows of data.regenerate.from
// (nothing when it is not set): the output is cached by its inputs, its file added to cfg.Data.Train, and
// a run stopped by an error, ctx or a kill resumes where it stopped. Progress and the summary go to log.
func RegenerateFromServer(ctx context.Context, cfg *config.Run, log io.Writer) error {
	rc := cfg.Data.Regenerate
	if rc.Server == "" {
		return nil
	}
	key, err := regen.ServerKey(rc.From, serverOptions(cfg))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Data.CacheDir, 0o755); err != nil {
		return fmt.Errorf("data.cache_dir: %w", err)
	}
	path := filepath.Join(cfg.Data.CacheDir, "regenerated_server_"+key+".jsonl")
	if _, err := os.Stat(path); err != nil {
		lock, err := lockCache(cfg.Data.CacheDir, log)
		if err != nil {
			return err
		}
		defer lock.Release()
		o, err := ServerOptions(cfg)
		if err != nil {
			return err
		}
		var bar *progress.Reporter
		o.Progress = func(done, total, failed int) {
			if bar == nil {
				bar = progress.For(log, int64(total), "regenerate")
			}
			bar.Set(int64(done), fmt.Sprintf("%d failed", failed))
		}
		sum, err := regen.FromServer(ctx, rc.From, path, o)
		if bar != nil {
			bar.Finish()
		}
		if err != nil {
			return fmt.Errorf("data.regenerate.server: %w", err)
		}
		fmt.Fprintf(log, "regenerated %d of %d rows of %s with %s (model %s) into %s in %.1f s: %d answers (%d cut at max_tokens), %d prompt and %d completion tokens (%.0f tokens/s)",
			sum.Regenerated, sum.Rows, rc.From, sum.Server, sum.Model, path, sum.Seconds, sum.Answers, sum.LengthCapped, sum.PromptTokens, sum.CompletionTokens,
			float64(sum.CompletionTokens)/max(sum.Seconds, 1e-9))
		if sum.Resumed > 0 {
			fmt.Fprintf(log, ", %d rows from an earlier run", sum.Resumed)
		}
		if n := sum.FailedRows(); n > 0 {
			fmt.Fprintf(log, "; %d failed (%s)", n, strings.Join(sum.FailureReasons(), ", "))
		}
		fmt.Fprintln(log)
	}
	cfg.Data.Train = append(cfg.Data.Train, path)
	return nil
}
