// bf16 matrix products with float32 accumulation on AVX512-BF16 (vdpbf16ps), in two shapes.
//
// Products of many rows are BLIS-style: operands are packed into bf16 panels whose 32-bit lanes hold two
// consecutive k, a 12x32 register tile accumulates in float32, and the k loop is cut into fixed blocks.
//
// Products of a few rows by a weight stored [n, k] (decoding, speculative verification) read the weight
// as stored: each output is a dot product whose 16 lanes run over k, reduced at the end. Packing would
// read the weight twice as often and transpose it, while these products are bound by the weight's bytes.
//
// Each shape gives every element of C the same operations in the same order whatever m (up to its row
// limit), the column range or the tile the element falls in, so a row's result does not depend on how
// many rows share the product: a verification of drafted tokens equals one-token steps bit for bit.

#pragma GCC optimize("O3")
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include "bfgemm.h"
#include "transpose.h"

#define MR 12   // rows of the register tile
#define NR 32   // columns of the register tile: two zmm of float32
#define KC 2048 // k per block (even): long blocks update C and repack A rarely; a B panel is 128 KiB (L2)
#define MC 288  // rows per packed A block (a multiple of MR), 1.1 MiB; measured best with KC on Zen 5
#define PREFETCH_PAIRS 4 // how far ahead pack_interleave fetches rows
#define STREAM_BYTES (8 << 20) // the size of C from which its last k block is streamed to memory
#define NC 512  // columns of B packed at once (a multiple of NR): 2 MiB of panels that every A block reuses

int sf_bf16_available(void) {
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
	       __builtin_cpu_supports("avx512bf16");
}


static inline uint32_t elem(const void *x, int bf, long i) {
	return bf ? ((const uint16_t *)x)[i] : bf16_round(((const float *)x)[i]);
}

// load_pairs loads np <= 16 pairs (2*np elements from x[off]) as dwords of two bf16, zeros beyond.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), always_inline)) static inline __m512i
load_pairs(const void *x, int bf, long off, int np) {
	if (bf) return _mm512_maskz_loadu_epi32(np >= 16 ? 0xFFFF : (__mmask16)((1u << np) - 1), (const uint16_t *)x + off);
	const float *f = (const float *)x + off;
	int ne = 2 * np;
	__mmask16 m0 = ne >= 16 ? 0xFFFF : (__mmask16)((1u << ne) - 1);
	__mmask16 m1 = ne >= 32 ? 0xFFFF : ne > 16 ? (__mmask16)((1u << (ne - 16)) - 1) : 0;
	return (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, f + 16), _mm512_maskz_loadu_ps(m0, f));
}

// pack_lanes is pack for lanes contiguous in k (each lane a row of x: an A stored [m, k], a weight stored
// [n, k]): blocks of 16 lanes x 16 pairs are loaded as rows, transposed in registers and stored as up to 16
// lanes of 16 pair rows, so every row of x is read in order.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void
pack_lanes(uint32_t *dst, int L, int nl, int p0, int kc, const void *x, int bf, long rs) {
	int full = kc / 2;
	for (int l0 = 0; l0 < L; l0 += 16) {
		int w = L - l0 < 16 ? L - l0 : 16;
		__mmask16 wm = w >= 16 ? 0xFFFF : (__mmask16)((1u << w) - 1);
		for (int q0 = 0; q0 < full; q0 += 16) {
			int np = full - q0 < 16 ? full - q0 : 16;
			__m512i r[16];
			for (int i = 0; i < 16; i++)
				r[i] = l0 + i < nl ? load_pairs(x, bf, (long)(l0 + i) * rs + p0 + 2 * q0, np) : _mm512_setzero_si512();
			transpose16(r);
			for (int c = 0; c < np; c++) _mm512_mask_storeu_epi32(dst + (size_t)(q0 + c) * L + l0, wm, r[c]);
		}
	}
	if (kc & 1)
		for (int l = 0; l < L; l++) dst[(size_t)full * L + l] = l < nl ? elem(x, bf, (long)l * rs + p0 + kc - 1) : 0;
}

