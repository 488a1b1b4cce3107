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
	"github.com/specforge/specforge/internal/spec"
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
			fmt.Fprintf(cmd.OutOrStdout(), "draft: %s\nsimulated acceptance length (eval, drafted tokens accepted per target step, bonus token not counted): %.3f\n", res.DraftDir, res.SimAccLen)
			if res.AcceptanceLength > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "measured acceptance length (chain of %d, held-out prompts, tokens per target verification): %.3f\n", cfg.Train.EvalAcceptanceSteps, res.AcceptanceLength)
			}
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
	DraftDir         string
	SimAccLen        float64
	AcceptanceLength float64
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
	d, err := in.newDraft(cfg)
	if err != nil {
		return nil, err
	}
	dc := d.Config
	trainSrc, evalSrc := in.sources(d)
	tr := train.NewTrainer(cfg.Train, d, trainSrc, evalSrc, logw)
	tr.AcceptanceLength = in.acceptance
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
	if err := export.Write(dir, d, export.SGLang, export.Options{}); err != nil {
		return nil, err
	}
	res := &trainResult{DraftDir: dir, SimAccLen: tr.LastSimAccLen()}
	for i := len(tr.History) - 1; i >= 0; i-- {
		if tr.History[i].Split == "eval" {
			res.AcceptanceLength = tr.History[i].AcceptanceLength
			break
		}
	}
	return res, nil
}

// newDraft is the draft training starts from: the imported head of draft.checkpoint, or random weights.
func (in *trainInputs) newDraft(cfg *config.Run) (*draft.Draft, error) {
	dc := in.draft
	if in.warm != nil {
		d, err := in.warm.ForTarget(in.head)
		if err != nil {
			return nil, err
		}
		d.Config = dc
		return d, nil
	}
	w := draft.NewWeights(&dc)
	w.Init(&dc, cfg.Train.Seed, cfg.Draft.InitStd)
	embed := in.head.Embed
	if dc.HiddenSize != dc.TargetHiddenSize {
		// A draft of another width cannot share the target's embedding: it gets its own, frozen as well.
		embed = draft.RandomEmbedding(dc.VocabSize, dc.HiddenSize, cfg.Train.Seed+1, cfg.Draft.InitStd)
	}
	return draft.New(dc, embed, in.vocab, w)
}

// trainInputs is what a run trains from, online or offline.
type trainInputs struct {
	head    *model.Head
	draft   draft.Config
	vocab   *vocab.Mapping
	sources func(d *draft.Draft) (train.BatchSource, train.BatchSource)
	// acceptance measures the real acceptance length (online only: it needs the whole target).
	acceptance func(d *draft.Draft) (float64, error)
	// warm is the head of draft.checkpoint, nil when training starts from random weights.
	warm *export.Imported
}

// warmVocab is the imported head's vocabulary mapping, nil without one.
func warmVocab(im *export.Imported) *vocab.Mapping {
	if im == nil {
		return nil
	}
	return im.Vocab
}

