// test_peft_lokr.c — LoKr with a low-rank second factor (peft's lokr_w2_a @ lokr_w2_b, used when
// r < max(w2 dims) / 2): parameter layout, forward against a float64 reference of
// x (W + alpha/r · kron(w1, w2_a w2_b))ᵀ + b, gradients by finite differences, merge.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_nn.h"
#include "vkp_peft.h"
#include "vkp_test.h"

enum { IN = 32, OUT = 24, B = 5, R = 2 };   // in 32 = 4 x 8, out 24 = 4 x 6: w2 (6, 8) -> rank 2

static vkp_model *g_model;
static vkp_module *g_mod;
static vkp_adapter *g_adapter;

static void read(vkp_model *m, const char *name, float *out) {
  vkp_param *p = vkp_model_find_param(m, name);
  if (!p) fail_msg("no parameter '%s'", name);
  VKP_ASSERT_OK(m->ctx, vkp_param_read_f32(m, p, out));
}

// y = x (W + s kron(w1, w2a w2b))^T + b in float64, from the model's current values.
static void reference(const double *x, double *y) {
  static float W[OUT * IN], b[OUT], w1[4 * 4], w2a[6 * R], w2b[R * 8];
  read(g_model, "lin.weight", W);
  read(g_model, "lin.bias", b);
  read(g_model, "lin.lokr_w1", w1);
  read(g_model, "lin.lokr_w2_a", w2a);
  read(g_model, "lin.lokr_w2_b", w2b);
  double s = 8.0 / R;   // alpha / r
  for (int n = 0; n < B; n++)
    for (int o = 0; o < OUT; o++) {
      double acc = b[o];
      for (int i = 0; i < IN; i++) {
        int o1 = o / 6, o2 = o % 6, i1 = i / 8, i2 = i % 8;
        double w2 = 0;
        for (int q = 0; q < R; q++) w2 += (double)w2a[o2 * R + q] * w2b[q * 8 + i2];
        acc += x[n * IN + i] * (W[o * IN + i] + s * w1[o1 * 4 + i1] * w2);
      }
      y[n * OUT + o] = acc;
    }
}

static vkp_tensor *build(vkp_graph *g, vkp_tensor **in, void *user) {
  (void)user;
  vkp_model_begin_graph(g_model, g);
  return vkp_nn_linear(g_model, g_mod, in[0]);
}

static void ref_fn(const double *const *in, double *out, void *user) {
  (void)user;
  reference(in[0], out);
}

static void test_lowrank_lokr(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  VKP_ASSERT_OK(ctx, vkp_model_new(ctx, &g_model));
  g_mod = vkp_model_add_module(g_model, "lin", NULL, VKP_MODULE_LINEAR, 0, 2, (int64_t[]){OUT, IN}, OUT);
  assert_non_null(g_mod);
  VKP_ASSERT_OK(ctx, vkp_param_init_normal(g_model, g_mod->weight, 0.2f, 1));
  VKP_ASSERT_OK(ctx, vkp_param_init_normal(g_model, g_mod->bias, 0.2f, 2));
  vkp_peft_config c;
  vkp_peft_config_init(&c, VKP_PEFT_LOKR);
  c.r = R;
  c.alpha = 8;
  c.init_weights = false;   // non-zero w2_b: the adapter changes the output
  c.target_modules[0] = strdup("lin");
  c.n_target_modules = 1;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(g_model, &c, 5, &g_adapter));
  vkp_peft_config_clear(&c);
  // peft's layout: w1 (4, 4), w2_a (6, r), w2_b (r, 8).
  vkp_param *w1 = vkp_model_find_param(g_model, "lin.lokr_w1"), *a = vkp_model_find_param(g_model, "lin.lokr_w2_a"),
            *b = vkp_model_find_param(g_model, "lin.lokr_w2_b");
  assert_non_null(w1), assert_non_null(a), assert_non_null(b);
  assert_null(vkp_model_find_param(g_model, "lin.lokr_w2"));
  assert_int_equal(w1->shape[0], 4), assert_int_equal(w1->shape[1], 4);
  assert_int_equal(a->shape[0], 6), assert_int_equal(a->shape[1], R);
  assert_int_equal(b->shape[0], R), assert_int_equal(b->shape[1], 8);
  // Forward vs the float64 reference; gradient w.r.t. x by finite differences.
  vkp_op_check chk = {.name = "lokr low-rank", .n_inputs = 1, .build = build, .ref = ref_fn, .fwd_rtol = 1e-5,
                      .fwd_atol = 1e-5, .grad_rtol = 1e-3, .grad_atol = 1e-5};
  chk.in[0] = (vkp_check_input){.ndim = 2, .shape = {B, IN}, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -1, .hi = 1};
  vkp_op_check_run(&chk);
  // Merged: the base weight now holds W + ΔW, and the output is unchanged.
  float before[OUT * IN], after[OUT * IN];
  read(g_model, "lin.weight", before);
  VKP_ASSERT_OK(ctx, vkp_adapter_merge(g_model, g_adapter));
  read(g_model, "lin.weight", after);
  VKP_ASSERT_OK(ctx, vkp_adapter_unmerge(g_model, g_adapter));
  float restored[OUT * IN];
  read(g_model, "lin.weight", restored);
  vkp_assert_close_f("unmerge restores W", restored, before, OUT * IN, 1e-6, 1e-6);
  // The merged weight is W + ΔW: read it off the float64 reference as y(e_i) - y(0) per input.
  double x[B * IN], y0[B * OUT], y1[B * OUT], want[OUT * IN];
  memset(x, 0, sizeof x);
  reference(x, y0);
  for (int i = 0; i < IN; i++) {
    memset(x, 0, sizeof x);
    x[i] = 1;
    reference(x, y1);
    for (int o = 0; o < OUT; o++) want[o * IN + i] = y1[o] - y0[o];
  }
  vkp_assert_close("merged weight = W + dW", after, want, OUT * IN, 1e-5, 1e-6);
  vkp_model_free(g_model);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_lowrank_lokr)};
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
