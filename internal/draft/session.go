package draft

import (
	"fmt"
	"math"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/rope"
	"github.com/specforge/specforge/internal/tensor"
)

// Session decodes with the draft for one sequence: it keeps the draft layer's keys and values of every row
// fed so far. A row pairs the embedding of a token with a hidden state (fc of the target's aux states for
// verified positions, or the draft's own previous output while drafting), as in training, and runs through
// the same layer (layer.go) as training does.
type Session struct {
	l         layer     // on the Prepared weights
	K, V      []float32 // [Cap, kvDim]
	Len       int
	attn      backend.Attention
	rotations rope.Rotations
	// Workspace reused by every call.
	s                         acts
	fc, out, logitsIn, logits []float32
}

// Prepared is a draft's matrices ready for decoding on its backend (the CPU backend keeps transposes of
// the small ones, which products of a few rows, a drafting step or a verified span, use). Sessions started
// from it share them; the transposes are copies, so prepare again after the draft's weights change.
type Prepared struct {
	d                                      *Draft
	fc, q, k, v, o, gate, up, down, lmHead backend.Weight
	err                                    error // from the backend, reported by NewSession
}

// Prepare readies the draft's matrices for decoding.
func (d *Draft) Prepare() *Prepared {
	c, w := &d.Config, &d.W
	H, I, qDim, kvDim := c.HiddenSize, c.IntermediateSize, c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
	p := &Prepared{d: d}
	for _, m := range []struct {
		dst     *backend.Weight
		w       []float32
		out, in int
	}{
		{&p.fc, w.FC, H, c.AuxWidth()},
		{&p.q, w.Wq, qDim, 2 * H}, {&p.k, w.Wk, kvDim, 2 * H}, {&p.v, w.Wv, kvDim, 2 * H}, {&p.o, w.Wo, H, qDim},
		{&p.gate, w.Wgate, I, H}, {&p.up, w.Wup, I, H}, {&p.down, w.Wdown, H, I},
		{&p.lmHead, w.LMHead, c.DraftVocabSize, H},
	} {
		if *m.dst, p.err = d.be.PrepareWeight(tensor.FromF32(m.w), m.out, m.in, backend.F32Product); p.err != nil {
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
	return &Session{l: newLayer(d, p), rotations: rope.Rotations{Config: rc},
		attn: backend.Attention{Heads: c.NumHeads, KVHeads: c.NumKVHeads, HeadDim: c.HeadDim, Scale: float32(1 / math.Sqrt(float64(c.HeadDim)))}}, nil
}

// FC projects target aux states [n, AuxWidth] to draft hidden inputs [n, H], in a buffer of the session that
// the next call overwrites.
func (s *Session) FC(aux []float32, n int) []float32 {
	s.fc = tensor.Resize(s.fc, n*s.l.H)
	s.l.fc.apply(s.fc, aux, n, false)
	return s.fc
}

// Truncate forgets rows from n on.
func (s *Session) Truncate(n int) {
	if n < s.Len {
		s.Len = n
	}
}

// Forward appends n rows (token ids, hidden inputs h [n, H], RoPE positions) and returns their pre-norm
// outputs [n, H], in a buffer of the session that the next Forward overwrites; h may be that buffer itself
// (the previous output, when drafting the next token). With tree nil each new row sees every cached row and
// the earlier new rows; otherwise it sees the cached rows before treeFrom and, from treeFrom on, the rows
// tree allows (a backend.Mask tree).
func (s *Session) Forward(ids []int32, h []float32, positions []int32, tree []bool, treeFrom int) []float32 {
	l := &s.l
	n, H, I, qDim, kvDim := len(ids), l.H, l.I, l.qDim, l.kvDim
	if need := (s.Len + n) * kvDim; need > len(s.K) {
		grow := max(need, 2*len(s.K))
		s.K = append(s.K[:s.Len*kvDim], make([]float32, grow-s.Len*kvDim)...)
		s.V = append(s.V[:s.Len*kvDim], make([]float32, grow-s.Len*kvDim)...)
	}
	a := &s.s
	a.h = h
	a.e, a.eN, a.hN, a.x = tensor.Resize(a.e, n*H), tensor.Resize(a.eN, n*H), tensor.Resize(a.hN, n*H), tensor.Resize(a.x, n*2*H)
	a.q, a.a = tensor.Resize(a.q, n*qDim), tensor.Resize(a.a, n*qDim)
	a.k, a.v = s.K[s.Len*kvDim:(s.Len+n)*kvDim], s.V[s.Len*kvDim:(s.Len+n)*kvDim]
	a.rope = s.rotations.Table(positions)
	l.forwardIn(a, ids, n)
	l.be.AttentionForward(t32(a.a), t32(a.q), t32(s.K[:(s.Len+n)*kvDim]), t32(s.V[:(s.Len+n)*kvDim]), n, s.attn, backend.Mask{Past: s.Len, Tree: tree, TreeFrom: treeFrom})
	s.Len += n
	// out is the residual stream itself: hp, then hp plus the MLP (no backward reads hp).
	s.out = tensor.Resize(s.out, n*H)
	a.hp, a.y, a.gate, a.up = s.out, tensor.Resize(a.y, n*H), tensor.Resize(a.gate, n*I), tensor.Resize(a.up, n*I)
	l.forwardOut(s.out, a.gate, a, n)
	return s.out
}

// Logits maps pre-norm outputs h [n, H] to draft-vocabulary logits [n, Vd], in a buffer of the session
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
