// Package batch holds specforge's one batch type: B rows of T tokens with their masks, as the target's
// forward reads them (model.Batch is this type), as training reads them (draft.Batch adds the target's
// features and the teacher), and as prepared data and hidden-state shards are padded into them (New).
package batch

// Tokens is B rows of T tokens, row-major: entry i*T+t is token t of row i. A field a use has no need of is
// nil: decoding has no loss mask, training no tree, and unpadded rows need no attention mask.
type Tokens struct {
	B, T int
	IDs  []int32 // [B*T]; padding is token 0
	// Positions [B*T] are the RoPE positions; nil means past+t for token t of every row.
	Positions []int32
	// AttentionMask [B*T] marks real tokens (true) and padding (false); a padding token is never attended
	// to. nil means every token is real.
	AttentionMask []bool
	// Tree [T*T] is the visibility among the new tokens, shared by all rows (query i sees new token j when
	// Tree[i*T+j]); ancestors must come before descendants. nil means causal.
	Tree []bool
	// LossMask [B*T] marks the tokens that carry loss, for training; the forward does not read it.
	LossMask []bool
	// Lens are the real tokens of each row of a padded batch (New).
	Lens []int
}

// New lays out samples of the given lengths as a [B, T] batch right-padded to the longest, with their real
// tokens marked in AttentionMask; the caller copies sample i's ids and loss mask to row i (offset i*T).
// Every batch of samples, from tokenized data or from stored hidden states, is padded by it.
func New(lens []int) *Tokens {
	p := &Tokens{B: len(lens), Lens: lens}
	for _, n := range lens {
		p.T = max(p.T, n)
	}
	N := p.B * p.T
	p.IDs, p.LossMask, p.AttentionMask = make([]int32, N), make([]bool, N), make([]bool, N)
	for i, n := range lens {
		for t := 0; t < n; t++ {
			p.AttentionMask[i*p.T+t] = true
		}
	}
	return p
}
