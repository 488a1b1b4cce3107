package draft

import (
	"math"

	"github.com/specforge/specforge/internal/blas"
	"github.com/specforge/specforge/internal/kernels"
)

// Session decodes with the draft for one sequence: it keeps the draft layer's keys and values of every row
// fed so far. A row pairs the embedding of a token with a hidden state (fc of the target's aux states for
// verified positions, or the draft's own previous output while drafting), as in training.
type Session struct {
	w         *Prepared
	K, V      []float32 // [Cap, kvDim]
	Len       int
	attn      kernels.Attention
	rotations kernels.Rotations
	// Workspace reused by every call.
	fc, e, hn, x, q, a, y, g, u, logitsIn, logits []float32
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
	return &Session{w: p, rotations: kernels.Rotations{Config: rope},
		attn: kernels.Attention{Heads: c.NumHeads, KVHeads: c.NumKVHeads, HeadDim: c.HeadDim, Scale: float32(1 / math.Sqrt(float64(c.HeadDim)))}}, nil
}

// FC projects target aux states [n, 3*Ht] to draft hidden inputs [n, H], in a buffer of the session that
// the next call overwrites.
func (s *Session) FC(aux []float32, n int) []float32 {
	c := &s.w.d.Config
	s.fc = kernels.Resize(s.fc, n*c.HiddenSize)
	s.w.fc.Apply(s.fc, aux, n, false)
	return s.fc
}

// Truncate forgets rows from n on.
func (s *Session) Truncate(n int) {
	if n < s.Len {
		s.Len = n
	}
}

// Forward appends n rows (token ids, hidden inputs h [n, H], RoPE positions) and returns their pre-norm
// outputs [n, H]. With tree nil each new row sees every cached row and the earlier new rows; otherwise it
// sees the cached rows before treeFrom and, from treeFrom on, the rows tree allows (a kernels.Mask tree).
func (s *Session) Forward(ids []int32, h []float32, positions []int32, tree []bool, treeFrom int) []float32 {
	d := s.w.d
	c := &d.Config
	n, H, I := len(ids), c.HiddenSize, c.IntermediateSize
	qDim, kvDim := c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
	eps := float32(c.RMSNormEps)
	w := &d.W
	if need := (s.Len + n) * kvDim; need > len(s.K) {
		grow := max(need, 2*len(s.K))
		s.K = append(s.K[:s.Len*kvDim], make([]float32, grow-s.Len*kvDim)...)
		s.V = append(s.V[:s.Len*kvDim], make([]float32, grow-s.Len*kvDim)...)
	}
	// x = [norm(embed) | norm(h)], one [n, 2H] operand for each projection.
	s.e, s.hn, s.x = kernels.Resize(s.e, n*H), kernels.Resize(s.hn, n*H), kernels.Resize(s.x, n*2*H)
	e, hn, x := s.e, s.hn, s.x
	kernels.Embedding(e, d.Embed, ids, H)
	kernels.RMSNorm(e, e, w.InputNorm, n, H, eps)
	kernels.RMSNorm(hn, h, w.HiddenNorm, n, H, eps)
	for r := 0; r < n; r++ {
		copy(x[r*2*H:], e[r*H:(r+1)*H])
		copy(x[r*2*H+H:], hn[r*H:(r+1)*H])
	}
	s.q, s.a = kernels.Resize(s.q, n*qDim), kernels.Resize(s.a, n*qDim)
	q, a := s.q, s.a
	k := s.K[s.Len*kvDim : (s.Len+n)*kvDim]
	v := s.V[s.Len*kvDim : (s.Len+n)*kvDim]
	s.w.q.Apply(q, x, n, false)
	s.w.k.Apply(k, x, n, false)
	s.w.v.Apply(v, x, n, false)
	rope := s.rotations.Table(positions)
	rope.Apply(q, n, c.NumHeads)
	rope.Apply(k, n, c.NumKVHeads)
	s.attn.Forward(a, q, s.K[:(s.Len+n)*kvDim], s.V[:(s.Len+n)*kvDim], n, kernels.Mask{Past: s.Len, Tree: tree, TreeFrom: treeFrom})
	s.Len += n
	out := make([]float32, n*H)
	copy(out, h)
	s.w.o.Apply(out, a, n, true)
	s.y, s.g, s.u = kernels.Resize(s.y, n*H), kernels.Resize(s.g, n*I), kernels.Resize(s.u, n*I)
	y, g, u := s.y, s.g, s.u
	kernels.RMSNorm(y, out, w.PostNorm, n, H, eps)
	s.w.gate.Apply(g, y, n, false)
	s.w.up.Apply(u, y, n, false)
	kernels.SwiGLU(g, g, u)
	s.w.down.Apply(out, g, n, true)
	return out
}

// Logits maps pre-norm outputs h [n, H] to draft-vocabulary logits [n, Vd], in a buffer of the session
// that the next call overwrites.
func (s *Session) Logits(h []float32, n int) []float32 {
	c := &s.w.d.Config
	s.logitsIn = kernels.Resize(s.logitsIn, n*c.HiddenSize)
	kernels.RMSNorm(s.logitsIn, h, s.w.d.W.Norm, n, c.HiddenSize, float32(c.RMSNormEps))
	s.logits = kernels.Resize(s.logits, n*c.DraftVocabSize)
	s.w.lmHead.Apply(s.logits, s.logitsIn, n, false)
	return s.logits
}

// TargetID maps a draft-vocabulary index to the target's token id.
func (d *Draft) TargetID(i int) int32 { return int32(int64(i) + d.Vocab.D2T[i]) }
