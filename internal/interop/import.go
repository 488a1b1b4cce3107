package interop

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/tensor"
)

// Options configure an import.
type Options struct {
	Layout string // SpecForge or Speculators
	In     string // the other trainer's folder
	Out    string // the specforge shard folder (train/ goes below it)
	Target hidden.TargetInfo
	// AuxLayers are the layers the files hold, in specforge's convention (output of 0-based layer i).
	AuxLayers []int
	// Norm is the target's final norm (Speculators: the files hold the last layer's output before it).
	Norm FinalNorm
	// Masks gives the loss mask of a sample from its token ids (Speculators: the files hold none); file
	// names the sample in its errors.
	Masks func(file string, ids []int32) ([]bool, error)
	// DataKey identifies what the masks came from, so that a resumed import into the same folder is refused
	// when they changed.
	DataKey         string
	DType           tensor.DType
	SamplesPerShard int
	// Stop, if set, is polled between shards; true ends the import early (it resumes later).
	Stop func() bool
	// Progress, if set, is called after each shard with the samples done and the total.
	Progress func(done, total int)
}

// Import converts the samples of o.In into specforge shards in o.Out/train, which offline training
// (data.hidden_states: o.Out) and inspect read. Every shard is written atomically and the manifest after each;
// a killed import resumes at the first missing shard.
func Import(o Options) (*hidden.Manifest, error) {
	if o.SamplesPerShard <= 0 {
		return nil, fmt.Errorf("samples per shard must be positive, got %d", o.SamplesPerShard)
	}
	if o.Layout == Speculators && (o.Masks == nil || len(o.Norm.Weight) != o.Target.HiddenSize) {
		return nil, fmt.Errorf("a speculators import needs the loss masks from the data pipeline and the target's final norm")
	}
	inputs, err := List(o.Layout, o.In)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(o.Out, "train")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", out, err)
	}
	if _, err := atomicfile.RemoveStale(out); err != nil {
		return nil, err
	}
	m := &hidden.Manifest{
		Format: hidden.FormatVersion, AuxLayers: o.AuxLayers, AuxConvention: hidden.AuxConvention, Dataset: o.In,
		DatasetKey: importKey(o, inputs), DType: o.DType, Compression: "zstd over byte planes; repeated aux layers stored once",
		SamplesPerShard: o.SamplesPerShard, Samples: len(inputs), Target: o.Target, ReferenceBytesPerToken: 8 * o.Target.HiddenSize,
	}
	if prev, err := hidden.ReadManifest(out); err == nil {
		if prev.DatasetKey != m.DatasetKey || prev.DType != m.DType || prev.SamplesPerShard != m.SamplesPerShard ||
			!slices.Equal(prev.AuxLayers, m.AuxLayers) || prev.Target != m.Target {
			return nil, fmt.Errorf("%s holds shards made from other inputs or options (%s): use another folder", out, prev.Dataset)
		}
		m.Shards = prev.Shards
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	shape := Shape{HiddenSize: o.Target.HiddenSize, VocabSize: o.Target.VocabSize, AuxLayers: len(o.AuxLayers)}
	nShards := (len(inputs) + o.SamplesPerShard - 1) / o.SamplesPerShard
	for si := len(m.Shards); si < nShards; si++ {
		if o.Stop != nil && o.Stop() {
			return m, writeManifest(out, m)
		}
		first := si * o.SamplesPerShard
		last := min(first+o.SamplesPerShard, len(inputs))
		var samples []hidden.Sample
		for _, in := range inputs[first:last] {
			s, err := o.read(in.Path, shape)
			if err != nil {
				return nil, err
			}
			samples = append(samples, *s)
		}
		name := fmt.Sprintf("shard_%05d.sfh", si)
		info, err := hidden.WriteShard(filepath.Join(out, name), samples, o.DType, o.AuxLayers, o.Target.HiddenSize)
		if err != nil {
			return nil, err
		}
		info.File, info.FirstSample = name, first
		m.Shards = append(m.Shards, info)
		if err := writeManifest(out, m); err != nil {
			return nil, err
		}
		if o.Progress != nil {
			o.Progress(last, len(inputs))
		}
	}
	m.Complete = true
	return m, writeManifest(out, m)
}

// read reads one sample of the layout.
func (o *Options) read(file string, shape Shape) (*hidden.Sample, error) {
	if o.Layout == SpecForge {
		return ReadSpecForge(file, shape)
	}
	s, err := ReadSpeculators(file, shape, o.Norm)
	if err != nil {
		return nil, err
	}
	if s.LossMask, err = o.Masks(file, s.IDs); err != nil {
		return nil, err
	}
	if len(s.LossMask) != len(s.IDs) {
		return nil, fmt.Errorf("%s: a loss mask of %d tokens for %d token ids", file, len(s.LossMask), len(s.IDs))
	}
	return s, nil
}

// importKey identifies an import's inputs (the layout, each file's name and size, and what the masks came
// from), so that resuming into a folder made from other inputs is refused.
func importKey(o Options, inputs []Input) string {
	h := sha256.New()
	fmt.Fprintf(h, "import %s\n%s\n", o.Layout, o.DataKey)
	for _, in := range inputs {
		var size int64
		if st, err := os.Stat(in.Path); err == nil {
			size = st.Size()
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(in.Path), size)
	}
	return "import-" + o.Layout + ":" + hex.EncodeToString(h.Sum(nil))[:16]
}

// writeManifest writes the manifest as hidden.Generate does, with the totals filled in, atomically.
func writeManifest(dir string, m *hidden.Manifest) error {
	m.Tokens, m.Bytes = 0, 0
	for _, s := range m.Shards {
		m.Tokens += s.Tokens
		m.Bytes += s.Bytes
	}
	if m.Tokens > 0 {
		m.BytesPerToken = float64(m.Bytes) / float64(m.Tokens)
	}
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(filepath.Join(dir, "manifest.json"), append(raw, '\n'))
}
