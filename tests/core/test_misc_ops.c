// test_misc_ops.c — nearest 2x upsampling, embedding lookup (repeated and out-of-range ids),
// dropout (keep rate, scaling, mask reuse in backward, seed and salt dependence) and diffusers'
// sinusoidal timestep embedding, against float64 references and finite differences.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_dtype.h"
#include "vkp_test.h"

// ---- upsample -------------------------------------------------------------------------------
typedef struct up_case {
  int N, C, H, W;
} up_case;

static vkp_tensor *build_upsample(vkp_graph *g, vkp_tensor **in, void *user) {
  (void)user;
  return vkp_upsample_nearest2x(g, in[0]);
}

static void ref_upsample(const double *const *in, double *out, void *user) {
  up_case *c = user;
  size_t o = 0;
  for (int p = 0; p < c->N * c->C; p++)
    for (int y = 0; y < 2 * c->H; y++)
      for (int x = 0; x < 2 * c->W; x++) out[o++] = in[0][((size_t)p * c->H + y / 2) * c->W + x / 2];
}

static void test_upsample(void **state) {
  (void)state;
  up_case cases[] = {{2, 3, 5, 7}, {1, 4, 33, 40}};
  for (size_t k = 0; k < 2; k++) {
    up_case *uc = &cases[k];
    vkp_op_check c = {.name = "upsample_nearest2x", .n_inputs = 1, .build = build_upsample, .ref = ref_upsample,
                      .user = uc, .fwd_rtol = 0, .fwd_atol = 0, .grad_rtol = 1e-4, .grad_atol = 1e-5,
                      .fd_samples = 96, .seed = 20 + k};
    c.in[0] = (vkp_check_input){.ndim = 4, .shape = {uc->N, uc->C, uc->H, uc->W}, .dtype = VKP_DTYPE_F32,
                                .trainable = true, .lo = -1, .hi = 1};
    vkp_op_check_run(&c);
  }
}

// ---- embedding ------------------------------------------------------------------------------
typedef struct emb_case {
  int V, D, n_ids;
} emb_case;

static vkp_tensor *build_embedding(vkp_graph *g, vkp_tensor **in, void *user) {
  (void)user;
  return vkp_embedding(g, in[0], in[1]);
}

static void ref_embedding(const double *const *in, double *out, void *user) {
  emb_case *c = user;
  for (int i = 0; i < c->n_ids; i++) {
    double id = in[1][i];
    for (int d = 0; d < c->D; d++)
      out[(size_t)i * c->D + d] = id >= 0 && id < c->V ? in[0][(size_t)id * c->D + d] : 0.0;
  }
}

static void test_embedding(void **state) {
  (void)state;
  // ids (2, 7): 3 appears three times, 11 (= V), -1 and 100 are out of range.
  static const float ids[14] = {3, 0, 3, 11, 10, -1, 5, 3, 7, 100, 0, 2, 10, 9};
  emb_case small = {11, 13, 14};
  vkp_op_check c = {.name = "embedding (repeats, out-of-range ids)", .n_inputs = 2, .build = build_embedding,
                    .ref = ref_embedding, .user = &small, .fwd_rtol = 0, .fwd_atol = 0, .grad_rtol = 1e-4,
                    .grad_atol = 1e-5, .fd_samples = 11 * 13, .seed = 30};
  c.in[0] = (vkp_check_input){.ndim = 2, .shape = {11, 13}, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -1,
                              .hi = 1};
  c.in[1] = (vkp_check_input){.ndim = 2, .shape = {2, 7}, .dtype = VKP_DTYPE_I32, .data = ids};
  vkp_op_check_run(&c);

  // Larger: 3 x 70 random ids in [-3, 303) over 300 rows (many repeats, some out of range).
  emb_case big = {300, 37, 210};
  vkp_op_check b = {.name = "embedding V300 D37", .n_inputs = 2, .build = build_embedding, .ref = ref_embedding,
                    .user = &big, .fwd_rtol = 0, .fwd_atol = 0, .grad_rtol = 1e-4, .grad_atol = 1e-5,
                    .fd_samples = 400, .seed = 31};
  b.in[0] = (vkp_check_input){.ndim = 2, .shape = {300, 37}, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -1,
                              .hi = 1};
  b.in[1] = (vkp_check_input){.ndim = 2, .shape = {3, 70}, .dtype = VKP_DTYPE_I32, .lo = -3, .hi = 303};
  vkp_op_check_run(&b);
}

