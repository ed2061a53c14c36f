// test_dtype.c — dtype table and host conversions (f16/bf16 rounding, integer conversions).
//
// Expected bit patterns are derived by hand from the IEEE formats (f16: 1 sign, 5 exponent bits
// with bias 15, 10 mantissa bits; bf16: the top 16 bits of an f32), not from the code under test.
// Exhaustive and swept checks compare against an independent double-precision reference rounding.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdbool.h>
#include <math.h>
#include <string.h>

#include "vkp_dtype.h"

static float f32_of(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

// ---- dtype table --------------------------------------------------------------------------------

static void test_dtype_table(void **state) {
  (void)state;
  static const struct {
    vkp_dtype dt;
    const char *name;
    size_t size;
  } want[] = {
      {VKP_DTYPE_F32, "F32", 4}, {VKP_DTYPE_F16, "F16", 2}, {VKP_DTYPE_BF16, "BF16", 2},
      {VKP_DTYPE_I32, "I32", 4}, {VKP_DTYPE_F64, "F64", 8}, {VKP_DTYPE_I64, "I64", 8},
      {VKP_DTYPE_I16, "I16", 2}, {VKP_DTYPE_I8, "I8", 1},   {VKP_DTYPE_U8, "U8", 1},
      {VKP_DTYPE_BOOL, "BOOL", 1},
  };
  assert_int_equal(sizeof want / sizeof want[0], VKP_DTYPE_COUNT);
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    assert_int_equal(vkp_dtype_size(want[i].dt), want[i].size);
    assert_string_equal(vkp_dtype_name(want[i].dt), want[i].name);
    vkp_dtype got = VKP_DTYPE_COUNT;
    assert_int_equal(vkp_dtype_parse(want[i].name, &got), 0);
    assert_int_equal(got, want[i].dt);
  }
  vkp_dtype got = VKP_DTYPE_F16;
  assert_int_equal(vkp_dtype_parse("f32", &got), -1);  // case-sensitive, as safetensors
  assert_int_equal(vkp_dtype_parse("", &got), -1);
  assert_int_equal(vkp_dtype_parse("F8_E4M3", &got), -1);
  assert_int_equal(vkp_dtype_parse(NULL, &got), -1);
  assert_int_equal(got, VKP_DTYPE_F16);  // untouched on failure
  assert_int_equal(vkp_dtype_size(VKP_DTYPE_COUNT), 0);
  assert_non_null(vkp_dtype_name(VKP_DTYPE_COUNT));
}

// ---- f16 known patterns -------------------------------------------------------------------------

typedef struct {
  uint32_t f32;  // input bits
  uint16_t f16;  // expected
  const char *what;
} f16_case;

