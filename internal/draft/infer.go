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
	d         *Draft
	rope      kernels.RopeConfig
	K, V      []float32 // [Cap, kvDim]
	Len       int
	attn      kernels.Attention
	invFreq   []float64
	ropeScale float64
	// Workspace reused by every call.
	fc, e, hn, x, q, a, y, g, u, logitsIn, logits []float32
}

// NewSession starts an empty draft cache.
func (d *Draft) NewSession() (*Session, error) {
	c := &d.Config
	if d.Embed == nil {
		return nil, errNoEmbedding
	}
	rope, err := c.Rope()
	if err != nil {
		return nil, err
	}
	s := &Session{d: d, rope: rope,
		attn: kernels.Attention{Heads: c.NumHeads, KVHeads: c.NumKVHeads, HeadDim: c.HeadDim, Scale: float32(1 / math.Sqrt(float64(c.HeadDim)))}}
	if rope.Type != "dynamic" {
		s.invFreq, s.ropeScale = rope.Frequencies(0)
	}
	return s, nil
}

// FC projects target aux states [n, 3*Ht] to draft hidden inputs [n, H], in a buffer of the session that
// the next call overwrites.
func (s *Session) FC(aux []float32, n int) []float32 {
	c := &s.d.Config
	s.fc = kernels.Resize(s.fc, n*c.HiddenSize)
	blas.MatMulT(s.fc, aux, s.d.W.FC, n, c.HiddenSize, 3*c.TargetHiddenSize)
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
	d, c := s.d, &s.d.Config
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
	blas.MatMulT(q, x, w.Wq, n, qDim, 2*H)
	blas.MatMulT(k, x, w.Wk, n, kvDim, 2*H)
	blas.MatMulT(v, x, w.Wv, n, kvDim, 2*H)
	inv, scale := s.invFreq, s.ropeScale
	if inv == nil {
		maxPos := int32(0)
		for _, p := range positions {
			maxPos = max(maxPos, p)
		}
		inv, scale = s.rope.Frequencies(int(maxPos) + 1)
	}
	rope := kernels.NewRopeTable(inv, scale, positions)
	rope.Apply(q, n, c.NumHeads)
	rope.Apply(k, n, c.NumKVHeads)
	s.attn.Forward(a, q, s.K[:(s.Len+n)*kvDim], s.V[:(s.Len+n)*kvDim], n, kernels.Mask{Past: s.Len, Tree: tree, TreeFrom: treeFrom})
	s.Len += n
	out := make([]float32, n*H)
	copy(out, h)
	blas.MatMulTAcc(out, a, w.Wo, n, H, qDim)
	s.y, s.g, s.u = kernels.Resize(s.y, n*H), kernels.Resize(s.g, n*I), kernels.Resize(s.u, n*I)
	y, g, u := s.y, s.g, s.u
	kernels.RMSNorm(y, out, w.PostNorm, n, H, eps)
	blas.MatMulT(g, y, w.Wgate, n, I, H)
	blas.MatMulT(u, y, w.Wup, n, I, H)
	kernels.SwiGLU(g, g, u)
	blas.MatMulTAcc(out, g, w.Wdown, n, H, I)
	return out
}

// Logits maps pre-norm outputs h [n, H] to draft-vocabulary logits [n, Vd], in a buffer of the session
// that the next call overwrites.
func (s *Session) Logits(h []float32, n int) []float32 {
	c := &s.d.Config
	s.logitsIn = kernels.Resize(s.logitsIn, n*c.HiddenSize)
	kernels.RMSNorm(s.logitsIn, h, s.d.W.Norm, n, c.HiddenSize, float32(c.RMSNormEps))
	s.logits = kernels.Resize(s.logits, n*c.DraftVocabSize)
	blas.MatMulT(s.logits, s.logitsIn, s.d.W.LMHead, n, c.DraftVocabSize, c.HiddenSize)
	return s.logits
}

// TargetID maps a draft-vocabulary index to the target's token id.
func (d *Draft) TargetID(i int) int32 { return int32(int64(i) + d.Vocab.D2T[i]) }
