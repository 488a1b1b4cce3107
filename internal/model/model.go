package model

import (
	"fmt"
	"strings"
	"sync"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/backend/auto"
	"github.com/specforge/specforge/internal/rope"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/tensor"
)

// Layer holds the weights of one decoder layer in PyTorch's [out, in] layout. Optional tensors are nil when
// the architecture does not have them.
type Layer struct {
	InputNorm, PostNorm []float32
	Wq, Wk, Wv, Wo      []float32
	Bq, Bk, Bv, Bo      []float32
	QNorm, KNorm        []float32
	Wgate, Wup, Wdown   []float32
	Bgate, Bup, Bdown   []float32
}

// Head is the part of a target that offline training needs: the token embedding and lm_head.
type Head struct {
	Config *Config
	Embed  []float32 // [V, H]
	LMHead []float32 // [V, H]; the same slice as Embed when the embeddings are tied
	be     backend.Backend
	embed  tensor.Tensor  // Embed
	lmHead backend.Weight // LMHead prepared by be for products; set by the loaders
}

// Model is a loaded target model. Float32 weights are memory-mapped from the checkpoint; bf16/f16 weights are
// widened to float32 once at load.
type Model struct {
	Head
	Dir    string
	Layers []Layer
	Norm   []float32 // [H]
	// Unused names checkpoint tensors the architecture does not read (worth a warning, not an error).
	Unused    []string
	ckpt      *safetensors.Checkpoint
	mu        sync.Mutex // serialises forwards, which share ws and rotations
	ws        *scratch
	rotations rope.Rotations
	norm      tensor.Tensor // Norm
	layers    []layerTensors
}

// layerTensors are a layer's weights as the forward reads them: the matrices prepared by the backend, the
// vectors as tensors (nil when the architecture has none).
type layerTensors struct {
	q, k, v, o, gate, up, down        backend.Weight
	inputNorm, postNorm, qNorm, kNorm tensor.Tensor
	bq, bk, bv, bo, bgate, bup, bdown tensor.Tensor
}

// vec wraps an optional weight vector as a tensor (the nil tensor for nil).
func vec(x []float32) tensor.Tensor {
	if x == nil {
		return tensor.Tensor{}
	}
	return tensor.FromF32(x)
}

// LoadHead reads only the embedding and lm_head of a model folder (memory-mapped when stored as float32);
// the returned close function releases the checkpoint.
func LoadHead(dir string) (*Head, func() error, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, nil, err
	}
	ckpt, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return nil, nil, err
	}
	src := &checkpointSource{ckpt: ckpt, used: map[string]bool{}}
	h := &Head{be: auto.Default()}
	if err := h.read(cfg, src); err != nil {
		ckpt.Close()
		return nil, nil, err
	}
	return h, ckpt.Close, nil
}

// read fills the head's configuration and weights from src, preparing lm_head on h's backend.
func (h *Head) read(cfg *Config, src WeightSource) error {
	h.Config = cfg
	var err error
	if h.Embed, err = src.Get("model.embed_tokens.weight", false, cfg.VocabSize, cfg.HiddenSize); err != nil {
		return err
	}
	if cfg.TieWordEmbeddings {
		h.LMHead = h.Embed
	} else if h.LMHead, err = src.Get("lm_head.weight", true, cfg.VocabSize, cfg.HiddenSize); err != nil {
		return err
	} else if h.LMHead == nil {
		return fmt.Errorf("lm_head.weight is missing and tie_word_embeddings is false")
	}
	h.embed = tensor.FromF32(h.Embed, cfg.VocabSize, cfg.HiddenSize)
	h.lmHead, err = h.be.PrepareWeight(tensor.FromF32(h.LMHead, cfg.VocabSize, cfg.HiddenSize), cfg.VocabSize, cfg.HiddenSize)
	if err != nil {
		return fmt.Errorf("lm_head: %w", err)
	}
	return nil
}

// WeightSource yields a tensor by its Hugging Face name as float32, checked against the expected shape.
// optional tensors return (nil, nil) when absent.
type WeightSource interface {
	Get(name string, optional bool, shape ...int) ([]float32, error)
}

