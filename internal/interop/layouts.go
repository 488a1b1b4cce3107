package interop

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/safetensors"
)

// Layouts of hidden states that other trainers write.
const (
	// SpecForge is SpecForge's offline layout (scripts/prepare_hidden_states.py): rows_*/data_{i}.ckpt, or
	// data_{i}.ckpt.gz, one torch.save dict per sample.
	SpecForge = "specforge"
	// Speculators is vllm-project/speculators' layout: hs_{i}.safetensors per sample.
	Speculators = "speculators"
)

// Input is one sample file of a layout, in the order of its index i.
type Input struct {
	Index int
	Path  string
}

var (
	specForgeName   = regexp.MustCompile(`^data_(\d+)\.ckpt(\.gz)?$`)
	speculatorsName = regexp.MustCompile(`^hs_(\d+)\.safetensors$`)
)

// List finds the sample files of layout under dir, ordered by their index; two files of one index are an
// error (data_3.ckpt beside data_3.ckpt.gz: which is meant?).
func List(layout, dir string) ([]Input, error) {
	var pattern string
	var name *regexp.Regexp
	switch layout {
	case SpecForge:
		pattern, name = filepath.Join(dir, "rows_*", "data_*"), specForgeName
	case Speculators:
		pattern, name = filepath.Join(dir, "hs_*.safetensors"), speculatorsName
	default:
		return nil, fmt.Errorf("layout %q: want %s or %s", layout, SpecForge, Speculators)
	}
	paths, err := filepath.Glob(pattern)
	if err != nil {
		return nil, err
	}
	var out []Input
	seen := map[int]string{}
	for _, p := range paths {
		m := name.FindStringSubmatch(filepath.Base(p))
		if m == nil {
			continue
		}
		i, err := strconv.Atoi(m[1])
		if err != nil {
			return nil, fmt.Errorf("%s: index %s out of range", p, m[1])
		}
		if prev, ok := seen[i]; ok {
			return nil, fmt.Errorf("%s and %s are both sample %d", prev, p, i)
		}
		seen[i] = p
		out = append(out, Input{i, p})
	}
	if len(out) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s: no %s sample files (%s)", dir, layout, filepath.Base(pattern))
	}
	slices.SortFunc(out, func(a, b Input) int { return a.Index - b.Index })
	return out, nil
}

// Shape is what the samples must hold: the target's hidden size and vocabulary, and the number of aux layers.
type Shape struct {
	HiddenSize int
	VocabSize  int
	AuxLayers  int
}

// ReadSpecForge reads one sample of SpecForge's layout: input_ids [T], loss_mask [T], hidden_state [1, T, H]
// (after the target's final norm) and aux_hidden_state [1, T, A*H].
func ReadSpecForge(file string, s Shape) (*hidden.Sample, error) {
	d, err := ReadTorch(file)
	if err != nil {
		return nil, err
	}
	get := func(key string, float bool) (*Tensor, error) {
		t, ok := d[key]
		switch {
		case !ok:
			return nil, fmt.Errorf("%s: no tensor %q (SpecForge's offline samples hold input_ids, loss_mask, hidden_state and aux_hidden_state)", file, key)
		case float && t.Floats == nil:
			return nil, fmt.Errorf("%s: tensor %q of %s, want a float storage", file, key, t.Storage)
		case !float && t.Ints == nil:
			return nil, fmt.Errorf("%s: tensor %q of %s, want an integer storage", file, key, t.Storage)
		}
		return t, nil
	}
	ids, err := get("input_ids", false)
	if err != nil {
		return nil, err
	}
	mask, err := get("loss_mask", false)
	if err != nil {
		return nil, err
	}
	hs, err := get("hidden_state", true)
	if err != nil {
		return nil, err
	}
	aux, err := get("aux_hidden_state", true)
	if err != nil {
		return nil, err
	}
	T := len(ids.Ints)
	for _, c := range []struct {
		key   string
		t     *Tensor
		width int
	}{{"input_ids", ids, 0}, {"loss_mask", mask, 0}, {"hidden_state", hs, s.HiddenSize}, {"aux_hidden_state", aux, s.AuxLayers * s.HiddenSize}} {
		if !squeezedShape(c.t.Shape, T, c.width) {
			want := fmt.Sprintf("[%d] or [1, %d]", T, T)
			if c.width > 0 {
				want = fmt.Sprintf("[1, %d, %d] or [%d, %d]", T, c.width, T, c.width)
			}
			return nil, fmt.Errorf("%s: tensor %q of shape %v, want %s (%d tokens, hidden size %d, %d aux layers)", file, c.key, c.t.Shape, want, T, s.HiddenSize, s.AuxLayers)
		}
	}
	out := &hidden.Sample{IDs: make([]int32, T), LossMask: make([]bool, T), Aux: aux.Floats, Hidden: hs.Floats}
	if err := setIDs(file, "input_ids", out.IDs, ids.Ints, s.VocabSize); err != nil {
		return nil, err
	}
	for t, m := range mask.Ints {
		if m != 0 && m != 1 {
			return nil, fmt.Errorf("%s: loss_mask[%d] = %d, want 0 or 1", file, t, m)
		}
		out.LossMask[t] = m == 1
	}
	return out, checkFinite(file, out)
}

