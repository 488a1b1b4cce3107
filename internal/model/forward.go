package model

import (
	"fmt"
	"math"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/batch"
	"github.com/specforge/specforge/internal/rope"
	"github.com/specforge/specforge/internal/tensor"
)

// Batch is the input of one forward: B rows of T new tokens each (IDs, Positions, AttentionMask and Tree;
// LossMask and Lens are not read). It is specforge's one batch type, named here for the forward's callers.
type Batch = batch.Tokens

// LogitRows selects the rows whose logits a forward computes, so a large vocabulary is only multiplied out
// where it is needed.
type LogitRows int

const (
	NoLogits   LogitRows = iota // hidden states only
	AllLogits                   // every row
	LastLogits                  // the last token of every row
	SomeLogits                  // the flat rows listed in Request.Rows
)

// Request says what a forward returns besides the final hidden states.
type Request struct {
	// AuxLayers are 0-based decoder layers whose output (the residual stream after the layer, before any
	// final norm) is captured and concatenated: Output.Aux is [B*T, len(AuxLayers)*H].
	AuxLayers []int
	Logits    LogitRows
	Rows      []int // flat indices b*T+t, for SomeLogits
	// Reuse, if set, is an earlier Output whose buffers the forward overwrites instead of allocating new ones
	// (large prefills then cost no page faults and no garbage).
	Reuse *Output
}

// Output of a forward.
type Output struct {
	Hidden    []float32 // [B*T, H] after the final norm (what feeds lm_head)
	Aux       []float32 // [B*T, len(AuxLayers)*H]
	Logits    []float32 // [len(LogitRows), V]
	LogitRows []int     // the flat rows Logits hold, in order
}

// Forward runs the model over a batch. With a cache the new keys and values are appended to it and the
// tokens attend to everything cached before them; without one the batch is a complete prefill. Calls on one
// Model are serialised: they share its activation workspace.
func (m *Model) Forward(b Batch, cache *KVCache, req Request) (*Output, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg := m.Config
	H, V := cfg.HiddenSize, cfg.VocabSize
	N := b.B * b.T
	if b.B <= 0 || b.T <= 0 || len(b.IDs) != N {
		return nil, fmt.Errorf("forward: %d ids for a batch of %d rows x %d tokens", len(b.IDs), b.B, b.T)
	}
	for i, id := range b.IDs {
		if id < 0 || int(id) >= V {
			return nil, fmt.Errorf("forward: token id %d at position %d is outside the vocabulary [0, %d)", id, i, V)
		}
	}
	if b.Positions != nil && len(b.Positions) != N || b.AttentionMask != nil && len(b.AttentionMask) != N ||
		b.Tree != nil && len(b.Tree) != b.T*b.T {
		return nil, fmt.Errorf("forward: positions, attention mask or tree sized for another batch")
	}
	for _, l := range req.AuxLayers {
		if l < 0 || l >= cfg.NumLayers {
			return nil, fmt.Errorf("forward: aux layer %d out of range [0, %d)", l, cfg.NumLayers)
		}
	}
	ws := m.workspace(N)
	past := 0
	if cache == nil {
		// A prefill without a cache keeps one layer's keys and values at a time.
		cache = &KVCache{B: b.B, Cap: b.T, kvDim: ws.kvDim, K: [][]float32{ws.k}, V: [][]float32{ws.v}, Valid: ws.valid, transient: true}
	} else {
		if cache.B != b.B {
			return nil, fmt.Errorf("forward: batch of %d rows on a cache of %d", b.B, cache.B)
		}
		if cache.Len+b.T > cache.Cap {
			cache.grow(cache.Len + b.T)
		}
		past = cache.Len
	}
	positions := b.Positions
	if positions == nil {
		positions = ws.pos
		for i := range positions {
			positions[i] = int32(past + i%b.T)
		}
	}
	rot := m.rotations.Table(positions)
	for r := 0; r < b.B; r++ {
		for t := 0; t < b.T; t++ {
			cache.Valid[r*cache.Cap+past+t] = b.AttentionMask == nil || b.AttentionMask[r*b.T+t]
		}
	}

	out := req.Reuse
	if out == nil {
		out = &Output{}
	}
	out.Aux = tensor.Resize(out.Aux, N*len(req.AuxLayers)*H)
	out.Hidden = tensor.Resize(out.Hidden, N*H)
	h := out.Hidden
	m.be.Embedding(tensor.Vec(h), m.Embed, b.IDs, H)
	for li := range m.Layers {
		m.layer(li, h, &ws, b, cache, past, rot)
		for slot, al := range req.AuxLayers {
			if al == li {
				width := len(req.AuxLayers) * H
				for r := 0; r < N; r++ {
					copy(out.Aux[r*width+slot*H:r*width+(slot+1)*H], h[r*H:(r+1)*H])
				}
			}
		}
	}
	cache.Len = past + b.T
	m.be.RMSNormForward(tensor.Vec(h), tensor.Tensor{}, tensor.Vec(h), m.Norm, N, H, float32(cfg.RMSNormEps))
	out.LogitRows = out.LogitRows[:0]
	switch req.Logits {
	case AllLogits:
		for i := 0; i < N; i++ {
			out.LogitRows = append(out.LogitRows, i)
		}
	case LastLogits:
		for r := 0; r < b.B; r++ {
			out.LogitRows = append(out.LogitRows, r*b.T+b.T-1)
		}
	case SomeLogits:
		for _, r := range req.Rows {
			if r < 0 || r >= N {
				return nil, fmt.Errorf("forward: logit row %d out of range [0, %d)", r, N)
			}
		}
		out.LogitRows = append(out.LogitRows, req.Rows...)
	}
	out.Logits = m.LogitsOf(out.Logits, h, out.LogitRows)
	return out, nil
}

