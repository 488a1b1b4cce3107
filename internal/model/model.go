package model

import (
	"fmt"
	"strings"
	"sync"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/backend/auto"
	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/rope"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/tensor"
)

// Layer holds the weights of one decoder layer in PyTorch's [out, in] layout. The matrices (W*) are of the
// checkpoint's dtype (F32, BF16 or F16), memory-mapped, never copied; the vectors (norms and biases) are
// F32, widened at load when stored in 16 bits (they are a few thousand values a layer). Optional tensors
// are the nil tensor when the architecture does not have them.
type Layer struct {
	InputNorm, PostNorm tensor.Tensor
	Wq, Wk, Wv, Wo      tensor.Tensor
	Bq, Bk, Bv, Bo      tensor.Tensor
	QNorm, KNorm        tensor.Tensor
	Wgate, Wup, Wdown   tensor.Tensor
	Bgate, Bup, Bdown   tensor.Tensor
	// A sparse layer of a mixture-of-experts model has, instead of the dense MLP above, a Router [E, H],
	// its Experts and, in Qwen2-MoE, a Shared expert gated by SharedGate [1, H].
	Router     tensor.Tensor
	Experts    []Expert
	Shared     Expert
	SharedGate tensor.Tensor
}

// Head is the part of a target that offline training needs: the token embedding and lm_head, of the
// checkpoint's dtype (memory-mapped when read from one).
type Head struct {
	Config  *Config
	Embed   tensor.Tensor // [V, H]
	LMHead  tensor.Tensor // [V, H]; the same tensor as Embed when the embeddings are tied
	be      backend.Backend
	lmHead  backend.Weight // LMHead prepared by be for products; set by the loaders
	product backend.Product
}

// Model is a loaded target model. Its matrices stay as the checkpoint stores them (memory-mapped F32, BF16
// or F16; the backend widens 16-bit ones tile by tile as it multiplies), so a model's resident memory is
// about its checkpoint's size.
type Model struct {
	Head
	Dir    string
	Layers []Layer
	Norm   tensor.Tensor // [H], F32
	// Unused names checkpoint tensors the architecture does not read (worth a warning, not an error).
	Unused    []string
	ckpt      *safetensors.Checkpoint
	mu        sync.Mutex // serialises forwards, which share ws and rotations
	ws        *scratch
	moe       *moeScratch
	rotations rope.Rotations
	layers    []preparedLayer
}

// preparedLayer is a layer's matrices prepared by the backend for products.
type preparedLayer struct {
	q, k, v, o, gate, up, down backend.Weight
	router, sharedGate         backend.Weight
	experts                    []preparedExpert
	shared                     preparedExpert
}

// LoadHead reads only the embedding and lm_head of a model folder (memory-mapped, of the stored dtype); the
// returned close function releases the checkpoint.
func LoadHead(dir string) (*Head, func() error, error) {
	return LoadHeadWith(dir, DefaultProduct)
}

// LoadHeadWith is LoadHead multiplying by a bf16 lm_head as p says.
func LoadHeadWith(dir string, p backend.Product) (*Head, func() error, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, nil, err
	}
	ckpt, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return nil, nil, err
	}
	if err := checkCheckpointSize(dir, cfg.headWeights(), ckpt.DataBytes()); err != nil {
		ckpt.Close()
		return nil, nil, err
	}
	src := &checkpointSource{ckpt: ckpt, used: map[string]bool{}}
	h := &Head{be: auto.Default(), product: p}
	if err := h.read(cfg, src, p); err != nil {
		ckpt.Close()
		return nil, nil, err
	}
	return h, ckpt.Close, nil
}

// read fills the head's configuration and weights from src, preparing lm_head on h's backend for products p.
func (h *Head) read(cfg *Config, src WeightSource, p backend.Product) error {
	h.Config = cfg
	var err error
	if h.Embed, err = src.Get("model.embed_tokens.weight", false, cfg.VocabSize, cfg.HiddenSize); err != nil {
		return err
	}
	if cfg.TieWordEmbeddings {
		h.LMHead = h.Embed
	} else if h.LMHead, err = src.Get("lm_head.weight", true, cfg.VocabSize, cfg.HiddenSize); err != nil {
		return err
	} else if h.LMHead.IsNil() {
		return fmt.Errorf("lm_head.weight is missing and tie_word_embeddings is false")
	}
	if d := h.Embed.DType(); d != tensor.F32 && d != tensor.BF16 && d != tensor.F16 {
		return fmt.Errorf("model.embed_tokens.weight: dtype %s, want F32, BF16 or F16", d)
	}
	h.lmHead, err = h.be.PrepareWeight(h.LMHead, cfg.VocabSize, cfg.HiddenSize, p)
	if err != nil {
		return fmt.Errorf("lm_head: %w", err)
	}
	return nil
}

