// test_elementwise.c — binary (broadcasting), unary activations, views, concat, reductions:
// forward vs float64 references, backward vs finite differences.
#include <math.h>
#include <string.h>

#include "vkp_test.h"

// ---- binary ---------------------------------------------------------------------------------
typedef struct bin_case {
  int op;   // 0 add 1 sub 2 mul 3 div
  int64_t as[4], bs[4], os[4];
  int and_, bnd, ond;
} bin_case;

static vkp_tensor *build_binary(vkp_graph *g, vkp_tensor **in, void *user) {
  bin_case *c = user;
  switch (c->op) {
    case 0: return vkp_add(g, in[0], in[1]);
    case 1: return vkp_sub(g, in[0], in[1]);
    case 2: return vkp_mul(g, in[0], in[1]);
    default: return vkp_div(g, in[0], in[1]);
  }
}

static int64_t bcast_index(const int64_t *shape, int nd, const int64_t *oidx, int ond) {
  int64_t off = 0;
  for (int d = 0; d < nd; d++) {
    int od = d + (ond - nd);
    off = off * shape[d] + (shape[d] == 1 ? 0 : oidx[od]);
  }
  return off;
}

static void ref_binary(const double *const *in, double *out, void *user) {
  bin_case *c = user;
  int64_t total = 1;
  for (int d = 0; d < c->ond; d++) total *= c->os[d];
  for (int64_t i = 0; i < total; i++) {
    int64_t idx[4], r = i;
    for (int d = c->ond - 1; d >= 0; d--) idx[d] = r % c->os[d], r /= c->os[d];
    double a = in[0][bcast_index(c->as, c->and_, idx, c->ond)];
    double b = in[1][bcast_index(c->bs, c->bnd, idx, c->ond)];
    out[i] = c->op == 0 ? a + b : c->op == 1 ? a - b : c->op == 2 ? a * b : a / b;
  }
}

static void test_binary_broadcast(void **state) {
  (void)state;
  bin_case cases[] = {
      {0, {3, 5, 7}, {3, 5, 7}, {3, 5, 7}, 3, 3, 3},
      {1, {2, 3, 17, 5}, {17, 1}, {2, 3, 17, 5}, 4, 2, 4},
      {2, {1, 300}, {257, 1}, {257, 300}, 2, 2, 2},   // both sides broadcast, > one workgroup
      {3, {4, 1, 9}, {6, 9}, {4, 6, 9}, 3, 2, 3},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    bin_case *bc = &cases[k];
    vkp_op_check c = {.name = "binary", .n_inputs = 2, .build = build_binary, .ref = ref_binary, .user = bc,
                      .fwd_rtol = 1e-6, .fwd_atol = 1e-6, .grad_rtol = 1e-3, .grad_atol = 1e-3, .seed = k + 1};
    c.in[0] = (vkp_check_input){.ndim = bc->and_, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -2, .hi = 2};
    c.in[1] = (vkp_check_input){.ndim = bc->bnd, .dtype = VKP_DTYPE_F32, .trainable = true,
                                .lo = bc->op == 3 ? 0.5f : -2, .hi = 2};
    memcpy(c.in[0].shape, bc->as, sizeof bc->as);
    memcpy(c.in[1].shape, bc->bs, sizeof bc->bs);
    vkp_op_check_run(&c);
  }
}

// ---- unary ----------------------------------------------------------------------------------
typedef struct un_case {
  const char *name;
  vkp_tensor *(*fn)(vkp_graph *, vkp_tensor *);
  double (*ref)(double);
  float lo, hi;
} un_case;