// LogitsOf multiplies the listed rows of final hidden states hidden [*, H] by lm_head (of a head read by Load
// or LoadHead) into dst (reused when large enough) and returns the [len(rows), V] logits.
func (m *Head) LogitsOf(dst, hidden []float32, rows []int) []float32 {
	H, V := m.Config.HiddenSize, m.Config.VocabSize
	logits := tensor.Resize(dst, len(rows)*V)
	if len(rows) == 0 {
		return logits
	}
	x := hidden
	if !isIdentity(rows, len(hidden)/H) {
		x = make([]float32, len(rows)*H)
		for i, r := range rows {
			copy(x[i*H:(i+1)*H], hidden[r*H:(r+1)*H])
		}
	}
	m.be.Linear(tensor.Vec(logits), tensor.Vec(x), m.lmHead, len(rows), false)
	return logits
}

func isIdentity(rows []int, n int) bool {
	if len(rows) != n {
		return false
	}
	for i, r := range rows {
		if r != i {
			return false
		}
	}
	return true
}

// scratch holds one layer's activations, reused by every layer of a forward and by later forwards.
type scratch struct {
	rows                       int
	kvDim                      int
	x, q, k, v, attn, gate, up []float32
	valid                      []bool
	pos                        []int32
}

// workspace returns the model's scratch, grown to hold n rows, with every buffer cut to exactly n rows (the
// elementwise kernels work on whole buffers).
func (m *Model) workspace(n int) scratch {
	cfg := m.Config
	qDim, kvDim := cfg.NumHeads*cfg.HeadDim, cfg.NumKVHeads*cfg.HeadDim
	if m.ws == nil || m.ws.rows < n {
		m.ws = &scratch{
			rows: n, kvDim: kvDim,
			x: make([]float32, n*cfg.HiddenSize), q: make([]float32, n*qDim), k: make([]float32, n*kvDim),
			v: make([]float32, n*kvDim), attn: make([]float32, n*qDim),
			gate: make([]float32, n*cfg.IntermediateSize), up: make([]float32, n*cfg.IntermediateSize),
			valid: make([]bool, n), pos: make([]int32, n),
		}
	}
	w := m.ws
	return scratch{
		rows: n, kvDim: kvDim,
		x: w.x[:n*cfg.HiddenSize], q: w.q[:n*qDim], k: w.k[:n*kvDim], v: w.v[:n*kvDim], attn: w.attn[:n*qDim],
		gate: w.gate[:n*cfg.IntermediateSize], up: w.up[:n*cfg.IntermediateSize], valid: w.valid[:n], pos: w.pos[:n],
	}
}