// DefaultProduct is how a model multiplies by a bf16 checkpoint's matrices unless told otherwise: bf16
// products with float32 accumulation (backend.BF16Product), as inference engines run bf16 checkpoints and
// at twice the speed of float32 products on CPUs with AVX512-BF16. backend.F32Product computes as the
// checkpoint's float32 copy would (the forward goldens' semantics for their bf16 model folders).
const DefaultProduct = backend.BF16Product

// Compute says how the forward multiplies, for logs: the dtype of the matrices, the products taken with
// them and the backend.
func (h *Head) Compute() string {
	d := h.LMHead.DType()
	products := "float32 products"
	switch {
	case d == tensor.BF16 && h.product == backend.BF16Product:
		products = "bf16 products, float32 accumulation"
	case d != tensor.F32:
		products = "float32 products of widened tiles"
	}
	return fmt.Sprintf("%s weights, %s, on %s", d, products, h.be.Name())
}

// WeightSource yields a tensor by its Hugging Face name, checked against the expected shape, of the dtype
// it is stored in and without a copy (a checkpoint's tensors are memory-mapped). Optional tensors are the
// nil tensor when absent.
type WeightSource interface {
	Get(name string, optional bool, shape ...int) (tensor.Tensor, error)
}

// Load reads a Hugging Face model folder: config.json and model.safetensors (or a sharded checkpoint).
func Load(dir string) (*Model, error) { return LoadWith(dir, DefaultProduct) }

// LoadWith is Load multiplying by bf16 matrices as p says.
func LoadWith(dir string, p backend.Product) (*Model, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	ckpt, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	if err := checkCheckpointSize(dir, cfg.minWeights(), ckpt.DataBytes()); err != nil {
		ckpt.Close()
		return nil, err
	}
	src := &checkpointSource{ckpt: ckpt, used: map[string]bool{}}
	m, err := NewOn(auto.Default(), cfg, src, p)
	if err != nil {
		ckpt.Close()
		return nil, err
	}
	m.Dir, m.ckpt = dir, ckpt
	for _, name := range ckpt.Names() {
		if !src.used[name] {
			m.Unused = append(m.Unused, name)
		}
	}
	return m, nil
}

// Close releases the memory-mapped checkpoint; the model must not be used afterwards.
func (m *Model) Close() error {
	if m.ckpt == nil {
		return nil
	}
	err := m.ckpt.Close()
	m.ckpt = nil
	return err
}

type checkpointSource struct {
	ckpt *safetensors.Checkpoint
	used map[string]bool
}

func (s *checkpointSource) Get(name string, optional bool, shape ...int) (tensor.Tensor, error) {
	if optional && !s.ckpt.Has(name) {
		return tensor.Tensor{}, nil
	}
	t, err := s.ckpt.Tensor(name)
	if err != nil {
		return tensor.Tensor{}, err
	}
	if err := t.CheckShape(shape...); err != nil {
		return tensor.Tensor{}, err
	}
	s.used[name] = true
	return t.View()
}

// New builds a model from a config and a source of weights, computing on the backend of this build.
func New(cfg *Config, src WeightSource) (*Model, error) {
	return NewOn(auto.Default(), cfg, src, DefaultProduct)
}