// Frozen 16-bit tables are read in place, here at an odd element offset (byte offset 2).
static void test_embedding_16bit(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  enum { V = 9, D = 5, NI = 6 };
  static const int32_t ids[NI] = {8, 0, 4, 9, 4, -2};
  for (int bf = 0; bf < 2; bf++) {
    uint16_t words[1 + V * D];
    float table[V * D];
    for (int k = 0; k < V * D; k++) {
      table[k] = (float)(k - 20) / 8.0f;   // exact in f16 and bf16
      words[1 + k] = bf ? vkp_f32_to_bf16(table[k]) : vkp_f32_to_f16(table[k]);
    }
    words[0] = 0xffff;
    vkp_buffer *tb, *ib;
    VKP_ASSERT_OK(ctx, vkp_buffer_new(ctx, sizeof words, &tb));
    VKP_ASSERT_OK(ctx, vkp_buffer_write(tb, 0, words, sizeof words));
    VKP_ASSERT_OK(ctx, vkp_buffer_new(ctx, sizeof ids, &ib));
    VKP_ASSERT_OK(ctx, vkp_buffer_write(ib, 0, ids, sizeof ids));
    vkp_graph *g;
    VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
    vkp_dtype dt = bf ? VKP_DTYPE_BF16 : VKP_DTYPE_F16;
    vkp_tensor *t = vkp_tensor_external(g, "table16", tb, 2, dt, 2, (int64_t[]){V, D});
    vkp_tensor *it = vkp_tensor_external(g, "ids", ib, 0, VKP_DTYPE_I32, 1, (int64_t[]){NI});
    vkp_tensor *out = vkp_embedding(g, t, it);
    vkp_graph_output(g, out);
    VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
    VKP_ASSERT_OK(ctx, vkp_graph_run(g));
    float got[NI * D], want[NI * D];
    VKP_ASSERT_OK(ctx, vkp_graph_read(g, out, got, sizeof got));
    for (int i = 0; i < NI; i++)
      for (int d = 0; d < D; d++) want[i * D + d] = ids[i] >= 0 && ids[i] < V ? table[ids[i] * D + d] : 0.0f;
    vkp_assert_close_f(bf ? "embedding bf16" : "embedding f16", got, want, NI * D, 0, 0);
    vkp_graph_free(g);

    // A 16-bit table cannot be trained.
    VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
    t = vkp_tensor_external(g, "table16", tb, 2, dt, 2, (int64_t[]){V, D});
    it = vkp_tensor_external(g, "ids", ib, 0, VKP_DTYPE_I32, 1, (int64_t[]){NI});
    vkp_tensor *grad;
    assert_int_equal(vkp_graph_backward(g, vkp_sum(g, vkp_embedding(g, t, it)), &t, 1, &grad), VKP_ERR_UNSUPPORTED);
    vkp_graph_free(g);
    vkp_buffer_free(tb);
    vkp_buffer_free(ib);
  }
}

static void test_embedding_errors(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *table = vkp_tensor_input(g, "table", VKP_DTYPE_F32, 2, (int64_t[]){5, 4});
  vkp_tensor *fids = vkp_tensor_input(g, "ids", VKP_DTYPE_F32, 1, (int64_t[]){3});
  assert_null(vkp_embedding(g, table, fids));
  assert_int_equal(vkp_graph_status(g), VKP_ERR_SHAPE);
  assert_non_null(strstr(vkp_graph_error(g), "'ids'"));
  vkp_graph_free(g);
}

// ---- dropout --------------------------------------------------------------------------------
#define DROP_N 100000

static void run_seed(vkp_graph *g, uint32_t seed) {
  vkp_step_scalars s = {.lr = 0, .step = 1, .seed = seed, .apply_update = 1, .loss_scale = 1};
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_graph_set_scalars(g, &s));
  VKP_ASSERT_OK(vkp_test_ctx(), vkp_graph_run(g));
}

static double mask_diff(const float *a, const float *b, size_t n) {
  size_t d = 0;
  for (size_t i = 0; i < n; i++) d += (a[i] != 0) != (b[i] != 0);
  return (double)d / (double)n;
}

