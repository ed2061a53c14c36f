// test_softmax_loss.c — softmax / log_softmax (incl. +-80 logits), cross-entropy with
// ignore_index and invalid labels, the device-side count under replay with changing labels, MSE:
// forward vs float64 references, gradients vs finite differences, builder errors.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_test.h"

// ---- softmax / log_softmax ------------------------------------------------------------------
typedef struct sm_case {
  bool log;
  int ndim;
  int64_t shape[4];
  float lo, hi;
} sm_case;

static vkp_tensor *build_sm(vkp_graph *g, vkp_tensor **in, void *user) {
  return ((sm_case *)user)->log ? vkp_log_softmax(g, in[0]) : vkp_softmax(g, in[0]);
}

static void ref_sm(const double *const *in, double *out, void *user) {
  sm_case *c = user;
  int64_t d = c->shape[c->ndim - 1], n = 1;
  for (int k = 0; k < c->ndim; k++) n *= c->shape[k];
  for (int64_t r = 0; r < n / d; r++) {
    const double *x = in[0] + r * d;
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < d; i++) m = fmax(m, x[i]);
    for (int64_t i = 0; i < d; i++) s += exp(x[i] - m);
    for (int64_t i = 0; i < d; i++) out[r * d + i] = c->log ? x[i] - m - log(s) : exp(x[i] - m) / s;
  }
}

static void test_softmax(void **state) {
  (void)state;
  sm_case cases[] = {
      {false, 2, {5, 77}, -3, 3},      {false, 2, {3, 1000}, -80, 80},   // exp(80) overflows f32 unshifted
      {true, 2, {5, 77}, -80, 80},     {true, 2, {3, 1000}, -3, 3},
      {false, 3, {2, 3, 130}, -5, 5},  {true, 3, {2, 3, 130}, -5, 5},
      {false, 2, {2, 65543}, -9, 9},   {true, 2, {2, 65543}, -9, 9},   // a workgroup per row
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    sm_case *sc = &cases[k];
    // softmax values are in [0, 1]; log_softmax reaches -160 with +-80 logits.
    vkp_op_check c = {.name = sc->log ? "log_softmax" : "softmax", .n_inputs = 1, .build = build_sm, .ref = ref_sm,
                      .user = sc, .fwd_rtol = sc->log ? 2e-6 : 1e-5, .fwd_atol = sc->log ? 2e-5 : 1e-7,
                      .grad_rtol = 1e-3, .grad_atol = 1e-5, .seed = 200 + k};
    c.in[0] = (vkp_check_input){.ndim = sc->ndim, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = sc->lo, .hi = sc->hi};
    memcpy(c.in[0].shape, sc->shape, sizeof sc->shape);
    vkp_op_check_run(&c);
  }
}

// ---- cross-entropy --------------------------------------------------------------------------
typedef struct ce_case {
  int64_t n, c;
  const float *labels;
  float lo, hi;
} ce_case;

static vkp_tensor *build_ce(vkp_graph *g, vkp_tensor **in, void *user) {
  (void)user;
  return vkp_cross_entropy(g, in[0], in[1]);
}

// Mean over rows with a label in [0, C) of logsumexp(x) - x[label]; 0 if there is none.
static double ref_ce_value(const double *x, const double *labels, int64_t n, int64_t c) {
  double sum = 0;
  int64_t count = 0;
  for (int64_t r = 0; r < n; r++) {
    int64_t lab = (int64_t)labels[r];
    if (lab < 0 || lab >= c) continue;   // -100 and invalid labels are ignored
    const double *xr = x + r * c;
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < c; i++) m = fmax(m, xr[i]);
    for (int64_t i = 0; i < c; i++) s += exp(xr[i] - m);
    sum += m + log(s) - xr[lab];
    count++;
  }
  return count ? sum / (double)count : 0;
}

static void ref_ce(const double *const *in, double *out, void *user) {
  ce_case *c = user;
  out[0] = ref_ce_value(in[0], in[1], c->n, c->c);
}

static const float labels13[13] = {3, -100, 0, 9, 5, -100, 7, 1, 10 /* >= C: ignored */, 2, -1 /* ignored */, 8, 6};
static const float labels4[4] = {999, -100, 0, 512};
static const float labels3[3] = {65599, -100, 3};