// sf_bf16_round rounds n float32 values to bf16 (to nearest, ties to even).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void sf_bf16_round(uint16_t *dst, const float *src, long n) {
	long i = 0;
	for (; i + 32 <= n; i += 32)
		_mm512_storeu_si512(dst + i, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i)));
	for (; i < n; i++) dst[i] = bf16_round(src[i]);
}

// pack_interleave is pack for lanes contiguous in memory (each k a row of lanes: a transposed A, a B
// stored [k, n]): the rows of k and k+1 are interleaved 16 lanes at a time. The pairs are the outer loop,
// so that the rows are read in order across all the panels rather than at a stride for each, and the rows
// PREFETCH_PAIRS pairs ahead are fetched into the cache, which the hardware does not do for rows a stride
// apart (a weight's input gradient dy w over 32,000 rows: 470 -> 660 GFLOP/s on Zen 5).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void
pack_interleave(uint32_t *dst, int L, int nl, int panels, int p0, int kc, int kend, const void *x, int bf, long cs) {
	int kp = (kc + 1) / 2, esize = bf ? 2 : 4;
	for (int pp = 0; pp < kp; pp++) {
		long p = p0 + 2 * pp;
		int second = p + 1 < kend;
		if (p + 2 * PREFETCH_PAIRS + 1 < kend) { // the rows are far apart in memory: fetch the ones ahead
			const char *r0 = (const char *)x + esize * (p + 2 * PREFETCH_PAIRS) * cs, *r1 = r0 + esize * cs;
			for (long off = 0; off < (long)esize * nl; off += 64) {
				_mm_prefetch(r0 + off, _MM_HINT_T0);
				_mm_prefetch(r1 + off, _MM_HINT_T0);
			}
		}
		for (int t = 0; t < panels; t++) {
			uint32_t *row = dst + (size_t)t * kp * L + (size_t)pp * L;
			for (int l0 = 0; l0 < L; l0 += 16) {
				int lane = t * L + l0, n = nl - lane < 16 ? nl - lane : 16;
				__m512i v = _mm512_setzero_si512();
				if (n > 0) {
					v = load16(x, bf, p * cs + lane, n);
					if (second) v = _mm512_or_si512(v, _mm512_slli_epi32(load16(x, bf, (p + 1) * cs + lane, n), 16));
				}
				int w = L - l0 < 16 ? L - l0 : 16;
				_mm512_mask_storeu_epi32(row + l0, w >= 16 ? 0xFFFF : (__mmask16)((1u << w) - 1), v);
			}
		}
	}
}

// sf_bf16_pack writes panels of L lanes, panel t holding lanes t*L.. of X: dst[t*kp*L + pp*L + l] =
// (X(t*L+l, p0+2pp), X(t*L+l, p0+2pp+1)) as two bf16 (low half first) for pairs pp < kp = (kc+1)/2, where
// X(l, p) = x[l*rs + p*cs] and rs or cs is 1; lanes from nl on and k from kend on are zero, so padded rows,
// columns and an odd k contribute nothing. There are ceil(nl/L) panels, and one when nl <= L.
void sf_bf16_pack(uint32_t *dst, int L, int nl, int p0, int kc, int kend, const void *x, int bf, long rs, long cs) {
	int panels = nl > L ? (nl + L - 1) / L : 1;
	if (rs == 1) {
		pack_interleave(dst, L, nl, panels, p0, kc, kend, x, bf, cs);
		return;
	}
	size_t kp = (kc + 1) / 2;
	for (int t = 0; t < panels; t++)
		pack_lanes(dst + t * kp * L, L, nl - t * L < L ? nl - t * L : L, p0, kc, (const char *)x + (bf ? 2 : 4) * (long)t * L * rs, bf, rs);
}

