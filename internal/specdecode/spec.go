// Package specdecode is EAGLE-3 speculative decoding: the draft proposes tokens (a chain, or an EAGLE-2 style
// dynamic tree), the target verifies them all in one forward, and the accepted prefix plus the target's own
// next token are kept. Greedy decoding reproduces the target's greedy output exactly; sampling uses
// speculative rejection sampling, which preserves the target's distribution.
package specdecode

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/generate"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/tensor"
)

// Options of a speculative generation.
type Options struct {
	// Steps is the length of the drafted chain (used when Depth is 0).
	Steps int
	// Depth, TopK and DraftTokens shape an EAGLE-2 dynamic tree: Depth drafting steps keeping the TopK best
	// candidates each, and the DraftTokens best nodes verified.
	Depth, TopK, DraftTokens int
	// MinDraftProb > 0 ends a chain early after a draft token the draft gives less than this probability
	// (the token is still verified): the chain's length adapts to how sure the draft is.
	MinDraftProb float64
	MaxNewTokens int
	Sampling     generate.SamplingParams
	StopIDs      []int
	// OnTokens, when set, is handed the tokens of each round as they are produced, cut as the result is
	// (after a stop token, at the budget), so a server can stream them; returning false ends the generation
	// after that round (a stop string was found in the text).
	OnTokens func(tokens []int32) bool
}

// Validate rejects settings without meaning.
func (o *Options) Validate() error {
	if o.MaxNewTokens <= 0 {
		return fmt.Errorf("max new tokens must be positive")
	}
	if o.Depth > 0 {
		if o.TopK <= 0 || o.DraftTokens <= 1 {
			return fmt.Errorf("a draft tree needs topk >= 1 and draft tokens >= 2")
		}
		if o.Sampling.Temperature > 0 {
			return fmt.Errorf("tree drafting is greedy: use a chain (--steps) with temperature > 0")
		}
	} else if o.Steps <= 0 {
		return fmt.Errorf("give a chain length (steps >= 1) or a tree depth")
	}
	if o.MinDraftProb < 0 || o.MinDraftProb >= 1 || o.MinDraftProb > 0 && o.Depth > 0 {
		return fmt.Errorf("min draft prob %g: want a probability in [0, 1), for chains", o.MinDraftProb)
	}
	return o.Sampling.Validate()
}

// Stats of a generation.
type Stats struct {
	Rounds int // target verifications
	Tokens int // tokens produced
	// Tried[i] and Accepted[i] count the drafted tokens at depth i+1 that were verified (reached) and
	// accepted.
	Tried, Accepted []int
	Elapsed         time.Duration
}

// AcceptanceLength is the tokens produced per target verification (accepted drafts plus the target's own
// token).
func (s *Stats) AcceptanceLength() float64 {
	if s.Rounds == 0 {
		return 0
	}
	return float64(s.Tokens) / float64(s.Rounds)
}

// Add accumulates another generation's statistics.
func (s *Stats) Add(o *Stats) {
	s.Rounds += o.Rounds
	s.Tokens += o.Tokens
	s.Elapsed += o.Elapsed
	for len(s.Tried) < len(o.Tried) {
		s.Tried, s.Accepted = append(s.Tried, 0), append(s.Accepted, 0)
	}
	for i := range o.Tried {
		s.Tried[i] += o.Tried[i]
		s.Accepted[i] += o.Accepted[i]
	}
}

func (s *Stats) count(depth int, accepted bool) {
	for len(s.Tried) < depth {
		s.Tried, s.Accepted = append(s.Tried, 0), append(s.Accepted, 0)
	}
	s.Tried[depth-1]++
	if accepted {
		s.Accepted[depth-1]++
	}
}

// Decoder pairs a target with its draft. It prepares the draft's matrices for decoding at its first
// generation: make a new Decoder after the draft's weights change.
type Decoder struct {
	Target *model.Model
	Draft  *draft.Draft

	prepareOnce sync.Once
	prepared    *draft.Prepared
}

// state is one sequence being decoded.
type state struct {
	d       *Decoder
	o       *Options
	sampler *generate.Sampler
	cache   *model.KVCache
	sess    *draft.Session
	n       int       // tokens in the target cache
	next    int32     // the newest token: produced, not yet in the target cache
	hLast   []float32 // the draft's pre-norm output for the newest token's row
	out     []int32
	stats   *Stats
	verify  model.Output // reused by every verification
	stopped bool         // a stop token has been produced
	handed  int          // tokens of out handed to OnTokens
}

