// test_group_norm_silu.c — the fused silu(group_norm(x) * w + b) (vkp_group_norm_silu): forward vs a
// float64 reference, gradients of x, weight and bias vs central differences of that reference (the
// backward recomputes the pre-SiLU value from the saved statistics), with frozen and trainable
// inputs, statistics surviving memory reuse (two stacked fused norms), builder errors.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_test.h"

// Affine variants: which of weight / bias are given.
enum { AFF_NONE = 0, AFF_W = 1, AFF_B = 2, AFF_WB = 3 };
// Which inputs are trainable (frozen ones get no gradient node: the ln_tuning and LoRA cases).
enum { TRAIN_ALL = 0, TRAIN_X = 1, TRAIN_WB = 2 };

typedef struct gns_case {
  int ndim;
  int64_t shape[4];
  int groups;
  int affine;
  int train;
  float eps;
  float lo, hi;   // range of x
} gns_case;


// y = silu((x - mean) / sqrt(var + eps) * w + b) per (sample, group) block, biased variance, two-pass.
static void gns_ref(const double *x, const double *w, const double *b, double *y, int64_t n, int64_t ch,
                    int64_t hw, int64_t groups, double eps) {
  int64_t cpg = ch / groups, len = cpg * hw;
  for (int64_t s = 0; s < n; s++)
    for (int64_t gr = 0; gr < groups; gr++) {
      int64_t base = (s * ch + gr * cpg) * hw;
      const double *xr = x + base;
      double mean = 0, var = 0;
      for (int64_t i = 0; i < len; i++) mean += xr[i];
      mean /= (double)len;
      for (int64_t i = 0; i < len; i++) var += (xr[i] - mean) * (xr[i] - mean);
      double rstd = 1 / sqrt(var / (double)len + eps);
      for (int64_t i = 0; i < len; i++) {
        int64_t c = gr * cpg + i / hw;
        double a = (xr[i] - mean) * rstd * (w ? w[c] : 1) + (b ? b[c] : 0);
        y[base + i] = a / (1 + exp(-a));
      }
    }
}

// The op's inputs: x, then the weight and the bias when the case has them; 0 = absent.
static int weight_input(const gns_case *c) { return c->affine & AFF_W ? 1 : 0; }
static int bias_input(const gns_case *c) { return c->affine & AFF_B ? 1 + weight_input(c) : 0; }

static vkp_tensor *build_gns(vkp_graph *g, vkp_tensor **in, void *user) {
  gns_case *c = user;
  int wi = weight_input(c), bi = bias_input(c);
  return vkp_group_norm_silu(g, in[0], c->groups, wi ? in[wi] : NULL, bi ? in[bi] : NULL, c->eps);
}

static void ref_gns(const double *const *in, double *out, void *user) {
  gns_case *c = user;
  int wi = weight_input(c), bi = bias_input(c);
  int64_t hw = 1;   // elements per channel
  for (int d = 2; d < c->ndim; d++) hw *= c->shape[d];
  int64_t n = c->shape[0], ch = c->shape[1];
  gns_ref(in[0], wi ? in[wi] : NULL, bi ? in[bi] : NULL, out, n, ch, hw, c->groups, c->eps);
}

static void run_gns(gns_case *gc, uint64_t seed) {
  vkp_op_check c = {.name = "group_norm_silu", .build = build_gns, .ref = ref_gns, .user = gc, .fwd_rtol = 2e-6,
                    .fwd_atol = 1e-5, .grad_rtol = 1e-3, .grad_atol = 1e-4, .seed = seed};
  bool train_x = gc->train != TRAIN_WB, train_wb = gc->train != TRAIN_X;
  c.in[0] = (vkp_check_input){.ndim = gc->ndim, .dtype = VKP_DTYPE_F32, .trainable = train_x, .lo = gc->lo, .hi = gc->hi};
  memcpy(c.in[0].shape, gc->shape, sizeof gc->shape);
  // Weights of either sign and biases around 0 put the pre-SiLU values on both sides of SiLU's
  // minimum (-1.28), where its derivative changes sign.
  vkp_check_input affine = {.ndim = 1, .shape = {gc->shape[1]}, .dtype = VKP_DTYPE_F32, .trainable = train_wb};
  int wi = weight_input(gc), bi = bias_input(gc);
  if (wi) c.in[wi] = affine, c.in[wi].lo = -1.5f, c.in[wi].hi = 1.5f;
  if (bi) c.in[bi] = affine, c.in[bi].lo = -1.0f, c.in[bi].hi = 1.0f;
  c.n_inputs = 1 + (wi != 0) + (bi != 0);
  printf("  (%lld, %lld, ...) groups %d affine %d train %d\n", (long long)gc->shape[0], (long long)gc->shape[1],
         gc->groups, gc->affine, gc->train);
  vkp_op_check_run(&c);
}