// tile12 multiplies a packed A tile of MR rows by the packed B panel over kp pairs into acc: acc[2r] and
// acc[2r+1] are row r's columns 0-15 and 16-31. Written in assembly so that every product reads its A value
// by an embedded broadcast (vdpbf16ps m32{1to16}): a separate broadcast per row costs a shuffle-port
// micro-op for every two products, which halved the tile's rate.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void
tile12(long kp, const uint32_t *ap, const uint32_t *bp, __m512 *acc) {
	__asm__ volatile(
	    "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
	    "vpxord %%zmm1, %%zmm1, %%zmm1\n\t"
	    "vpxord %%zmm2, %%zmm2, %%zmm2\n\t"
	    "vpxord %%zmm3, %%zmm3, %%zmm3\n\t"
	    "vpxord %%zmm4, %%zmm4, %%zmm4\n\t"
	    "vpxord %%zmm5, %%zmm5, %%zmm5\n\t"
	    "vpxord %%zmm6, %%zmm6, %%zmm6\n\t"
	    "vpxord %%zmm7, %%zmm7, %%zmm7\n\t"
	    "vpxord %%zmm8, %%zmm8, %%zmm8\n\t"
	    "vpxord %%zmm9, %%zmm9, %%zmm9\n\t"
	    "vpxord %%zmm10, %%zmm10, %%zmm10\n\t"
	    "vpxord %%zmm11, %%zmm11, %%zmm11\n\t"
	    "vpxord %%zmm12, %%zmm12, %%zmm12\n\t"
	    "vpxord %%zmm13, %%zmm13, %%zmm13\n\t"
	    "vpxord %%zmm14, %%zmm14, %%zmm14\n\t"
	    "vpxord %%zmm15, %%zmm15, %%zmm15\n\t"
	    "vpxord %%zmm16, %%zmm16, %%zmm16\n\t"
	    "vpxord %%zmm17, %%zmm17, %%zmm17\n\t"
	    "vpxord %%zmm18, %%zmm18, %%zmm18\n\t"
	    "vpxord %%zmm19, %%zmm19, %%zmm19\n\t"
	    "vpxord %%zmm20, %%zmm20, %%zmm20\n\t"
	    "vpxord %%zmm21, %%zmm21, %%zmm21\n\t"
	    "vpxord %%zmm22, %%zmm22, %%zmm22\n\t"
	    "vpxord %%zmm23, %%zmm23, %%zmm23\n\t"
	    "test %[kp], %[kp]\n\t"
	    "jz 2f\n\t"
	    "1:\n\t"
	    "vmovdqa64 (%[b]), %%zmm24\n\t"
	    "vmovdqa64 64(%[b]), %%zmm25\n\t"
	    "vdpbf16ps 0(%[a])%{1to16%}, %%zmm24, %%zmm0\n\t"
	    "vdpbf16ps 0(%[a])%{1to16%}, %%zmm25, %%zmm1\n\t"
	    "vdpbf16ps 4(%[a])%{1to16%}, %%zmm24, %%zmm2\n\t"
	    "vdpbf16ps 4(%[a])%{1to16%}, %%zmm25, %%zmm3\n\t"
	    "vdpbf16ps 8(%[a])%{1to16%}, %%zmm24, %%zmm4\n\t"
	    "vdpbf16ps 8(%[a])%{1to16%}, %%zmm25, %%zmm5\n\t"
	    "vdpbf16ps 12(%[a])%{1to16%}, %%zmm24, %%zmm6\n\t"
	    "vdpbf16ps 12(%[a])%{1to16%}, %%zmm25, %%zmm7\n\t"
	    "vdpbf16ps 16(%[a])%{1to16%}, %%zmm24, %%zmm8\n\t"
	    "vdpbf16ps 16(%[a])%{1to16%}, %%zmm25, %%zmm9\n\t"
	    "vdpbf16ps 20(%[a])%{1to16%}, %%zmm24, %%zmm10\n\t"
	    "vdpbf16ps 20(%[a])%{1to16%}, %%zmm25, %%zmm11\n\t"
	    "vdpbf16ps 24(%[a])%{1to16%}, %%zmm24, %%zmm12\n\t"
	    "vdpbf16ps 24(%[a])%{1to16%}, %%zmm25, %%zmm13\n\t"
	    "vdpbf16ps 28(%[a])%{1to16%}, %%zmm24, %%zmm14\n\t"
	    "vdpbf16ps 28(%[a])%{1to16%}, %%zmm25, %%zmm15\n\t"
	    "vdpbf16ps 32(%[a])%{1to16%}, %%zmm24, %%zmm16\n\t"
	    "vdpbf16ps 32(%[a])%{1to16%}, %%zmm25, %%zmm17\n\t"
	    "vdpbf16ps 36(%[a])%{1to16%}, %%zmm24, %%zmm18\n\t"
	    "vdpbf16ps 36(%[a])%{1to16%}, %%zmm25, %%zmm19\n\t"
	    "vdpbf16ps 40(%[a])%{1to16%}, %%zmm24, %%zmm20\n\t"
	    "vdpbf16ps 40(%[a])%{1to16%}, %%zmm25, %%zmm21\n\t"
	    "vdpbf16ps 44(%[a])%{1to16%}, %%zmm24, %%zmm22\n\t"
	    "vdpbf16ps 44(%[a])%{1to16%}, %%zmm25, %%zmm23\n\t"
	    "add $128, %[b]\n\t"
	    "add $48, %[a]\n\t"
	    "dec %[kp]\n\t"
	    "jnz 1b\n\t"
	    "2:\n\t"
	    "vmovups %%zmm0, 0(%[acc])\n\t"
	    "vmovups %%zmm1, 64(%[acc])\n\t"
	    "vmovups %%zmm2, 128(%[acc])\n\t"
	    "vmovups %%zmm3, 192(%[acc])\n\t"
	    "vmovups %%zmm4, 256(%[acc])\n\t"
	    "vmovups %%zmm5, 320(%[acc])\n\t"
	    "vmovups %%zmm6, 384(%[acc])\n\t"
	    "vmovups %%zmm7, 448(%[acc])\n\t"
	    "vmovups %%zmm8, 512(%[acc])\n\t"
	    "vmovups %%zmm9, 576(%[acc])\n\t"
	    "vmovups %%zmm10, 640(%[acc])\n\t"
	    "vmovups %%zmm11, 704(%[acc])\n\t"
	    "vmovups %%zmm12, 768(%[acc])\n\t"
	    "vmovups %%zmm13, 832(%[acc])\n\t"
	    "vmovups %%zmm14, 896(%[acc])\n\t"
	    "vmovups %%zmm15, 960(%[acc])\n\t"
	    "vmovups %%zmm16, 1024(%[acc])\n\t"
	    "vmovups %%zmm17, 1088(%[acc])\n\t"
	    "vmovups %%zmm18, 1152(%[acc])\n\t"
	    "vmovups %%zmm19, 1216(%[acc])\n\t"
	    "vmovups %%zmm20, 1280(%[acc])\n\t"
	    "vmovups %%zmm21, 1344(%[acc])\n\t"
	    "vmovups %%zmm22, 1408(%[acc])\n\t"
	    "vmovups %%zmm23, 1472(%[acc])\n\t"
	    : [a] "+r"(ap), [b] "+r"(bp), [kp] "+r"(kp)
	    : [acc] "r"(acc)
	    : "zmm0", "zmm1", "zmm2", "zmm3", "zmm4", "zmm5", "zmm6", "zmm7", "zmm8", "zmm9", "zmm10", "zmm11", "zmm12", "zmm13", "zmm14", "zmm15", "zmm16", "zmm17", "zmm18", "zmm19", "zmm20", "zmm21", "zmm22", "zmm23", "zmm24", "zmm25", "memory", "cc");
}

