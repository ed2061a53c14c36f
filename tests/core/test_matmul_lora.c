// test_matmul_lora.c — vkp_linear_add_lora: y = x·W^T + b + s·(xd·A^T)·B^T as one matmul node
// whose low-rank term accumulates into the base product (core/ops/matmul.c, MM2_LORA), and its
// backward (dx = dy·W + s·(dy·B)·A as one node, dA and dB as scaled products). Forward against a
// float64 reference, gradients of x, W, bias, A, B (and xd when it is a separate tensor, as after
// dropout) against central differences of that reference; sizes that take the generic, direct and
// packed kernels, partial tiles, odd ranks, with and without bias. Tolerances as test_matmul.c:
// f32 accumulation over K (forward) and over the rows (weight gradients).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_op.h"
#include "vkp_test.h"

typedef struct lora_case {
  const char *name;
  int64_t rows, T;   // x (rows, K) or (rows, T, K) when T > 0
  int64_t K, N, r;
  bool bias, train_w, separate_xd;
  float s;
  bool unfused;      // vkp_graph_set_lora_fusion(g, false): separate matmul, scale and add ops
} lora_case;

// Inputs: x, W, A, B, then bias, then xd (in that order when present).
static int idx_bias(const lora_case *c) { return c->bias ? 4 : -1; }
static int idx_xd(const lora_case *c) { return c->separate_xd ? 4 + c->bias : 0; }
static int64_t rows_of(const lora_case *c) { return c->rows * (c->T > 0 ? c->T : 1); }

static void ref_lora(const double *const *in, double *out, void *user) {
  const lora_case *c = user;
  const double *x = in[0], *W = in[1], *A = in[2], *B = in[3], *xd = in[idx_xd(c)];
  const double *bias = c->bias ? in[idx_bias(c)] : NULL;
  int64_t M = rows_of(c);
  double *u = malloc((size_t)(M * c->r) * sizeof *u);
  for (int64_t m = 0; m < M; m++)
    for (int64_t j = 0; j < c->r; j++) {
      double s = 0;
      for (int64_t k = 0; k < c->K; k++) s += xd[m * c->K + k] * A[j * c->K + k];
      u[m * c->r + j] = s;
    }
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < c->N; n++) {
      double s = bias ? bias[n] : 0, l = 0;
      for (int64_t k = 0; k < c->K; k++) s += x[m * c->K + k] * W[n * c->K + k];
      for (int64_t j = 0; j < c->r; j++) l += u[m * c->r + j] * B[n * c->r + j];
      out[m * c->N + n] = s + c->s * l;
    }
  free(u);
}

static vkp_tensor *build_lora(vkp_graph *g, vkp_tensor **in, void *user) {
  const lora_case *c = user;
  vkp_graph_set_lora_fusion(g, !c->unfused);
  vkp_tensor *y = vkp_linear(g, in[0], in[1], c->bias ? in[idx_bias(c)] : NULL);
  vkp_tensor *out = vkp_linear_add_lora(g, y, in[idx_xd(c)], in[2], in[3], c->s);
  // The fused form: one matmul node (an add would mean the fallback was taken); the unfused form
  // ends in the add of the scaled low-rank term.
  const char *want = c->unfused ? "binary" : "matmul";
  if (out && strcmp(out->op->name, want) != 0) fail_msg("%s: op %s, expected %s", c->name, out->op->name, want);
  return out;
}

static void run_case(const lora_case *c, uint64_t seed) {
  int64_t M = rows_of(c), red = M > c->K ? M : c->K;
  if (c->N > red) red = c->N;
  vkp_op_check chk = {.name = c->name, .n_inputs = 4 + c->bias + c->separate_xd, .build = build_lora,
                      .ref = ref_lora, .user = (void *)c, .fwd_rtol = 1e-5,
                      .fwd_atol = 1e-6 + 2e-7 * (double)(c->K + c->r * c->K), .grad_rtol = 1e-4,
                      .grad_atol = 1e-5 + 4e-7 * (double)red * (1 + c->r), .fd_samples = 16, .fd_step = 1e-2,
                      .seed = seed};
  vkp_check_input f = {.dtype = VKP_DTYPE_F32, .trainable = true, .lo = -1, .hi = 1};
  vkp_check_input *in = chk.in;
  in[0] = f, in[1] = f, in[2] = f, in[3] = f;
  if (c->T > 0) in[0].ndim = 3, memcpy(in[0].shape, (int64_t[]){c->rows, c->T, c->K}, 3 * sizeof(int64_t));
  else in[0].ndim = 2, memcpy(in[0].shape, (int64_t[]){c->rows, c->K}, 2 * sizeof(int64_t));
  in[1].ndim = 2, in[1].shape[0] = c->N, in[1].shape[1] = c->K, in[1].trainable = c->train_w;
  in[2].ndim = 2, in[2].shape[0] = c->r, in[2].shape[1] = c->K;
  in[3].ndim = 2, in[3].shape[0] = c->N, in[3].shape[1] = c->r;
  if (c->bias) in[idx_bias(c)] = f, in[idx_bias(c)].ndim = 1, in[idx_bias(c)].shape[0] = c->N;
  if (c->separate_xd) in[idx_xd(c)] = in[0];
  vkp_op_check_run(&chk);
}

