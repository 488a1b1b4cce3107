// bf16 matrix products with float32 accumulation on AMX (tdpbf16ps), for CPUs that have it (Intel Xeon
// from Sapphire Rapids on): a tile instruction multiplies 16x32 bf16 by 32x16 bf16 into 16x16 float32,
// 16 times the work of a vdpbf16ps.
//
// A product C = A B is computed as 32x32 blocks of four accumulator tiles. One operand, "rows", is read
// as tile rows, each 32 consecutive k of one of its rows (a bf16 weight stored [n, k] is read in place; a
// float32 one is copied into bf16 rows first, and one whose k is its slow index transposed once); the
// other, "lanes", is
// packed into the pair-interleaved panels of sf_bf16_pack, which are tdpbf16ps's B layout. When the rows
// operand is the weight (Linear: C = X W^T), the tiles hold C transposed and are transposed as they are
// stored.
//
// Every element of C gets the same operations in the same order whatever m, the column range or the
// block it falls in: k blocks of KA ascending, 32 k at a time within a block.

#pragma GCC optimize("O3")
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cpuid.h>
#include "bfgemm.h"
#include "transpose.h"

#define KA 2048 // k per block: a block of rows is 32*KA*2 bytes (128 KiB, L2), a lanes panel 32*KA*2
#define VA 512  // the most lanes whose panels are packed at once (a multiple of 32)

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

int sf_amx_on;