// Generate continues prompt speculatively. Cancelling ctx stops it before the next drafting round with an
// error that wraps ctx.Err().
func (d *Decoder) Generate(ctx context.Context, prompt []int32, o Options) ([]int32, *Stats, error) {
	if err := o.Validate(); err != nil {
		return nil, nil, err
	}
	if len(prompt) == 0 {
		return nil, nil, fmt.Errorf("speculative decoding needs a non-empty prompt")
	}
	start := time.Now()
	st := &state{d: d, o: &o, sampler: generate.NewSampler(d.Target.Backend(), o.Sampling), stats: &Stats{}}
	st.cache = d.Target.NewCache(1, len(prompt)+o.MaxNewTokens+max(o.Steps, o.DraftTokens)+2)
	var err error
	d.prepareOnce.Do(func() { d.prepared = d.Draft.Prepare() })
	if st.sess, err = d.prepared.NewSession(); err != nil {
		return nil, nil, err
	}
	// Prefill the target, take its first token, and feed the draft the prompt's rows.
	res, err := d.Target.Forward(model.Batch{B: 1, T: len(prompt), IDs: prompt}, st.cache,
		model.Request{AuxLayers: d.Draft.Config.AuxLayers, Logits: model.LastLogits})
	if err != nil {
		return nil, nil, err
	}
	st.n = len(prompt)
	st.next = int32(st.sampler.Next(res.Logits))
	st.emit(st.next)
	ids := append(slices.Clone(prompt[1:]), st.next)
	st.extend(ids, res.Aux)
	st.hand()
	for !st.done() {
		if err := ctx.Err(); err != nil {
			return nil, nil, fmt.Errorf("speculative decoding interrupted after %d tokens: %w", len(st.out), err)
		}
		if o.Depth > 0 {
			err = st.treeRound()
		} else {
			err = st.chainRound()
		}
		if err != nil {
			return nil, nil, err
		}
		st.hand()
	}
	st.finish()
	st.stats.Elapsed = time.Since(start)
	return st.out, st.stats, nil
}

// extend feeds the draft the rows of the next len(ids) target positions: token ids[i] (the token that
// follows the position) with fc of the target's aux states aux [len(ids), 3Ht].
func (st *state) extend(ids []int32, aux []float32) {
	h := st.sess.FC(aux, len(ids))
	pos := make([]int32, len(ids))
	base := st.sess.Len
	for i := range pos {
		pos[i] = int32(base + i)
	}
	out := st.sess.Forward(ids, h, pos, nil, 0)
	H := st.d.Draft.Config.HiddenSize
	st.hLast = out[(len(ids)-1)*H:]
}

// emit appends produced tokens to the output, noting a stop token anywhere among them: a stop token
// accepted in the middle of a round ends the generation as much as a last one does.
func (st *state) emit(tokens ...int32) {
	for _, t := range tokens {
		st.stopped = st.stopped || slices.Contains(st.o.StopIDs, int(t))
	}
	st.out = append(st.out, tokens...)
}

func (st *state) done() bool { return st.stopped || len(st.out) >= st.o.MaxNewTokens }

// hand gives OnTokens the tokens produced since its last call, cut after a stop token and at the budget.
func (st *state) hand() {
	if st.o.OnTokens == nil {
		return
	}
	end := min(len(st.out), st.o.MaxNewTokens)
	for i := st.handed; i < end; i++ {
		if slices.Contains(st.o.StopIDs, int(st.out[i])) {
			end = i + 1
			break
		}
	}
	if end > st.handed {
		fresh := st.out[st.handed:end]
		st.handed = end
		if !st.o.OnTokens(fresh) {
			st.stopped = true
		}
	}
}

// finish cuts the output at the token budget and after the first stop token.
func (st *state) finish() {
	for i, t := range st.out {
		if slices.Contains(st.o.StopIDs, int(t)) {
			st.out = st.out[:i+1]
			break
		}
	}
	if len(st.out) > st.o.MaxNewTokens {
		st.out = st.out[:st.o.MaxNewTokens]
	}
	st.stats.Tokens = len(st.out)
}

// draftProbs is the draft's distribution over the target vocabulary for a row of draft logits (sampling).
func (st *state) draftProbs(logits []float32) []float64 {
	q := st.sampler.Distribution(logits)
	full := make([]float64, st.d.Target.Config.VocabSize)
	for i, p := range q {
		if p > 0 {
			full[st.d.Draft.TargetID(i)] = p
		}
	}
	return full
}

