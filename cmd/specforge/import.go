package main

import (
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/interop"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/pipeline"
	"github.com/specforge/specforge/internal/progress"
	"github.com/specforge/specforge/internal/runlock"
	"github.com/specforge/specforge/internal/tensor"
)

func importHiddenCommand() *cobra.Command {
	var cf configFlags
	var from, in, out, dtype string
	var perShard int
	cmd := &cobra.Command{
		Use:   "import-hidden --from specforge|speculators --in DIR --out DIR [--config run.yaml]",
		Short: "Convert hidden states written by SpecForge or speculators into specforge shards for offline training",
		Long: `Reads SpecForge's offline layout (rows_*/data_{i}.ckpt[.gz], torch.save dicts read without running
code) or speculators' (hs_{i}.safetensors) and writes the shards that inspect verifies and
train reads with data.hidden_states: DIR. The files do not say which target layers they hold: the aux
layers are draft.aux_layers (draft.aux_layer_convention) or the target's default, as for training.
speculators' files hold no loss masks: they are recomputed from data.train by specforge's data
pipeline, and a sample whose token ids match no prepared sample is refused.`,
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
			if from != interop.SpecForge && from != interop.Speculators {
				return fmt.Errorf("--from %q: want %s or %s", from, interop.SpecForge, interop.Speculators)
			}
			o, err := importOptions(cfg, from, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			o.In, o.Out, o.DType, o.SamplesPerShard = in, out, d, perShard
			lock, err := runlock.Acquire(out)
			if err != nil {
				return err
			}
			defer lock.Release()
			var bar *progress.Reporter
			o.Progress = func(done, total int) {
				if bar == nil {
					bar = progress.For(cmd.ErrOrStderr(), int64(total), "import "+from)
				}
				bar.Set(int64(done), "")
			}
			ctx := cmd.Context()
			o.Stop = func() bool { return ctx.Err() != nil }
			m, err := interop.Import(o)
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return err
			}
			printManifest(cmd.OutOrStdout(), "train", m)
			if !m.Complete {
				return fmt.Errorf("interrupted after %d shards; run the same command again to resume", len(m.Shards))
			}
			return nil
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "layout of --in: specforge (rows_*/data_{i}.ckpt[.gz]) or speculators (hs_{i}.safetensors)")
	f.StringVar(&in, "in", "", "folder the other trainer wrote")
	f.StringVar(&out, "out", "", "output folder (its train/ shard set is what data.hidden_states reads)")
	f.String("target", "", "target model folder (target.path)")
	f.String("data", "", "the conversations the hidden states were made from (data.train; speculators only)")
	f.StringVar(&dtype, "dtype", "bf16", "storage type: bf16, f16 or f32")
	f.IntVar(&perShard, "samples-per-shard", 256, "samples per shard file")
	for _, name := range []string{"from", "in", "out"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

// importOptions resolves what an import needs from the configuration: the target's shape and aux layers and,
// for speculators, its final norm and the loss masks of the prepared data.
func importOptions(cfg *config.Run, from string, log io.Writer) (interop.Options, error) {
	if cfg.Target.Path == "" {
		return interop.Options{}, fmt.Errorf("no target: set target.path (--target): the shards record it and offline training reads its lm_head")
	}
	tc, err := model.LoadConfig(cfg.Target.Path)
	if err != nil {
		return interop.Options{}, err
	}
	aux, err := cfg.Draft.OutputAuxLayers()
	if err != nil {
		return interop.Options{}, err
	}
	if len(aux) == 0 {
		aux = tc.DefaultAuxLayers()
	}
	for _, l := range aux {
		if l < 0 || l >= tc.NumLayers {
			return interop.Options{}, fmt.Errorf("draft.aux_layers %v: layer %d outside the target's %d layers", aux, l, tc.NumLayers)
		}
	}
	fmt.Fprintf(log, "aux layers %v (output of 0-based layer i; vLLM and speculators count them as %v)\n", aux, vllmIDs(aux))
	o := interop.Options{Layout: from, AuxLayers: aux, Target: hidden.TargetInfo{Path: cfg.Target.Path,
		Architecture: tc.Architecture, HiddenSize: tc.HiddenSize, NumLayers: tc.NumLayers, VocabSize: tc.VocabSize}}
	if from != interop.Speculators {
		return o, nil
	}
	if o.Norm, err = interop.LoadFinalNorm(cfg.Target.Path); err != nil {
		return o, err
	}
	if len(cfg.Data.Train) == 0 {
		return o, fmt.Errorf("speculators' files hold no loss masks: set data.train (--data) to the conversations they were made from")
	}
	p, err := pipeline.PrepareData(cfg, log)
	if err != nil {
		return o, err
	}
	masks, err := newMaskIndex(p)
	if err != nil {
		return o, err
	}
	o.Masks, o.DataKey = masks.lookup, p.Key
	return o, nil
}

func vllmIDs(aux []int) []int {
	out := make([]int, len(aux))
	for i, l := range aux {
		out[i] = l + 1
	}
	return out
}

// maskIndex finds the loss mask of a sample of the prepared data by its token ids: speculators numbers its
// files in its own order, which need not be specforge's (shuffled, split).
type maskIndex struct {
	ids    [][]int32
	masks  [][]uint8
	byHash map[uint64][]int
	source string
}

func newMaskIndex(p *pipeline.Data) (*maskIndex, error) {
	x := &maskIndex{byHash: map[uint64][]int{}, source: p.Dir}
	paths := []string{p.TrainPath()}
	if _, err := os.Stat(p.EvalPath()); err == nil {
		paths = append(paths, p.EvalPath())
	}
	for _, path := range paths {
		f, err := dataset.OpenTokenized(path)
		if err != nil {
			return nil, err
		}
		for i := range f.Len() {
			ids, mask := f.Sample(i)
			h := hashIDs(ids)
			x.byHash[h] = append(x.byHash[h], len(x.ids))
			x.ids, x.masks = append(x.ids, ids), append(x.masks, mask)
		}
		f.Close()
	}
	return x, nil
}

func hashIDs(ids []int32) uint64 {
	h := fnv.New64a()
	for _, id := range ids {
		h.Write([]byte{byte(id), byte(id >> 8), byte(id >> 16), byte(id >> 24)})
	}
	return h.Sum64()
}

// lookup returns the mask of the prepared sample with exactly these ids; without one, the error names the
// closest sample (the longest common prefix) and where it differs.
func (x *maskIndex) lookup(file string, ids []int32) ([]bool, error) {
	for _, k := range x.byHash[hashIDs(ids)] {
		if slices.Equal(x.ids[k], ids) {
			out := make([]bool, len(ids))
			for i, m := range x.masks[k] {
				out[i] = m == 1
			}
			return out, nil
		}
	}
	best, at := -1, -1
	for k, s := range x.ids {
		n := 0
		for n < len(s) && n < len(ids) && s[n] == ids[n] {
			n++
		}
		if n > at {
			best, at = k, n
		}
	}
	msg := fmt.Sprintf("%s: its %d token ids match no sample of the prepared data (%d samples of data.train in %s), so its loss mask cannot be recomputed; speculators tokenized other conversations, or with another template or max_length", file, len(ids), len(x.ids), x.source)
	if best >= 0 {
		s := x.ids[best]
		switch {
		case at < len(s) && at < len(ids):
			msg += fmt.Sprintf("; the closest (sample %d) differs at token %d: id %d, the file has %d", best, at, s[at], ids[at])
		default:
			msg += fmt.Sprintf("; the closest (sample %d) has %d tokens, the file %d, equal over the first %d", best, len(s), len(ids), at)
		}
	}
	return nil, fmt.Errorf("%s", msg)
}