static void test_f32_to_f16_known(void **state) {
  (void)state;
  static const f16_case cases[] = {
      {0x00000000, 0x0000, "+0"},
      {0x80000000, 0x8000, "-0"},
      {0x3f800000, 0x3c00, "1.0"},
      {0xc0000000, 0xc000, "-2.0"},
      {0x3f000000, 0x3800, "0.5"},
      {0x3eaaaaab, 0x3555, "1/3 (mantissa 341.33 -> 341)"},
      {0x477fe000, 0x7bff, "65504 = max finite"},
      {0x477fefff, 0x7bff, "just below 65520 rounds down to 65504"},
      {0x477ff000, 0x7c00, "65520 is a tie with odd 0x7bff: rounds to inf"},
      {0x47800000, 0x7c00, "65536 overflows"},
      {0x501502f9, 0x7c00, "1e10 overflows"},
      {0xd01502f9, 0xfc00, "-1e10 overflows to -inf"},
      {0x7f800000, 0x7c00, "+inf"},
      {0xff800000, 0xfc00, "-inf"},
      {0x7f7fffff, 0x7c00, "FLT_MAX"},
      {0x38800000, 0x0400, "2^-14 = min normal"},
      {0x387fc000, 0x03ff, "1023 * 2^-24 = max subnormal"},
      {0x387fe000, 0x0400, "1023.5 * 2^-24: tie with odd 0x3ff rounds up to min normal"},
      {0x33800000, 0x0001, "2^-24 = min subnormal"},
      {0xb3800000, 0x8001, "-2^-24"},
      {0x33000000, 0x0000, "2^-25: tie between 0 and 2^-24 rounds to even 0"},
      {0xb3000000, 0x8000, "-2^-25 rounds to -0"},
      {0x33000001, 0x0001, "just above 2^-25 rounds up"},
      {0x33c00000, 0x0002, "1.5 * 2^-24: tie rounds to even 2"},
      {0x34200000, 0x0002, "2.5 * 2^-24: tie rounds to even 2"},
      {0x34600000, 0x0004, "3.5 * 2^-24: tie rounds to even 4"},
      {0x32800000, 0x0000, "2^-26 rounds to 0"},
      {0x00000001, 0x0000, "f32 min subnormal"},
      {0x80000001, 0x8000, "-f32 min subnormal"},
      {0x3f801000, 0x3c00, "1 + 2^-11: tie rounds to even 1.0"},
      {0x3f803000, 0x3c02, "1 + 3*2^-11: tie rounds to even 0x3c02"},
      {0x3f801001, 0x3c01, "just above the tie rounds up"},
      {0x3f800fff, 0x3c00, "just below the tie rounds down"},
      {0x44ffe000, 0x67ff, "2047"},
      {0x44fff000, 0x6800, "2047.5: tie with odd 0x67ff carries into the exponent (2048)"},
      {0x44ffd000, 0x67fe, "2046.5: tie rounds to even 2046"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint16_t got = vkp_f32_to_f16(f32_of(cases[i].f32));
    if (got != cases[i].f16)
      fail_msg("f32 0x%08x (%s): got f16 0x%04x, want 0x%04x", cases[i].f32, cases[i].what, got,
               cases[i].f16);
  }
}

static void test_f32_to_f16_nan(void **state) {
  (void)state;
  static const uint32_t nans[] = {0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001,
                                  0x7fffffff, 0x7fa00000, 0x7f801fff};
  for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
    uint16_t h = vkp_f32_to_f16(f32_of(nans[i]));
    // NaN: exponent all ones, mantissa non-zero (never infinity, whatever the payload).
    if ((h & 0x7c00) != 0x7c00 || (h & 0x03ff) == 0)
      fail_msg("f32 NaN 0x%08x -> f16 0x%04x is not a NaN", nans[i], h);
    assert_int_equal(h >> 15, nans[i] >> 31);  // sign kept
  }
}

