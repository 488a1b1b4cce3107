package model

// KVCache holds the rotated keys and the values of every layer for B sequences, plus which cached tokens
// are real (padding stays invisible to later queries). All rows share one length.
type KVCache struct {
	B, Cap, Len int
	kvDim       int
	K, V        [][]float32 // per layer [B, Cap, KVHeads*HeadDim]
	Valid       []bool      // [B, Cap]
	// transient caches of a cache-less prefill hold one layer at a time.
	transient bool
}

func (c *KVCache) layer(li int) (k, v []float32) {
	if c.transient {
		return c.K[0], c.V[0]
	}
	return c.K[li], c.V[li]
}

// NewCache allocates a cache for B sequences of up to capacity tokens; it grows if a forward needs more.
func (m *Model) NewCache(B, capacity int) *KVCache {
	cfg := m.Config
	c := &KVCache{B: B, kvDim: cfg.NumKVHeads * cfg.HeadDim, K: make([][]float32, cfg.NumLayers), V: make([][]float32, cfg.NumLayers)}
	c.grow(capacity)
	return c
}

// grow reallocates the cache to hold at least n tokens per row, keeping its content.
func (c *KVCache) grow(n int) {
	if n <= c.Cap {
		return
	}
	newCap := max(n, 2*c.Cap)
	for l := range c.K {
		c.K[l] = c.regrow(c.K[l], newCap)
		c.V[l] = c.regrow(c.V[l], newCap)
	}
	valid := make([]bool, c.B*newCap)
	for r := 0; r < c.B; r++ {
		copy(valid[r*newCap:r*newCap+c.Len], c.Valid[r*c.Cap:r*c.Cap+c.Len])
	}
	c.Valid, c.Cap = valid, newCap
}

func (c *KVCache) regrow(old []float32, newCap int) []float32 {
	buf := make([]float32, c.B*newCap*c.kvDim)
	for r := 0; r < c.B; r++ {
		copy(buf[r*newCap*c.kvDim:(r*newCap+c.Len)*c.kvDim], old[r*c.Cap*c.kvDim:(r*c.Cap+c.Len)*c.kvDim])
	}
	return buf
}

// Truncate forgets every token from position n on (n <= Len).
func (c *KVCache) Truncate(n int) {
	if n < c.Len {
		c.Len = n
	}
}

// Compact keeps, in every row, the cached tokens at positions Len-span .. Len-1 listed in keep (absolute
// positions, ascending), moves them to follow the tokens before the span, and shortens the cache
// accordingly. Speculative decoding uses it to keep the accepted path of a verified draft tree.
func (c *KVCache) Compact(span int, keep []int) {
	start := c.Len - span
	for l := range c.K {
		for _, buf := range [][]float32{c.K[l], c.V[l]} {
			for r := 0; r < c.B; r++ {
				base := r * c.Cap
				for i, p := range keep {
					dst, src := base+start+i, base+p
					copy(buf[dst*c.kvDim:(dst+1)*c.kvDim], buf[src*c.kvDim:(src+1)*c.kvDim])
				}
			}
		}
	}
	for r := 0; r < c.B; r++ {
		base := r * c.Cap
		for i, p := range keep {
			c.Valid[base+start+i] = c.Valid[base+p]
		}
	}
	c.Len = start + len(keep)
}