static void test_cross_entropy(void **state) {
  (void)state;
  ce_case cases[] = {
      {13, 10, labels13, -4, 4},
      {4, 1000, labels4, -5, 5},
      {4, 1000, labels4, -80, 80},   // stability
      {3, 65600, labels3, -5, 5},    // a workgroup per row
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    ce_case *cc = &cases[k];
    vkp_op_check c = {.name = "cross_entropy", .n_inputs = 2, .build = build_ce, .ref = ref_ce, .user = cc,
                      .fwd_rtol = 1e-5, .fwd_atol = 1e-5, .grad_rtol = 1e-3, .grad_atol = 1e-6, .seed = 300 + k};
    c.in[0] = (vkp_check_input){.ndim = 2, .shape = {cc->n, cc->c}, .dtype = VKP_DTYPE_F32, .trainable = true,
                                .lo = cc->lo, .hi = cc->hi};
    c.in[1] = (vkp_check_input){.ndim = 1, .shape = {cc->n}, .dtype = VKP_DTYPE_I32, .trainable = false,
                                .data = cc->labels};
    vkp_op_check_run(&c);
  }
}

// One compiled graph replayed with different labels: the count of non-ignored rows (and so the
// loss and its gradient) must follow the labels of each run, including a batch with none.
static void test_cross_entropy_replay(void **state) {
  (void)state;
  enum { N = 9, C = 37 };
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_rng rng = vkp_rng_new(7);
  float x[N * C];
  double xd[N * C];
  vkp_rng_uniform_fill(&rng, x, N * C, -3, 3);
  for (int i = 0; i < N * C; i++) xd[i] = x[i];
  vkp_buffer *buf = NULL;
  VKP_ASSERT_OK(ctx, vkp_buffer_new(ctx, sizeof x, &buf));
  VKP_ASSERT_OK(ctx, vkp_buffer_write(buf, 0, x, sizeof x));
  vkp_graph *g = NULL;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *logits = vkp_tensor_external(g, "logits", buf, 0, VKP_DTYPE_F32, 2, (int64_t[]){N, C});
  vkp_tensor *labels = vkp_tensor_input(g, "labels", VKP_DTYPE_I32, 1, (int64_t[]){N});
  vkp_tensor *loss = vkp_cross_entropy(g, logits, labels);
  vkp_graph_output(g, loss);
  vkp_tensor *grad = NULL;
  VKP_ASSERT_OK(ctx, vkp_graph_backward(g, loss, &logits, 1, &grad));
  assert_non_null(grad);
  vkp_graph_output(g, grad);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));

  const int32_t sets[4][N] = {
      {0, 1, 2, 3, 4, 5, 6, 7, 36},                 // all counted
      {5, -100, -100, 9, -100, 30, -100, -100, 1},  // 4 counted
      {-100, -100, -100, -100, -100, -100, -100, -100, 12},
      {-100, -100, -100, -100, -100, -100, -100, -100, -100},   // none: loss 0, gradient 0
  };
  for (int s = 0; s < 4; s++) {
    VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, labels, sets[s], sizeof sets[s]));
    VKP_ASSERT_OK(ctx, vkp_graph_run(g));
    float got_loss, got_grad[N * C];
    VKP_ASSERT_OK(ctx, vkp_graph_read(g, loss, &got_loss, sizeof got_loss));
    VKP_ASSERT_OK(ctx, vkp_graph_read(g, grad, got_grad, sizeof got_grad));
    double labd[N], want_grad[N * C];
    int count = 0;
    for (int r = 0; r < N; r++) labd[r] = sets[s][r], count += sets[s][r] >= 0;
    double want_loss = ref_ce_value(xd, labd, N, C);
    // Analytic gradient in float64: (softmax - onehot) / count on counted rows.
    for (int r = 0; r < N; r++) {
      double m = -INFINITY, sum = 0;
      for (int i = 0; i < C; i++) m = fmax(m, xd[r * C + i]);
      for (int i = 0; i < C; i++) sum += exp(xd[r * C + i] - m);
      for (int i = 0; i < C; i++)
        want_grad[r * C + i] = sets[s][r] < 0 ? 0 : (exp(xd[r * C + i] - m) / sum - (i == sets[s][r])) / count;
    }
    char what[64];
    snprintf(what, sizeof what, "replay %d loss", s);
    vkp_assert_close(what, &got_loss, &want_loss, 1, 1e-5, 1e-6);
    snprintf(what, sizeof what, "replay %d gradient", s);
    vkp_assert_close(what, got_grad, want_grad, N * C, 1e-4, 1e-6);
  }
  vkp_graph_free(g);
  vkp_buffer_free(buf);
}