static void test_group_norm_silu(void **state) {
  (void)state;
  gns_case cases[] = {
      {4, {2, 32, 9, 7}, 8, AFF_WB, TRAIN_ALL, 1e-5f, -1, 2},      // batch 2, odd spatial size
      {4, {3, 40, 5, 3}, 1, AFF_WB, TRAIN_ALL, 1e-6f, -2, 2},      // one group; 40 channels, 600-element rows
      {4, {2, 96, 7, 5}, 32, AFF_WB, TRAIN_ALL, 1e-5f, -1, 2},     // 32 groups of 3 channels (SD's 32 groups)
      {4, {1, 160, 11, 13}, 32, AFF_WB, TRAIN_ALL, 1e-5f, -1, 1},  // 5 channels per group, rows of 715
      {3, {3, 12, 50}, 4, AFF_NONE, TRAIN_ALL, 1e-5f, -1, 2},      // (N, C, L), no affine
      {3, {2, 6, 5}, 3, AFF_W, TRAIN_ALL, 1e-5f, -1, 2},           // weight only; hw < a lane step
      {4, {2, 24, 3, 5}, 8, AFF_B, TRAIN_ALL, 1e-5f, -1, 2},       // bias only (the dx kernel reads it)
      {4, {2, 8, 5, 5}, 2, AFF_WB, TRAIN_ALL, 1e-5f, -501, -499},  // |mean| >> std
      {4, {2, 64, 9, 9}, 32, AFF_WB, TRAIN_X, 1e-5f, -1, 2},       // frozen norm (LoRA): dx only
      {4, {2, 64, 9, 9}, 32, AFF_WB, TRAIN_WB, 1e-5f, -1, 2},      // frozen input (ln_tuning): dweight, dbias only
      {4, {1, 16, 63, 65}, 4, AFF_WB, TRAIN_ALL, 1e-5f, -1, 2},    // rows of 16380 elements (SD-sized groups)
      {4, {2, 8, 129, 127}, 2, AFF_WB, TRAIN_ALL, 1e-5f, -1, 2},   // 65532 + a workgroup per row on a CPU:
      {4, {1, 4, 181, 181}, 1, AFF_WB, TRAIN_ALL, 1e-5f, -1, 2},   //   131044 elements per row
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) run_gns(&cases[k], 60 + k);
}

// ---- stacked fused norms: statistics must survive the planner's memory reuse --------------------
// y = GNS2(GNS1(x; w1, b1) + x; w2, b2) on (2, 24, 7, 9), 8 then 4 groups; every tensor trainable.
enum { CH_N = 2, CH_C = 24, CH_HW = 63 };

static vkp_tensor *build_chain(vkp_graph *g, vkp_tensor **in, void *user) {
  (void)user;
  vkp_tensor *z = vkp_group_norm_silu(g, in[0], 8, in[1], in[2], 1e-5f);
  return vkp_group_norm_silu(g, vkp_add(g, z, in[0]), 4, in[3], in[4], 1e-5f);
}

static void ref_chain(const double *const *in, double *out, void *user) {
  (void)user;
  static double z[CH_N * CH_C * CH_HW];
  gns_ref(in[0], in[1], in[2], z, CH_N, CH_C, CH_HW, 8, 1e-5);
  for (int i = 0; i < CH_N * CH_C * CH_HW; i++) z[i] += in[0][i];
  gns_ref(z, in[3], in[4], out, CH_N, CH_C, CH_HW, 4, 1e-5);
}

static void test_group_norm_silu_chain(void **state) {
  (void)state;
  vkp_op_check c = {.name = "group_norm_silu chain", .n_inputs = 5, .build = build_chain, .ref = ref_chain,
                    .fwd_rtol = 1e-5, .fwd_atol = 2e-5, .grad_rtol = 2e-3, .grad_atol = 2e-4, .seed = 9};
  c.in[0] = (vkp_check_input){.ndim = 4, .shape = {CH_N, CH_C, 7, 9}, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -1, .hi = 1};
  for (int k = 0; k < 2; k++) {
    c.in[1 + 2 * k] = (vkp_check_input){.ndim = 1, .shape = {CH_C}, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = 0.5f, .hi = 1.5f};
    c.in[2 + 2 * k] = (vkp_check_input){.ndim = 1, .shape = {CH_C}, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -0.5f, .hi = 0.5f};
  }
  vkp_op_check_run(&c);
}

// ---- builder errors -------------------------------------------------------------------------
// vkp_group_norm_silu on an input of `shape` (its name says its rank), with `groups`, a bias of
// `bias_len` elements (0: none) and `eps`, must fail with `want` and a message containing `expect`.
static void expect_error(int ndim, const int64_t *shape, int groups, int64_t bias_len, float eps, vkp_status want,
                         const char *expect) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g = NULL;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *x = vkp_tensor_input(g, ndim == 1 ? "x1d" : "x", VKP_DTYPE_F32, ndim, shape);
  vkp_tensor *b = bias_len ? vkp_tensor_input(g, "gnb", VKP_DTYPE_F32, 1, &bias_len) : NULL;
  vkp_tensor *y = vkp_group_norm_silu(g, x, groups, NULL, b, eps);
  assert_null(y);
  assert_int_equal(vkp_graph_status(g), want);
  if (!strstr(vkp_graph_error(g), expect)) fail_msg("error '%s' does not contain '%s'", vkp_graph_error(g), expect);
  assert_null(vkp_group_norm_silu(g, y, 1, NULL, NULL, 1e-5f));   // NULL passes through
  assert_int_equal(vkp_graph_compile(g), want);                    // and compile reports the first error
  vkp_graph_free(g);
}

static void test_group_norm_silu_errors(void **state) {
  (void)state;
  const int64_t x4[4] = {2, 32, 4, 4}, x1[1] = {32};
  expect_error(4, x4, 5, 0, 1e-5f, VKP_ERR_SHAPE, "group_norm_silu: 5 groups");         // groups do not divide C
  expect_error(1, x1, 4, 0, 1e-5f, VKP_ERR_SHAPE, "group_norm_silu: 'x1d'");            // 1-D input
  expect_error(4, x4, 8, 16, 1e-5f, VKP_ERR_SHAPE, "group_norm_silu: bias 'gnb'");      // bias of the wrong length
  expect_error(4, x4, 8, 0, -1.0f, VKP_ERR_INVALID, "group_norm_silu: eps");            // negative eps
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_group_norm_silu),
      cmocka_unit_test(test_group_norm_silu_chain),
      cmocka_unit_test(test_group_norm_silu_errors),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