static void test_dropout(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  const float p = 0.3f;
  vkp_rng rng = vkp_rng_new(40);
  float *x = malloc(DROP_N * sizeof *x), *w = malloc(DROP_N * sizeof *w);
  float *y = malloc(DROP_N * sizeof *y), *y2 = malloc(DROP_N * sizeof *y2), *y3 = malloc(DROP_N * sizeof *y3);
  float *dx = malloc(DROP_N * sizeof *dx);
  vkp_rng_uniform_fill(&rng, x, DROP_N, 0.5f, 1.5f);   // nonzero: a zero output means dropped
  vkp_rng_uniform_fill(&rng, w, DROP_N, -1.0f, 1.0f);
  vkp_buffer *xb;
  VKP_ASSERT_OK(ctx, vkp_buffer_new(ctx, DROP_N * 4, &xb));
  VKP_ASSERT_OK(ctx, vkp_buffer_write(xb, 0, x, DROP_N * 4));
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  int64_t n = DROP_N;
  vkp_tensor *xt = vkp_tensor_external(g, "x", xb, 0, VKP_DTYPE_F32, 1, &n);
  vkp_tensor *wt = vkp_tensor_input(g, "w", VKP_DTYPE_F32, 1, &n);
  assert_ptr_equal(vkp_dropout(g, xt, 0.0f, 7), xt);   // p = 0 is the identity, no node
  vkp_tensor *yt = vkp_dropout(g, xt, p, 7), *y3t = vkp_dropout(g, xt, p, 8);
  vkp_graph_output(g, yt);
  vkp_graph_output(g, y3t);
  vkp_tensor *dxt;
  VKP_ASSERT_OK(ctx, vkp_graph_backward(g, vkp_sum(g, vkp_mul(g, yt, wt)), &xt, 1, &dxt));
  vkp_graph_output(g, dxt);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, wt, w, DROP_N * 4));

  run_seed(g, 1234);
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, yt, y, DROP_N * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, y3t, y3, DROP_N * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, dxt, dx, DROP_N * 4));
  size_t kept = 0;
  for (size_t i = 0; i < DROP_N; i++) {
    bool k = y[i] != 0;
    kept += k;
    double want = k ? x[i] / (1.0 - p) : 0.0;   // kept values scaled by 1/(1-p)
    if (fabs(y[i] - want) > 1e-6 * fabs(want)) fail_msg("dropout y[%zu] = %g, want %g", i, y[i], want);
    double gwant = k ? w[i] / (1.0 - p) : 0.0;   // backward applies the same mask and scale
    if (fabs(dx[i] - gwant) > 1e-6 * fabs(gwant) + 1e-12) fail_msg("dropout dx[%zu] = %g, want %g", i, dx[i], gwant);
  }
  double frac = (double)kept / DROP_N;
  print_message("dropout p=0.3: kept %.4f\n", frac);
  assert_true(fabs(frac - 0.7) < 0.01);
  // Another salt: an independent mask (positions differ with probability 2 * 0.7 * 0.3 = 0.42).
  double dsalt = mask_diff(y, y3, DROP_N);
  assert_true(dsalt > 0.40 && dsalt < 0.44);

  run_seed(g, 1235);   // a new step seed: a new, independent mask
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, yt, y2, DROP_N * 4));
  double dseed = mask_diff(y, y2, DROP_N);
  print_message("dropout: mask differs at %.4f (salt), %.4f (seed)\n", dsalt, dseed);
  assert_true(dseed > 0.40 && dseed < 0.44);

  run_seed(g, 1234);   // the same seed again: the same mask
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, yt, y2, DROP_N * 4));
  assert_memory_equal(y, y2, DROP_N * 4);

  vkp_graph_free(g);
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  xt = vkp_tensor_external(g, "x", xb, 0, VKP_DTYPE_F32, 1, &n);
  assert_null(vkp_dropout(g, xt, 1.0f, 1));
  assert_int_equal(vkp_graph_status(g), VKP_ERR_INVALID);
  vkp_graph_free(g);
  vkp_buffer_free(xb);
  free(x), free(w), free(y), free(y2), free(y3), free(dx);
}

// ---- timestep embedding ---------------------------------------------------------------------
typedef struct ts_case {
  int N, dim;
  bool flip;
  float shift, max_period;
} ts_case;

static vkp_tensor *build_timestep(vkp_graph *g, vkp_tensor **in, void *user) {
  ts_case *c = user;
  return vkp_timestep_embedding(g, in[0], c->dim, c->flip, c->shift, c->max_period);
}

// diffusers.models.embeddings.get_timestep_embedding, in float64.
static void ref_timestep(const double *const *in, double *out, void *user) {
  ts_case *c = user;
  int half = c->dim / 2;
  for (int n = 0; n < c->N; n++) {
    double *row = out + (size_t)n * c->dim;
    for (int k = 0; k < half; k++) {
      double arg = in[0][n] * exp(-log((double)c->max_period) * k / (half - (double)c->shift));
      row[c->flip ? half + k : k] = sin(arg);
      row[c->flip ? k : half + k] = cos(arg);
    }
    if (c->dim % 2) row[c->dim - 1] = 0;
  }
}

static void test_timestep(void **state) {
  (void)state;
  int k = 0;
  for (int dim = 32; dim <= 33; dim++)
    for (int flip = 0; flip < 2; flip++)
      for (int big = 0; big < 2; big++) {
        ts_case tc = {.N = 7, .dim = dim, .flip = flip, .shift = flip ? 0.0f : 1.0f, .max_period = 10000};
        // float32 arguments t * freq carry a relative error of ~1e-7, so t up to 1000 bounds the
        // absolute error near 1e-4 (diffusers computes in float32 too; 5e-5 measured); t in [0, 1) is much tighter.
        vkp_op_check c = {.name = "timestep_embedding", .n_inputs = 1, .build = build_timestep,
                          .ref = ref_timestep, .user = &tc, .fwd_rtol = 0, .fwd_atol = big ? 2e-4 : 2e-6,
                          .seed = 50 + k++};
        c.in[0] = (vkp_check_input){.ndim = 1, .shape = {7}, .dtype = VKP_DTYPE_F32, .lo = 0, .hi = big ? 1000 : 1};
        vkp_op_check_run(&c);
      }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_upsample), cmocka_unit_test(test_embedding), cmocka_unit_test(test_embedding_16bit),
      cmocka_unit_test(test_embedding_errors),
      cmocka_unit_test(test_dropout),  cmocka_unit_test(test_timestep),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
