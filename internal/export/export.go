// Package export writes trained drafts in the layouts serving engines load, validates what it wrote, and
// reads drafts back from any of them (for evaluation and as a warm start):
//
//   - sglang: the SGLang / official EAGLE-3 layout: config.json (LlamaForCausalLMEagle3, aux layer ids in
//     eagle_config, "output of layer i") and model.safetensors (midlayer.* weights, d2t, t2d, no embedding);
//   - vllm: the same weights, plus the top-level eagle_aux_hidden_state_layer_ids vLLM reads, in its own
//     convention ("input of layer i+1", so every id is one more);
//   - speculators: vLLM's Eagle3Speculator format (layers.0.* weights, transformer_layer_config,
//     speculators_config with the verifier, norm_before_residual false).
//
// A draft of more than one decoder layer names them layers.{i}.* in every layout (vLLM's and speculators'
// names; SGLang's layout is refused for it, see CheckServes); EAGLE-3.1's fc_norm weights are
// fc_norm.{0,1,2}.weight, and fc_norm and norm_output are config.json keys.
//
// See ../shared/docs/INTEROP.md.
package export

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/safetensors"
)

// Format names an export layout.
type Format string

// The layouts.
const (
	SGLang      Format = "sglang"
	VLLM        Format = "vllm"
	Speculators Format = "speculators"
)

// ParseFormat checks a layout name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case SGLang, VLLM, Speculators:
		return f, nil
	}
	return "", fmt.Errorf("export format %q is not supported (supported: sglang, vllm, speculators)", s)
}

// Options of an export.
type Options struct {
	// Verifier names the target for the speculators format (a hub name or a path; default: the target path
	// recorded in the draft).
	Verifier string
	// SpeculativeTokens is the speculators proposal length (default 3).
	SpeculativeTokens int
	// DType of the weights: BF16 (default), F16 or F32.
	DType safetensors.DType
	// Force replaces an output folder that holds something other than an earlier export (a model, other
	// files); without it Write refuses such a folder.
	Force bool
}

// weightName maps an export name to the layout's: the speculators format says layers.0 where the others
// say midlayer.
func weightName(f Format, name string) string {
	if f == Speculators {
		return strings.Replace(name, "midlayer.", "layers.0.", 1)
	}
	return name
}

// Tensors returns the draft's tensors under the layout's names: weights in dtype, d2t int64, t2d bool, and
// the embedding only when the draft's width differs from the target's (engines share the target's
// otherwise, and a stale copy in the file would be used by vLLM).
func Tensors(d *draft.Draft, f Format, dtype safetensors.DType) []safetensors.Tensor {
	var ts []safetensors.Tensor
	for _, p := range d.W.Params(&d.Config) {
		ts = append(ts, safetensors.FromFloat32(weightName(f, p.Name), dtype, p.Shape, *p.Data))
	}
	if d.Config.TargetHiddenSize != d.Config.HiddenSize {
		// Widen cannot fail: draft.New admits float embeddings only. A draft of its own width has its own
		// embedding, F32 (random or imported), which Widen returns without a copy.
		embed, _ := half.Widen(d.Embed)
		ts = append(ts, safetensors.FromFloat32("embed_tokens.weight", dtype, []int{d.Config.VocabSize, d.Config.HiddenSize}, embed))
	}
	return append(ts,
		safetensors.FromInt64("d2t", safetensors.I64, []int{len(d.Vocab.D2T)}, d.Vocab.D2T),
		safetensors.FromBool("t2d", []int{len(d.Vocab.T2D)}, d.Vocab.T2D))
}

// Write exports d into dir in layout f and validates the result by reading it back.
func Write(dir string, d *draft.Draft, f Format, o Options) error {
	if o.DType == "" {
		o.DType = safetensors.BF16
	}
	if err := CheckServes(d, f); err != nil {
		return err
	}
	if !o.Force {
		if err := checkReplaceable(dir); err != nil {
			return err
		}
	}
	// The export is written and validated in a folder beside dir and then put in its place, so dir holds
	// either the old export or the whole new one, never new weights beside an old config.
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	defer os.RemoveAll(tmp) // nothing is left to remove once it is renamed
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := safetensors.Write(filepath.Join(tmp, "model.safetensors"), Tensors(d, f, o.DType), map[string]string{"format": "pt"}); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(Config(d, f, o), "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(filepath.Join(tmp, "config.json"), append(raw, '\n')); err != nil {
		return err
	}
	if err := Validate(tmp, d, f); err != nil {
		return err
	}
	return replaceDir(tmp, dir)
}

// Served is the layout a trained draft is written in: SGLang's, or vLLM's for a draft SGLang does not serve
// as trained (more than one layer, aux layers its capture loop does not reach).
func Served(d *draft.Draft) Format {
	if CheckServes(d, SGLang) != nil {
		return VLLM
	}
	return SGLang
}

