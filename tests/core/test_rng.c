// test_rng.c — vkp_rng against PyTorch's CPU generator: every expected number below was produced
// by torch 1.13.1 (Debian's python3-torch, x86-64 with AVX2/AVX-512) with the Python line given
// beside it, e.g. `torch.manual_seed(42); torch.randn(20)`, printed with 9 significant digits
// (float32) or 17 (float64), which read back exactly (one case follows torch >= 2.0, see there).
// torch is not needed to run this test.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_rng.h"
#include "vkp_test.h"

static void assert_floats(const char *what, const float *got, const float *want, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
      fail_msg("%s[%zu]: %.9g, torch gives %.9g", what, i, (double)got[i], (double)want[i]);
}

// torch.manual_seed(42); torch.randn(20): the vectorised path (blocks of 16, tail redrawn).
static void test_randn_vectorised(void **state) {
  (void)state;
  static const float want[20] = {
      1.92691529f,  1.48728406f,  0.900717199f, -2.10552096f, -0.758131146f, 1.07831764f, 0.800800562f,
      1.68062055f,  0.355859905f, -0.686622977f, -0.493356347f, 0.241487786f, -0.23162432f, 0.041759491f,
      -0.251575291f, 0.859858513f, -0.309726775f, -0.395710498f, 0.803409338f, -0.621595383f};
  float got[20];
  vkp_rng r = vkp_rng_new(42);
  vkp_rng_randn(&r, got, 20);
  assert_floats("randn(20)", got, want, 20);
  // torch.manual_seed(7); torch.randn(37): two blocks and an overlapping, redrawn last block.
  static const float want37[37] = {
      -0.820134521f, 0.395631164f,  0.898908496f, -1.38840389f,  -0.166996017f, 0.285149962f, -0.641091526f,
      -0.893655419f, 0.926542997f,  -0.535512209f, -1.1597203f,  -0.460157156f, 0.708539069f, 1.01275539f,
      0.230396867f,  1.09016514f,   -1.58266461f, -0.324566633f, 1.92636812f,   -0.330011725f, 0.198445052f,
      -0.661867559f, -0.828452051f, -0.605680287f, -0.135436893f, 0.747118235f, 0.611815751f, 1.86778355f,
      2.51160288f,   -0.25013262f,  0.501121461f, 0.2600362f,    -1.6370213f,   0.157711908f, 0.395740926f,
      -1.36773968f,  -0.100734316f};
  float g37[37];
  r = vkp_rng_new(7);
  vkp_rng_randn(&r, g37, 37);
  assert_floats("randn(37)", g37, want37, 37);
  // torch.manual_seed(80085); t = torch.randn(1000): sum of all (float64, in order), ends.
  float *big = malloc(1000 * sizeof *big);
  assert_non_null(big);
  r = vkp_rng_new(80085);
  vkp_rng_randn(&r, big, 1000);
  double sum = 0;
  for (int i = 0; i < 1000; i++) sum += big[i];
  static const float ends[4] = {-1.11498427f, -2.02007389f, 0.297348022f, -0.292377472f};
  assert_floats("randn(1000)[:2]", big, ends, 2);
  assert_floats("randn(1000)[-2:]", big + 998, ends + 2, 2);
  if (sum != -9.2755182049731957) fail_msg("randn(1000) sums to %.17g, torch to -9.2755182049731957", sum);
  free(big);
}

