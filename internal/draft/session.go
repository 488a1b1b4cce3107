package draft

import (
	"fmt"
	"math"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/rope"
	"github.com/specforge/specforge/internal/tensor"
)

// Session decodes with the draft for one sequence: it keeps each decoder layer's keys and values of every
// row fed so far. A row pairs the embedding of a token with a hidden state (fc of the target's aux states
// for verified positions, or the draft's own previous output while drafting), as in training, and runs
// through the same layers (layer.go) as training does.
type Session struct {
	l         layer // on the Prepared weights
	caches    []kvCache
	Len       int
	attn      backend.Attention
	rotations rope.Rotations
	// Workspace reused by every call.
	s                         acts
	fc, out, logitsIn, logits []float32
	fcWork                    fcWork
}

// kvCache is one decoder layer's keys and values [Cap, kvDim].
type kvCache struct{ K, V []float32 }

// Prepared is a draft's matrices ready for decoding on its backend (the CPU backend keeps transposes of
// the small ones, which products of a few rows, a drafting step or a verified span, use). Sessions started
// from it share them; the transposes are copies, so prepare again after the draft's weights change.
type Prepared struct {
	d          *Draft
	fc, lmHead backend.Weight
	blocks     []preparedBlock
	err        error // from the backend, reported by NewSession
}

// preparedBlock is one decoder layer's prepared matrices.
type preparedBlock struct {
	q, k, v, o, gate, up, down backend.Weight
}

// Prepare readies the draft's matrices for decoding.
func (d *Draft) Prepare() *Prepared {
	p := &Prepared{d: d, blocks: make([]preparedBlock, d.Config.Layers())}
	l := newLayer(d, nil)
	dst := []*backend.Weight{&p.fc, &p.lmHead}
	for i := range p.blocks {
		b := &p.blocks[i]
		dst = append(dst, &b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down)
	}
	for i, lin := range l.linears() { // in the order of dst
		if *dst[i], p.err = d.be.PrepareWeight(tensor.FromF32(lin.w), lin.out, lin.in, backend.F32Product); p.err != nil {
			p.err = fmt.Errorf("draft: prepare for decoding: %w", p.err)
			return p
		}
	}
	return p
}

// NewSession starts an empty draft cache on freshly prepared weights (Prepare once and start sessions from
// it to decode many sequences).
func (d *Draft) NewSession() (*Session, error) { return d.Prepare().NewSession() }

// NewSession starts an empty draft cache.
func (p *Prepared) NewSession() (*Session, error) {
	d := p.d
	c := &d.Config
	if d.Embed.IsNil() {
		return nil, errNoEmbedding
	}
	if p.err != nil {
		return nil, p.err
	}
	rc, err := c.Rope()
	if err != nil {
		return nil, err
	}
	return &Session{l: newLayer(d, p), caches: make([]kvCache, c.Layers()), rotations: rope.Rotations{Config: rc},
		attn: backend.Attention{Heads: c.NumHeads, KVHeads: c.NumKVHeads, HeadDim: c.HeadDim, Scale: float32(1 / math.Sqrt(float64(c.HeadDim)))}}, nil
}

// FC projects target aux states [n, AuxWidth] to draft hidden inputs [n, H], in a buffer of the session that
// the next call overwrites.
func (s *Session) FC(aux []float32, n int) []float32 {
	s.fc = tensor.Resize(s.fc, n*s.l.H)
	s.l.fcForward(s.fc, aux, &s.fcWork, n)
	return s.fc
}

// Truncate forgets rows from n on.
func (s *Session) Truncate(n int) {
	if n < s.Len {
		s.Len = n
	}
}

// Forward appends n rows (token ids, hidden inputs h [n, H], RoPE positions) and returns their hidden
// states [n, H], what Logits and the next step read: the last layer's residual stream, or its final norm
// with norm_output. They are in a buffer of the session that the next Forward
// overwrites; h may be that buffer itself (the previous output, when drafting the next token). With tree
// nil each new row sees every cached row and the earlier new rows; otherwise it sees the cached rows before
// treeFrom and, from treeFrom on, the rows tree allows (a backend.Mask tree).
func (s *Session) Forward(ids []int32, h []float32, positions []int32, tree []bool, treeFrom int) []float32 {
	l := &s.l
	n, H, I, qDim, kvDim := len(ids), l.H, l.I, l.qDim, l.kvDim
	a := &s.s
	a.e, a.eN, a.hN, a.x = tensor.Resize(a.e, n*H), tensor.Resize(a.eN, n*H), tensor.Resize(a.hN, n*H), tensor.Resize(a.x, n*2*H)
	a.q, a.a = tensor.Resize(a.q, n*qDim), tensor.Resize(a.a, n*qDim)
	a.y, a.gate, a.up = tensor.Resize(a.y, n*H), tensor.Resize(a.gate, n*I), tensor.Resize(a.up, n*I)
	a.rope = s.rotations.Table(positions)
	// out is the residual stream itself: each layer's hp, then hp plus the MLP (no backward reads hp),
	// and the next layer's input. The first layer reads h, which may be out: its norm is taken before out
	// is written.
	s.out = tensor.Resize(s.out, n*H)
	a.h = h
	for i := range l.blocks {
		c := &s.caches[i]
		if need := (s.Len + n) * kvDim; need > len(c.K) {
			grow := max(need, 2*len(c.K))
			c.K = append(c.K[:s.Len*kvDim], make([]float32, grow-s.Len*kvDim)...)
			c.V = append(c.V[:s.Len*kvDim], make([]float32, grow-s.Len*kvDim)...)
		}
		a.k, a.v = c.K[s.Len*kvDim:(s.Len+n)*kvDim], c.V[s.Len*kvDim:(s.Len+n)*kvDim]
		l.forwardIn(&l.blocks[i], a, ids, n)
		l.be.AttentionForward(t32(a.a), t32(a.q), t32(c.K[:(s.Len+n)*kvDim]), t32(c.V[:(s.Len+n)*kvDim]), n, s.attn, backend.Mask{Past: s.Len, Tree: tree, TreeFrom: treeFrom})
		a.hp = s.out
		l.forwardOut(&l.blocks[i], s.out, a.gate, a, n)
		a.h = s.out
	}
	if l.d.Config.NormOutput {
		l.be.RMSNormForward(t32(s.out), tensor.Tensor{}, t32(s.out), t32(l.d.W.Norm), n, H, l.eps)
	}
	s.Len += n
	return s.out
}

// Logits maps hidden states h [n, H] (Forward's) to draft-vocabulary logits [n, Vd], in a buffer of the session
// that the next call overwrites.
func (s *Session) Logits(h []float32, n int) []float32 {
	s.logitsIn = tensor.Resize(s.logitsIn, n*s.l.H)
	s.logits = tensor.Resize(s.logits, n*s.l.vd)
	s.l.headForward(s.logits, s.logitsIn, nil, h, n)
	return s.logits
}

// TargetID maps a draft-vocabulary index to the target's token id.
func (d *Draft) TargetID(i int) int32 { return int32(int64(i) + d.Vocab.D2T[i]) }

// Backend is the backend the draft computes on, for work on its outputs (the argmax of its logits).
func (d *Draft) Backend() backend.Backend { return d.be }
