// Shared by the package's C files.
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

// bf16_round rounds f to bf16 (to nearest, ties to even).
static inline uint16_t bf16_round(float f) {
	uint32_t b;
	memcpy(&b, &f, 4);
	if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x40); // NaN stays a quiet NaN
	return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

// transpose16 transposes 16 rows of 16 dwords in place.
__attribute__((target("avx512f"), always_inline)) static inline void transpose16(__m512i *r) {
	__m512i a[16], b[16];
	for (int i = 0; i < 8; i++) {
		a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
		a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
	}
	for (int i = 0; i < 4; i++) {
		b[4 * i + 0] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
		b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
		b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
		b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
	}
	// b[4i+j], 128-bit lane L, holds column 4L+j of rows 4i..4i+3.
	for (int j = 0; j < 4; j++) {
		__m512i s0 = _mm512_shuffle_i32x4(b[j], b[4 + j], 0x44), s1 = _mm512_shuffle_i32x4(b[j], b[4 + j], 0xEE);
		__m512i s2 = _mm512_shuffle_i32x4(b[8 + j], b[12 + j], 0x44), s3 = _mm512_shuffle_i32x4(b[8 + j], b[12 + j], 0xEE);
		r[j] = _mm512_shuffle_i32x4(s0, s2, 0x88);
		r[4 + j] = _mm512_shuffle_i32x4(s0, s2, 0xDD);
		r[8 + j] = _mm512_shuffle_i32x4(s1, s3, 0x88);
		r[12 + j] = _mm512_shuffle_i32x4(s1, s3, 0xDD);
	}
}

// load16 loads n <= 16 elements of x from element off on as 16 zero-extended bf16 dwords, zeros beyond.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), always_inline)) static inline __m512i
load16(const void *x, int bf, long off, int n) {
	__mmask16 m = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
	if (bf) return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)x + off));
	return _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, (const float *)x + off)));
}