func onlineInputs(cfg *config.Run, out, logw io.Writer) (*trainInputs, error) {
	target, err := model.Load(cfg.Target.Path)
	if err != nil {
		return nil, err
	}
	dc, warm, err := draftConfig(cfg, &target.Head)
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
	m := warmVocab(warm)
	if m == nil {
		if m, _, err = buildVocab(p, target.Config.VocabSize, cfg.Draft); err != nil {
			return nil, err
		}
	}
	held := evalData
	if held == nil {
		held = trainData
	}
	return &trainInputs{head: &target.Head, draft: dc, vocab: m, warm: warm, acceptance: acceptanceProbe(target, held, cfg.Train), sources: func(d *draft.Draft) (train.BatchSource, train.BatchSource) {
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
	dc, warm, err := draftConfig(cfg, head)
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
	if (len(cfg.Draft.AuxLayers) > 0 || warm != nil) && !slices.Equal(dc.AuxLayers, man.AuxLayers) {
		return nil, fmt.Errorf("the draft reads aux layers %v but the shards hold %v (%s)", dc.AuxLayers, man.AuxLayers, man.AuxConvention)
	}
	dc.AuxLayers = man.AuxLayers
	var evalStore *hidden.Store
	if _, err := os.Stat(filepath.Join(cfg.Data.HiddenStates, "eval", "manifest.json")); err == nil {
		if evalStore, err = hidden.Open(filepath.Join(cfg.Data.HiddenStates, "eval")); err != nil {
			return nil, fmt.Errorf("data.hidden_states: %w", err)
		}
	}
	m := warmVocab(warm)
	if m == nil {
		counter := vocab.NewCounter(head.Config.VocabSize)
		if err := trainStore.CountLossTokens(counter); err != nil {
			return nil, err
		}
		tok, _ := loadTokenizer(cfg.Target.Path)
		if m, err = chooseVocab(counter.Counts, tok, cfg.Draft); err != nil {
			return nil, err
		}
	}
	return &trainInputs{head: head, draft: dc, vocab: m, warm: warm, sources: func(d *draft.Draft) (train.BatchSource, train.BatchSource) {
		tr := &train.Offline{Store: trainStore, Head: head, Used: m.Used}
		if evalStore == nil {
			return tr, nil
		}
		return tr, &train.Offline{Store: evalStore, Head: head, Used: m.Used}
	}}, nil
}

// acceptanceProbe decodes the first tokens of the first eval samples speculatively and reports the acceptance
// length; nil when switched off.
func acceptanceProbe(target *model.Model, data *dataset.File, tc config.TrainConfig) func(*draft.Draft) (float64, error) {
	if tc.EvalAcceptancePrompts <= 0 || tc.EvalAcceptanceSteps <= 0 || tc.EvalAcceptanceTokens <= 0 {
		return nil
	}
	var prompts [][]int32
	for i := 0; i < data.Len() && len(prompts) < tc.EvalAcceptancePrompts; i++ {
		ids, _ := data.Sample(i)
		prompts = append(prompts, ids[:min(len(ids), 16)])
	}
	return func(d *draft.Draft) (float64, error) {
		dec := &spec.Decoder{Target: target, Draft: d}
		total := &spec.Stats{}
		for _, p := range prompts {
			_, st, err := dec.Generate(p, spec.Options{Steps: tc.EvalAcceptanceSteps, MaxNewTokens: tc.EvalAcceptanceTokens, StopIDs: target.Config.EOSTokenIDs})
			if err != nil {
				return 0, err
			}
			total.Add(st)
		}
		return total.AcceptanceLength(), nil
	}
}

// draftConfig derives the draft's shape from the target and applies the configured overrides; with
// draft.checkpoint, the shape is the imported head's, checked against the target and the overrides, and the
// head is returned for its weights and vocabulary.
func draftConfig(cfg *config.Run, target *model.Head) (draft.Config, *export.Imported, error) {
	o := cfg.Draft
	aux, err := o.OutputAuxLayers()
	if err != nil {
		return draft.Config{}, nil, err
	}
	if o.Checkpoint != "" {
		return warmStartConfig(cfg, target, aux)
	}
	rawRope, err := rawRopeScaling(cfg.Target.Path)
	if err != nil {
		return draft.Config{}, nil, err
	}
	// The default draft vocabulary (32000) is capped at the target's; an explicit larger one is an error.
	if o.VocabSize > target.Config.VocabSize && o.VocabSize != config.Defaults().Draft.VocabSize {
		return draft.Config{}, nil, fmt.Errorf("draft.vocab_size %d is larger than the target's vocabulary (%d)", o.VocabSize, target.Config.VocabSize)
	}
	dc := draft.FromTarget(target.Config, rawRope, o.VocabSize)
	dc.TargetPath = cfg.Target.Path
	for _, ov := range shapeOverrides(o, &dc) {
		if ov.v > 0 {
			*ov.dst = ov.v
		}
	}
	if o.HiddenSize > 0 && o.HeadDim == 0 && o.NumHeads > 0 {
		dc.HeadDim = dc.HiddenSize / dc.NumHeads
	}
	if len(aux) > 0 {
		dc.AuxLayers = aux
	}
	return dc, nil, dc.Validate(target.Config)
}

type shapeOverride struct {
	key string
	v   int
	dst *int
}

// shapeOverrides pairs the draft.* shape settings with the fields of dc they set.
func shapeOverrides(o config.DraftConfig, dc *draft.Config) []shapeOverride {
	return []shapeOverride{{"hidden_size", o.HiddenSize, &dc.HiddenSize}, {"intermediate_size", o.IntermediateSize, &dc.IntermediateSize},
		{"num_attention_heads", o.NumHeads, &dc.NumHeads}, {"num_key_value_heads", o.NumKVHeads, &dc.NumKVHeads}, {"head_dim", o.HeadDim, &dc.HeadDim}}
}

// warmStartConfig imports draft.checkpoint and checks it against the target and the draft.* settings.
func warmStartConfig(cfg *config.Run, target *model.Head, aux []int) (draft.Config, *export.Imported, error) {
	im, err := export.Read(cfg.Draft.Checkpoint)
	if err != nil {
		return draft.Config{}, nil, fmt.Errorf("draft.checkpoint: %w", err)
	}
	dc := im.Config
	if err := dc.FitTarget(target.Config); err != nil {
		return dc, nil, fmt.Errorf("draft.checkpoint %s does not fit the target: %w", im.Dir, err)
	}
	for _, ov := range shapeOverrides(cfg.Draft, &dc) {
		if ov.v > 0 && ov.v != *ov.dst {
			return dc, nil, fmt.Errorf("draft.%s is %d but draft.checkpoint %s has %d: leave it unset to train the imported head", ov.key, ov.v, im.Dir, *ov.dst)
		}
	}
	if len(aux) > 0 && !slices.Equal(aux, dc.AuxLayers) {
		return dc, nil, fmt.Errorf("draft.aux_layers %v (output of layer i) differ from draft.checkpoint's %v, read from %s", aux, dc.AuxLayers, im.AuxSource)
	}
	dc.TargetPath = cfg.Target.Path
	return dc, im, nil
}

func resume(tr *train.Trainer, tc config.TrainConfig) error {
	switch tc.Resume {
	case "never", "":
		return nil
	case "auto":
		latest, err := train.LatestCheckpoint(tc.OutputDir)
		if err != nil || latest == "" {
			return err
		}
		return tr.Resume(latest)
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