// sf_amx_available reports whether the CPU has AMX-BF16 and the kernel lets this process use its tiles
// (Linux asks each process to request the tile state, 8 KiB per thread).
int sf_amx_available(void) {
	unsigned a, b, c, d;
	if (!sf_bf16_available() || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
	if (!(d & (1u << 22)) || !(d & (1u << 24))) return 0; // AMX-BF16, AMX-TILE
	return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

struct tilecfg {
	uint8_t palette, start_row, reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
};

// Tiles 0-3 accumulate (rows 0-15 and 16-31 by lanes 0-15 and 16-31), 4-5 hold rows, 6-7 lanes; all
// 16 rows of 64 bytes. A static object, not one filled on the stack: GCC may drop the stores into a local
// configuration that only _tile_loadconfig reads (it did where configure was inlined into sf_amx_stream),
// which leaves the tiles unconfigured and faults at their first use.
static const struct tilecfg tile_config = {
	.palette = 1,
	.colsb = {64, 64, 64, 64, 64, 64, 64, 64},
	.rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

__attribute__((target("amx-tile"))) static void configure(void) { _tile_loadconfig(&tile_config); }

// Per-thread buffers: the lanes panels and one block of rows copied to bf16.
static __thread uint32_t *lanes_buf;
static __thread size_t lanes_cap;
static __thread uint16_t *rows_buf;

static inline int min_i(int a, int b) { return a < b ? a : b; }

// copy_rows writes dst[r*kc32 + p] = X(r, p0+p) as bf16 for r < 32 and p < kc32, X(r, p) = x[r*rs +
// p*cs]; rows from nr on and k from kc on are zero.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void
copy_rows(uint16_t *dst, int nr, int p0, int kc, int kc32, const void *x, int bf, long rs, long cs) {
	if (cs == 1) { // each row written once: its k, then zeros to kc32; then the zero rows
		for (int r = 0; r < nr; r++) {
			uint16_t *d = dst + (size_t)r * kc32;
			if (bf)
				memcpy(d, (const uint16_t *)x + r * rs + p0, (size_t)kc * 2);
			else
				sf_bf16_round(d, (const float *)x + r * rs + p0, kc);
			memset(d + kc, 0, (size_t)(kc32 - kc) * 2);
		}
		memset(dst + (size_t)nr * kc32, 0, (size_t)(32 - nr) * kc32 * 2);
		return;
	}
	memset(dst, 0, (size_t)32 * kc32 * 2);
	for (int p = 0; p < kc; p++) // k is the slow index: read the rows of a transposed operand in order
		for (int r = 0; r < nr; r++) {
			long i = r * rs + (long)(p0 + p) * cs;
			dst[(size_t)r * kc32 + p] = bf ? ((const uint16_t *)x)[i] : bf16_round(((const float *)x)[i]);
		}
}

// block multiplies 32 rows (bf16, stride rstride bytes, kc32 of k) by a lanes panel of 32 lanes over kc32/2
// pairs into acc [32][32] float32, row r at acc + r*ldacc.
__attribute__((target("amx-tile,amx-bf16"))) static void
block(const uint16_t *rows, long rstride, const uint32_t *panel, int kc32, float *acc, long ldacc) {
	_tile_zero(0);
	_tile_zero(1);
	_tile_zero(2);
	_tile_zero(3);
	const char *r0 = (const char *)rows, *r1 = r0 + 16 * rstride;
	for (int p = 0; p < kc32; p += 32) {
		const uint32_t *q = panel + (size_t)(p / 2) * 32;
		_tile_loadd(4, r0 + 2 * p, rstride);
		_tile_loadd(5, r1 + 2 * p, rstride);
		_tile_loadd(6, q, 128);
		_tile_loadd(7, q + 16, 128);
		_tile_dpbf16ps(0, 4, 6);
		_tile_dpbf16ps(1, 4, 7);
		_tile_dpbf16ps(2, 5, 6);
		_tile_dpbf16ps(3, 5, 7);
	}
	_tile_stored(0, acc, ldacc * 4);
	_tile_stored(1, acc + 16, ldacc * 4);
	_tile_stored(2, acc + 16 * ldacc, ldacc * 4);
	_tile_stored(3, acc + 16 * ldacc + 16, ldacc * 4);
}

// store_block writes acc [32 rows][32 lanes] into c for nr rows and nl lanes: element (r, l) is c[r*ldc +
// l], or c[l*ldc + r] when transposed; c = alpha*acc (+ beta*c) on the first k block, c += alpha*acc after.
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void
store_block(float *acc, int nr, int nl, int transposed, float *c, long ldc, float alpha, float beta, int first) {
	if (transposed) { // transpose acc in place, 16x16 at a time: then row l of acc is row l of c
		for (int bi = 0; bi < 2; bi++)
			for (int bj = bi; bj < 2; bj++) {
				__m512i x[16], y[16];
				for (int i = 0; i < 16; i++) x[i] = _mm512_loadu_si512(acc + (bi * 16 + i) * 32 + bj * 16);
				transpose16(x);
				if (bi != bj) {
					for (int i = 0; i < 16; i++) y[i] = _mm512_loadu_si512(acc + (bj * 16 + i) * 32 + bi * 16);
					transpose16(y);
					for (int i = 0; i < 16; i++) _mm512_storeu_si512(acc + (bi * 16 + i) * 32 + bj * 16, y[i]);
				}
				for (int i = 0; i < 16; i++) _mm512_storeu_si512(acc + (bj * 16 + i) * 32 + bi * 16, x[i]);
			}
		int t = nr;
		nr = nl;
		nl = t;
	}
	__mmask16 m0 = nl >= 16 ? 0xFFFF : (__mmask16)((1u << nl) - 1);
	__mmask16 m1 = nl >= 32 ? 0xFFFF : nl > 16 ? (__mmask16)((1u << (nl - 16)) - 1) : 0;
	__m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
	for (int r = 0; r < nr; r++) {
		float *cr = c + r * ldc;
		__m512 a0 = _mm512_loadu_ps(acc + r * 32), a1 = _mm512_loadu_ps(acc + r * 32 + 16), v0, v1;
		if (first && beta == 0) {
			v0 = _mm512_mul_ps(va, a0);
			v1 = _mm512_mul_ps(va, a1);
		} else {
			__m512 c0 = _mm512_maskz_loadu_ps(m0, cr), c1 = _mm512_maskz_loadu_ps(m1, cr + 16);
			if (first && beta != 1) {
				c0 = _mm512_mul_ps(vb, c0);
				c1 = _mm512_mul_ps(vb, c1);
			}
			v0 = _mm512_fmadd_ps(va, a0, c0);
			v1 = _mm512_fmadd_ps(va, a1, c1);
		}
		_mm512_mask_storeu_ps(cr, m0, v0);
		_mm512_mask_storeu_ps(cr + 16, m1, v1);
	}
}

// transpose_rows writes dst[r*ld + p] = X(r, p) as bf16 for r < nu and p < k32, X(r, p) = x[r + p*cs]
// for p < k and 0 from k on: a rows operand whose k is its slow index (the transposed A of a weight gradient,
// dy^T x), 16 rows by 32 k at a time, so that its tiles can be read in place.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void
transpose_rows(uint16_t *dst, long ld, int nu, int k, int k32, const void *x, int bf, long cs) {
	for (int u0 = 0; u0 < nu; u0 += 16) {
		int n = min_i(16, nu - u0);
		for (int p0 = 0; p0 < k32; p0 += 32) {
			__m512i v[16];
			for (int pp = 0; pp < 16; pp++) {
				int p = p0 + 2 * pp;
				__m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
				if (p < k) lo = load16(x, bf, (long)p * cs + u0, n);
				if (p + 1 < k) hi = _mm512_slli_epi32(load16(x, bf, (long)(p + 1) * cs + u0, n), 16);
				v[pp] = _mm512_or_si512(lo, hi);
			}
			transpose16(v);
			for (int r = 0; r < n; r++) _mm512_storeu_si512(dst + (u0 + r) * ld + p0, v[r]);
		}
	}
}

static __thread uint16_t *trows_buf;
static __thread size_t trows_cap;

// LANES_BUDGET is the size of the lanes panels of one k block (up to VA lanes by KA k in bf16), which stay in L2
// while every block of rows passes them.
#define LANES_BUDGET (1 << 20)

// sf_amx_gemm is sf_bf16_gemm on AMX (same contract, without the few-row and shared-packing options).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16"))) void
sf_amx_gemm(int m, int n0, int n1, int k, float alpha, const void *a, int a_bf16, long rsa, long csa, const void *b,
            int b_bf16, long rsb, long csb, float beta, float *c, long ldc) {
	// The rows operand: B's columns when they run along k and are bf16 (a weight stored [n, k], read in
	// place), else A's rows (tiles that hold C as it is stored need no transposing).
	int transposed = rsb == 1 && b_bf16;
	const char *rx, *lx;
	int rbf, lbf, nu, nv;
	long rrs, rcs, lrs, lcs;
	if (transposed) {
		rx = (const char *)b + (b_bf16 ? 2 : 4) * (long)n0 * csb, rbf = b_bf16, rrs = csb, rcs = rsb, nu = n1 - n0;
		lx = a, lbf = a_bf16, lrs = rsa, lcs = csa, nv = m;
	} else {
		rx = a, rbf = a_bf16, rrs = rsa, rcs = csa, nu = m;
		lx = (const char *)b + (b_bf16 ? 2 : 4) * (long)n0 * csb, lbf = b_bf16, lrs = csb, lcs = rsb, nv = n1 - n0;
	}
	int k32 = (k + 31) / 32 * 32;
	// Rows along the slow index are transposed once, not once per lanes panel: in rows of k32 plus 32 (a
	// stride that is not a multiple of 4 KiB, whose tile rows would share cache sets), zero from k on.
	int padded = 0;
	if (rrs == 1 && rcs != 1) {
		long ld = k32 + 32;
		size_t need = (size_t)(nu + 31) / 32 * 32 * ld;
		if (need > trows_cap) {
			free(trows_buf);
			if (!(trows_buf = aligned_alloc(64, need * 2))) abort();
			trows_cap = need;
		}
		transpose_rows(trows_buf, ld, nu, k, k32, rx, rbf, rcs);
		rx = (const char *)trows_buf, rbf = 1, rrs = ld, rcs = 1, padded = 1;
	}
	int rsize = rbf ? 2 : 4, lsize = lbf ? 2 : 4;
	int blocks = (k + KA - 1) / KA;
	int va = LANES_BUDGET / (2 * min_i(KA, k32)) / 32 * 32;
	va = va < 32 ? 32 : va > VA ? VA : va;
	size_t block_dwords = (size_t)(KA / 2) * 32; // one k block of one 32-lane panel
	size_t need = (size_t)(va / 32) * block_dwords;
	if (need > lanes_cap) {
		free(lanes_buf);
		if (!(lanes_buf = aligned_alloc(64, need * 4))) abort();
		lanes_cap = need;
	}
	if (!rows_buf && !(rows_buf = aligned_alloc(64, (size_t)32 * KA * 2))) abort();
	float acc[32 * 32] __attribute__((aligned(64)));
	float *c0 = c + n0;
	configure();
	for (int v0 = 0; v0 < nv; v0 += va) {
		int vb = min_i(va, nv - v0), groups = (vb + 31) / 32;
		// One k block of these lanes' panels at a time; each element of C still takes its k blocks in order.
		for (int kb = 0; kb < blocks; kb++) {
			int p0 = kb * KA, kc = min_i(KA, k - p0), kc32 = (kc + 31) / 32 * 32, kp = (kc + 1) / 2;
			for (int g = 0; g < groups; g++) {
				uint32_t *panel = lanes_buf + (size_t)g * block_dwords;
				sf_bf16_pack(panel, 32, min_i(32, vb - 32 * g), p0, kc, k, lx + lsize * (v0 + 32 * g) * lrs, lbf, lrs, lcs);
				memset(panel + (size_t)kp * 32, 0, (size_t)(kc32 / 2 - kp) * 32 * 4);
			}
			for (int u0 = 0; u0 < nu; u0 += 32) {
				int ub = min_i(32, nu - u0);
				const uint16_t *rows;
				long rstride;
				if (padded || (rbf && rcs == 1 && ub == 32 && kc == kc32)) { // bf16 rows in place
					rows = (const uint16_t *)rx + u0 * rrs + p0;
					rstride = rrs * 2;
				} else {
					copy_rows(rows_buf, ub, p0, kc, kc32, rx + rsize * u0 * rrs, rbf, rrs, rcs);
					rows = rows_buf;
					rstride = kc32 * 2;
				}
				for (int g = 0; g < groups; g++) {
					int l0 = v0 + 32 * g;
					int nl = min_i(32, vb - 32 * g);
					float *cb = transposed ? c0 + (long)l0 * ldc + u0 : c0 + (long)u0 * ldc + l0;
					if (!transposed && ub == 32 && nl == 32 && kb == 0 && blocks == 1 && alpha == 1 && beta == 0) {
						block(rows, rstride, lanes_buf + (size_t)g * block_dwords, kc32, cb, ldc); // C as it is stored
						continue;
					}
					block(rows, rstride, lanes_buf + (size_t)g * block_dwords, kc32, acc, 32);
					store_block(acc, ub, nl, transposed, cb, ldc, alpha, beta, kb == 0);
				}
			}
		}
	}
	_tile_release();
}

// sf_amx_stream runs iters rounds of four tdpbf16ps (2x2 tiles, as block does, 64 Ki flops a round) whose
// operand tiles are loaded from a (areg bytes) and b (breg bytes), 2 KiB of each a round, in order and
// wrapping; with areg and breg 0, the tiles stay in registers: the AMX peak. Regions that fit L1 or L2
// give the rate those caches can feed the tiles.
__attribute__((target("amx-tile,amx-bf16"), noinline)) void sf_amx_stream(long iters, const char *a, long areg, const char *b, long breg) {
	configure();
	_tile_zero(0);
	_tile_zero(1);
	_tile_zero(2);
	_tile_zero(3);
	_tile_loadd(4, a, 64);
	_tile_loadd(5, a + 1024, 64);
	_tile_loadd(6, b, 64);
	_tile_loadd(7, b + 1024, 64);
	long ao = 0, bo = 0;
	for (long i = 0; i < iters; i++) {
		if (areg) {
			_tile_loadd(4, a + ao, 64);
			_tile_loadd(5, a + ao + 1024, 64);
			ao = ao + 4096 > areg ? 0 : ao + 2048;
		}
		if (breg) {
			_tile_loadd(6, b + bo, 64);
			_tile_loadd(7, b + bo + 1024, 64);
			bo = bo + 4096 > breg ? 0 : bo + 2048;
		}
		_tile_dpbf16ps(0, 4, 6);
		_tile_dpbf16ps(1, 4, 7);
		_tile_dpbf16ps(2, 5, 6);
		_tile_dpbf16ps(3, 5, 7);
	}
	_tile_release();
}
