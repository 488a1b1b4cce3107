package hidden

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/tensor"
)

// FormatVersion names the shard format in manifests.
const FormatVersion = "specforge-hidden-v1"

// AuxConvention says how the manifest's aux layer ids count: SGLang's "output of layer i", 0-based.
const AuxConvention = "sglang: residual stream after 0-based decoder layer i"

// Manifest describes a folder of shards: what made them and what they hold. It is rewritten (atomically)
// after every completed shard, so a killed generation knows where to resume.
type Manifest struct {
	Format        string       `json:"format"`
	Target        TargetInfo   `json:"target"`
	AuxLayers     []int        `json:"aux_layers"`
	AuxConvention string       `json:"aux_layer_convention"`
	Dataset       string       `json:"dataset"` // the tokenized dataset file
	DatasetKey    string       `json:"dataset_key"`
	DType         tensor.DType `json:"-"` // stored as "dtype" in its short name (MarshalJSON)
	Compression   string       `json:"compression"`
	// Layers repeated among the aux layers are stored once.
	SamplesPerShard int         `json:"samples_per_shard"`
	Samples         int         `json:"samples"` // samples in the dataset
	Shards          []ShardInfo `json:"shards"`
	Complete        bool        `json:"complete"`
	Tokens          int64       `json:"tokens"`
	Bytes           int64       `json:"bytes"`
	// BytesPerToken is the storage cost; Reference is SpecForge's 8*H (bf16 aux + final hidden).
	BytesPerToken          float64 `json:"bytes_per_token"`
	ReferenceBytesPerToken int     `json:"reference_bytes_per_token"`
}

// TargetInfo identifies the target that produced the states.
type TargetInfo struct {
	Path         string `json:"path"`
	Architecture string `json:"architecture"`
	HiddenSize   int    `json:"hidden_size"`
	NumLayers    int    `json:"num_layers"`
	VocabSize    int    `json:"vocab_size"`
}

// MarshalJSON writes the manifest with the dtype in its short name ("bf16").
func (m Manifest) MarshalJSON() ([]byte, error) {
	type fields Manifest // without the methods, so that Marshal does not recurse
	return json.Marshal(struct {
		fields
		DType string `json:"dtype"`
	}{fields(m), m.DType.ShortName()})
}

