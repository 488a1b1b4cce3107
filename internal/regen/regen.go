// Package regen builds training data the way SpecForge recommends, so the draft learns from text the target
// would produce: the target itself continues openings taken from a corpus (Write), or an OpenAI-compatible
// server running it answers the conversations of a dataset (FromServer).
package regen

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
// {"prompt": opening text, "completion": continuation text}. Each finished batch is also appended to a
// progress file beside path (PartialPath), so that a run stopped by ctx or killed resumes at the first
// unfinished batch: a batch's continuations depend only on its prompts and the options (its sampler is
// seeded afresh), so a resumed regeneration writes the rows an uninterrupted one would. Cancelling ctx
// stops it with an error that wraps ctx.Err(); path is then not written.
func Write(ctx context.Context, path string, m *model.Model, tok *tokenizer.Tokenizer, prompts [][]int32, o Options) error {
	partial := PartialPath(path, o.Batch)
	rows, err := readPartial(partial, o.Batch)
	if err != nil {
		return err
	}
	rows = rows[:min(len(rows), len(prompts))]
	f, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("regeneration progress: %w", err)
	}
	defer f.Close()
	if o.Progress != nil && len(rows) > 0 {
		o.Progress(len(rows), len(prompts))
	}
	for lo := len(rows); lo < len(prompts); lo += o.Batch {
		batch := prompts[lo:min(lo+o.Batch, len(prompts))]
		outs, err := generate.GenerateBatch(ctx, m, batch, o.MaxNewTokens, o.Sampling, m.Config.EOSTokenIDs)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
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
		// One write and an fsync per batch: a kill leaves whole batches and at most one torn one, which
		// readPartial drops.
		if _, err := f.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("regeneration progress: %w", err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("regeneration progress: %w", err)
		}
		rows = append(rows, bytes.SplitAfter(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))...)
		if o.Progress != nil {
			o.Progress(min(lo+o.Batch, len(prompts)), len(prompts))
		}
	}
	err = atomicfile.Write(path, func(w io.Writer) error {
		for _, r := range rows {
			if _, err := w.Write(r); err != nil {
				return err
			}
			if !bytes.HasSuffix(r, []byte("\n")) {
				if _, err := w.Write([]byte("\n")); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(partial)
}

// PartialPath is the progress file of a regeneration into path in batches of batch prompts (the rows
// depend on how prompts are batched, so each batch size has its own).
func PartialPath(path string, batch int) string {
	return filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.partial-b%d", filepath.Base(path), batch))
}

// readPartial returns the rows of the whole batches in a progress file (none when it is missing) and cuts
// the file there, dropping a batch a kill tore.
func readPartial(path string, batch int) ([][]byte, error) {
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("regeneration progress: %w", err)
	}
	var rows [][]byte
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 || !json.Valid(raw[:i]) {
			break
		}
		rows, raw = append(rows, raw[:i+1]), raw[i+1:]
	}
	rows = rows[:len(rows)/batch*batch]
	size := 0
	for _, r := range rows {
		size += len(r)
	}
	if err := os.Truncate(path, int64(size)); err != nil {
		return nil, fmt.Errorf("regeneration progress: %w", err)
	}
	return rows, nil
}
