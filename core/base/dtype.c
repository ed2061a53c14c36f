// dtype.c — element sizes and names, and host-side conversions between f32, f16, bf16 and the
// integer types that appear in safetensors files.
//
// All conversions go through memcpy for type punning and for loads from possibly unaligned
// sources (tensor data inside a mapped safetensors file need not be aligned). Rounding is to
// nearest, ties to even; NaN stays NaN (quiet, sign kept), overflow goes to infinity.
#include "vkp_dtype.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct {
  const char *name;
  size_t size;
} dtype_info[VKP_DTYPE_COUNT] = {
    [VKP_DTYPE_F32] = {"F32", 4},   [VKP_DTYPE_F16] = {"F16", 2}, [VKP_DTYPE_BF16] = {"BF16", 2},
    [VKP_DTYPE_I32] = {"I32", 4},   [VKP_DTYPE_F64] = {"F64", 8}, [VKP_DTYPE_I64] = {"I64", 8},
    [VKP_DTYPE_I16] = {"I16", 2},   [VKP_DTYPE_I8] = {"I8", 1},   [VKP_DTYPE_U8] = {"U8", 1},
    [VKP_DTYPE_BOOL] = {"BOOL", 1},
};

size_t vkp_dtype_size(vkp_dtype dt) {
  if ((unsigned)dt >= VKP_DTYPE_COUNT) return 0;
  return dtype_info[dt].size;
}

const char *vkp_dtype_name(vkp_dtype dt) {
  if ((unsigned)dt >= VKP_DTYPE_COUNT) return "invalid";
  return dtype_info[dt].name;
}

int vkp_dtype_parse(const char *name, vkp_dtype *out) {
  if (!name) return -1;
  for (int i = 0; i < VKP_DTYPE_COUNT; i++) {
    if (strcmp(name, dtype_info[i].name) == 0) {
      if (out) *out = (vkp_dtype)i;
      return 0;
    }
  }
  return -1;
}

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

// Shifts m right by `shift` (1..31) rounding to nearest, ties to even.
static uint32_t shift_round_even(uint32_t m, unsigned shift) {
  uint32_t q = m >> shift;
  uint32_t rem = m & ((1u << shift) - 1u);
  uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) q++;
  return q;
}

uint16_t vkp_f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t exp = (x >> 23) & 0xffu;  // biased f32 exponent
  uint32_t mant = x & 0x7fffffu;

  if (exp == 0xffu) {
    if (mant == 0) return sign | 0x7c00u;              // infinity
    return (uint16_t)(sign | 0x7e00u | (mant >> 13));  // quiet NaN, top payload kept
  }
  if (exp >= 127u + 16u) return sign | 0x7c00u;  // |f| >= 65536: overflow
  if (exp >= 127u - 14u) {
    // Normal f16 range (before rounding). Rounding may carry into the exponent, which is the
    // right encoding, up to and including infinity (65520 and above).
    uint32_t h = ((exp - 112u) << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
  }
  // |f| < 2^-14: f16 subnormal or zero. The f16 value is round(|f| * 2^24). With the implicit bit,
  // |f| = m * 2^(exp-150), so |f| * 2^24 = m >> (126 - exp).
  if (exp < 102u) return sign;  // |f| < 2^-25 (incl. f32 subnormals): rounds to zero
  uint32_t m = mant | 0x800000u;
  return (uint16_t)(sign | shift_round_even(m, 126u - exp));  // may round up to 0x0400 (normal)
}

float vkp_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return bits_f32(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp != 0) return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return bits_f32(sign);  // signed zero
  // Subnormal: mant * 2^-24; normalise.
  uint32_t e = 113u;  // f32 biased exponent of 2^-14
  while (!(mant & 0x400u)) {
    mant <<= 1;
    e--;
  }
  return bits_f32(sign | (e << 23) | ((mant & 0x3ffu) << 13));
}

uint16_t vkp_f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040u);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);  // round to nearest even; carries into exponent (inf) correctly
  return (uint16_t)(x >> 16);
}

float vkp_bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

// Rounds to nearest even and saturates into [lo, hi]; NaN converts to 0. lo and hi are exact
// doubles for every integer type used here except INT64_MAX, which rounds up to 2^63: anything
// at or above that saturates, so the final cast never overflows.
static int64_t round_clamp(float v, int64_t lo, int64_t hi) {
  if (isnan(v)) return 0;
  double r = nearbyint((double)v);
  if (r <= (double)lo) return lo;
  if (r >= (double)hi) return hi;
  return (int64_t)r;
}

bool vkp_dtype_is_weight(vkp_dtype dt) {
  return dt == VKP_DTYPE_F32 || dt == VKP_DTYPE_F16 || dt == VKP_DTYPE_BF16;
}