// NewOn is New computing on backend be, multiplying by bf16 matrices as p says.
func NewOn(be backend.Backend, cfg *Config, src WeightSource, p backend.Product) (*Model, error) {
	H, I := cfg.HiddenSize, cfg.IntermediateSize
	qDim, kvDim := cfg.NumHeads*cfg.HeadDim, cfg.NumKVHeads*cfg.HeadDim
	m := &Model{Head: Head{Config: cfg, be: be, product: p}, Layers: make([]Layer, cfg.NumLayers), rotations: rope.Rotations{Config: cfg.Rope}}
	var errs []string
	get := func(name string, optional bool, shape ...int) tensor.Tensor {
		w, err := src.Get(name, optional, shape...)
		if err != nil {
			errs = append(errs, err.Error())
		}
		return w
	}
	// vec fetches a vector as F32: one stored in 16 bits is widened, a copy of a few thousand values.
	vec := func(name string, shape ...int) tensor.Tensor {
		w := get(name, false, shape...)
		if w.IsNil() || w.DType() == tensor.F32 {
			return w
		}
		x, err := half.Widen(w)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			return tensor.Tensor{}
		}
		return tensor.FromF32(x, shape...)
	}
	// want fetches a vector that the config requires or forbids; present says which.
	want := func(present bool, name string, shape ...int) tensor.Tensor {
		if !present {
			return tensor.Tensor{}
		}
		return vec(name, shape...)
	}
	for i := range m.Layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		l := &m.Layers[i]
		l.InputNorm = vec(p+"input_layernorm.weight", H)
		l.PostNorm = vec(p+"post_attention_layernorm.weight", H)
		l.Wq = get(p+"self_attn.q_proj.weight", false, qDim, H)
		l.Wk = get(p+"self_attn.k_proj.weight", false, kvDim, H)
		l.Wv = get(p+"self_attn.v_proj.weight", false, kvDim, H)
		l.Wo = get(p+"self_attn.o_proj.weight", false, H, qDim)
		l.Bq = want(cfg.QKVBias, p+"self_attn.q_proj.bias", qDim)
		l.Bk = want(cfg.QKVBias, p+"self_attn.k_proj.bias", kvDim)
		l.Bv = want(cfg.QKVBias, p+"self_attn.v_proj.bias", kvDim)
		l.Bo = want(cfg.OBias, p+"self_attn.o_proj.bias", H)
		l.QNorm = want(cfg.QKNorm, p+"self_attn.q_norm.weight", cfg.HeadDim)
		l.KNorm = want(cfg.QKNorm, p+"self_attn.k_norm.weight", cfg.HeadDim)
		if cfg.sparse(i) {
			cfg.readExperts(l, i, get)
		} else {
			l.Wgate = get(p+"mlp.gate_proj.weight", false, I, H)
			l.Wup = get(p+"mlp.up_proj.weight", false, I, H)
			l.Wdown = get(p+"mlp.down_proj.weight", false, H, I)
			l.Bgate = want(cfg.MLPBias, p+"mlp.gate_proj.bias", I)
			l.Bup = want(cfg.MLPBias, p+"mlp.up_proj.bias", I)
			l.Bdown = want(cfg.MLPBias, p+"mlp.down_proj.bias", H)
		}
		if len(errs) > 3 {
			break // a wrong checkpoint fails on every layer; a few lines say enough
		}
	}
	m.Norm = vec("model.norm.weight", H)
	if len(errs) == 0 {
		if err := m.Head.read(cfg, src, p); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("load %s weights: %s", cfg.Architecture, strings.Join(errs, "; "))
	}
	m.layers = make([]preparedLayer, len(m.Layers))
	for i := range m.Layers {
		l := &m.Layers[i]
		lt := &m.layers[i]
		type matrix struct {
			dst     *backend.Weight
			w       tensor.Tensor
			out, in int
		}
		weights := []matrix{
			{&lt.q, l.Wq, qDim, H}, {&lt.k, l.Wk, kvDim, H}, {&lt.v, l.Wv, kvDim, H}, {&lt.o, l.Wo, H, qDim},
		}
		if cfg.sparse(i) {
			if err := m.prepareExperts(lt, l, p); err != nil {
				return nil, fmt.Errorf("load %s weights: layer %d: %w", cfg.Architecture, i, err)
			}
		} else {
			weights = append(weights, matrix{&lt.gate, l.Wgate, I, H}, matrix{&lt.up, l.Wup, I, H}, matrix{&lt.down, l.Wdown, H, I})
		}
		for _, w := range weights {
			var err error
			if *w.dst, err = be.PrepareWeight(w.w, w.out, w.in, p); err != nil {
				return nil, fmt.Errorf("load %s weights: layer %d: %w", cfg.Architecture, i, err)
			}
		}
	}
	return m, nil
}
