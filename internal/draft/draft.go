package draft

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/backend/auto"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/tensor"
	"github.com/specforge/specforge/internal/vocab"
)

// Draft is a draft model: trainable float32 parameters, the frozen target embedding and the vocabulary
// mapping, and the backend it computes on.
type Draft struct {
	Config Config
	Embed  tensor.Tensor // [V, H], frozen, of any float dtype (the target's, as stored); never saved with the draft
	Vocab  *vocab.Mapping
	W      Weights
	be     backend.Backend
}

// Weights are the trainable tensors, in PyTorch's [out, in] layout; gradients use the same type.
type Weights struct {
	FC     []float32               // [H, AuxWidth]
	FCNorm [NumAuxLayers][]float32 // [TargetHiddenSize] each, with Config.FCNorm (else nil)
	Layers []LayerWeights          // Config.Layers() decoder layers
	Norm   []float32               // [H]
	LMHead []float32               // [Vd, H]
}

// LayerWeights are one decoder layer's tensors. Layer 0 reads [norm(embed) | norm(h)] (2H wide, with
// HiddenNorm for h); a later layer reads the residual stream of the one before (H wide, no HiddenNorm), as
// vLLM's llama_eagle3 stacks them.
type LayerWeights struct {
	HiddenNorm, InputNorm, PostNorm []float32 // [H]
	Wq, Wk, Wv                      []float32 // [nh*d | nkv*d, in]: in = 2H for layer 0, H later
	Wo                              []float32 // [H, nh*d]
	Wgate, Wup                      []float32 // [I, H]
	Wdown                           []float32 // [H, I]
}

// Param names one tensor of Weights with its shape.
type Param struct {
	Name  string // SGLang / SpecForge export name
	Shape []int
	Data  *[]float32
}

// Params lists the tensors of w in a fixed order, with their export names: a one-layer draft's layer is
// SGLang's midlayer.*, the layers of a deeper one are layers.{i}.* (vLLM's and speculators' names). It
// gives w the configuration's number of layers first, so that the pointers it returns are w's.
func (w *Weights) Params(c *Config) []Param {
	H, I := c.HiddenSize, c.IntermediateSize
	q, kv := c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
	if n := c.Layers(); len(w.Layers) != n {
		w.Layers = append(w.Layers, make([]LayerWeights, max(0, n-len(w.Layers)))...)[:n]
	}
	ps := []Param{{"fc.weight", []int{H, c.AuxWidth()}, &w.FC}}
	if c.FCNorm {
		for i := range w.FCNorm {
			ps = append(ps, Param{fmt.Sprintf("fc_norm.%d.weight", i), []int{c.TargetHiddenSize}, &w.FCNorm[i]})
		}
	}
	for i := range w.Layers {
		l, in, prefix := &w.Layers[i], H, fmt.Sprintf("layers.%d.", i)
		if len(w.Layers) == 1 {
			prefix = "midlayer."
		}
		if i == 0 {
			in = 2 * H
			ps = append(ps, Param{prefix + "hidden_norm.weight", []int{H}, &l.HiddenNorm})
		}
		ps = append(ps, []Param{
			{prefix + "input_layernorm.weight", []int{H}, &l.InputNorm},
			{prefix + "self_attn.q_proj.weight", []int{q, in}, &l.Wq},
			{prefix + "self_attn.k_proj.weight", []int{kv, in}, &l.Wk},
			{prefix + "self_attn.v_proj.weight", []int{kv, in}, &l.Wv},
			{prefix + "self_attn.o_proj.weight", []int{H, q}, &l.Wo},
			{prefix + "post_attention_layernorm.weight", []int{H}, &l.PostNorm},
			{prefix + "mlp.gate_proj.weight", []int{I, H}, &l.Wgate},
			{prefix + "mlp.up_proj.weight", []int{I, H}, &l.Wup},
			{prefix + "mlp.down_proj.weight", []int{H, I}, &l.Wdown},
		}...)
	}
	return append(ps,
		Param{"norm.weight", []int{H}, &w.Norm},
		Param{"lm_head.weight", []int{c.DraftVocabSize, H}, &w.LMHead})
}

// NumParams counts the trained parameters of a draft of this configuration.
func (c *Config) NumParams() int64 {
	var w Weights
	var n int64
	for _, p := range w.Params(c) {
		n += int64(safetensors.NumElements(p.Shape))
	}
	return n
}