// Load reads a Hugging Face model folder: config.json and model.safetensors (or a sharded checkpoint).
func Load(dir string) (*Model, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	ckpt, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	src := &checkpointSource{ckpt: ckpt, used: map[string]bool{}}
	m, err := New(cfg, src)
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

func (s *checkpointSource) Get(name string, optional bool, shape ...int) ([]float32, error) {
	if optional && !s.ckpt.Has(name) {
		return nil, nil
	}
	t, err := s.ckpt.Tensor(name)
	if err != nil {
		return nil, err
	}
	if err := t.CheckShape(shape...); err != nil {
		return nil, err
	}
	s.used[name] = true
	return t.Float32View()
}

// New builds a model from a config and a source of weights, computing on the backend of this build.
func New(cfg *Config, src WeightSource) (*Model, error) { return NewOn(auto.Default(), cfg, src) }

// NewOn is New computing on backend be.
func NewOn(be backend.Backend, cfg *Config, src WeightSource) (*Model, error) {
	H, I := cfg.HiddenSize, cfg.IntermediateSize
	qDim, kvDim := cfg.NumHeads*cfg.HeadDim, cfg.NumKVHeads*cfg.HeadDim
	m := &Model{Head: Head{Config: cfg, be: be}, Layers: make([]Layer, cfg.NumLayers), rotations: rope.Rotations{Config: cfg.Rope}}
	var errs []string
	get := func(name string, optional bool, shape ...int) []float32 {
		w, err := src.Get(name, optional, shape...)
		if err != nil {
			errs = append(errs, err.Error())
		}
		return w
	}
	// want fetches a tensor that the config requires or forbids; present says which.
	want := func(present bool, name string, shape ...int) []float32 {
		if !present {
			return nil
		}
		return get(name, false, shape...)
	}
	for i := range m.Layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		l := &m.Layers[i]
		l.InputNorm = get(p+"input_layernorm.weight", false, H)
		l.PostNorm = get(p+"post_attention_layernorm.weight", false, H)
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
		l.Wgate = get(p+"mlp.gate_proj.weight", false, I, H)
		l.Wup = get(p+"mlp.up_proj.weight", false, I, H)
		l.Wdown = get(p+"mlp.down_proj.weight", false, H, I)
		l.Bgate = want(cfg.MLPBias, p+"mlp.gate_proj.bias", I)
		l.Bup = want(cfg.MLPBias, p+"mlp.up_proj.bias", I)
		l.Bdown = want(cfg.MLPBias, p+"mlp.down_proj.bias", H)
		if len(errs) > 3 {
			break // a wrong checkpoint fails on every layer; a few lines say enough
		}
	}
	m.Norm = get("model.norm.weight", false, H)
	if len(errs) == 0 {
		if err := m.Head.read(cfg, src); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("load %s weights: %s", cfg.Architecture, strings.Join(errs, "; "))
	}
	m.norm = tensor.FromF32(m.Norm, H)
	m.layers = make([]layerTensors, len(m.Layers))
	for i := range m.Layers {
		l := &m.Layers[i]
		lt := &m.layers[i]
		for _, w := range []struct {
			dst     *backend.Weight
			w       []float32
			out, in int
		}{
			{&lt.q, l.Wq, qDim, H}, {&lt.k, l.Wk, kvDim, H}, {&lt.v, l.Wv, kvDim, H}, {&lt.o, l.Wo, H, qDim},
			{&lt.gate, l.Wgate, I, H}, {&lt.up, l.Wup, I, H}, {&lt.down, l.Wdown, H, I},
		} {
			var err error
			if *w.dst, err = be.PrepareWeight(tensor.FromF32(w.w, w.out, w.in), w.out, w.in); err != nil {
				return nil, fmt.Errorf("load %s weights: layer %d: %w", cfg.Architecture, i, err)
			}
		}
		lt.inputNorm, lt.postNorm, lt.qNorm, lt.kNorm = vec(l.InputNorm), vec(l.PostNorm), vec(l.QNorm), vec(l.KNorm)
		lt.bq, lt.bk, lt.bv, lt.bo = vec(l.Bq), vec(l.Bk), vec(l.Bv), vec(l.Bo)
		lt.bgate, lt.bup, lt.bdown = vec(l.Bgate), vec(l.Bup), vec(l.Bdown)
	}
	return m, nil
}
