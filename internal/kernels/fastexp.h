// Vectorisable float exponential shared by the C kernels (the algorithm of exp.go).
#include <stdint.h>
#include <string.h>

// sf_exp is e^x for x <= 88.7: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-7 polynomial; results below the
// smallest normal float become 0. Written so that compilers vectorise loops over it.
static inline float sf_exp(float x) {
	float c = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
	float n = __builtin_rintf(c * 1.44269504088896341f);
	float r = c - n * 0.693145751953125f - n * 1.428606765330187045e-06f;
	float p = 1.0f / 5040;
	p = p * r + 1.0f / 720;
	p = p * r + 1.0f / 120;
	p = p * r + 1.0f / 24;
	p = p * r + 1.0f / 6;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	int32_t bits = ((int32_t)n + 127) << 23;
	float scale;
	memcpy(&scale, &bits, sizeof scale);
	return x < -87.3f ? 0.0f : p * scale;
}
