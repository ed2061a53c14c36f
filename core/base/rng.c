// rng.c — vkp_rng: torch's CPU generator (mt19937) and its distributions, bit for bit.
//
// Written from PyTorch's aten/src/ATen/core/MT19937RNGEngine.h (engine, seeding),
// CPUGeneratorImpl.cpp (random64, normal cache), core/DistributionsHelper.h and
// TransformationHelper.h (uniform, normal, integer transforms), native/cpu/DistributionTemplates.h
// (normal_fill, normal_fill_16_AVX2), native/cpu/avx_mathfun.h (log256_ps, sincos256_ps) and
// native/TensorFactories.cpp (randperm_cpu).
//
// Bit-exactness of randn needs the float operations below to be done as written: no
// contraction of a*b+c into an fma except where fmaf() is called (the compiled torch kernels
// fuse exactly those). CMake builds this file with -ffp-contract=off.
#include "vkp_rng.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

// ---- engine --------------------------------------------------------------------------------------

void vkp_rng_seed(vkp_rng *r, uint64_t seed) {
  r->mt[0] = (uint32_t)(seed & 0xffffffffu);
  for (uint32_t i = 1; i < VKP_RNG_MT_N; i++)
    r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + i;
  r->next = VKP_RNG_MT_N;
  r->has_normal = 0;
  r->normal = 0;
}

vkp_rng vkp_rng_new(uint64_t seed) {
  vkp_rng r;
  vkp_rng_seed(&r, seed);
  return r;
}