// pick chooses the draft token of a row of draft logits, the most likely one or a sample, and says how
// likely the draft finds it (when MinDraftProb asks, or when sampling) and, when sampling, the draft's
// distribution over the target vocabulary.
func (st *state) pick(logits []float32) (tok int32, prob float64, q []float64) {
	if !st.sampler.Greedy() {
		q = st.draftProbs(logits)
		tok = int32(st.sampler.Draw(q))
		return tok, q[tok], q
	}
	if st.o.MinDraftProb == 0 {
		return st.d.Draft.TargetID(st.d.Draft.Backend().Argmax(tensor.Vec(logits))), 1, nil
	}
	ids, logProbs := topK(st.d.Draft.Backend(), logits, 1)
	return st.d.Draft.TargetID(ids[0]), math.Exp(logProbs[0]), nil
}

// chainRound drafts Steps tokens, verifies them in one target forward and keeps the accepted prefix.
func (st *state) chainRound() error {
	k := st.o.Steps
	d := st.d
	drafts := make([]int32, 0, k)
	var qs [][]float64
	h := st.hLast
	base := st.sess.Len
	for i := 0; i < k; i++ {
		logits := st.sess.Logits(h, 1)
		tok, prob, q := st.pick(logits)
		qs = append(qs, q)
		drafts = append(drafts, tok)
		// An unlikely draft token is verified but not drafted beyond: what would follow it is likely wasted.
		if i == k-1 || prob < st.o.MinDraftProb {
			break
		}
		h = st.sess.Forward([]int32{tok}, h, []int32{int32(base + i)}, nil, 0)
	}
	k = len(drafts)
	verify := append([]int32{st.next}, drafts...)
	res, err := d.Target.Forward(model.Batch{B: 1, T: len(verify), IDs: verify}, st.cache,
		model.Request{AuxLayers: d.Draft.Config.AuxLayers, Logits: model.AllLogits, Reuse: &st.verify})
	if err != nil {
		return err
	}
	V := d.Target.Config.VocabSize
	j := 0
	var bonus int32
	for ; j <= k; j++ {
		logits := res.Logits[j*V : (j+1)*V]
		if st.sampler.Greedy() {
			best := int32(d.Target.Backend().Argmax(tensor.Vec(logits)))
			if j < k && best == drafts[j] {
				st.stats.count(j+1, true)
				continue
			}
			if j < k {
				st.stats.count(j+1, false)
			}
			bonus = best
			break
		}
		p := st.sampler.Distribution(logits)
		if j == k {
			bonus = int32(st.sampler.Draw(p))
			break
		}
		tok, q := drafts[j], qs[j]
		if st.sampler.Uniform() < min(1, p[tok]/q[tok]) {
			st.stats.count(j+1, true)
			continue
		}
		st.stats.count(j+1, false)
		bonus = int32(st.sampler.Draw(residual(p, q)))
		break
	}
	st.accept(drafts[:j], bonus, res.Aux, nil)
	return nil
}

// residual is max(0, p - q), renormalised: what the target samples from after rejecting a draft.
func residual(p, q []float64) []float64 {
	r := make([]float64, len(p))
	var z float64
	for i := range p {
		r[i] = max(0, p[i]-q[i])
		z += r[i]
	}
	if z == 0 {
		return p
	}
	for i := range r {
		r[i] /= z
	}
	return r
}

// accept keeps the verified tokens: the target cache keeps the rows of st.next and the accepted drafts (rows
// 0..len(accepted) of the verification, or the listed rows when keep is not nil), the draft cache drops its
// drafted rows and is fed the verified ones, and the bonus token becomes the newest.
func (st *state) accept(accepted []int32, bonus int32, verifyAux []float32, keep []int) {
	m := len(accepted)
	A := st.d.Draft.Config.AuxWidth()
	aux := verifyAux[:(m+1)*A]
	if keep == nil {
		st.cache.Truncate(st.n + m + 1)
	} else {
		rows := make([]int, len(keep))
		for i, r := range keep {
			rows[i] = st.n + r
		}
		st.cache.Compact(st.cache.Len-st.n, rows)
		aux = make([]float32, 0, (m+1)*A)
		for _, r := range keep {
			aux = append(aux, verifyAux[r*A:(r+1)*A]...)
		}
	}
	st.n += m + 1
	st.sess.Truncate(st.n - m - 1)
	st.extend(append(slices.Clone(accepted), bonus), aux)
	st.emit(accepted...)
	st.emit(bonus)
	st.next = bonus
	st.stats.Rounds++
}
