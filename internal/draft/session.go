package draft

import (
	"math"

	"github.com/specforge/specforge/internal/blas"
	"github.com/specforge/specforge/internal/kernels"
)

// Session decodes with the draft for one sequence: it keeps the draft layer's keys and values of every row
// fed so far. A row pairs the embedding of a token with a hidden state (fc of the target's aux states for
// verified positions, or the draft's own previous output while drafting), as in training, and runs through
// the same layer (layer.go) as training does.
type Session struct {
	l         layer     // on the Prepared weights
	K, V      []float32 // [Cap, kvDim]
	Len       int
	attn      kernels.Attention
	rotations kernels.Rotations
	// Workspace reused by every call.
	s                         acts
	fc, out, logitsIn, logits []float32
}

// Prepared is a draft's matrices ready for decoding: blas.Weight keeps transposes of the small ones, which
// products of a few rows (a drafting step, a verified span) use. Sessions started from it share them; it
// holds copies, so prepare again after the draft's weights change.
type Prepared struct {
	d                                      *Draft
	fc, q, k, v, o, gate, up, down, lmHead blas.Weight
}

// Prepare readies the draft's matrices for decoding.
func (d *Draft) Prepare() *Prepared {
	c, w := &d.Config, &d.W
	H, I, qDim, kvDim := c.HiddenSize, c.IntermediateSize, c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
	return &Prepared{d: d,
		fc: blas.NewWeight(w.FC, H, 3*c.TargetHiddenSize),
		q:  blas.NewWeight(w.Wq, qDim, 2*H), k: blas.NewWeight(w.Wk, kvDim, 2*H), v: blas.NewWeight(w.Wv, kvDim, 2*H),
		o:    blas.NewWeight(w.Wo, H, qDim),
		gate: blas.NewWeight(w.Wgate, I, H), up: blas.NewWeight(w.Wup, I, H), down: blas.NewWeight(w.Wdown, H, I),
		lmHead: blas.NewWeight(w.LMHead, c.DraftVocabSize, H),
	}
}

// NewSession starts an empty draft cache on freshly prepared weights (Prepare once and start sessions from
// it to decode many sequences).
func (d *Draft) NewSession() (*Session, error) { return d.Prepare().NewSession() }

// NewSession starts an empty draft cache.
func (p *Prepared) NewSession() (*Session, error) {
	d := p.d
	c := &d.Config
	if d.Embed == nil {
		return nil, errNoEmbedding
	}
	rope, err := c.Rope()
	if err != nil {
		return nil, err
	}
	return &Session{l: newLayer(d, p), rotations: kernels.Rotations{Config: rope},
		attn: kernels.Attention{Heads: c.NumHeads, KVHeads: c.NumKVHeads, HeadDim: c.HeadDim, Scale: float32(1 / math.Sqrt(float64(c.HeadDim)))}}, nil
}

// FC projects target aux states [n, 3*Ht] to draft hidden inputs [n, H], in a buffer of the session that
// the next call overwrites.
func (s *Session) FC(aux []float32, n int) []float32 {
	s.fc = kernels.Resize(s.fc, n*s.l.H)
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
// tree allows (a kernels.Mask tree).
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
	a.e, a.eN, a.hN, a.x = kernels.Resize(a.e, n*H), kernels.Resize(a.eN, n*H), kernels.Resize(a.hN, n*H), kernels.Resize(a.x, n*2*H)
	a.q, a.a = kernels.Resize(a.q, n*qDim), kernels.Resize(a.a, n*qDim)
	a.k, a.v = s.K[s.Len*kvDim:(s.Len+n)*kvDim], s.V[s.Len*kvDim:(s.Len+n)*kvDim]
	a.rope = s.rotations.Table(positions)
	l.forwardIn(a, ids, n)
	s.attn.Forward(a.a, a.q, s.K[:(s.Len+n)*kvDim], s.V[:(s.Len+n)*kvDim], n, kernels.Mask{Past: s.Len, Tree: tree, TreeFrom: treeFrom})
	s.Len += n
	// out is the residual stream itself: hp, then hp plus the MLP (no backward reads hp).
	s.out = kernels.Resize(s.out, n*H)
	a.hp, a.y, a.gate, a.up = s.out, kernels.Resize(a.y, n*H), kernels.Resize(a.gate, n*I), kernels.Resize(a.up, n*I)
	l.forwardOut(s.out, a.gate, a, n)
	a.h = nil
	return s.out
}

// Logits maps pre-norm outputs h [n, H] to draft-vocabulary logits [n, Vd], in a buffer of the session
// that the next call overwrites.
func (s *Session) Logits(h []float32, n int) []float32 {
	s.logitsIn = kernels.Resize(s.logitsIn, n*s.l.H)
	s.logits = kernels.Resize(s.logits, n*s.l.vd)
	s.l.headForward(s.logits, s.logitsIn, nil, h, n)
	return s.logits
}

// TargetID maps a draft-vocabulary index to the target's token id.
func (d *Draft) TargetID(i int) int32 { return int32(int64(i) + d.Vocab.D2T[i]) }
