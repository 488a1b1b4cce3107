//go:build cgo

package kernels

/*
#cgo CFLAGS: -Wno-psabi
#pragma GCC optimize("O3")
#include <float.h>
#include "fastexp.h"

typedef float v16u __attribute__((vector_size(64), aligned(4)));

// sf_attn_scores scores keys j0..j1-1 (a multiple of four, then the rest one by one) into s and raises mx
// to their maximum; with masked set, lanes whose bit of mask[j] is clear get -inf.
__attribute__((always_inline)) static inline void sf_attn_scores(const int D, const int masked, int j0, int j1,
		const v16 *qt, const float *k, int kvs, const unsigned short *mask, float *s, v16 *mx) {
	v16 zero = {0}, ninf = zero - __builtin_inff();
	v16i lanebit, izero = {0};
	for (int l = 0; l < 16; l++) lanebit[l] = 1 << l;
	int j = j0;
	for (; j + 4 <= j1; j += 4) {
		const float *k0 = k + (long)j * kvs, *k1 = k0 + kvs, *k2 = k1 + kvs, *k3 = k2 + kvs;
		v16 s0 = zero, s1 = zero, s2 = zero, s3 = zero;
		for (int dd = 0; dd < D; dd++) {
			s0 += qt[dd] * k0[dd];
			s1 += qt[dd] * k1[dd];
			s2 += qt[dd] * k2[dd];
			s3 += qt[dd] * k3[dd];
		}
		if (masked) {
			s0 = v16_select(((izero + mask[j]) & lanebit) != 0, s0, ninf);
			s1 = v16_select(((izero + mask[j + 1]) & lanebit) != 0, s1, ninf);
			s2 = v16_select(((izero + mask[j + 2]) & lanebit) != 0, s2, ninf);
			s3 = v16_select(((izero + mask[j + 3]) & lanebit) != 0, s3, ninf);
		}
		*(v16u *)(s + 16 * j) = s0;
		*(v16u *)(s + 16 * j + 16) = s1;
		*(v16u *)(s + 16 * j + 32) = s2;
		*(v16u *)(s + 16 * j + 48) = s3;
		v16 m01 = v16_select(s0 > s1, s0, s1), m23 = v16_select(s2 > s3, s2, s3);
		m01 = v16_select(m01 > m23, m01, m23);
		*mx = v16_select(m01 > *mx, m01, *mx);
	}
	for (; j < j1; j++) {
		const float *kj = k + (long)j * kvs;
		v16 sc = zero;
		for (int dd = 0; dd < D; dd++) sc += qt[dd] * kj[dd];
		if (masked) sc = v16_select(((izero + mask[j]) & lanebit) != 0, sc, ninf);
		*(v16u *)(s + 16 * j) = sc;
		*mx = v16_select(sc > *mx, sc, *mx);
	}
}

// sf_attn_head is one KV head of sf_attn_few (below): scores four keys at a time (independent chains; the
// first from keys, seen by every query, need no mask), then the softmax weights and their values. With D
// known at compile time, qt and ot stay in registers.
__attribute__((always_inline)) static inline void sf_attn_head(const int D, int nk, int from, const v16 *qt, v16 *ot,
		const float *k, const float *v, int kvs, const unsigned short *mask, float *s, v16 *sumOut) {
	v16 zero = {0}, mx = zero - FLT_MAX, sum = zero;
	sf_attn_scores(D, 0, 0, from, qt, k, kvs, mask, s, &mx);
	sf_attn_scores(D, 1, from, nk, qt, k, kvs, mask, s, &mx);
	for (int dd = 0; dd < D; dd++) ot[dd] = zero;
	for (int j = 0; j < nk; j++) {
		const float *vj = v + (long)j * kvs;
		v16 p = sf_exp16(*(v16u *)(s + 16 * j) - mx);
		sum += p;
		for (int dd = 0; dd < D; dd++) ot[dd] += p * vj[dd];
	}
	*sumOut = sum;
}

// sf_attn_few is attention for a few queries (decoding, draft verification): per KV head, the G*T query
// rows of its group, lane hh*T+i for head hh at query i, fill the 16 lanes of vectors, sixteen at a time, so
// each key costs d multiply-adds for its scores and d for its values, whatever the head size, and the scores
// stay in a [nk][16] scratch s. Lanes never mix, so a row's result does not depend on T or on the rows
// sharing its vector. mask[c*nk+j] has bit l set when lane 16*c+l sees key j; keys before from are seen by
// every query. q and out are [T, heads*d]; k and v [nk, kvheads*d].
__attribute__((target_clones("avx512f", "avx2", "default")))
void sf_attn_few(int T, int heads, int kvheads, int d, int nk, int from, float scale, const float *q, const float *k,
		 const float *v, const unsigned short *mask, float *s, float *out) {
	int G = heads / kvheads, lanes = G * T, qs = heads * d, kvs = kvheads * d;
	v16 qt[d], ot[d], zero = {0}, sum;
	for (int kh = 0; kh < kvheads; kh++) {
		const float *kh0 = k + kh * d, *vh0 = v + kh * d;
		for (int l0 = 0; l0 < lanes; l0 += 16) {
			int n = lanes - l0 < 16 ? lanes - l0 : 16;
			const unsigned short *cm = mask + (long)(l0 / 16) * nk;
			for (int dd = 0; dd < d; dd++) qt[dd] = zero;
			for (int l = 0; l < n; l++) {
				const float *ql = q + (long)((l0 + l) % T) * qs + (kh * G + (l0 + l) / T) * d;
				for (int dd = 0; dd < d; dd++) qt[dd][l] = ql[dd] * scale;
			}
			switch (d) {
			case 8: sf_attn_head(8, nk, from, qt, ot, kh0, vh0, kvs, cm, s, &sum); break;
			case 16: sf_attn_head(16, nk, from, qt, ot, kh0, vh0, kvs, cm, s, &sum); break;
			case 32: sf_attn_head(32, nk, from, qt, ot, kh0, vh0, kvs, cm, s, &sum); break;
			case 64: sf_attn_head(64, nk, from, qt, ot, kh0, vh0, kvs, cm, s, &sum); break;
			case 128: sf_attn_head(128, nk, from, qt, ot, kh0, vh0, kvs, cm, s, &sum); break;
			default: sf_attn_head(d, nk, from, qt, ot, kh0, vh0, kvs, cm, s, &sum);
			}
			for (int l = 0; l < n; l++) {
				float inv = 1.0f / sum[l], *ol = out + (long)((l0 + l) % T) * qs + (kh * G + (l0 + l) / T) * d;
				for (int dd = 0; dd < d; dd++) ol[dd] = ot[dd][l] * inv;
			}
		}
	}
}
*/
import "C"