// CheckServes refuses a layout whose engine would not compute the draft d is: SGLang's llama_eagle3 serves
// one decoder layer (before PR #24663 it refuses more; since, it normalises the input of later layers with
// hidden_norm where vLLM and speculators use input_layernorm, so a deeper draft's weights would compute
// another function there without an error); and one whose engine would hand the draft other aux layers than
// it was trained on (CheckAux).
func CheckServes(d *draft.Draft, f Format) error {
	if n := d.Config.Layers(); n > 1 && f == SGLang {
		return fmt.Errorf("export --to sglang: the draft has %d decoder layers and SGLang's llama_eagle3 serves one (since PR #24663 it loads more, but normalises their input with hidden_norm where vLLM and speculators use input_layernorm, so these weights would compute another function): export --to vllm or --to speculators", n)
	}
	return CheckAux(&d.Config, f)
}

// replaceDir puts the folder tmp in the place of dir, which may exist.
func replaceDir(tmp, dir string) error {
	old := ""
	if _, err := os.Stat(dir); err == nil {
		old = tmp + "-old" // still a ".tmp-" name: a run killed between the renames leaves nothing that looks kept
		if err := os.Rename(dir, old); err != nil {
			return fmt.Errorf("replace %s: %w", dir, err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		return fmt.Errorf("replace %s: %w", dir, err)
	}
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("remove the previous %s: %w", dir, err)
		}
	}
	return atomicfile.SyncDir(filepath.Dir(dir))
}

// checkReplaceable refuses an output folder that holds anything but an earlier export: pointing --out at
// the target's own folder would otherwise replace its weights and config.
func checkReplaceable(dir string) error {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("output folder %s: %w", dir, err)
	}
	if len(entries) == 0 {
		return nil
	}
	for _, e := range entries {
		if n := e.Name(); n != "config.json" && n != "model.safetensors" {
			return fmt.Errorf("output folder %s holds %s, which an export does not write: choose an empty or new folder, or pass --force to replace the folder as a whole", dir, n)
		}
	}
	if _, err := Read(dir); err != nil {
		return fmt.Errorf("output folder %s holds a model that is not an EAGLE-3 draft export (%v): choose an empty or new folder, or pass --force to replace the folder as a whole", dir, err)
	}
	return nil
}

// Validate reads an export back and checks every tensor name, shape and dtype, the config fields the
// engines read, and that the weights and vocabulary are d's.
func Validate(dir string, d *draft.Draft, f Format) error {
	got, err := Read(dir)
	if err != nil {
		return fmt.Errorf("validate export: %w", err)
	}
	if got.Format != f {
		return fmt.Errorf("validate export: %s reads back as %s", dir, got.Format)
	}
	c, want := &got.Config, &d.Config
	switch {
	case c.HiddenSize != want.HiddenSize || c.IntermediateSize != want.IntermediateSize || c.NumHeads != want.NumHeads ||
		c.NumKVHeads != want.NumKVHeads || c.HeadDim != want.HeadDim || c.VocabSize != want.VocabSize ||
		c.DraftVocabSize != want.DraftVocabSize || c.TargetHiddenSize != want.TargetHiddenSize ||
		c.Layers() != want.Layers() || c.FCNorm != want.FCNorm || c.NormOutput != want.NormOutput:
		return fmt.Errorf("validate export: %s: shape fields read back as %+v", dir, *c)
	case !slices.Equal(c.AuxLayers, want.AuxLayers):
		return fmt.Errorf("validate export: %s: aux layers read back as %v, want %v", dir, c.AuxLayers, want.AuxLayers)
	case !slices.Equal(got.Vocab.D2T, d.Vocab.D2T):
		return fmt.Errorf("validate export: %s: d2t differs", dir)
	}
	f2, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		return err
	}
	defer f2.Close()
	want2 := map[string]bool{"d2t": true, "t2d": true}
	for _, p := range d.W.Params(&d.Config) {
		want2[weightName(f, p.Name)] = true
	}
	if d.Config.TargetHiddenSize != d.Config.HiddenSize {
		want2["embed_tokens.weight"] = true
	}
	var names []string
	for _, n := range f2.Names() {
		if !want2[n] {
			return fmt.Errorf("validate export: %s holds an unexpected tensor %q (an engine would skip or misuse it)", dir, n)
		}
		names = append(names, n)
	}
	if len(names) != len(want2) {
		sort.Strings(names)
		return fmt.Errorf("validate export: %s holds %v, want %d tensors", dir, names, len(want2))
	}
	for _, n := range []string{"d2t", "t2d"} {
		t, _ := f2.Tensor(n)
		if want := map[string]safetensors.DType{"d2t": safetensors.I64, "t2d": safetensors.BOOL}[n]; t.DType != want {
			return fmt.Errorf("validate export: %s: %s is %s, want %s", dir, n, t.DType, want)
		}
	}
	// The weights must read back as d's rounded to the file's dtype, bit for bit.
	gotW := got.Weights.Slices(c)
	for i, p := range d.W.Params(want) {
		t, _ := f2.Tensor(weightName(f, p.Name))
		enc := safetensors.FromFloat32(p.Name, t.DType, p.Shape, *p.Data)
		rounded, err := enc.Float32()
		if err != nil {
			return fmt.Errorf("validate export: %s: %w", dir, err)
		}
		for j := range rounded {
			if math.Float32bits(rounded[j]) != math.Float32bits(gotW[i][j]) {
				return fmt.Errorf("validate export: %s: %s[%d] reads back as %g, want %g", dir, weightName(f, p.Name), j, gotW[i][j], rounded[j])
			}
		}
	}
	return nil
}