const char *vkp_shape_text(int ndim, const int64_t *shape, char *out, size_t cap) {
  if (!cap) return out;
  size_t n = (size_t)snprintf(out, cap, "(");
  for (int d = 0; d < ndim && n < cap; d++)
    n += (size_t)snprintf(out + n, cap - n, shape[d] < 0 ? "%s*" : "%s%lld", d ? ", " : "", (long long)shape[d]);
  if (n < cap) snprintf(out + n, cap - n, ")");
  return out;
}

void vkp_convert_to_f32(vkp_dtype src_dt, const void *src, float *dst, size_t n) {
  const unsigned char *s = src;
  switch (src_dt) {
    case VKP_DTYPE_F32:
      memcpy(dst, src, n * sizeof(float));
      return;
    case VKP_DTYPE_F16:
      for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = vkp_f16_to_f32(h);
      }
      return;
    case VKP_DTYPE_BF16:
      for (size_t i = 0; i < n; i++) {
        uint16_t b;
        memcpy(&b, s + 2 * i, 2);
        dst[i] = vkp_bf16_to_f32(b);
      }
      return;
    case VKP_DTYPE_F64:
      for (size_t i = 0; i < n; i++) {
        double d;
        memcpy(&d, s + 8 * i, 8);
        dst[i] = (float)d;  // IEEE: rounds to nearest, out of range -> inf
      }
      return;
    case VKP_DTYPE_I64:
      for (size_t i = 0; i < n; i++) {
        int64_t v;
        memcpy(&v, s + 8 * i, 8);
        dst[i] = (float)v;
      }
      return;
    case VKP_DTYPE_I32:
      for (size_t i = 0; i < n; i++) {
        int32_t v;
        memcpy(&v, s + 4 * i, 4);
        dst[i] = (float)v;
      }
      return;
    case VKP_DTYPE_I16:
      for (size_t i = 0; i < n; i++) {
        int16_t v;
        memcpy(&v, s + 2 * i, 2);
        dst[i] = (float)v;
      }
      return;
    case VKP_DTYPE_I8:
      for (size_t i = 0; i < n; i++) dst[i] = (float)(int8_t)s[i];
      return;
    case VKP_DTYPE_U8:
      for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
      return;
    case VKP_DTYPE_BOOL:
      for (size_t i = 0; i < n; i++) dst[i] = s[i] ? 1.0f : 0.0f;
      return;
    case VKP_DTYPE_COUNT:
      break;
  }
  // Programmer error (invalid dtype): leave a defined result rather than garbage.
  for (size_t i = 0; i < n; i++) dst[i] = NAN;
}

void vkp_convert_from_f32(vkp_dtype dst_dt, const float *src, void *dst, size_t n) {
  unsigned char *d = dst;
  switch (dst_dt) {
    case VKP_DTYPE_F32:
      memcpy(dst, src, n * sizeof(float));
      return;
    case VKP_DTYPE_F16:
      for (size_t i = 0; i < n; i++) {
        uint16_t h = vkp_f32_to_f16(src[i]);
        memcpy(d + 2 * i, &h, 2);
      }
      return;
    case VKP_DTYPE_BF16:
      for (size_t i = 0; i < n; i++) {
        uint16_t b = vkp_f32_to_bf16(src[i]);
        memcpy(d + 2 * i, &b, 2);
      }
      return;
    case VKP_DTYPE_F64:
      for (size_t i = 0; i < n; i++) {
        double v = src[i];
        memcpy(d + 8 * i, &v, 8);
      }
      return;
    case VKP_DTYPE_I64:
      for (size_t i = 0; i < n; i++) {
        int64_t v = round_clamp(src[i], INT64_MIN, INT64_MAX);
        memcpy(d + 8 * i, &v, 8);
      }
      return;
    case VKP_DTYPE_I32:
      for (size_t i = 0; i < n; i++) {
        int32_t v = (int32_t)round_clamp(src[i], INT32_MIN, INT32_MAX);
        memcpy(d + 4 * i, &v, 4);
      }
      return;
    case VKP_DTYPE_I16:
      for (size_t i = 0; i < n; i++) {
        int16_t v = (int16_t)round_clamp(src[i], INT16_MIN, INT16_MAX);
        memcpy(d + 2 * i, &v, 2);
      }
      return;
    case VKP_DTYPE_I8:
      for (size_t i = 0; i < n; i++)
        d[i] = (unsigned char)(int8_t)round_clamp(src[i], INT8_MIN, INT8_MAX);
      return;
    case VKP_DTYPE_U8:
      for (size_t i = 0; i < n; i++) d[i] = (unsigned char)round_clamp(src[i], 0, UINT8_MAX);
      return;
    case VKP_DTYPE_BOOL:
      for (size_t i = 0; i < n; i++) d[i] = src[i] != 0.0f;  // NaN is true, as in C
      return;
    case VKP_DTYPE_COUNT:
      break;
  }
}
