// Vectorisable float exponential shared by the C kernels (the algorithm of exp.go): x = n ln2 + r with
// |r| <= ln2/2, e^r by a degree-7 polynomial, 2^n built in the exponent bits; results below the smallest
// normal float become 0. sf_exp is written so that compilers vectorise loops over it; sf_exp16 is the same on
// a GCC vector of 16 lanes, for kernels that hold their data in such vectors.
#include <stdint.h>
#include <string.h>

#define SF_EXP_LO (-87.3f)
#define SF_EXP_HI 88.7f
#define SF_LOG2E 1.44269504088896341f
#define SF_LN2_HI 0.693145751953125f
#define SF_LN2_LO 1.428606765330187045e-06f
#define SF_EXP_POLY(p, r)          \
	p = p * r + 1.0f / 720;    \
	p = p * r + 1.0f / 120;    \
	p = p * r + 1.0f / 24;     \
	p = p * r + 1.0f / 6;      \
	p = p * r + 0.5f;          \
	p = p * r + 1.0f;          \
	p = p * r + 1.0f

static inline float sf_exp(float x) {
	float c = x < SF_EXP_LO ? SF_EXP_LO : (x > SF_EXP_HI ? SF_EXP_HI : x);
	float n = __builtin_rintf(c * SF_LOG2E);
	float r = c - n * SF_LN2_HI - n * SF_LN2_LO;
	float p = 1.0f / 5040;
	SF_EXP_POLY(p, r);
	int32_t bits = ((int32_t)n + 127) << 23;
	float scale;
	memcpy(&scale, &bits, sizeof scale);
	return x < SF_EXP_LO ? 0.0f : p * scale;
}

typedef float v16 __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));

static inline v16 v16_select(v16i m, v16 a, v16 b) { return (v16)((m & (v16i)a) | (~m & (v16i)b)); }

// sf_exp16 rounds by the 1.5*2^23 trick, the vector form of rintf.
static inline v16 sf_exp16(v16 x) {
	v16 zero = {0};
	v16 c = v16_select(x < SF_EXP_LO, zero + SF_EXP_LO, x);
	c = v16_select(c > SF_EXP_HI, zero + SF_EXP_HI, c);
	v16 n = (c * SF_LOG2E + 12582912.0f) - 12582912.0f;
	v16 r = c - n * SF_LN2_HI - n * SF_LN2_LO;
	v16 p = zero + 1.0f / 5040;
	SF_EXP_POLY(p, r);
	v16i bits = (__builtin_convertvector(n, v16i) + 127) << 23;
	return v16_select(x < SF_EXP_LO, zero, p * (v16)bits);
}