// NewWeights allocates zero weights (also the shape of a gradient).
func NewWeights(c *Config) Weights {
	var w Weights
	for _, p := range w.Params(c) {
		*p.Data = make([]float32, safetensors.NumElements(p.Shape))
	}
	return w
}

// Slices returns the tensors of w in Params order.
func (w *Weights) Slices(c *Config) [][]float32 {
	var out [][]float32
	for _, p := range w.Params(c) {
		out = append(out, *p.Data)
	}
	return out
}

// Init fills w as SpecForge initialises a draft (Hugging Face's post_init): linear weights from N(0, std)
// (initializer_range, 0.02), norm weights 1. The seed makes it reproducible.
func (w *Weights) Init(c *Config, seed uint64, std float64) {
	r := rand.New(rand.NewPCG(seed, 0xd4af7))
	for _, p := range w.Params(c) {
		data := *p.Data
		if len(p.Shape) == 1 {
			for i := range data {
				data[i] = 1
			}
			continue
		}
		for i := range data {
			data[i] = float32(r.NormFloat64() * std)
		}
	}
}

// LoadWeights reads draft weights stored under their export names (SGLang/SpecForge "midlayer.*" layout),
// checking every shape, as float32.
func LoadWeights(c *Config, f interface {
	Tensor(string) (*safetensors.Tensor, error)
}) (Weights, error) {
	var w Weights
	for _, p := range w.Params(c) {
		t, err := f.Tensor(p.Name)
		if err != nil {
			return w, err
		}
		if err := t.CheckShape(p.Shape...); err != nil {
			return w, err
		}
		if *p.Data, err = t.Float32(); err != nil {
			return w, err
		}
	}
	return w, nil
}

// Clone returns a deep copy.
func (w *Weights) Clone(c *Config) Weights {
	out := NewWeights(c)
	src, dst := w.Slices(c), out.Slices(c)
	for i := range src {
		copy(dst[i], src[i])
	}
	return out
}

// Zero clears every tensor.
func (w *Weights) Zero(c *Config) {
	for _, s := range w.Slices(c) {
		clear(s)
	}
}

var errNoEmbedding = errors.New("draft: no embedding (a draft loaded without its target can be saved, not run)")

// New assembles a draft computing on the backend of this build (backend/auto) and checks the sizes of its
// parts. embed [V, H] is F32, BF16 or F16 (the target's as stored: the draft only reads its rows). A nil
// embedding makes a draft that can be saved but not run: the embedding is the target's and never part of
// the draft's files.
func New(c Config, embed tensor.Tensor, m *vocab.Mapping, w Weights) (*Draft, error) {
	return NewOn(auto.Default(), c, embed, m, w)
}

// NewOn is New computing on backend be.
func NewOn(be backend.Backend, c Config, embed tensor.Tensor, m *vocab.Mapping, w Weights) (*Draft, error) {
	if err := c.Validate(nil); err != nil {
		return nil, err
	}
	if !embed.IsNil() {
		if embed.Len() != c.VocabSize*c.HiddenSize {
			return nil, fmt.Errorf("draft: embedding has %d values, want %d x %d", embed.Len(), c.VocabSize, c.HiddenSize)
		}
		if d := embed.DType(); d != tensor.F32 && d != tensor.BF16 && d != tensor.F16 {
			return nil, fmt.Errorf("draft: embedding of dtype %s, want F32, BF16 or F16", d)
		}
	}
	if len(m.D2T) != c.DraftVocabSize || len(m.T2D) != c.VocabSize {
		return nil, fmt.Errorf("draft: vocabulary mapping of %d/%d tokens, want %d/%d", len(m.D2T), len(m.T2D), c.DraftVocabSize, c.VocabSize)
	}
	for _, p := range w.Params(&c) {
		if len(*p.Data) != safetensors.NumElements(p.Shape) {
			return nil, fmt.Errorf("draft: %s has %d values, want shape %v", p.Name, len(*p.Data), p.Shape)
		}
	}
	return &Draft{Config: c, Embed: embed, Vocab: m, W: w, be: be}, nil
}

// RandomEmbedding is a seeded N(0, std) F32 embedding [vocab, hidden], for drafts whose width differs from
// the target's.
func RandomEmbedding(vocab, hidden int, seed uint64, std float64) tensor.Tensor {
	r := rand.New(rand.NewPCG(seed, 0xe3bed))
	out := make([]float32, vocab*hidden)
	for i := range out {
		out[i] = float32(r.NormFloat64() * std)
	}
	return tensor.FromF32(out, vocab, hidden)
}