// tile stores the product of a packed A tile (R <= MR valid rows; the panel's other rows are zero) by the
// packed B panel over kp pairs into c [R, nv]: c = alpha*acc (+ beta*c) on the first k block, c +=
// alpha*acc after. Every tile computes all MR rows, so a row's arithmetic does not depend on R. With
// stream set, full rows that start on a cache line are written past the caches (C is too large to be
// read back from them, and writing it through them would fetch every line first).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void
tile(int R, int kp, const uint32_t *ap, const uint32_t *bp, float *c, long ldc, int nv, float alpha, float beta, int first,
     int stream) {
	__m512 acc[2 * MR];
	tile12(kp, ap, bp, acc);
	__mmask16 m0 = nv >= 16 ? 0xFFFF : (__mmask16)((1u << nv) - 1);
	__mmask16 m1 = nv >= 32 ? 0xFFFF : nv > 16 ? (__mmask16)((1u << (nv - 16)) - 1) : 0;
	__m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
	for (int r = 0; r < R; r++) {
		float *cr = c + r * ldc;
		__m512 v0, v1;
		if (first && beta == 0) {
			v0 = _mm512_mul_ps(va, acc[2 * r]);
			v1 = _mm512_mul_ps(va, acc[2 * r + 1]);
		} else {
			__m512 c0 = _mm512_maskz_loadu_ps(m0, cr), c1 = _mm512_maskz_loadu_ps(m1, cr + 16);
			if (first && beta != 1) {
				c0 = _mm512_mul_ps(vb, c0);
				c1 = _mm512_mul_ps(vb, c1);
			}
			v0 = _mm512_fmadd_ps(va, acc[2 * r], c0);
			v1 = _mm512_fmadd_ps(va, acc[2 * r + 1], c1);
		}
		if (stream && nv == NR && (uintptr_t)cr % 64 == 0) {
			_mm512_stream_ps(cr, v0);
			_mm512_stream_ps(cr + 16, v1);
		} else {
			_mm512_mask_storeu_ps(cr, m0, v0);
			_mm512_mask_storeu_ps(cr + 16, m1, v1);
		}
	}
}

