package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/chat"
	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/generate"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/progress"
	"github.com/specforge/specforge/internal/regen"
	"github.com/specforge/specforge/internal/runlock"
	"github.com/specforge/specforge/internal/tokenizer"
	"github.com/specforge/specforge/internal/vocab"
)

// Data is a dataset ready for training, with the tokenizer that made it.
type Data struct {
	*dataset.Prepared
	Tokenizer *tokenizer.Tokenizer
}

// PrepareData tokenizes the configured data into the cache (or finds it there), reporting progress on log.
func PrepareData(cfg *config.Run, log io.Writer) (*Data, error) {
	d := cfg.Data
	if len(d.Train) == 0 {
		return nil, fmt.Errorf("no training data: set data.train (a JSONL, JSON or parquet file)")
	}
	tokDir := d.Tokenizer
	if tokDir == "" {
		tokDir = cfg.Target.Path
	}
	if tokDir == "" {
		return nil, fmt.Errorf("no tokenizer: set target.path (a Hugging Face model folder) or data.tokenizer")
	}
	tok, err := tokenizer.Load(tokDir)
	if err != nil {
		return nil, err
	}
	lock, err := lockCache(d.CacheDir, log)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	opt := dataset.PrepareOptions{
		Train: d.Train, Eval: d.Eval, EvalFraction: d.EvalFraction,
		Schema:     dataset.SchemaOptions{Format: dataset.Format(d.Format), TextField: d.TextField, PromptField: d.PromptField, CompletionField: d.CompletionField},
		Tokenizing: dataset.Tokenizing{Tokenizer: tok, MaxLength: d.MaxLength, TrainOnlyLastTurn: d.TrainOnlyLastTurn},
		Shuffle:    d.Shuffle, Seed: d.Seed, MaxRowBytes: d.MaxLineBytes, Workers: d.Workers, CacheDir: d.CacheDir,
	}
	for _, name := range []string{"tokenizer.json", "tokenizer.json.gz", "tokenizer_config.json"} {
		if raw, err := os.ReadFile(filepath.Join(tokDir, name)); err == nil {
			opt.KeyParts = append(opt.KeyParts, raw)
		}
	}
	if d.ChatTemplate != "" {
		tmpl, err := chat.Lookup(d.ChatTemplate)
		if err != nil {
			return nil, fmt.Errorf("data.chat_template: %w", err)
		}
		opt.Template = &tmpl
		opt.Schema.KeepReasoning = d.KeepReasoning == "true" || d.KeepReasoning == "auto" && tmpl.Thinking
		src, bos, eos, ok, err := chat.TokenizerTemplate(tokDir)
		if err != nil {
			return nil, err
		}
		if ok {
			r, err := chat.NewJinjaRenderer(src, bos, eos)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", filepath.Join(tokDir, "tokenizer_config.json"), err)
			}
			r.Source = filepath.Join(tokDir, "tokenizer_config.json") // named in render errors
			opt.Renderer = r
		} else {
			opt.Renderer = chat.HeaderRenderer{Template: tmpl, BOS: bos}
		}
	}
	total := int64(0)
	var bar *progress.Reporter
	opt.Progress = func(done, n int) {
		if bar == nil {
			total = int64(n)
			bar = progress.For(log, total, "prepare")
		}
		bar.Set(int64(done), "")
	}
	p, err := dataset.Prepare(opt)
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return nil, err
	}
	return &Data{Prepared: p, Tokenizer: tok}, nil
}

// ChooseVocab picks the draft vocabulary from loss-token counts, keeping the tokenizer's special and byte
// tokens when asked (tok may be nil when there is no tokenizer at hand).
func ChooseVocab(counts []int64, tok *tokenizer.Tokenizer, dc config.DraftConfig) (*vocab.Mapping, error) {
	size := min(dc.VocabSize, len(counts))
	var always []int
	if tok != nil && dc.KeepSpecialTokens {
		for _, id := range tok.SpecialIDs() {
			if int(id) < len(counts) {
				always = append(always, int(id))
			}
		}
	}
	if tok != nil && dc.KeepByteTokens {
		for _, id := range tok.ByteTokenIDs() {
			always = append(always, int(id))
		}
	}
	return vocab.Build(counts, size, always)
}