// UnmarshalJSON reads what MarshalJSON writes; a dtype other than bf16, f16 or f32 is an error.
func (m *Manifest) UnmarshalJSON(b []byte) error {
	type fields Manifest
	var v struct {
		fields
		DType string `json:"dtype"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	d, err := tensor.ParseShortName(v.DType)
	if err != nil {
		return err
	}
	*m = Manifest(v.fields)
	m.DType = d
	return nil
}

// ReadManifest loads dir/manifest.json.
func ReadManifest(dir string) (*Manifest, error) { return readManifest(dir, ManifestFile) }

// ManifestFile is the manifest of a shard folder, the one training reads.
const ManifestFile = "manifest.json"

// PartManifestFile is the manifest of part i of n of a generation split across ranks or jobs (Merge joins
// the parts' into ManifestFile).
func PartManifestFile(i, n int) string { return fmt.Sprintf("manifest.part-%d-of-%d.json", i, n) }

func readManifest(dir, name string) (*Manifest, error) {
	path := filepath.Join(dir, name)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read hidden-state manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if m.Format != FormatVersion {
		return nil, fmt.Errorf("%s: format %q, want %q", path, m.Format, FormatVersion)
	}
	return &m, nil
}

func (m *Manifest) write(dir, name string) error {
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
	return atomicfile.WriteBytes(filepath.Join(dir, name), append(raw, '\n'))
}

// GenOptions configure a generation.
type GenOptions struct {
	Target          *model.Model
	TargetPath      string
	AuxLayers       []int
	Data            *dataset.File
	DataPath        string
	DataKey         string
	Out             string
	DType           tensor.DType // BF16, F16 or F32
	SamplesPerShard int
	Batch           int // samples per target forward
	// Stop, if set, is polled between shards; true ends the run early (it resumes later).
	Stop func() bool
	// Progress, if set, is called after each shard with the samples done and the total (of this part).
	Progress func(done, total int)
	// Parts > 1 splits the generation: this run writes the shards k with k%Parts == Part, and its own
	// manifest (PartManifestFile), which Merge joins with the other parts' into the folder's manifest.
	Part, Parts int
}

// Generate runs the target over the dataset and writes the shards that are not already there. A complete
// shard is never rewritten; a killed run resumes at the first missing shard and produces the same shards as
// an uninterrupted one (shard boundaries and batches depend only on the options, not on the parts). With
// Parts > 1 the manifest returned is this part's.
func Generate(o GenOptions) (*Manifest, error) {
	manifest, part, parts := ManifestFile, 0, 1
	if o.Parts > 1 {
		if o.Part < 0 || o.Part >= o.Parts {
			return nil, fmt.Errorf("part %d of %d: want 0 <= part < parts", o.Part, o.Parts)
		}
		manifest, part, parts = PartManifestFile(o.Part, o.Parts), o.Part, o.Parts
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", o.Out, err)
	}
	cfg := o.Target.Config
	m := &Manifest{
		Format: FormatVersion, AuxLayers: o.AuxLayers, AuxConvention: AuxConvention, Dataset: o.DataPath, DatasetKey: o.DataKey,
		DType: o.DType, Compression: "zstd over byte planes; repeated aux layers stored once", SamplesPerShard: o.SamplesPerShard, Samples: o.Data.Len(),
		Target:                 TargetInfo{Path: o.TargetPath, Architecture: cfg.Architecture, HiddenSize: cfg.HiddenSize, NumLayers: cfg.NumLayers, VocabSize: cfg.VocabSize},
		ReferenceBytesPerToken: 8 * cfg.HiddenSize,
	}
	if prev, err := readManifest(o.Out, manifest); err == nil {
		if err := prev.compatible(m); err != nil {
			return nil, fmt.Errorf("%s holds shards made differently (%v): use another folder", o.Out, err)
		}
		m.Shards = prev.Shards
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	nShards := (o.Data.Len() + o.SamplesPerShard - 1) / o.SamplesPerShard
	done := map[string]bool{}
	for _, sh := range m.Shards {
		done[sh.File] = true
	}
	total, finished := PartSamples(o.Data.Len(), o.SamplesPerShard, part, parts), 0
	for _, sh := range m.Shards {
		finished += sh.Samples
	}
	for si := part; si < nShards; si += parts {
		name := shardName(si)
		if done[name] {
			continue
		}
		if o.Stop != nil && o.Stop() {
			return m, m.write(o.Out, manifest)
		}
		first := si * o.SamplesPerShard
		last := min(first+o.SamplesPerShard, o.Data.Len())
		samples, err := o.run(first, last)
		if err != nil {
			return nil, err
		}
		info, err := WriteShard(filepath.Join(o.Out, name), samples, o.DType, o.AuxLayers, cfg.HiddenSize)
		if err != nil {
			return nil, err
		}
		info.File, info.FirstSample = name, first
		m.Shards = append(m.Shards, info)
		if err := m.write(o.Out, manifest); err != nil {
			return nil, err
		}
		if finished += last - first; o.Progress != nil {
			o.Progress(finished, total)
		}
	}
	m.Complete = true
	return m, m.write(o.Out, manifest)
}

// PartSamples is the number of the n samples in shards of perShard that part part of parts generates.
func PartSamples(n, perShard, part, parts int) int {
	total := 0
	for first := part * perShard; first < n; first += parts * perShard {
		total += min(perShard, n-first)
	}
	return total
}

func shardName(k int) string { return fmt.Sprintf("shard_%05d.sfh", k) }

// Merge joins the manifests of the parts parts of a split generation in dir into its manifest, once every
// part is complete; before that it returns nil and no error. Every part may call it when done: the last to
// finish writes the manifest (the same bytes whoever writes them), and removes what killed writers left.
func Merge(dir string, parts int) (*Manifest, error) {
	var m *Manifest
	for i := range parts {
		p, err := readManifest(dir, PartManifestFile(i, parts))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if !p.Complete {
			return nil, nil
		}
		if m == nil {
			m = p
			continue
		}
		if err := p.compatible(m); err != nil {
			return nil, fmt.Errorf("%s: part %d of %d was made differently from part 0 (%v)", dir, i, parts, err)
		}
		m.Shards = append(m.Shards, p.Shards...)
	}
	slices.SortFunc(m.Shards, func(a, b ShardInfo) int { return a.FirstSample - b.FirstSample })
	next := 0
	for _, sh := range m.Shards {
		if sh.FirstSample != next {
			return nil, fmt.Errorf("%s: the parts' shards do not cover the dataset: %s starts at sample %d, want %d", dir, sh.File, sh.FirstSample, next)
		}
		next += sh.Samples
	}
	if next != m.Samples {
		return nil, fmt.Errorf("%s: the parts' shards hold %d samples of %d", dir, next, m.Samples)
	}
	if _, err := atomicfile.RemoveStale(dir); err != nil {
		return nil, err
	}
	return m, m.write(dir, ManifestFile)
}

func (m *Manifest) compatible(want *Manifest) error {
	switch {
	case m.DatasetKey != want.DatasetKey:
		return fmt.Errorf("dataset %s, not %s", m.DatasetKey, want.DatasetKey)
	case m.DType != want.DType:
		return fmt.Errorf("dtype %s, not %s", m.DType.ShortName(), want.DType.ShortName())
	case m.SamplesPerShard != want.SamplesPerShard:
		return fmt.Errorf("%d samples per shard, not %d", m.SamplesPerShard, want.SamplesPerShard)
	case !slices.Equal(m.AuxLayers, want.AuxLayers):
		return fmt.Errorf("aux layers %v, not %v", m.AuxLayers, want.AuxLayers)
	case m.Target.HiddenSize != want.Target.HiddenSize || m.Target.VocabSize != want.Target.VocabSize || m.Target.Architecture != want.Target.Architecture:
		return fmt.Errorf("another target (%s)", m.Target.Path)
	}
	return nil
}

// run computes the samples [first, last) in batches of o.Batch.
func (o *GenOptions) run(first, last int) ([]Sample, error) {
	var out []Sample
	var reuse *model.Output
	for lo := first; lo < last; lo += o.Batch {
		samples, res, err := Capture(o.Target, o.Data, o.AuxLayers, lo, min(lo+o.Batch, last), reuse)
		if err != nil {
			return nil, err
		}
		reuse = res
		out = append(out, samples...)
	}
	return out, nil
}

// BatchOf is the batch [lo, hi) gen-hidden computes sample i of n in, with samplesPerShard samples per shard
// and batch samples per forward. The target's results depend on the batch a sample is padded in (its length,
// its neighbours' rows), so whoever wants gen-hidden's states bit for bit computes in these batches.
func BatchOf(i, n, samplesPerShard, batch int) (lo, hi int) {
	shard := i / samplesPerShard * samplesPerShard
	lo = shard + (i-shard)/batch*batch
	return lo, min(lo+batch, shard+samplesPerShard, n)
}

// Capture runs the target once over samples [lo, hi) of data, padded into one batch, and returns each
// sample's tokens, aux states and final hidden state; reuse is an earlier forward's output whose buffers it
// may overwrite (returned for the next call).
func Capture(target *model.Model, data *dataset.File, aux []int, lo, hi int, reuse *model.Output) ([]Sample, *model.Output, error) {
	H := target.Config.HiddenSize
	idx := make([]int, hi-lo)
	for i := range idx {
		idx[i] = lo + i
	}
	p := data.Pad(idx)
	res, err := target.Forward(*p, nil, model.Request{AuxLayers: aux, Reuse: reuse})
	if err != nil {
		return nil, nil, err
	}
	A, T := len(aux)*H, p.T
	out := make([]Sample, 0, len(idx))
	for i, n := range p.Lens {
		out = append(out, Sample{IDs: p.IDs[i*T : i*T+n], LossMask: p.LossMask[i*T : i*T+n],
			Aux: append([]float32(nil), res.Aux[i*T*A:(i*T+n)*A]...), Hidden: append([]float32(nil), res.Hidden[i*T*H:(i*T+n)*H]...)})
	}
	return out, res, nil
}