// Per-thread packing buffers, grown on demand (each Go caller runs on its own OS thread): A blocks, and
// the B panels of NC columns.
static __thread uint32_t *abuf, *bbuf;
static __thread size_t acap;

static uint32_t *grow_a(size_t dwords) {
	if (dwords > acap) {
		free(abuf);
		acap = dwords < (size_t)MC * (KC / 2) ? (size_t)MC * (KC / 2) : dwords;
		abuf = aligned_alloc(64, acap * 4);
		if (!abuf) abort();
	}
	if (!bbuf && !(bbuf = aligned_alloc(64, (size_t)NC * (KC / 2) * 4))) abort();
	return abuf;
}

// dot4 computes the R x 4 dot products of rows a[r] (bf16, k long) with rows w[c] and stores
// c[r*ldc + c] = alpha*dot (+ beta*c) for r < R, c < nc.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), always_inline)) static inline void
dot4(const int R, int k, const uint16_t *const *a, const uint16_t *const *w, int nc, float alpha, float beta, float *c, long ldc) {
	__m512 acc[4][4];
	for (int r = 0; r < R; r++)
		for (int j = 0; j < 4; j++) acc[r][j] = _mm512_setzero_ps();
	int p = 0;
	for (; p + 32 <= k; p += 32) {
		__m512bh wv[4];
		for (int j = 0; j < 4; j++) wv[j] = (__m512bh)_mm512_loadu_si512(w[j] + p);
		for (int r = 0; r < R; r++) {
			__m512bh av = (__m512bh)_mm512_loadu_si512(a[r] + p);
			for (int j = 0; j < 4; j++) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], av, wv[j]);
		}
	}
	if (p < k) { // the tail, zero-padded: the same operations for every row count
		__mmask32 mk = (__mmask32)((1u << (k - p)) - 1);
		__m512bh wv[4];
		for (int j = 0; j < 4; j++) wv[j] = (__m512bh)_mm512_maskz_loadu_epi16(mk, w[j] + p);
		for (int r = 0; r < R; r++) {
			__m512bh av = (__m512bh)_mm512_maskz_loadu_epi16(mk, a[r] + p);
			for (int j = 0; j < 4; j++) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], av, wv[j]);
		}
	}
	for (int r = 0; r < R; r++)
		for (int j = 0; j < nc; j++) {
			float v = alpha * _mm512_reduce_add_ps(acc[r][j]);
			float *dst = c + r * ldc + j;
			*dst = beta == 0 ? v : v + beta * *dst;
		}
}