// BuildVocab chooses the draft vocabulary from the training split and writes it into the cache folder,
// returning the file's path.
func BuildVocab(p *Data, targetVocab int, dc config.DraftConfig) (*vocab.Mapping, string, error) {
	f, err := dataset.OpenTokenized(p.TrainPath())
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	counts, err := f.CountLossTokens(targetVocab)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", p.TrainPath(), err)
	}
	m, err := ChooseVocab(counts.Counts, p.Tokenizer, dc)
	if err != nil {
		return nil, "", err
	}
	path := filepath.Join(p.Dir, fmt.Sprintf("vocab_%d_s%v_b%v.safetensors", len(m.Used), dc.KeepSpecialTokens, dc.KeepByteTokens))
	lock, err := lockCache(filepath.Dir(p.Dir), nil)
	if err != nil {
		return nil, "", err
	}
	defer lock.Release()
	return m, path, m.Write(path)
}

// PrepareVocab builds the draft vocabulary of prepared data over the target's vocabulary (of target.path's
// config.json; the tokenizer's when the folder holds only a tokenizer) and writes it into the cache folder,
// returning the mapping, the target vocabulary's size and the file's path.
func PrepareVocab(cfg *config.Run, p *Data) (m *vocab.Mapping, targetVocab int, path string, err error) {
	targetVocab = p.Tokenizer.VocabSize()
	if cfg.Target.Path != "" {
		// A config that is there but broken is an error.
		mc, err := model.LoadConfig(cfg.Target.Path)
		switch {
		case err == nil:
			targetVocab = mc.VocabSize
		case !errors.Is(err, fs.ErrNotExist):
			return nil, 0, "", err
		}
	}
	m, path, err = BuildVocab(p, targetVocab, cfg.Draft)
	return m, targetVocab, path, err
}

// Regenerate lets the target write the training data when data.regenerate.from is set (or the server of
// data.regenerate.server: see RegenerateFromServer): the result is cached by its inputs and its file is
// added to cfg.Data.Train. Cancelling ctx stops it with an error wrapping ctx.Err().
func Regenerate(ctx context.Context, cfg *config.Run, target *model.Model, log io.Writer) error {
	rc := cfg.Data.Regenerate
	if rc.Server != "" {
		return RegenerateFromServer(ctx, cfg, log)
	}
	if rc.From == "" {
		return nil
	}
	tok, err := tokenizer.LoadIfPresent(cfg.Target.Path)
	if err != nil {
		return err
	}
	if tok == nil {
		return fmt.Errorf("data.regenerate needs the target's tokenizer.json in %s", cfg.Target.Path)
	}
	opt := regen.Options{OpeningTokens: rc.OpeningTokens, MaxNewTokens: rc.MaxNewTokens, Batch: max(rc.Batch, 1), Limit: rc.Limit,
		Sampling: generate.SamplingParams{Temperature: rc.Temperature, Seed: rc.Seed}}
	key, err := regen.Key(target, rc.From, opt)
	if err != nil {
		return err
	}
	path := filepath.Join(cfg.Data.CacheDir, "regenerated_"+key+".jsonl")
	if _, err := os.Stat(path); err != nil {
		prompts, err := regen.Openings(rc.From, tok, opt)
		if err != nil {
			return err
		}
		lock, err := lockCache(cfg.Data.CacheDir, log)
		if err != nil {
			return err
		}
		defer lock.Release()
		bar := progress.For(log, int64(len(prompts)), "regenerate")
		opt.Progress = func(done, total int) { bar.Set(int64(done), "") }
		err = regen.Write(ctx, path, target, tok, prompts, opt)
		bar.Finish()
		if err != nil {
			return err
		}
		fmt.Fprintf(log, "regenerated %d continuations with the target into %s\n", len(prompts), path)
	}
	cfg.Data.Train = append(cfg.Data.Train, path)
	return nil
}

// lockCache holds the data cache folder for as long as the caller writes into it, waiting for another
// process that does, and removes the temporary files a killed writer left there and in its dataset
// folders: with the cache held, no live writer has any.
func lockCache(dir string, log io.Writer) (*runlock.Lock, error) {
	l, err := runlock.Wait(dir, log)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		l.Release()
		return nil, err
	}
	for _, sub := range append([]os.DirEntry{nil}, entries...) {
		path := dir
		if sub != nil {
			if !sub.IsDir() || atomicfile.IsTemp(sub.Name()) {
				continue
			}
			path = filepath.Join(dir, sub.Name())
		}
		if _, err := atomicfile.RemoveStale(path); err != nil {
			l.Release()
			return nil, err
		}
	}
	return l, nil
}
