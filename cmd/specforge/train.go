package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/export"
	"github.com/specforge/specforge/internal/generate"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/progress"
	"github.com/specforge/specforge/internal/regen"
	"github.com/specforge/specforge/internal/train"
	"github.com/specforge/specforge/internal/vocab"
)

func trainCommand() *cobra.Command {
	var cf configFlags
	cmd := &cobra.Command{
		Use:   "train --config run.yaml [--set key=value ...]",
		Short: "Train an EAGLE-3 draft for a target model (online: the target runs on every batch)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := cf.load(cmd, map[string]string{"target": "target.path", "data": "data.train", "output": "train.output_dir"})
			if err != nil {
				return err
			}
			res, err := runTraining(cfg, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "draft: %s\nsimulated acceptance length (eval, tokens per target step without the bonus token): %.3f\n", res.DraftDir, res.SimAccLen)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().String("target", "", "target model folder (target.path)")
	cmd.Flags().String("data", "", "training data file (data.train)")
	cmd.Flags().String("output", "", "run folder for checkpoints, metrics and the draft (train.output_dir)")
	return cmd
}

// trainResult is what a finished run produced.
type trainResult struct {
	DraftDir  string
	SimAccLen float64
	Trainer   *train.Trainer
}

// runTraining checks the configuration, loads the target (or, offline, its embedding and lm_head), prepares
// the data and the draft, and trains. Every check that can fail runs before the first training step.
func runTraining(cfg *config.Run, out, logw io.Writer) (*trainResult, error) {
	if cfg.Target.Path == "" {
		return nil, fmt.Errorf("no target: set target.path to a Hugging Face model folder")
	}
	if r := cfg.Train.Resume; r != "auto" && r != "never" && r != "" {
		if _, err := os.Stat(filepath.Join(r, "state.json")); err != nil {
			return nil, fmt.Errorf("train.resume: %s is not a checkpoint folder (no state.json)", r)
		}
	}
	var in *trainInputs
	var err error
	if cfg.Data.HiddenStates != "" {
		in, err = offlineInputs(cfg)
	} else {
		in, err = onlineInputs(cfg, out, logw)
	}
	if err != nil {
		return nil, err
	}
	dc := in.draft
	w := draft.NewWeights(&dc)
	w.Init(&dc, cfg.Train.Seed, cfg.Draft.InitStd)
	embed := in.head.Embed
	if dc.HiddenSize != dc.TargetHiddenSize {
		// A draft of another width cannot share the target's embedding: it gets its own, frozen as well.
		embed = draft.RandomEmbedding(dc.VocabSize, dc.HiddenSize, cfg.Train.Seed+1, cfg.Draft.InitStd)
	}
	d, err := draft.New(dc, embed, in.vocab, w)
	if err != nil {
		return nil, err
	}
	trainSrc, evalSrc := in.sources(d)
	tr := train.NewTrainer(cfg.Train, d, trainSrc, evalSrc, logw)
	if err := resume(tr, cfg.Train); err != nil {
		return nil, err
	}
	mode := "online"
	if cfg.Data.HiddenStates != "" {
		mode = "offline"
	}
	fmt.Fprintf(out, "training a draft (hidden %d, %d/%d heads, intermediate %d, draft vocabulary %d) for %d steps, %s, aux layers %v\n",
		dc.HiddenSize, dc.NumHeads, dc.NumKVHeads, dc.IntermediateSize, dc.DraftVocabSize, tr.TotalSteps, mode, dc.AuxLayers)
	if err := tr.Run(); err != nil {
		return nil, err
	}
	if err := train.WritePlot(filepath.Join(cfg.Train.OutputDir, "metrics.png"), tr.History); err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	dir := filepath.Join(cfg.Train.OutputDir, "draft")
	if err := export.WriteSGLang(dir, d); err != nil {
		return nil, err
	}
	return &trainResult{DraftDir: dir, SimAccLen: tr.LastSimAccLen(), Trainer: tr}, nil
}

// trainInputs is what a run trains from, online or offline.
type trainInputs struct {
	head    *model.Head
	draft   draft.Config
	vocab   *vocab.Mapping
	sources func(d *draft.Draft) (train.BatchSource, train.BatchSource)
}

func onlineInputs(cfg *config.Run, out, logw io.Writer) (*trainInputs, error) {
	target, err := model.Load(cfg.Target.Path)
	if err != nil {
		return nil, err
	}
	dc, err := draftConfig(cfg, target.Config)
	if err != nil {
		return nil, err
	}
	if err := regenerateData(cfg, target, logw); err != nil {
		return nil, err
	}
	p, err := prepareData(cfg, logw)
	if err != nil {
		return nil, err
	}
	printStats(out, "train", p.Train)
	trainData, err := dataset.OpenTokenized(p.TrainPath())
	if err != nil {
		return nil, err
	}
	var evalData *dataset.File
	if p.Eval.Samples > 0 {
		if evalData, err = dataset.OpenTokenized(p.EvalPath()); err != nil {
			return nil, err
		}
	}
	m, _, err := buildVocab(p, target.Config.VocabSize, cfg.Draft)
	if err != nil {
		return nil, err
	}
	return &trainInputs{head: &target.Head, draft: dc, vocab: m, sources: func(d *draft.Draft) (train.BatchSource, train.BatchSource) {
		tr := &train.Online{Target: target, Data: trainData, AuxLayers: dc.AuxLayers, Used: m.Used}
		if evalData == nil {
			return tr, nil
		}
		return tr, &train.Online{Target: target, Data: evalData, AuxLayers: dc.AuxLayers, Used: m.Used}
	}}, nil
}

// offlineInputs trains from the shards of data.hidden_states: only the target's embedding and lm_head are
// loaded.
func offlineInputs(cfg *config.Run) (*trainInputs, error) {
	head, _, err := model.LoadHead(cfg.Target.Path)
	if err != nil {
		return nil, err
	}
	dc, err := draftConfig(cfg, head.Config)
	if err != nil {
		return nil, err
	}
	trainStore, err := hidden.Open(filepath.Join(cfg.Data.HiddenStates, "train"))
	if err != nil {
		return nil, fmt.Errorf("data.hidden_states: %w", err)
	}
	man := trainStore.Manifest
	if man.Target.HiddenSize != head.Config.HiddenSize || man.Target.VocabSize != head.Config.VocabSize {
		return nil, fmt.Errorf("data.hidden_states: the shards come from %s (hidden %d, vocabulary %d), not from target.path (hidden %d, vocabulary %d)",
			man.Target.Path, man.Target.HiddenSize, man.Target.VocabSize, head.Config.HiddenSize, head.Config.VocabSize)
	}
	if len(cfg.Draft.AuxLayers) > 0 && !slices.Equal(cfg.Draft.AuxLayers, man.AuxLayers) {
		return nil, fmt.Errorf("draft.aux_layers %v differ from the layers stored in the shards %v (%s)", cfg.Draft.AuxLayers, man.AuxLayers, man.AuxConvention)
	}
	dc.AuxLayers = man.AuxLayers
	var evalStore *hidden.Store
	if _, err := os.Stat(filepath.Join(cfg.Data.HiddenStates, "eval", "manifest.json")); err == nil {
		if evalStore, err = hidden.Open(filepath.Join(cfg.Data.HiddenStates, "eval")); err != nil {
			return nil, fmt.Errorf("data.hidden_states: %w", err)
		}
	}
	counter := vocab.NewCounter(head.Config.VocabSize)
	if err := trainStore.CountLossTokens(counter); err != nil {
		return nil, err
	}
	tok, _ := loadTokenizer(cfg.Target.Path)
	m, err := chooseVocab(counter.Counts, tok, cfg.Draft)
	if err != nil {
		return nil, err
	}
	return &trainInputs{head: head, draft: dc, vocab: m, sources: func(d *draft.Draft) (train.BatchSource, train.BatchSource) {
		tr := &train.Offline{Store: trainStore, Head: head, Used: m.Used}
		if evalStore == nil {
			return tr, nil
		}
		return tr, &train.Offline{Store: evalStore, Head: head, Used: m.Used}
	}}, nil
}

// draftConfig derives the draft's shape from the target and applies the configured overrides.
func draftConfig(cfg *config.Run, target *model.Config) (draft.Config, error) {
	rawRope, err := rawRopeScaling(cfg.Target.Path)
	if err != nil {
		return draft.Config{}, err
	}
	o := cfg.Draft
	// The default draft vocabulary (32000) is capped at the target's; an explicit larger one is an error.
	if o.VocabSize > target.VocabSize && o.VocabSize != config.Defaults().Draft.VocabSize {
		return draft.Config{}, fmt.Errorf("draft.vocab_size %d is larger than the target's vocabulary (%d)", o.VocabSize, target.VocabSize)
	}
	dc := draft.FromTarget(target, rawRope, o.VocabSize)
	for _, ov := range []struct {
		v   int
		dst *int
	}{{o.HiddenSize, &dc.HiddenSize}, {o.IntermediateSize, &dc.IntermediateSize}, {o.NumHeads, &dc.NumHeads}, {o.NumKVHeads, &dc.NumKVHeads}, {o.HeadDim, &dc.HeadDim}} {
		if ov.v > 0 {
			*ov.dst = ov.v
		}
	}
	if o.HiddenSize > 0 && o.HeadDim == 0 && o.NumHeads > 0 {
		dc.HeadDim = dc.HiddenSize / dc.NumHeads
	}
	if len(o.AuxLayers) > 0 {
		dc.AuxLayers = o.AuxLayers
	}
	if err := dc.Validate(target); err != nil {
		return dc, err
	}
	return dc, nil
}

func resume(tr *train.Trainer, tc config.TrainConfig) error {
	switch tc.Resume {
	case "never", "":
		return nil
	case "auto":
		all, err := train.Checkpoints(filepath.Join(tc.OutputDir, "checkpoints"))
		if err != nil {
			return err
		}
		if len(all) == 0 {
			return nil
		}
		return tr.Resume(all[len(all)-1])
	default:
		return tr.Resume(tc.Resume)
	}
}

// regenerateData lets the target write the training data when data.regenerate.from is set; the result is
// cached by its inputs and added to data.train.
func regenerateData(cfg *config.Run, target *model.Model, logw io.Writer) error {
	rc := cfg.Data.Regenerate
	if rc.From == "" {
		return nil
	}
	tok, err := loadTokenizer(cfg.Target.Path)
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
		if err := os.MkdirAll(cfg.Data.CacheDir, 0o755); err != nil {
			return err
		}
		bar := progress.New(int64(len(prompts)), "regenerate")
		opt.Progress = func(done, total int) { bar.Set(int64(done), "") }
		err = regen.Write(path, target, tok, prompts, opt)
		bar.Finish()
		if err != nil {
			return err
		}
		fmt.Fprintf(logw, "regenerated %d continuations with the target into %s\n", len(prompts), path)
	}
	cfg.Data.Train = append(cfg.Data.Train, path)
	return nil
}

// rawRopeScaling returns the rope_scaling object of a model's config.json as written.
func rawRopeScaling(dir string) (json.RawMessage, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read model config: %w", err)
	}
	var c struct {
		RopeScaling json.RawMessage `json:"rope_scaling"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%s: %v", filepath.Join(dir, "config.json"), err)
	}
	if string(c.RopeScaling) == "null" {
		return nil, nil
	}
	return c.RopeScaling, nil
}