// few_dot is the product of m (at most the caller's few) rows of a (bf16 [m, k], rows contiguous) by rows n0..n1 of w
// (bf16, row stride ldw) into columns n0..n1 of c.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void
few_dot(int m, int n0, int n1, int k, float alpha, const uint16_t *a, const uint16_t *w, long ldw, float beta, float *c, long ldc) {
	for (int j0 = n0; j0 < n1; j0 += 4) {
		int nc = n1 - j0 < 4 ? n1 - j0 : 4;
		const uint16_t *wr[4];
		for (int j = 0; j < 4; j++) wr[j] = w + (long)(j0 + (j < nc ? j : nc - 1)) * ldw; // a short block repeats its last row
		for (int i0 = 0; i0 < m; i0 += 4) {
			const uint16_t *ar[4];
			for (int r = 0; r < 4; r++) ar[r] = a + (long)(i0 + r) * k;
			float *cb = c + (long)i0 * ldc + j0;
			switch (m - i0 < 4 ? m - i0 : 4) {
			case 1: dot4(1, k, ar, wr, nc, alpha, beta, cb, ldc); break;
			case 2: dot4(2, k, ar, wr, nc, alpha, beta, cb, ldc); break;
			case 3: dot4(3, k, ar, wr, nc, alpha, beta, cb, ldc); break;
			default: dot4(4, k, ar, wr, nc, alpha, beta, cb, ldc); break;
			}
		}
	}
}

// Per-thread buffer of the few rows of A rounded to bf16.
static __thread uint16_t *rows16;
static __thread size_t rows16cap;

// FEW_ROWS is the row count up to which all of A is packed once, before B is.
#define FEW_ROWS (4 * MR)

static inline int min_int(int a, int b) { return a < b ? a : b; }

// pack_a packs rows [i0, i0+mc) of A over k [p0, p0+kc) into MR-row tiles of kp pairs each.
static void pack_a(uint32_t *dst, int i0, int mc, int p0, int kc, int k, const void *a, int a_bf16, long rsa, long csa) {
	sf_bf16_pack(dst, MR, mc, p0, kc, k, (const char *)a + (a_bf16 ? 2 : 4) * (long)i0 * rsa, a_bf16, rsa, csa);
}

// packed_block is the offset of the A block of k block kb and row block ib in a buffer of sf_bf16_pack_a.
static size_t packed_block(int m, int kb, int ib) {
	size_t blocks = (size_t)(m + MC - 1) / MC;
	return ((size_t)kb * blocks + ib) * MC * (KC / 2);
}

// sf_bf16_block_rows is the height of the A blocks of packed products (MC).
int sf_bf16_block_rows(void) { return MC; }

// sf_bf16_packed_a_dwords is the size of a buffer sf_bf16_pack_a packs all of an m x k A into.
size_t sf_bf16_packed_a_dwords(int m, int k) { return packed_block(m, (k + KC - 1) / KC, 0); }

// sf_bf16_pack_a packs the row blocks [ib0, ib1) (of MC rows) of A over every k block into dst, as
// sf_bf16_gemm's blocked path packs them one at a time: goroutines that split a product's columns share one
// packing of A instead of each making its own.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void
sf_bf16_pack_a(uint32_t *dst, int m, int k, int ib0, int ib1, const void *a, int a_bf16, long rsa, long csa) {
	for (int p0 = 0; p0 < k; p0 += KC)
		for (int ib = ib0; ib < ib1; ib++)
			pack_a(dst + packed_block(m, p0 / KC, ib), ib * MC, min_int(MC, m - ib * MC), p0, min_int(KC, k - p0), k, a,
			       a_bf16, rsa, csa);
}