static double r_gelu(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double r_gelu_tanh(double x) { return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }
static double r_silu(double x) { return x / (1 + exp(-x)); }
static double r_relu(double x) { return x > 0 ? x : 0; }
static double r_sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double r_sqr(double x) { return x * x; }

static vkp_tensor *build_unary(vkp_graph *g, vkp_tensor **in, void *user) { return ((un_case *)user)->fn(g, in[0]); }
static int64_t g_unary_n;
static void ref_unary(const double *const *in, double *out, void *user) {
  for (int64_t i = 0; i < g_unary_n; i++) out[i] = ((un_case *)user)->ref(in[0][i]);
}

static void test_unary(void **state) {
  (void)state;
  un_case cases[] = {
      {"gelu", vkp_gelu, r_gelu, -4, 4},        {"gelu_tanh", vkp_gelu_tanh, r_gelu_tanh, -4, 4},
      {"silu", vkp_silu, r_silu, -6, 6},        {"relu", vkp_relu, r_relu, -3, 3},
      {"sigmoid", vkp_sigmoid, r_sigmoid, -6, 6}, {"tanh", vkp_tanh, tanh, -3, 3},
      {"exp", vkp_exp, exp, -3, 3},             {"log", vkp_log, log, 0.2f, 5},
      {"sqr", vkp_sqr, r_sqr, -3, 3},           {"sqrt", vkp_sqrt, sqrt, 0.2f, 5},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    g_unary_n = 7 * 131;
    vkp_op_check c = {.name = cases[k].name, .n_inputs = 1, .build = build_unary, .ref = ref_unary,
                      .user = &cases[k], .fwd_rtol = 2e-6, .fwd_atol = 1e-6, .grad_rtol = 2e-3,
                      .grad_atol = 1e-4, .seed = 100 + k};
    c.in[0] = (vkp_check_input){.ndim = 2, .shape = {7, 131}, .dtype = VKP_DTYPE_F32, .trainable = true,
                                .lo = cases[k].lo, .hi = cases[k].hi};
    if (strcmp(cases[k].name, "relu") == 0) c.fd_step = 1e-6;   // kink at 0: keep the step tiny
    vkp_op_check_run(&c);
  }
}

// ---- views, concat, reductions --------------------------------------------------------------
// permute (2,3,4,5) by (0,2,3,1) then slice dim 1 [1,3), times 3: exercises view backward.
static vkp_tensor *build_views(vkp_graph *g, vkp_tensor **in, void *user) {
  (void)user;
  vkp_tensor *p = vkp_permute(g, in[0], (int[]){0, 2, 3, 1});
  vkp_tensor *s = vkp_slice(g, p, 1, 1, 3);
  return vkp_scale(g, s, 3.0f);
}
static void ref_views(const double *const *in, double *out, void *user) {
  (void)user;
  int64_t o = 0;
  for (int a = 0; a < 2; a++)
    for (int c = 1; c < 4; c++)
      for (int d = 0; d < 5; d++)
        for (int b = 0; b < 3; b++) out[o++] = 3 * in[0][((a * 3 + b) * 4 + c) * 5 + d];
}

static void test_views(void **state) {
  (void)state;
  vkp_op_check c = {.name = "permute+slice", .n_inputs = 1, .build = build_views, .ref = ref_views,
                    .fwd_rtol = 1e-6, .fwd_atol = 0, .grad_rtol = 1e-4, .grad_atol = 1e-5};
  c.in[0] = (vkp_check_input){.ndim = 4, .shape = {2, 3, 4, 5}, .dtype = VKP_DTYPE_F32, .trainable = true,
                              .lo = -1, .hi = 1};
  vkp_op_check_run(&c);
}

static vkp_tensor *build_concat(vkp_graph *g, vkp_tensor **in, void *user) {
  (void)user;
  return vkp_concat(g, in[0], in[1], 1);
}
static void ref_concat(const double *const *in, double *out, void *user) {
  (void)user;
  int64_t o = 0;
  for (int a = 0; a < 3; a++) {
    for (int k = 0; k < 2 * 7; k++) out[o++] = in[0][a * 14 + k];
    for (int k = 0; k < 5 * 7; k++) out[o++] = in[1][a * 35 + k];
  }
}

static void test_concat(void **state) {
  (void)state;
  vkp_op_check c = {.name = "concat", .n_inputs = 2, .build = build_concat, .ref = ref_concat, .fwd_rtol = 0,
                    .fwd_atol = 0, .grad_rtol = 1e-4, .grad_atol = 1e-5};
  c.in[0] = (vkp_check_input){.ndim = 3, .shape = {3, 2, 7}, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -1, .hi = 1};
  c.in[1] = (vkp_check_input){.ndim = 3, .shape = {3, 5, 7}, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -1, .hi = 1};
  vkp_op_check_run(&c);
}

static vkp_tensor *build_mean_axis(vkp_graph *g, vkp_tensor **in, void *user) {
  (void)user;
  return vkp_mean_axis(g, in[0], 1);
}
static void ref_mean_axis(const double *const *in, double *out, void *user) {
  (void)user;
  for (int a = 0; a < 3; a++)
    for (int c = 0; c < 11; c++) {
      double s = 0;
      for (int b = 0; b < 1000; b++) s += in[0][(a * 1000 + b) * 11 + c];
      out[a * 11 + c] = s / 1000;
    }
}

static void test_reduce(void **state) {
  (void)state;
  vkp_op_check c = {.name = "mean_axis", .n_inputs = 1, .build = build_mean_axis, .ref = ref_mean_axis,
                    .fwd_rtol = 1e-5, .fwd_atol = 1e-6, .grad_rtol = 1e-3, .grad_atol = 1e-6};
  c.in[0] = (vkp_check_input){.ndim = 3, .shape = {3, 1000, 11}, .dtype = VKP_DTYPE_F32, .trainable = true,
                              .lo = -1, .hi = 1};
  vkp_op_check_run(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_binary_broadcast), cmocka_unit_test(test_unary), cmocka_unit_test(test_views),
      cmocka_unit_test(test_concat),           cmocka_unit_test(test_reduce),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