static void test_lora_linear(void **state) {
  (void)state;
  const lora_case cases[] = {
      // name                                   rows T   K    N    r  bias  trainW sepxd  s
      {"odd 5x7 -> 3, r 3 (generic)", 5, 0, 7, 3, 3, true, false, false, 2.0f, false},
      {"2x9x20 -> 30, r 8 (direct)", 2, 9, 20, 30, 8, true, false, false, 2.0f, false},
      {"17x64 -> 48, r 4, no bias", 17, 0, 64, 48, 4, false, false, false, 0.5f, false},
      {"6x12 -> 10, r 2, W trains too", 6, 0, 12, 10, 2, true, true, false, 1.5f, false},
      {"3x10x16 -> 24, r 6, dropout (xd != x)", 3, 10, 16, 24, 6, true, false, true, 2.0f, false},
      {"3x11x15 -> 13, r 5, xd != x, no bias (generic)", 3, 11, 15, 13, 5, false, true, true, 0.75f, false},
      {"4x50x96 -> 128, r 8 (packed base)", 4, 50, 96, 128, 8, true, false, false, 2.0f, false},
      {"3x70x80 -> 96, r 16, xd != x (packed)", 3, 70, 80, 96, 16, false, false, true, 1.0f, false},
      {"2x40x64 -> 64, r 4, W trains (packed, appended)", 2, 40, 64, 64, 4, true, true, false, 3.0f, false},
      {"80x64 -> 64, r 6 (packed, r not a multiple of 4)", 80, 0, 64, 64, 6, true, false, false, 2.0f, false},
      {"2x9x20 -> 30, r 8, unfused (bench --unfused-lora)", 2, 9, 20, 30, 8, true, false, false, 2.0f, true},
      {"3x10x16 -> 24, r 6, xd != x, unfused", 3, 10, 16, 24, 6, true, true, true, 2.0f, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(&cases[i], 40 + i);
}

// The packed path appends the low-rank term to the base product (matmul_packed's VKP_MM_K2: r
// more k reading u in place, s·B packed after W's panel rows) when r is a multiple of 4 and the
// subgroups have 8 lanes: then the only rank-r product of the forward pass is u = x·A^T.
static void test_lora_appended(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  static const char *const skinny[] = {"matmul_skinny_ak_bk", "matmul_skinny_ak_bn", "matmul_skinny_am_bk",
                                       "matmul_skinny_am_bn", "matmul_nt", "matmul_nn"};
  for (int r = 4; r <= 6; r += 2) {
    vkp_graph *g;
    VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
    vkp_tensor *x = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 2, (int64_t[]){200, 96});
    vkp_tensor *W = vkp_tensor_input(g, "W", VKP_DTYPE_F32, 2, (int64_t[]){128, 96});
    vkp_tensor *A = vkp_tensor_input(g, "A", VKP_DTYPE_F32, 2, (int64_t[]){r, 96});
    vkp_tensor *B = vkp_tensor_input(g, "B", VKP_DTYPE_F32, 2, (int64_t[]){128, r});
    vkp_graph_output(g, vkp_linear_add_lora(g, vkp_linear(g, x, W, NULL), x, A, B, 2.0f));
    uint64_t before = 0, after = 0, gpu_before = vkp_ctx_shader_dispatches(ctx, "matmul_gpu_32");
    for (int i = 0; i < 6; i++) before += vkp_ctx_shader_dispatches(ctx, skinny[i]);
    VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
    for (int i = 0; i < 6; i++) after += vkp_ctx_shader_dispatches(ctx, skinny[i]);
    if (vkp_test_gpu_kernels())   // u = x·A^T, the base product, s·u·B^T accumulated into it
      assert_int_equal(vkp_ctx_shader_dispatches(ctx, "matmul_gpu_32") - gpu_before, 3);
    else if (vkp_ctx_info(ctx)->subgroup_size == 8)
      assert_int_equal(after - before, r % 4 == 0 ? 1 : 2);
    vkp_graph_free(g);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_lora_linear), cmocka_unit_test(test_lora_appended)};
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