static void twist(vkp_rng *r) {
  enum { N = VKP_RNG_MT_N, M = 397 };
  for (int i = 0; i < N; i++) {
    uint32_t y = (r->mt[i] & 0x80000000u) | (r->mt[(i + 1) % N] & 0x7fffffffu);
    r->mt[i] = r->mt[(i + M) % N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
  }
  r->next = 0;
}

uint32_t vkp_rng_u32(vkp_rng *r) {
  if (r->next >= VKP_RNG_MT_N) twist(r);
  uint32_t y = r->mt[r->next++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

uint64_t vkp_rng_u64(vkp_rng *r) {
  uint64_t hi = vkp_rng_u32(r);
  return (hi << 32) | vkp_rng_u32(r);
}

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t vkp_rng_key(uint64_t seed, uint64_t a, uint64_t b) {
  uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ull);
  h = mix64(h ^ (a + 0x632be59bd9b4e019ull));
  return mix64(h ^ (b + 0x2545f4914f6cdd1dull));
}

uint64_t vkp_rng_key_str(uint64_t seed, const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;   // FNV-1a over the bytes, then mixed with the seed
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
  return vkp_rng_key(seed, h, 0);
}

// ---- scalar distributions ------------------------------------------------------------------------

// uniform_real_distribution<float>(0, 1): 24 bits times 2^-24.
static float uniform_f32(vkp_rng *r) { return (float)(vkp_rng_u32(r) & 0xffffffu) * (1.0f / 16777216.0f); }

double vkp_rng_uniform(vkp_rng *r) {
  return (double)(vkp_rng_u64(r) & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

double vkp_rng_normal(vkp_rng *r) {
  if (r->has_normal) {
    r->has_normal = 0;
    return r->normal;
  }
  double u1 = vkp_rng_uniform(r), u2 = vkp_rng_uniform(r);
  double radius = sqrt(-2.0 * log1p(-u2));
  double theta = 2.0 * M_PI * u1;
  r->normal = radius * sin(theta);
  r->has_normal = 1;
  return radius * cos(theta);
}

int64_t vkp_rng_int(vkp_rng *r, int64_t lo, int64_t hi) {
  uint64_t range = (uint64_t)hi - (uint64_t)lo;
  uint64_t v = range >= (1ull << 32) ? vkp_rng_u64(r) : vkp_rng_u32(r);
  return (int64_t)(v % range + (uint64_t)lo);
}

// ---- avx_mathfun's log256_ps and sincos256_ps, one lane --------------------------------------------

static float bits_f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static uint32_t f_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

// Natural log of x > 0 (Cephes logf polynomial).
static float cephes_log(float x) {
  x = fmaxf(x, bits_f(0x00800000u));   // cut off denormals
  int32_t ex = (int32_t)(f_bits(x) >> 23) - 0x7f;
  x = bits_f((f_bits(x) & ~0x7f800000u) | f_bits(0.5f));
  float e = (float)ex + 1.0f;
  float tmp = x < 0.707106781186547524f ? x : 0.0f;
  if (x < 0.707106781186547524f) e = e - 1.0f;
  x = x - 1.0f;
  x = x + tmp;
  float z = x * x;
  float y = 7.0376836292E-2f;
  y = fmaf(y, x, -1.1514610310E-1f);
  y = fmaf(y, x, 1.1676998740E-1f);
  y = fmaf(y, x, -1.2420140846E-1f);
  y = fmaf(y, x, 1.4249322787E-1f);
  y = fmaf(y, x, -1.6668057665E-1f);
  y = fmaf(y, x, 2.0000714765E-1f);
  y = fmaf(y, x, -2.4999993993E-1f);
  y = fmaf(y, x, 3.3333331174E-1f);
  y = y * x;
  y = fmaf(y, z, e * -2.12194440e-4f);
  y = fmaf(z, -0.5f, y);
  x = x + y;
  return fmaf(e, 0.693359375f, x);
}

// sin and cos of x (Cephes sinf/cosf with a three-part reduction by pi/4).
static void cephes_sincos(float xin, float *s, float *c) {
  uint32_t sign_sin = f_bits(xin) & 0x80000000u;
  float x = bits_f(f_bits(xin) & 0x7fffffffu);
  int32_t j = (int32_t)(x * 1.27323954473516f);   // 4 / pi, truncated as cvttps does
  j = (j + 1) & ~1;
  float y = (float)j;
  uint32_t swap_sign_sin = (uint32_t)(j & 4) << 29;
  int poly_sin = (j & 2) == 0;   // the sine polynomial gives the sine
  uint32_t sign_cos = (uint32_t)(~(j - 2) & 4) << 29;
  sign_sin ^= swap_sign_sin;
  x = fmaf(y, -0.78515625f, x);
  x = fmaf(y, -2.4187564849853515625e-4f, x);
  x = fmaf(y, -3.77489497744594108e-8f, x);
  float z = x * x;
  float yc = fmaf(2.443315711809948E-005f, z, -1.388731625493765E-003f);
  yc = fmaf(yc, z, 4.166664568298827E-002f);
  yc = yc * z;
  yc = fmaf(yc, z, -(z * 0.5f));
  yc = yc + 1.0f;
  float ys = fmaf(-1.9515295891E-4f, z, 8.3321608736E-3f);
  ys = fmaf(ys, z, -1.6666654611E-1f);
  ys = ys * z;
  ys = fmaf(ys, x, x);
  // Select as the vector code does (masked parts and sums), so signed zeros come out the same.
  float ysin2 = poly_sin ? ys : 0.0f, ysin1 = poly_sin ? 0.0f : yc;
  float sn = ysin1 + ysin2, cs = (yc - ysin1) + (ys - ysin2);
  *s = bits_f(f_bits(sn) ^ sign_sin);
  *c = bits_f(f_bits(cs) ^ sign_cos);
}

// normal_fill_16_AVX2: 16 uniforms in place -> 16 normals (pairs j, j + 8).
static void normal_fill_16(float *d, float mean, float std) {   // mean, std as float here
  const float two_pi = (float)(2.0 * M_PI);
  for (int j = 0; j < 8; j++) {
    float u1 = 1.0f - d[j], u2 = d[j + 8];
    float radius = sqrtf(-2.0f * cephes_log(u1));
    float s, c;
    cephes_sincos(two_pi * u2, &s, &c);
    d[j] = fmaf(radius * c, std, mean);
    d[j + 8] = fmaf(radius * s, std, mean);
  }
}

// ---- tensor generators -------------------------------------------------------------------------

void vkp_rng_rand(vkp_rng *r, float *out, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = uniform_f32(r);
}

// torch's uniform_ kernel computes u * (hi - lo) + lo, which its x86-64 build fuses into an fma.
void vkp_rng_uniform_fill(vkp_rng *r, float *out, size_t n, float lo, float hi) {
  float range = hi - lo;
  for (size_t i = 0; i < n; i++) out[i] = fmaf(uniform_f32(r), range, lo);
}

void vkp_rng_normal_fill(vkp_rng *r, float *out, size_t n, double mean, double std) {
  if (n < 16) {   // scalar path: double Box–Muller with the cache, mean and std in double
    for (size_t i = 0; i < n; i++) out[i] = (float)(vkp_rng_normal(r) * std + mean);
    return;
  }
  vkp_rng_rand(r, out, n);
  for (size_t i = 0; i + 16 <= n; i += 16) normal_fill_16(out + i, (float)mean, (float)std);
  if (n % 16 != 0) {   // torch redraws the last 16 and transforms them again
    float *tail = out + n - 16;
    vkp_rng_rand(r, tail, 16);
    normal_fill_16(tail, (float)mean, (float)std);
  }
}

void vkp_rng_randn(vkp_rng *r, float *out, size_t n) { vkp_rng_normal_fill(r, out, n, 0.0f, 1.0f); }

void vkp_rng_randint(vkp_rng *r, int64_t lo, int64_t hi, int64_t *out, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = vkp_rng_int(r, lo, hi);
}

void vkp_rng_randperm(vkp_rng *r, int64_t *out, int64_t n) {
  if (n < (int64_t)(UINT32_MAX / 20)) {   // torch's "small n": swap with a later element
    for (int64_t i = 0; i < n; i++) out[i] = i;
    for (int64_t i = 0; i + 1 < n; i++) {
      int64_t z = (int64_t)(vkp_rng_u32(r) % (uint64_t)(n - i));
      int64_t t = out[i];
      out[i] = out[z + i];
      out[z + i] = t;
    }
    return;
  }
  for (int64_t i = 0; i < n; i++) {   // large n: inside-out Fisher–Yates on 64-bit words
    int64_t z = (int64_t)(vkp_rng_u64(r) % (uint64_t)(i + 1));
    out[i] = out[z];
    out[z] = i;
  }
}

void vkp_rng_shuffle(vkp_rng *r, void *base, size_t n, size_t size, size_t k) {
  unsigned char *b = base;
  bool small = n < (size_t)(UINT32_MAX / 20);
  if (k > n) k = n;
  for (size_t i = 0; i < k && i + 1 < n; i++) {
    size_t z = (size_t)((small ? vkp_rng_u32(r) : vkp_rng_u64(r)) % (uint64_t)(n - i));
    if (z == 0) continue;
    unsigned char *p = b + i * size, *q = b + (i + z) * size;
    for (size_t c = 0; c < size; c++) {
      unsigned char t = p[c];
      p[c] = q[c];
      q[c] = t;
    }
  }
}

// ---- state ---------------------------------------------------------------------------------------

void vkp_rng_get_state(const vkp_rng *r, uint32_t *w) {
  memcpy(w, r->mt, sizeof r->mt);
  uint64_t nb;
  memcpy(&nb, &r->normal, 8);
  w[VKP_RNG_MT_N] = (uint32_t)r->next;
  w[VKP_RNG_MT_N + 1] = r->has_normal ? 1u : 0u;
  w[VKP_RNG_MT_N + 2] = (uint32_t)(nb >> 32);
  w[VKP_RNG_MT_N + 3] = (uint32_t)nb;
}

vkp_status vkp_rng_set_state(vkp_rng *r, const uint32_t *w, vkp_error *err) {
  if (w[VKP_RNG_MT_N] > VKP_RNG_MT_N || w[VKP_RNG_MT_N + 1] > 1)
    return vkp_error_set(err, VKP_ERR_FORMAT, "random state: position %u / cache flag %u out of range",
                         w[VKP_RNG_MT_N], w[VKP_RNG_MT_N + 1]);
  memcpy(r->mt, w, sizeof r->mt);
  r->next = (int32_t)w[VKP_RNG_MT_N];
  r->has_normal = (int32_t)w[VKP_RNG_MT_N + 1];
  uint64_t nb = ((uint64_t)w[VKP_RNG_MT_N + 2] << 32) | w[VKP_RNG_MT_N + 3];
  memcpy(&r->normal, &nb, 8);
  return VKP_OK;
}
