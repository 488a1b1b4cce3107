// Package regen builds training data the way SpecForge recommends: the target itself continues openings
// taken from a corpus, so the draft learns from text the target would produce.
package regen

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/generate"
	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/tensor"
	"github.com/specforge/specforge/internal/tokenizer"
)

// Options of a regeneration.
type Options struct {
	// OpeningTokens of each paragraph (after the tokenizer's BOS) form the prompt.
	OpeningTokens int
	MaxNewTokens  int
	Batch         int
	// Limit caps the number of prompts (0: every paragraph long enough).
	Limit    int
	Sampling generate.SamplingParams
	// Progress, if set, is called after each batch.
	Progress func(done, total int)
}

// Openings splits a text file into paragraphs (blank-line separated) and returns, for each paragraph with
// enough tokens, its first OpeningTokens tokens preceded by BOS when the tokenizer adds one.
func Openings(path string, tok *tokenizer.Tokenizer, o Options) ([][]int32, error) {
	paras, err := dataset.ReadParagraphs(path)
	if err != nil {
		return nil, err
	}
	var out [][]int32
	for _, para := range paras {
		e, err := tok.EncodeOffsets(para, true)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ids := e.IDs
		prefix := e.Special()
		if len(ids) < prefix+o.OpeningTokens+1 {
			continue
		}
		out = append(out, ids[:prefix+o.OpeningTokens])
		if o.Limit > 0 && len(out) == o.Limit {
			break
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no paragraph has more than %d tokens", path, o.OpeningTokens)
	}
	return out, nil
}

// Key identifies a regeneration by its inputs, for caching its output.
func Key(m *model.Model, openingsPath string, o Options) (string, error) {
	h := sha256.New()
	raw, err := os.ReadFile(openingsPath)
	if err != nil {
		return "", fmt.Errorf("read openings: %w", err)
	}
	h.Write(raw)
	cfg, _ := json.Marshal(m.Config)
	h.Write(cfg)
	// The weights decide the text: hash a sample of them rather than gigabytes.
	for _, w := range []tensor.Tensor{m.Embed, m.Norm, m.LMHead} {
		flat := w.Reshape(w.Len())
		for i := 0; i < w.Len(); i += max(1, w.Len()/4096) {
			v, err := half.Widen(flat.Rows(i, i+1)) // one value: the matrices stay as stored
			if err != nil {
				return "", fmt.Errorf("hash the weights: %w", err)
			}
			fmt.Fprintf(h, "%x,", v[0])
		}
	}
	opts, _ := json.Marshal(struct {
		Opening, MaxNew, Limit int
		S                      generate.SamplingParams
	}{o.OpeningTokens, o.MaxNewTokens, o.Limit, o.Sampling})
	h.Write(opts)
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Write generates continuations of prompts in batches and writes them to path (atomically) as JSONL rows
// {"prompt": opening text, "completion": continuation text}. Cancelling ctx stops it with an error that wraps
// ctx.Err(), and nothing is written.
func Write(ctx context.Context, path string, m *model.Model, tok *tokenizer.Tokenizer, prompts [][]int32, o Options) error {
	return atomicfile.Write(path, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for lo := 0; lo < len(prompts); lo += o.Batch {
			batch := prompts[lo:min(lo+o.Batch, len(prompts))]
			outs, err := generate.GenerateBatch(ctx, m, batch, o.MaxNewTokens, o.Sampling, m.Config.EOSTokenIDs)
			if err != nil {
				return err
			}
			for i, out := range outs {
				prompt, err := tok.Decode(batch[i], true)
				if err != nil {
					return err
				}
				full, err := tok.Decode(append(append([]int32(nil), batch[i]...), out...), true)
				if err != nil {
					return err
				}
				if !strings.HasPrefix(full, prompt) {
					return fmt.Errorf("decoded continuation does not extend its prompt %q", prompt)
				}
				if err := enc.Encode(map[string]string{"prompt": prompt, "completion": full[len(prompt):]}); err != nil {
					return err
				}
			}
			if o.Progress != nil {
				o.Progress(min(lo+o.Batch, len(prompts)), len(prompts))
			}
		}
		return nil
	})
}