static void test_f16_to_f32_known(void **state) {
  (void)state;
  static const struct {
    uint16_t f16;
    uint32_t f32;
  } cases[] = {
      {0x0000, 0x00000000}, {0x8000, 0x80000000}, {0x3c00, 0x3f800000}, {0xc000, 0xc0000000},
      {0x3555, 0x3eaaa000},  // 0.333251953125
      {0x7bff, 0x477fe000},  // 65504
      {0x0400, 0x38800000},  // 2^-14
      {0x03ff, 0x387fc000},  // 1023 * 2^-24
      {0x0200, 0x38000000},  // 2^-15
      {0x0001, 0x33800000},  // 2^-24
      {0x8001, 0xb3800000},  // -2^-24
      {0x7c00, 0x7f800000}, {0xfc00, 0xff800000},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint32_t got = bits_of(vkp_f16_to_f32(cases[i].f16));
    if (got != cases[i].f32)
      fail_msg("f16 0x%04x: got f32 0x%08x, want 0x%08x", cases[i].f16, got, cases[i].f32);
  }
  assert_true(isnan(vkp_f16_to_f32(0x7e00)));
  assert_true(isnan(vkp_f16_to_f32(0x7c01)));
  assert_true(isnan(vkp_f16_to_f32(0xfe00)) && signbit(vkp_f16_to_f32(0xfe00)));
  assert_true(vkp_f16_to_f32(0x7bff) == 65504.0f);
  assert_true(vkp_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
}

// ---- bf16 known patterns ------------------------------------------------------------------------

static void test_bf16_known(void **state) {
  (void)state;
  static const struct {
    uint32_t f32;
    uint16_t bf16;
    const char *what;
  } cases[] = {
      {0x3f800000, 0x3f80, "1.0"},
      {0xc0000000, 0xc000, "-2.0"},
      {0x00000000, 0x0000, "+0"},
      {0x80000000, 0x8000, "-0"},
      {0x3f808000, 0x3f80, "1 + 2^-8: tie rounds to even"},
      {0x3f818000, 0x3f82, "tie with odd 0x3f81 rounds up"},
      {0x3f808001, 0x3f81, "just above the tie"},
      {0x3f807fff, 0x3f80, "just below the tie"},
      {0x3fff8000, 0x4000, "tie with odd 0x3fff carries into the exponent (2.0)"},
      {0x7f800000, 0x7f80, "+inf"},
      {0xff800000, 0xff80, "-inf"},
      {0x7f7f7fff, 0x7f7f, "largest value rounding to max finite bf16"},
      {0x7f7f8000, 0x7f80, "tie above max finite (odd) rounds to inf"},
      {0x7f7fffff, 0x7f80, "FLT_MAX rounds to inf"},
      {0xff7fffff, 0xff80, "-FLT_MAX rounds to -inf"},
      {0x00010000, 0x0001, "min bf16 subnormal"},
      {0x00000001, 0x0000, "f32 min subnormal rounds to 0"},
      {0x00008000, 0x0000, "subnormal tie rounds to even 0"},
      {0x00018000, 0x0002, "subnormal tie with odd 1 rounds to 2"},
      {0x00800000, 0x0080, "FLT_MIN"},
      {0x007fffff, 0x0080, "max f32 subnormal rounds up to FLT_MIN"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint16_t got = vkp_f32_to_bf16(f32_of(cases[i].f32));
    if (got != cases[i].bf16)
      fail_msg("f32 0x%08x (%s): got bf16 0x%04x, want 0x%04x", cases[i].f32, cases[i].what, got,
               cases[i].bf16);
  }
  static const uint32_t nans[] = {0x7fc00000, 0xffc00000, 0x7f800001, 0x7fffffff, 0xffffffff,
                                  0x7f80ffff};
  for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
    uint16_t b = vkp_f32_to_bf16(f32_of(nans[i]));
    // A naive "add rounding bias" would turn 0x7f800001 into inf and 0x7fffffff into -0.
    if ((b & 0x7f80) != 0x7f80 || (b & 0x007f) == 0)
      fail_msg("f32 NaN 0x%08x -> bf16 0x%04x is not a NaN", nans[i], b);
    assert_int_equal(b >> 15, nans[i] >> 31);
  }
  assert_int_equal(bits_of(vkp_bf16_to_f32(0x3f80)), 0x3f800000);
  assert_int_equal(bits_of(vkp_bf16_to_f32(0x0001)), 0x00010000);
  assert_int_equal(bits_of(vkp_bf16_to_f32(0x7f7f)), 0x7f7f0000);
  assert_int_equal(bits_of(vkp_bf16_to_f32(0xff80)), 0xff800000);
  assert_true(isnan(vkp_bf16_to_f32(0x7fc0)));
}

// ---- exhaustive round trips ---------------------------------------------------------------------

// The value of an f16 bit pattern computed straight from the format definition.
static double f16_value_ref(uint16_t h) {
  int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double v = e == 0 ? ldexp(m, -24) : e == 31 ? INFINITY : ldexp(1024 + m, e - 25);
  return (h & 0x8000) ? -v : v;
}

static void test_f16_exhaustive(void **state) {
  (void)state;
  for (uint32_t u = 0; u < 65536; u++) {
    uint16_t h = (uint16_t)u;
    float f = vkp_f16_to_f32(h);
    bool is_nan = ((h & 0x7c00) == 0x7c00) && (h & 0x3ff);
    if (is_nan) {
      if (!isnan(f) || !!signbit(f) != !!(h & 0x8000)) fail_msg("f16 NaN 0x%04x decoded badly", h);
      uint16_t back = vkp_f32_to_f16(f);
      if ((back & 0x7c00) != 0x7c00 || !(back & 0x3ff) || (back & 0x8000) != (h & 0x8000))
        fail_msg("f16 NaN 0x%04x -> 0x%04x is not the same-sign NaN", h, back);
      continue;
    }
    if ((double)f != f16_value_ref(h) || !!signbit(f) != !!(h & 0x8000))
      fail_msg("f16 0x%04x decodes to %.10g, want %.10g", h, (double)f, f16_value_ref(h));
    uint16_t back = vkp_f32_to_f16(f);
    if (back != h) fail_msg("f16 0x%04x -> %.10g -> 0x%04x", h, (double)f, back);
  }
}

static void test_bf16_exhaustive(void **state) {
  (void)state;
  for (uint32_t u = 0; u < 65536; u++) {
    uint16_t b = (uint16_t)u;
    float f = vkp_bf16_to_f32(b);
    uint16_t back = vkp_f32_to_bf16(f);
    bool is_nan = ((b & 0x7f80) == 0x7f80) && (b & 0x7f);
    if (is_nan) {
      if (!isnan(f) || (back & 0x7f80) != 0x7f80 || !(back & 0x7f) || (back ^ b) & 0x8000)
        fail_msg("bf16 NaN 0x%04x -> 0x%04x", b, back);
    } else if (back != b) {
      fail_msg("bf16 0x%04x -> 0x%04x", b, back);
    }
  }
}

// ---- swept comparison against a reference rounding ----------------------------------------------

// Rounds x to a binary format with `p` significant bits, minimum normal exponent emin and largest
// finite value maxf, to nearest even, in exact double arithmetic. Returns +-inf on overflow.
static double round_ref(double x, int p, int emin, double maxf) {
  double a = fabs(x);
  if (a == 0 || isinf(a)) return x;
  int e;
  frexp(a, &e);  // a = m * 2^e, m in [0.5, 1): floor(log2 a) = e - 1
  int E = e - 1 < emin ? emin : e - 1;
  double spacing = ldexp(1.0, E - (p - 1));
  double q = a / spacing, fl = floor(q), frac = q - fl;
  if (frac > 0.5 || (frac == 0.5 && fmod(fl, 2.0) == 1.0)) fl += 1;
  double r = fl * spacing;
  if (r > maxf) r = INFINITY;
  return copysign(r, x);
}

static void check_against_ref(float f) {
  if (isnan(f)) return;
  double want16 = round_ref(f, 11, -14, 65504.0);
  float got16 = vkp_f16_to_f32(vkp_f32_to_f16(f));
  if ((double)got16 != want16 || !!signbit(got16) != !!signbit(f))
    fail_msg("f16(%a = 0x%08x) = %a, want %a", (double)f, bits_of(f), (double)got16, want16);
  double want_bf = round_ref(f, 8, -126, ldexp(255.0, 120));  // max bf16 = (2 - 2^-7) * 2^127
  float got_bf = vkp_bf16_to_f32(vkp_f32_to_bf16(f));
  if ((double)got_bf != want_bf || !!signbit(got_bf) != !!signbit(f))
    fail_msg("bf16(%a = 0x%08x) = %a, want %a", (double)f, bits_of(f), (double)got_bf, want_bf);
#if defined(__FLT16_MAX__)
  // The compiler's own conversion (F16C or libgcc, round to nearest even) must agree bit for bit.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
  _Float16 c = (_Float16)f;
#pragma GCC diagnostic pop
  uint16_t cbits;
  memcpy(&cbits, &c, sizeof cbits);
  if (cbits != vkp_f32_to_f16(f))
    fail_msg("f16(0x%08x): compiler 0x%04x, vkp 0x%04x", bits_of(f), cbits, vkp_f32_to_f16(f));
#endif
}

static void test_rounding_sweep(void **state) {
  (void)state;
  // A strided sweep over all f32 bit patterns (every exponent, both signs).
  for (uint64_t u = 0; u <= 0xffffffffu; u += 65521) check_against_ref(f32_of((uint32_t)u));
  // Every f16 rounding boundary: the exact midpoints and their f32 neighbours.
  for (uint32_t h = 0; h < 0x7c00; h++) {
    double lo = f16_value_ref((uint16_t)h);
    double hi = h + 1 < 0x7c00 ? f16_value_ref((uint16_t)(h + 1)) : 65536.0;
    float mid = (float)((lo + hi) / 2);  // exact: needs 12 significant bits
    assert_true((double)mid == (lo + hi) / 2);
    float probes[] = {mid, nextafterf(mid, 0), nextafterf(mid, INFINITY)};
    for (int k = 0; k < 3; k++) {
      check_against_ref(probes[k]);
      check_against_ref(-probes[k]);
    }
  }
  // Every bf16 rounding boundary.
  for (uint32_t b = 0; b < 0x7f80; b++) {
    uint32_t mid = (b << 16) | 0x8000;
    uint32_t probes[] = {mid, mid - 1, mid + 1};
    for (int k = 0; k < 3; k++) {
      check_against_ref(f32_of(probes[k]));
      check_against_ref(f32_of(probes[k] | 0x80000000u));
    }
  }
}

// ---- bulk conversions ---------------------------------------------------------------------------

static void test_convert_to_f32(void **state) {
  (void)state;
  float out[8];
  // Sources start at an odd address: conversions must not assume alignment.
  unsigned char buf[80];

  const int8_t i8[] = {-128, -1, 0, 127};
  memcpy(buf + 1, i8, sizeof i8);
  vkp_convert_to_f32(VKP_DTYPE_I8, buf + 1, out, 4);
  assert_true(out[0] == -128.0f && out[1] == -1.0f && out[2] == 0.0f && out[3] == 127.0f);

  const uint8_t u8[] = {0, 1, 200, 255};
  memcpy(buf + 1, u8, sizeof u8);
  vkp_convert_to_f32(VKP_DTYPE_U8, buf + 1, out, 4);
  assert_true(out[0] == 0.0f && out[1] == 1.0f && out[2] == 200.0f && out[3] == 255.0f);

  const int16_t i16[] = {-32768, 32767, -5};
  memcpy(buf + 1, i16, sizeof i16);
  vkp_convert_to_f32(VKP_DTYPE_I16, buf + 1, out, 3);
  assert_true(out[0] == -32768.0f && out[1] == 32767.0f && out[2] == -5.0f);

  const int32_t i32[] = {INT32_MIN, 16777217, -7};
  memcpy(buf + 1, i32, sizeof i32);
  vkp_convert_to_f32(VKP_DTYPE_I32, buf + 1, out, 3);
  assert_true(out[0] == -2147483648.0f);
  assert_true(out[1] == 16777216.0f);  // 2^24 + 1 rounds to even 2^24
  assert_true(out[2] == -7.0f);

  const int64_t i64[] = {-((int64_t)1 << 40), 3, INT64_MAX};
  memcpy(buf + 1, i64, sizeof i64);
  vkp_convert_to_f32(VKP_DTYPE_I64, buf + 1, out, 3);
  assert_true(out[0] == -1099511627776.0f && out[1] == 3.0f && out[2] == 9223372036854775808.0f);

  const double f64[] = {0.1, 1e300, -1e-300, -2.5};
  memcpy(buf + 1, f64, sizeof f64);
  vkp_convert_to_f32(VKP_DTYPE_F64, buf + 1, out, 4);
  assert_true(out[0] == 0.1f);
  assert_true(isinf(out[1]) && out[1] > 0);
  assert_true(out[2] == 0.0f && signbit(out[2]));
  assert_true(out[3] == -2.5f);

  const uint8_t bools[] = {0, 1, 2, 255};
  memcpy(buf + 1, bools, sizeof bools);
  vkp_convert_to_f32(VKP_DTYPE_BOOL, buf + 1, out, 4);
  assert_true(out[0] == 0.0f && out[1] == 1.0f && out[2] == 1.0f && out[3] == 1.0f);

  const uint16_t f16[] = {0x3c00, 0xc000, 0x7bff, 0x0001};
  memcpy(buf + 1, f16, sizeof f16);
  vkp_convert_to_f32(VKP_DTYPE_F16, buf + 1, out, 4);
  assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == 65504.0f);
  assert_true(out[3] == ldexpf(1.0f, -24));

  const uint16_t bf16[] = {0x3f80, 0xc000, 0x4049};  // 0x4049 = 3.140625
  memcpy(buf + 1, bf16, sizeof bf16);
  vkp_convert_to_f32(VKP_DTYPE_BF16, buf + 1, out, 3);
  assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == 3.140625f);

  const float f32[] = {1.5f, -0.25f};
  memcpy(buf + 1, f32, sizeof f32);
  vkp_convert_to_f32(VKP_DTYPE_F32, buf + 1, out, 2);
  assert_true(out[0] == 1.5f && out[1] == -0.25f);
}

