// test_linalg.c — vkp_inverse: batched inverses of small matrices against a float64 Gauss-Jordan
// reference (sizes 1..64, batch dims, a matrix that needs row pivoting, I + skew-symmetric as OFT
// uses), gradients by central differences; and an error for n > 64.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_test.h"

typedef struct inv_case {
  int batch, n;
  const char *kind;   // "dominant": I*2 + U(-0.5, 0.5); "pivot": a permutation + noise; "skew": I + Q, Q^T = -Q
} inv_case;

static vkp_tensor *build_inverse(vkp_graph *g, vkp_tensor **in, void *user) {
  (void)user;
  return vkp_inverse(g, in[0]);
}

// In-place float64 Gauss-Jordan with partial pivoting on an augmented copy.
static void inverse_ref(const double *a, int n, double *out) {
  double *m = malloc((size_t)n * 2 * n * sizeof *m);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < 2 * n; j++) m[i * 2 * n + j] = j < n ? a[i * n + j] : (j - n == i);
  for (int k = 0; k < n; k++) {
    int p = k;
    for (int i = k + 1; i < n; i++)
      if (fabs(m[i * 2 * n + k]) > fabs(m[p * 2 * n + k])) p = i;
    for (int j = 0; j < 2 * n; j++) {
      double t = m[k * 2 * n + j];
      m[k * 2 * n + j] = m[p * 2 * n + j], m[p * 2 * n + j] = t;
    }
    double piv = m[k * 2 * n + k];
    for (int j = 0; j < 2 * n; j++) m[k * 2 * n + j] /= piv;
    for (int i = 0; i < n; i++) {
      if (i == k) continue;
      double f = m[i * 2 * n + k];
      for (int j = 0; j < 2 * n; j++) m[i * 2 * n + j] -= f * m[k * 2 * n + j];
    }
  }
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) out[i * n + j] = m[i * 2 * n + n + j];
  free(m);
}

static void ref_inverse(const double *const *in, double *out, void *user) {
  inv_case *c = user;
  size_t nn = (size_t)c->n * c->n;
  for (int b = 0; b < c->batch; b++) inverse_ref(in[0] + b * nn, c->n, out + b * nn);
}

static float *make_matrices(const inv_case *c, uint64_t seed) {
  vkp_rng r = vkp_rng_new(seed);
  int n = c->n;
  float *a = malloc((size_t)c->batch * n * n * sizeof *a);
  for (int b = 0; b < c->batch; b++) {
    float *m = a + (size_t)b * n * n;
    if (!strcmp(c->kind, "dominant")) {
      for (int i = 0; i < n * n; i++) m[i] = (float)(vkp_rng_uniform(&r) - 0.5) + (i % (n + 1) == 0 ? 2.0f : 0.0f);
    } else if (!strcmp(c->kind, "pivot")) {   // a cyclic shift: zero diagonal, every step swaps rows
      for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) m[i * n + j] = (float)(0.1 * (vkp_rng_uniform(&r) - 0.5)) + (j == (i + 1) % n ? 1.5f : 0.0f);
    } else {   // I + Q with Q skew-symmetric
      for (int i = 0; i < n; i++) {
        m[i * n + i] = 1.0f;
        for (int j = i + 1; j < n; j++) {
          float q = (float)(0.6 * (vkp_rng_uniform(&r) - 0.5));
          m[i * n + j] = q, m[j * n + i] = -q;
        }
      }
    }
  }
  return a;
}

static void run_case(inv_case *ic, uint64_t seed) {
  float *a = make_matrices(ic, seed);
  vkp_op_check c = {.name = "inverse", .n_inputs = 1, .build = build_inverse, .ref = ref_inverse, .user = ic,
                    .fwd_rtol = 2e-5, .fwd_atol = 2e-5, .grad_rtol = 2e-3, .grad_atol = 2e-4, .fd_samples = 48,
                    .fd_step = 1e-3, .seed = seed};
  if (ic->batch == 1)
    c.in[0] = (vkp_check_input){.ndim = 2, .shape = {ic->n, ic->n}, .dtype = VKP_DTYPE_F32, .trainable = true, .data = a};
  else
    c.in[0] = (vkp_check_input){.ndim = 3, .shape = {ic->batch, ic->n, ic->n}, .dtype = VKP_DTYPE_F32, .trainable = true,
                                .data = a};
  printf("  inverse %-8s batch %d n %d\n", ic->kind, ic->batch, ic->n);
  vkp_op_check_run(&c);
  free(a);
}

static void test_inverse(void **state) {
  (void)state;
  inv_case cases[] = {{1, 1, "dominant"}, {3, 3, "dominant"}, {5, 8, "pivot"}, {2, 17, "dominant"},
                      {4, 32, "skew"},    {2, 64, "skew"},    {1, 64, "pivot"}, {6, 5, "skew"}};
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) run_case(&cases[k], 40 + k);
}

// (2, 3, n, n): leading batch dims.
static void test_inverse_4d(void **state) {
  (void)state;
  inv_case ic = {6, 4, "dominant"};
  float *a = make_matrices(&ic, 9);
  vkp_op_check c = {.name = "inverse 4-d", .n_inputs = 1, .build = build_inverse, .ref = ref_inverse, .user = &ic,
                    .fwd_rtol = 2e-5, .fwd_atol = 2e-5, .grad_rtol = 2e-3, .grad_atol = 2e-4, .fd_step = 1e-3, .seed = 9};
  c.in[0] = (vkp_check_input){.ndim = 4, .shape = {2, 3, 4, 4}, .dtype = VKP_DTYPE_F32, .trainable = true, .data = a};
  vkp_op_check_run(&c);
  free(a);
}

static void test_inverse_too_large(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *a = vkp_tensor_input(g, "a", VKP_DTYPE_F32, 2, (int64_t[]){65, 65});
  assert_null(vkp_inverse(g, a));
  assert_int_equal(vkp_graph_status(g), VKP_ERR_SHAPE);
  printf("  65 x 65: %s\n", vkp_graph_error(g));
  vkp_graph_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_inverse), cmocka_unit_test(test_inverse_4d),
                                     cmocka_unit_test(test_inverse_too_large)};
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