// torch.manual_seed(42); torch.randn(7): below 16 elements, the scalar double path with its cache.
static void test_randn_scalar(void **state) {
  (void)state;
  static const float want[7] = {0.336690366f, 0.128809407f, 0.234462366f, 0.23033303f,
                                -1.12285638f, -0.186328292f, 2.20820141f};
  float got[7];
  vkp_rng r = vkp_rng_new(42);
  vkp_rng_randn(&r, got, 7);
  assert_floats("randn(7)", got, want, 7);
  // torch.manual_seed(5); torch.cat([torch.randn(3), torch.randn(3)]): the cached sample carries over.
  static const float seq[6] = {-0.486780763f, -0.603821576f, -0.55809623f, 0.667524278f, -0.197415099f, 1.94278347f};
  float g[6];
  r = vkp_rng_new(5);
  vkp_rng_randn(&r, g, 3);
  vkp_rng_randn(&r, g + 3, 3);
  assert_floats("randn(3), randn(3)", g, seq, 6);
  // Scalar float64 samples follow torch >= 2.0, whose normal_distribution takes
  // sqrt(-2 log1p(-u2)); torch 1.13 (the one here) took log(1 - u2), one ulp off at times
  // (torch.randn(3, dtype=torch.float64) after torch.manual_seed(3) gives 0.8032760780963506,
  // 0.17483339327910355, ...). So these are torch 1.13's uniforms put through torch 2's formula:
  //   torch.manual_seed(3); u = torch.rand(4, dtype=torch.float64).tolist()
  //   r = math.sqrt(-2 * math.log1p(-u[1])); t = 2 * math.pi * u[0]  -> r*cos(t), r*sin(t), then u[2], u[3]
  static const double want64[3] = {0.80327607809635071, 0.17483339327910358, 0.088978095025878931};
  r = vkp_rng_new(3);
  for (int i = 0; i < 3; i++) {
    double v = vkp_rng_normal(&r);
    if (v != want64[i]) fail_msg("randn float64 [%d]: %.17g, torch %.17g", i, v, want64[i]);
  }
}

static void test_normal_uniform_fill(void **state) {
  (void)state;
  // torch.manual_seed(1); torch.empty(20).normal_(0.5, 0.02)
  static const float want[20] = {
      0.469488084f, 0.484995365f, 0.486920387f, 0.467810303f, 0.517313838f, 0.504888058f, 0.486741781f,
      0.516146183f, 0.508782804f, 0.523424029f, 0.535348535f, 0.498092771f, 0.501223087f, 0.487645119f,
      0.484038591f, 0.497367531f, 0.4840312f,   0.506714582f, 0.505506694f, 0.534326077f};
  float got[20];
  vkp_rng r = vkp_rng_new(1);
  vkp_rng_normal_fill(&r, got, 20, 0.5, 0.02);
  assert_floats("normal_(0.5, 0.02) x20", got, want, 20);
  // torch.manual_seed(1); torch.empty(5).normal_(0.5, 0.02)
  static const float small[5] = {0.513227046f, 0.50533849f, 0.501233518f, 0.512426376f, 0.490961879f};
  r = vkp_rng_new(1);
  vkp_rng_normal_fill(&r, got, 5, 0.5, 0.02);
  assert_floats("normal_(0.5, 0.02) x5", got, small, 5);
  // torch.manual_seed(1); torch.empty(5).uniform_(-0.3, 0.7)
  static const float uni[5] = {0.457631588f, -0.0206891298f, 0.103069246f, 0.434684455f, -0.270718455f};
  r = vkp_rng_new(1);
  vkp_rng_uniform_fill(&r, got, 5, -0.3f, 0.7f);
  assert_floats("uniform_(-0.3, 0.7)", got, uni, 5);
}