static void test_convert_from_f32(void **state) {
  (void)state;
  const float src[] = {2.5f, 3.5f, -2.5f, -0.5f, 1e10f, -1e10f, NAN, 2147483520.0f};
  int32_t i32[8];
  vkp_convert_from_f32(VKP_DTYPE_I32, src, i32, 8);
  const int32_t want_i32[] = {2, 4, -2, 0, INT32_MAX, INT32_MIN, 0, 2147483520};
  for (int i = 0; i < 8; i++) assert_int_equal(i32[i], want_i32[i]);

  const float src8[] = {-3.0f, 300.0f, 254.5f, 253.5f, 0.5f, 1.5f};
  uint8_t u8[6];
  vkp_convert_from_f32(VKP_DTYPE_U8, src8, u8, 6);
  const uint8_t want_u8[] = {0, 255, 254, 254, 0, 2};
  for (int i = 0; i < 6; i++) assert_int_equal(u8[i], want_u8[i]);

  int8_t i8[6];
  vkp_convert_from_f32(VKP_DTYPE_I8, src8, i8, 6);
  const int8_t want_i8[] = {-3, 127, 127, 127, 0, 2};
  for (int i = 0; i < 6; i++) assert_int_equal(i8[i], want_i8[i]);

  const float src16[] = {-40000.0f, 40000.0f, -32768.0f};
  int16_t i16[3];
  vkp_convert_from_f32(VKP_DTYPE_I16, src16, i16, 3);
  assert_int_equal(i16[0], INT16_MIN);
  assert_int_equal(i16[1], INT16_MAX);
  assert_int_equal(i16[2], -32768);

  const float src64[] = {1e19f, -1e19f, 9223371487098961920.0f, -6.5f};
  int64_t i64[4];
  vkp_convert_from_f32(VKP_DTYPE_I64, src64, i64, 4);
  assert_true(i64[0] == INT64_MAX);
  assert_true(i64[1] == INT64_MIN);
  assert_true(i64[2] == INT64_C(9223371487098961920));  // largest float below 2^63
  assert_true(i64[3] == -6);

  const float srcf[] = {1.0f, -2.0f, 65520.0f, 0.1f};
  uint16_t h[4], b[4];
  vkp_convert_from_f32(VKP_DTYPE_F16, srcf, h, 4);
  vkp_convert_from_f32(VKP_DTYPE_BF16, srcf, b, 4);
  assert_int_equal(h[0], 0x3c00);
  assert_int_equal(h[1], 0xc000);
  assert_int_equal(h[2], 0x7c00);
  assert_int_equal(h[3], 0x2e66);  // 0.1 = 1.6 * 2^-4: mantissa 0.6 * 1024 = 614.4 -> 614
  assert_int_equal(b[0], 0x3f80);
  assert_int_equal(b[1], 0xc000);
  assert_int_equal(b[3], 0x3dcd);  // 0.1f = 0x3dcccccd: low half 0xcccd > 0x8000 rounds up

  double d[2];
  vkp_convert_from_f32(VKP_DTYPE_F64, srcf, d, 2);
  assert_true(d[0] == 1.0 && d[1] == -2.0);

  const float srcb[] = {0.0f, -0.0f, 0.5f, NAN};
  uint8_t bo[4];
  vkp_convert_from_f32(VKP_DTYPE_BOOL, srcb, bo, 4);
  assert_true(bo[0] == 0 && bo[1] == 0 && bo[2] == 1 && bo[3] == 1);

  float f[2];
  vkp_convert_from_f32(VKP_DTYPE_F32, srcf, f, 2);
  assert_true(f[0] == 1.0f && f[1] == -2.0f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dtype_table),      cmocka_unit_test(test_f32_to_f16_known),
      cmocka_unit_test(test_f32_to_f16_nan),   cmocka_unit_test(test_f16_to_f32_known),
      cmocka_unit_test(test_bf16_known),       cmocka_unit_test(test_f16_exhaustive),
      cmocka_unit_test(test_bf16_exhaustive),  cmocka_unit_test(test_rounding_sweep),
      cmocka_unit_test(test_convert_to_f32),   cmocka_unit_test(test_convert_from_f32),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