// sf_bf16_gemm sets C(i, j) = alpha * sum_p A(i,p) B(p,j) + beta * C(i, j) for i < m and n0 <= j < n1,
// with A(i,p) = a[i*rsa + p*csa] and B(p,j) = b[p*rsb + j*csb]; an operand is bf16 bits when its flag
// is set and float32 (rounded to bf16 as it is packed) otherwise; apacked, when not NULL, is all of A as
// sf_bf16_pack_a packed it. k >= 1. Up to few rows of A by a bf16 B stored [n, k] take dot products;
// other products are packed, and give every element of C the same operations in the same order whatever
// the row count and the columns: k blocks of KC ascending, pairs ascending within a block.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void
sf_bf16_gemm(int m, int n0, int n1, int k, float alpha, const void *a, int a_bf16, long rsa, long csa,
             const void *b, int b_bf16, long rsb, long csb, float beta, float *c, long ldc, int few,
             const uint32_t *apacked) {
	if (sf_amx_on) {
		sf_amx_gemm(m, n0, n1, k, alpha, a, a_bf16, rsa, csa, b, b_bf16, rsb, csb, beta, c, ldc);
		return;
	}
	const char *bb = (const char *)b;
	int bsize = b_bf16 ? 2 : 4;
	if (m <= few && b_bf16 && rsb == 1 && csa == 1) {
		const uint16_t *a16 = a;
		if (!a_bf16 || rsa != k) {
			size_t need = (size_t)m * k;
			if (need > rows16cap) {
				free(rows16);
				rows16 = aligned_alloc(64, (need * 2 + 63) / 64 * 64);
				if (!rows16) abort();
				rows16cap = need;
			}
			for (int i = 0; i < m; i++) {
				if (a_bf16)
					memcpy(rows16 + (size_t)i * k, (const uint16_t *)a + (long)i * rsa, (size_t)k * 2);
				else
					sf_bf16_round(rows16 + (size_t)i * k, (const float *)a + (long)i * rsa, k);
			}
			a16 = rows16;
		}
		few_dot(m, n0, n1, k, alpha, a16, (const uint16_t *)b, csb, beta, c, ldc);
		return;
	}
	// Up to FEW_ROWS rows, all of A is packed once; above, each A block is packed for every NC columns of B
	// (or taken from apacked). Each B panel is packed once, NC columns at a time, and every A block runs
	// over it.
	uint32_t *apall = (uint32_t *)apacked;
	if (!apall && m <= FEW_ROWS) {
		apall = grow_a(sf_bf16_packed_a_dwords(m, k));
		sf_bf16_pack_a(apall, m, k, 0, 1, a, a_bf16, rsa, csa);
	}
	uint32_t *ap = grow_a(apall ? 0 : (size_t)MC * (KC / 2)); // also makes the B panel buffer
	int large = (double)m * (n1 - n0) * sizeof(float) > STREAM_BYTES;
	for (int jc = n0; jc < n1; jc += NC) {
		int nc = min_int(NC, n1 - jc);
		for (int p0 = 0; p0 < k; p0 += KC) {
			int kc = min_int(KC, k - p0), kp = (kc + 1) / 2;
			sf_bf16_pack(bbuf, NR, nc, p0, kc, k, bb + bsize * (long)jc * csb, b_bf16, csb, rsb);
			for (int i0 = 0; i0 < m; i0 += MC) {
				int mc = min_int(MC, m - i0);
				if (apall)
					ap = apall + packed_block(m, p0 / KC, i0 / MC);
				else
					pack_a(ap, i0, mc, p0, kc, k, a, a_bf16, rsa, csa);
				for (int j = 0; j < nc; j += NR) {
					const uint32_t *bp = bbuf + (size_t)(j / NR) * kp * NR;
					for (int t = 0; t * MR < mc; t++)
						tile(min_int(MR, mc - t * MR), kp, ap + (size_t)t * kp * MR, bp, c + (long)(i0 + t * MR) * ldc + jc + j, ldc,
						     min_int(NR, nc - j), alpha, beta, p0 == 0, large && p0 + KC >= k);
				}
			}
		}
	}
	_mm_sfence(); // the streamed stores are seen before the caller reads C
}

// sf_bf16_peak runs iters rounds of 24 independent vdpbf16ps (64 flops each) on registers: the CPU's bf16
// product peak, which the benchmarks compare the kernels with.
#define PEAK12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
__attribute__((target("avx512f,avx512bf16"), noinline)) float sf_bf16_peak(long iters) {
#define PEAK_INIT(i) __m512 a##i = _mm512_set1_ps(i), b##i = _mm512_set1_ps(i + 100);
	PEAK12(PEAK_INIT)
	__m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = (__m512bh)_mm512_set1_epi32(0x3c003c00);
	for (long i = 0; i < iters; i++) {
#define PEAK_STEP(i) a##i = _mm512_dpbf16_ps(a##i, x, y); b##i = _mm512_dpbf16_ps(b##i, y, x);
		PEAK12(PEAK_STEP)
		__asm__ volatile("" : "+v"(x), "+v"(y)); // keeps the loop from being folded
	}
	__m512 s = _mm512_setzero_ps();
#define PEAK_SUM(i) s = _mm512_add_ps(s, _mm512_add_ps(a##i, b##i));
	PEAK12(PEAK_SUM)
	return _mm512_reduce_add_ps(s);
}