static void test_rand_randint_randperm(void **state) {
  (void)state;
  // torch.manual_seed(0); torch.rand(5)
  static const float want[5] = {0.49625659f, 0.768221796f, 0.0884774327f, 0.132030487f, 0.307422817f};
  float got[5];
  vkp_rng r = vkp_rng_new(0);
  vkp_rng_rand(&r, got, 5);
  assert_floats("rand(5)", got, want, 5);
  // torch.manual_seed(3); torch.rand(3, dtype=torch.float64)
  static const double want64[3] = {0.034108195650520479, 0.28674022672130695, 0.77291494432858432};
  r = vkp_rng_new(3);
  for (int i = 0; i < 3; i++) {
    double v = vkp_rng_uniform(&r);
    if (v != want64[i]) fail_msg("rand float64 [%d]: %.17g, torch %.17g", i, v, want64[i]);
  }
  // torch.manual_seed(0); torch.randint(0, 10, (10,))
  static const int64_t ri[10] = {4, 9, 3, 0, 3, 9, 7, 3, 7, 3};
  int64_t gi[10];
  r = vkp_rng_new(0);
  vkp_rng_randint(&r, 0, 10, gi, 10);
  assert_memory_equal(gi, ri, sizeof ri);
  // torch.manual_seed(0); torch.randint(-2**40, 2**40, (4,)): a range of 2^41 takes 64-bit words
  static const int64_t rb[4] = {-358231004625, -593374360384, 291447657211, -258354086553};
  r = vkp_rng_new(0);
  vkp_rng_randint(&r, -(1ll << 40), 1ll << 40, gi, 4);
  assert_memory_equal(gi, rb, sizeof rb);
  // torch.manual_seed(0); torch.randperm(10)
  static const int64_t rp[10] = {4, 1, 7, 5, 3, 9, 0, 8, 6, 2};
  r = vkp_rng_new(0);
  vkp_rng_randperm(&r, gi, 10);
  assert_memory_equal(gi, rp, sizeof rp);
  // vkp_rng_shuffle is randperm applied to an array; a prefix is the first k of the same order.
  int32_t a[10], b[10];
  for (int i = 0; i < 10; i++) a[i] = b[i] = 100 + i;
  r = vkp_rng_new(0);
  vkp_rng_shuffle(&r, a, 10, sizeof *a, 10);
  for (int i = 0; i < 10; i++) assert_int_equal(a[i], 100 + rp[i]);
  r = vkp_rng_new(0);
  vkp_rng_shuffle(&r, b, 10, sizeof *b, 3);
  assert_memory_equal(a, b, 3 * sizeof *a);
}

// torch seeds its mt19937 with the low 32 bits; keys are distinct; state round-trips.
static void test_seed_state_keys(void **state) {
  (void)state;
  vkp_rng a = vkp_rng_new(5), b = vkp_rng_new((1ull << 32) + 5);
  for (int i = 0; i < 10; i++) assert_int_equal(vkp_rng_u32(&a), vkp_rng_u32(&b));
  assert_true(vkp_rng_key(1, 2, 3) != vkp_rng_key(1, 3, 2));
  assert_true(vkp_rng_key(1, 2, 3) != vkp_rng_key(2, 2, 3));
  assert_true(vkp_rng_key_str(7, "a.weight") != vkp_rng_key_str(7, "b.weight"));
  // Save mid-stream (with a cached normal), restore into another generator: same continuation.
  vkp_rng r = vkp_rng_new(11);
  for (int i = 0; i < 700; i++) (void)vkp_rng_u32(&r);   // across a twist
  (void)vkp_rng_normal(&r);                              // leaves the cache full
  uint32_t w[VKP_RNG_STATE_WORDS];
  vkp_rng_get_state(&r, w);
  vkp_rng s = vkp_rng_new(99);
  vkp_error err = {0};
  assert_int_equal(vkp_rng_set_state(&s, w, &err), VKP_OK);
  assert_true(vkp_rng_normal(&s) == vkp_rng_normal(&r));
  float x[40], y[40];
  vkp_rng_randn(&r, x, 40);
  vkp_rng_randn(&s, y, 40);
  assert_memory_equal(x, y, sizeof x);
  w[VKP_RNG_MT_N] = VKP_RNG_MT_N + 1;   // a position past the state
  assert_int_equal(vkp_rng_set_state(&s, w, &err), VKP_ERR_FORMAT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_randn_vectorised), cmocka_unit_test(test_randn_scalar),
      cmocka_unit_test(test_normal_uniform_fill), cmocka_unit_test(test_rand_randint_randperm),
      cmocka_unit_test(test_seed_state_keys)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
