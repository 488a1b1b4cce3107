package model

import (
	"fmt"
	"strings"
	"sync"

	"github.com/specforge/specforge/internal/blas"
	"github.com/specforge/specforge/internal/kernels"
	"github.com/specforge/specforge/internal/safetensors"
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
	Embed  []float32   // [V, H]
	LMHead []float32   // [V, H]; the same slice as Embed when the embeddings are tied
	lmHead blas.Weight // LMHead for products (with its transpose when small); set by the loaders
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
	rotations kernels.Rotations
	proj      []projections
}

// projections are a layer's weight matrices prepared for products (blas.Weight keeps the transposes of
// small ones).
type projections struct{ q, k, v, o, gate, up, down blas.Weight }

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
	h := &Head{}
	if err := h.read(cfg, src); err != nil {
		ckpt.Close()
		return nil, nil, err
	}
	return h, ckpt.Close, nil
}

// read fills the head's configuration and weights from src.
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
	h.lmHead = blas.NewWeight(h.LMHead, cfg.VocabSize, cfg.HiddenSize)
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

// New builds a model from a config and a source of weights.
func New(cfg *Config, src WeightSource) (*Model, error) {
	H, I := cfg.HiddenSize, cfg.IntermediateSize
	qDim, kvDim := cfg.NumHeads*cfg.HeadDim, cfg.NumKVHeads*cfg.HeadDim
	m := &Model{Head: Head{Config: cfg}, Layers: make([]Layer, cfg.NumLayers), rotations: kernels.Rotations{Config: cfg.Rope}}
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
	m.proj = make([]projections, len(m.Layers))
	for i := range m.Layers {
		l := &m.Layers[i]
		m.proj[i] = projections{
			q: blas.NewWeight(l.Wq, qDim, H), k: blas.NewWeight(l.Wk, kvDim, H), v: blas.NewWeight(l.Wv, kvDim, H),
			o: blas.NewWeight(l.Wo, H, qDim), gate: blas.NewWeight(l.Wgate, I, H), up: blas.NewWeight(l.Wup, I, H),
			down: blas.NewWeight(l.Wdown, H, I),
		}
	}
	return m, nil
}