// squeezedShape reports whether shape is [T] (width 0) or [T, width], with leading dimensions of 1 allowed.
func squeezedShape(shape []int, T, width int) bool {
	for len(shape) > 1 && shape[0] == 1 {
		shape = shape[1:]
	}
	if width == 0 {
		return len(shape) == 1 && shape[0] == T
	}
	return len(shape) == 2 && shape[0] == T && shape[1] == width
}

func setIDs(file, key string, dst []int32, src []int64, vocab int) error {
	for t, id := range src {
		if id < 0 || id >= int64(vocab) {
			return fmt.Errorf("%s: %s[%d] = %d, outside the target's vocabulary of %d", file, key, t, id, vocab)
		}
		dst[t] = int32(id)
	}
	return nil
}

func checkFinite(file string, s *hidden.Sample) error {
	for _, v := range [][]float32{s.Aux, s.Hidden} {
		for i, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return fmt.Errorf("%s: hidden state value %d is %v", file, i, x)
			}
		}
	}
	return nil
}

// FinalNorm is the target's final RMSNorm, which speculators' files leave to the trainer.
type FinalNorm struct {
	Weight []float32 // [H]
	Eps    float32
}

// apply writes the norm of each row of x (of len(n.Weight) values) to dst, as Hugging Face's LlamaRMSNorm
// computes it on a bf16 model: normalised in float32, rounded to bf16, then multiplied by the weight and
// rounded again, so that the result is what the target's own forward hands its lm_head.
func (n FinalNorm) apply(dst, x []float32) {
	H := len(n.Weight)
	for r := 0; r+H <= len(x); r += H {
		row := x[r : r+H]
		var ss float32
		for _, v := range row {
			ss += v * v
		}
		inv := float32(1 / math.Sqrt(float64(ss/float32(H)+n.Eps)))
		for i, v := range row {
			dst[r+i] = n.Weight[i] * (v * inv)
		}
	}
}

// ReadSpeculators reads one sample of speculators' layout: token_ids [T] and hidden_states [T, A+1, H], the
// A aux layers followed by the last layer's output before the final norm, which norm applies. The loss mask is
// not in the file: it is left false.
func ReadSpeculators(file string, s Shape, norm FinalNorm) (*hidden.Sample, error) {
	f, err := safetensors.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ids, err := f.Tensor("token_ids")
	if err != nil {
		return nil, err
	}
	hs, err := f.Tensor("hidden_states")
	if err != nil {
		return nil, err
	}
	if len(ids.Shape) != 1 {
		return nil, fmt.Errorf("%s: tensor \"token_ids\" of shape %v, want [T]", file, ids.Shape)
	}
	T := ids.Shape[0]
	if err := hs.CheckShape(T, s.AuxLayers+1, s.HiddenSize); err != nil {
		return nil, fmt.Errorf("%w (%d tokens, %d aux layers then the last layer's output, hidden size %d)", err, T, s.AuxLayers, s.HiddenSize)
	}
	raw, err := ids.Int64()
	if err != nil {
		return nil, err
	}
	states, err := hs.Float32()
	if err != nil {
		return nil, err
	}
	H, A := s.HiddenSize, s.AuxLayers
	out := &hidden.Sample{IDs: make([]int32, T), LossMask: make([]bool, T), Aux: make([]float32, 0, T*A*H), Hidden: make([]float32, T*H)}
	if err := setIDs(file, "token_ids", out.IDs, raw, s.VocabSize); err != nil {
		return nil, err
	}
	last := make([]float32, 0, T*H)
	for t := range T {
		row := states[t*(A+1)*H : (t+1)*(A+1)*H]
		out.Aux = append(out.Aux, row[:A*H]...)
		last = append(last, row[A*H:]...)
	}
	norm.apply(out.Hidden, last)
	return out, checkFinite(file, out)
}

// LoadFinalNorm reads the final norm (model.norm.weight, rms_norm_eps) of the target in dir.
func LoadFinalNorm(dir string) (FinalNorm, error) {
	cfg, err := model.LoadConfig(dir)
	if err != nil {
		return FinalNorm{}, err
	}
	ckpt, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return FinalNorm{}, err
	}
	defer ckpt.Close()
	t, err := ckpt.Tensor("model.norm.weight")
	if err != nil {
		return FinalNorm{}, err
	}
	if err := t.CheckShape(cfg.HiddenSize); err != nil {
		return FinalNorm{}, err
	}
	w, err := t.Float32()
	if err != nil {
		return FinalNorm{}, err
	}
	return FinalNorm{Weight: w, Eps: float32(cfg.RMSNormEps)}, nil
}