// layer updates the residual stream h [N, H] in place by decoder layer li.
func (m *Model) layer(li int, hs []float32, s *scratch, b Batch, cache *KVCache, past int, rot *rope.Table) {
	cfg, be := m.Config, m.be
	l, w := &m.layers[li], &m.Layers[li]
	N, H := b.B*b.T, cfg.HiddenSize
	d := cfg.HeadDim
	qDim, kvDim := cfg.NumHeads*d, cfg.NumKVHeads*d
	eps := float32(cfg.RMSNormEps)
	h, x, q, k, v := tensor.Vec(hs), tensor.Vec(s.x), tensor.Vec(s.q), tensor.Vec(s.k), tensor.Vec(s.v)
	none := tensor.Tensor{}

	be.RMSNormForward(x, none, h, w.InputNorm, N, H, eps)
	m.linear(q, x, l.q, w.Bq, N)
	m.linear(k, x, l.k, w.Bk, N)
	m.linear(v, x, l.v, w.Bv, N)
	if !w.QNorm.IsNil() {
		be.RMSNormForward(q, none, q, w.QNorm, N*cfg.NumHeads, d, eps)
		be.RMSNormForward(k, none, k, w.KNorm, N*cfg.NumKVHeads, d, eps)
	}
	be.RoPEForward(q, rot, N, cfg.NumHeads)
	be.RoPEForward(k, rot, N, cfg.NumKVHeads)

	att := backend.Attention{Heads: cfg.NumHeads, KVHeads: cfg.NumKVHeads, HeadDim: d, Scale: float32(1 / math.Sqrt(float64(d)))}
	window := 0
	if cfg.SlidingWindow > 0 && cfg.SlidingLayers[li] {
		window = cfg.SlidingWindow
	}
	kc, vc := cache.layer(li)
	for r := 0; r < b.B; r++ {
		row := r * cache.Cap
		copy(kc[(row+past)*kvDim:(row+past+b.T)*kvDim], s.k[r*b.T*kvDim:(r+1)*b.T*kvDim])
		copy(vc[(row+past)*kvDim:(row+past+b.T)*kvDim], s.v[r*b.T*kvDim:(r+1)*b.T*kvDim])
		mask := backend.Mask{Past: past, Tree: b.Tree, TreeFrom: past, Window: window}
		if !allTrue(cache.Valid[row : row+past+b.T]) {
			mask.KeyValid = cache.Valid[row : row+past+b.T]
		}
		be.AttentionForward(tensor.Vec(s.attn[r*b.T*qDim:(r+1)*b.T*qDim]), tensor.Vec(s.q[r*b.T*qDim:(r+1)*b.T*qDim]),
			tensor.Vec(kc[row*kvDim:(row+past+b.T)*kvDim]), tensor.Vec(vc[row*kvDim:(row+past+b.T)*kvDim]), b.T, att, mask)
	}
	// The output projection and the MLP add straight into the residual stream.
	be.Linear(h, tensor.Vec(s.attn), l.o, N, true)
	m.addBias(h, w.Bo, N)

	be.RMSNormForward(x, none, h, w.PostNorm, N, H, eps)
	if cfg.sparse(li) {
		m.experts(li, h, x, N)
		return
	}
	gate, up := tensor.Vec(s.gate), tensor.Vec(s.up)
	m.linear(gate, x, l.gate, w.Bgate, N)
	m.linear(up, x, l.up, w.Bup, N)
	be.SwiGLUForward(gate, gate, up)
	be.Linear(h, gate, l.down, N, true)
	m.addBias(h, w.Bdown, N)
}

// linear computes y = x w^T + bias for x [n, In]; bias may be nil.
func (m *Model) linear(y, x tensor.Tensor, w backend.Weight, bias tensor.Tensor, n int) {
	m.be.Linear(y, x, w, n, false)
	m.addBias(y, bias, n)
}

// addBias adds an optional bias to the n rows of y.
func (m *Model) addBias(y, bias tensor.Tensor, n int) {
	if !bias.IsNil() {
		m.be.AddBias(y, bias, n, bias.Len())
	}
}

func allTrue(v []bool) bool {
	for _, x := range v {
		if !x {
			return false
		}
	}
	return true
}

// VocabSize is the size of the logits the model produces.
func (m *Head) VocabSize() int { return m.Config.VocabSize }

// Backend is the backend the model computes on, for work on its outputs (the argmax of its logits).
func (m *Head) Backend() backend.Backend { return m.be }