import (
	"sync"
	"unsafe"
)

// haveFewKernel says whether Forward has the few-query kernel (tests check that it serves its cases).
const haveFewKernel = true

var (
	fewScratch = sync.Pool{New: func() any { return new([]float32) }}
	fewMasks   = sync.Pool{New: func() any { return new([]uint16) }}
)

// forwardFew runs Forward on the few-query kernel when there are at most fewQueries queries and every query
// sees a prefix of the cache plus part of the new block (no padding, no window); it reports whether it did.
func (a Attention) forwardFew(out, q, k, v []float32, T int, m Mask) bool {
	G, d := a.Heads/a.KVHeads, a.HeadDim
	if T > fewQueries || m.KeyValid != nil || m.Window > 0 || d > 256 {
		return false
	}
	nk := m.Past + T
	kvStride := a.KVHeads * d
	if len(k) < nk*kvStride || len(v) < nk*kvStride || len(q) < T*a.Heads*d || len(out) < T*a.Heads*d {
		panic("attention: q, k, v or out too short")
	}
	bp := fewScratch.Get().(*[]float32)
	defer fewScratch.Put(bp)
	need := nk * 16
	if cap(*bp) < need {
		*bp = make([]float32, need)
	}
	buf := (*bp)[:need]
	// Keys before the first new or tree-masked one are seen by every query.
	from := m.Past
	if m.Tree != nil {
		from = min(from, m.TreeFrom)
	}
	lanes := G * T
	chunks := (lanes + 15) / 16
	mp := fewMasks.Get().(*[]uint16)
	defer fewMasks.Put(mp)
	if cap(*mp) < chunks*nk {
		*mp = make([]uint16, chunks*nk)
	}
	masks := (*mp)[:chunks*nk] // the kernel reads the masks of keys from on
	for j := from; j < nk; j++ {
		var seen uint32 // bit i: query i sees key j
		for i := 0; i < T; i++ {
			if m.visible(T, i, j) {
				seen |= 1 << i
			}
		}
		for c := 0; c < chunks; c++ {
			var bits uint16
			for l := 16 * c; l < min(lanes, 16*c+16); l++ {
				bits |= uint16(seen>>(l%T)&1) << (l - 16*c)
			}
			masks[c*nk+j] = bits
		}
	}
	C.sf_attn_few(C.int(T), C.int(a.Heads), C.int(a.KVHeads), C.int(d), C.int(nk), C.int(from), C.float(a.Scale),
		(*C.float)(unsafe.Pointer(&q[0])), (*C.float)(unsafe.Pointer(&k[0])), (*C.float)(unsafe.Pointer(&v[0])),
		(*C.ushort)(unsafe.Pointer(&masks[0])), (*C.float)(unsafe.Pointer(&buf[0])), (*C.float)(unsafe.Pointer(&out[0])))
	return true
}