// ---- mse ------------------------------------------------------------------------------------
static int64_t g_mse_n;
static vkp_tensor *build_mse(vkp_graph *g, vkp_tensor **in, void *user) {
  (void)user;
  return vkp_mse(g, in[0], in[1]);
}
static void ref_mse(const double *const *in, double *out, void *user) {
  (void)user;
  double s = 0;
  for (int64_t i = 0; i < g_mse_n; i++) s += (in[0][i] - in[1][i]) * (in[0][i] - in[1][i]);
  out[0] = s / (double)g_mse_n;
}

static void test_mse(void **state) {
  (void)state;
  struct {
    int ndim;
    int64_t shape[4];
  } cases[] = {
      {4, {3, 4, 5, 5}},   // one workgroup
      {2, {5, 3001}},      // partial sums (4 chunks, the last one short)
      {2, {7, 10000}},     // 18 partial sums
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    g_mse_n = 1;
    for (int d = 0; d < cases[k].ndim; d++) g_mse_n *= cases[k].shape[d];
    vkp_op_check c = {.name = "mse", .n_inputs = 2, .build = build_mse, .ref = ref_mse, .fwd_rtol = 1e-5,
                      .fwd_atol = 1e-7, .grad_rtol = 1e-3, .grad_atol = 1e-9, .seed = 400 + k};
    for (int i = 0; i < 2; i++) {
      c.in[i] = (vkp_check_input){.ndim = cases[k].ndim, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -2, .hi = 2};
      memcpy(c.in[i].shape, cases[k].shape, sizeof cases[k].shape);
    }
    vkp_op_check_run(&c);
  }
}

// ---- builder errors -------------------------------------------------------------------------
static void test_loss_errors(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  struct {
    int what;
    const char *expect;
  } cases[] = {
      {0, "cross_entropy: labels 'flabels'"},   // f32 labels
      {1, "cross_entropy: labels 'short'"},     // wrong length
      {2, "cross_entropy: logits 'x3'"},        // 3-D logits
      {3, "mse: 'x' and 'short'"},              // shape mismatch
      {4, "softmax: 'short'"},                  // int tensor
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    vkp_graph *g = NULL;
    VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
    vkp_tensor *x = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 2, (int64_t[]){6, 10});
    vkp_tensor *x3 = vkp_tensor_input(g, "x3", VKP_DTYPE_F32, 3, (int64_t[]){6, 10, 2});
    vkp_tensor *fl = vkp_tensor_input(g, "flabels", VKP_DTYPE_F32, 1, (int64_t[]){6});
    vkp_tensor *sh = vkp_tensor_input(g, "short", VKP_DTYPE_I32, 1, (int64_t[]){5});
    vkp_tensor *lab = vkp_tensor_input(g, "labels", VKP_DTYPE_I32, 1, (int64_t[]){6});
    vkp_tensor *y = NULL;
    switch (cases[k].what) {
      case 0: y = vkp_cross_entropy(g, x, fl); break;
      case 1: y = vkp_cross_entropy(g, x, sh); break;
      case 2: y = vkp_cross_entropy(g, x3, lab); break;
      case 3: y = vkp_mse(g, x, sh); break;
      default: y = vkp_softmax(g, sh); break;
    }
    assert_null(y);
    assert_int_equal(vkp_graph_status(g), VKP_ERR_SHAPE);
    if (!strstr(vkp_graph_error(g), cases[k].expect))
      fail_msg("error '%s' does not contain '%s'", vkp_graph_error(g), cases[k].expect);
    assert_null(vkp_mse(g, y, x));   // NULL passes through
    vkp_graph_free(g);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_softmax), cmocka_unit_test(test_cross_entropy), cmocka_unit_test(test_cross_entropy_replay),
      cmocka_unit_test(test_mse),     cmocka_unit_test(test_loss_errors),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
