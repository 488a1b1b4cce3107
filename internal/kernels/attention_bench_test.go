package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkAttention measures one layer's cached attention of T new queries after 500 cached rows, in
// Llama-3-8B's shape (32 query heads on 8 KV heads of 128): T=1 is a decoding step, T=6 the verification of a
// 5-token chain, T=17 and 32 of draft trees.
func BenchmarkAttention(b *testing.B) {
	r := rand.New(rand.NewPCG(8, 8))
	a := Attention{Heads: 32, KVHeads: 8, HeadDim: 128, Scale: 0.088}
	const past = 500
	for _, T := range []int{1, 6, 8, 17, 32} {
		b.Run(fmt.Sprintf("T%d", T), func(b *testing.B) {
			q := randn(r, T*a.Heads*a.HeadDim, 1)
			k := randn(r, (past+T)*a.KVHeads*a.HeadDim, 1)
			v := randn(r, (past+T)*a.KVHeads*a.HeadDim, 1)
			out := make([]float32, len(q))
			for b.Loop() {
				a.Forward(out, q, k, v, T, Mask{Past: past})
			}
		})
	}
}
