// test_conv.c — im2col / col2im and conv2d (im2col + matmul + bias): forward vs float64 direct
// convolution, gradients of x, w and bias vs finite differences.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_dtype.h"
#include "vkp_test.h"

vkp_tensor *vkp_im2col(vkp_graph *g, vkp_tensor *x, int kh, int kw, int stride, int padding);   // core/ops/conv.c

typedef struct conv_case {
  const char *name;
  int N, Cin, H, W, Cout, KH, KW, stride, pad;
  bool bias;
  int frozen;   // bit i: input i (x, w, bias) is not trainable
} conv_case;

static int out_size(int in, int k, int s, int p) { return (in + 2 * p - k) / s + 1; }

// ---- im2col alone ---------------------------------------------------------------------------

static vkp_tensor *build_im2col(vkp_graph *g, vkp_tensor **in, void *user) {
  conv_case *c = user;
  return vkp_im2col(g, in[0], c->KH, c->KW, c->stride, c->pad);
}

static void ref_im2col(const double *const *in, double *out, void *user) {
  conv_case *c = user;
  int OH = out_size(c->H, c->KH, c->stride, c->pad), OW = out_size(c->W, c->KW, c->stride, c->pad);
  size_t o = 0;
  for (int n = 0; n < c->N; n++)
    for (int ci = 0; ci < c->Cin; ci++)
      for (int kh = 0; kh < c->KH; kh++)
        for (int kw = 0; kw < c->KW; kw++)
          for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
              int ih = oh * c->stride - c->pad + kh, iw = ow * c->stride - c->pad + kw;
              bool inside = ih >= 0 && ih < c->H && iw >= 0 && iw < c->W;
              out[o++] = inside ? in[0][((n * c->Cin + ci) * c->H + ih) * c->W + iw] : 0.0;
            }
}

static void test_im2col(void **state) {
  (void)state;
  conv_case cases[] = {
      {"im2col 3x2 s2 p1", 2, 3, 7, 6, 0, 3, 2, 2, 1, false, 0},
      {"im2col 3x3 s1 p1", 1, 2, 5, 9, 0, 3, 3, 1, 1, false, 0},
      {"im2col 4x4 s4 (patches)", 2, 3, 8, 12, 0, 4, 4, 4, 0, false, 0},
      {"im2col 5x5 s1 p3 (pad > k/2)", 1, 2, 4, 3, 0, 5, 5, 1, 3, false, 0},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    conv_case *cc = &cases[k];
    vkp_op_check c = {.name = cc->name, .n_inputs = 1, .build = build_im2col, .ref = ref_im2col, .user = cc,
                      .fwd_rtol = 0, .fwd_atol = 0, .grad_rtol = 1e-4, .grad_atol = 1e-5, .fd_samples = 200,
                      .seed = 10 + k};
    c.in[0] = (vkp_check_input){.ndim = 4, .shape = {cc->N, cc->Cin, cc->H, cc->W}, .dtype = VKP_DTYPE_F32,
                                .trainable = true, .lo = -1, .hi = 1};
    vkp_op_check_run(&c);
  }
}

// ---- conv2d ---------------------------------------------------------------------------------

static vkp_tensor *build_conv(vkp_graph *g, vkp_tensor **in, void *user) {
  conv_case *c = user;
  return vkp_conv2d(g, in[0], in[1], c->bias ? in[2] : NULL, c->stride, c->pad);
}

static void ref_conv(const double *const *in, double *out, void *user) {
  conv_case *c = user;
  int OH = out_size(c->H, c->KH, c->stride, c->pad), OW = out_size(c->W, c->KW, c->stride, c->pad);
  const double *x = in[0], *w = in[1];
  size_t o = 0;
  for (int n = 0; n < c->N; n++)
    for (int co = 0; co < c->Cout; co++)
      for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
          double s = c->bias ? in[2][co] : 0.0;
          for (int ci = 0; ci < c->Cin; ci++)
            for (int kh = 0; kh < c->KH; kh++) {
              int ih = oh * c->stride - c->pad + kh;
              if (ih < 0 || ih >= c->H) continue;
              for (int kw = 0; kw < c->KW; kw++) {
                int iw = ow * c->stride - c->pad + kw;
                if (iw < 0 || iw >= c->W) continue;
                s += x[((n * c->Cin + ci) * c->H + ih) * c->W + iw] * w[((co * c->Cin + ci) * c->KH + kh) * c->KW + kw];
              }
            }
          out[o++] = s;
        }
}

static void run_conv(conv_case *cc, uint64_t seed) {
  // f32 sums of up to Cin*KH*KW = 192 products of values in [-1, 1]: |error| ~ 1e-6. Convolution is
  // linear in each input, so central differences of the float64 reference are exact: gradients
  // (f32 sums of a few hundred terms) get a tight 1e-4 relative tolerance.
  vkp_op_check c = {.name = cc->name, .n_inputs = cc->bias ? 3 : 2, .build = build_conv, .ref = ref_conv,
                    .user = cc, .fwd_rtol = 1e-5, .fwd_atol = 2e-5, .grad_rtol = 1e-4, .grad_atol = 2e-5,
                    .seed = seed};
  c.in[0] = (vkp_check_input){.ndim = 4, .shape = {cc->N, cc->Cin, cc->H, cc->W}, .dtype = VKP_DTYPE_F32,
                              .trainable = !(cc->frozen & 1), .lo = -1, .hi = 1};
  c.in[1] = (vkp_check_input){.ndim = 4, .shape = {cc->Cout, cc->Cin, cc->KH, cc->KW}, .dtype = VKP_DTYPE_F32,
                              .trainable = !(cc->frozen & 2), .lo = -1, .hi = 1};
  c.in[2] = (vkp_check_input){.ndim = 1, .shape = {cc->Cout}, .dtype = VKP_DTYPE_F32, .trainable = !(cc->frozen & 4),
                              .lo = -1, .hi = 1};
  vkp_op_check_run(&c);
}

static void test_conv_3x3(void **state) {
  (void)state;
  conv_case c = {"conv 3x3 pad 1 (2,5,9,11)->7", 2, 5, 9, 11, 7, 3, 3, 1, 1, true, 0};
  run_conv(&c, 1);
  conv_case nb = {"conv 3x3 pad 0, no bias (2,3,6,7)->5", 2, 3, 6, 7, 5, 3, 3, 1, 0, false, 0};
  run_conv(&nb, 2);
  // PEFT shapes of training: frozen weight (gradient to x only), frozen input (first layer),
  // bias only (BitFit).
  conv_case fw = {"conv 3x3, frozen weight", 3, 4, 8, 6, 5, 3, 3, 1, 1, true, 2 | 4};
  run_conv(&fw, 7);
  conv_case fx = {"conv 3x3, frozen input", 3, 4, 8, 6, 5, 3, 3, 1, 1, true, 1};
  run_conv(&fx, 8);
  conv_case fb = {"conv 3x3, bias only", 3, 4, 8, 6, 5, 3, 3, 1, 1, true, 1 | 2};
  run_conv(&fb, 9);
}

static void test_conv_stride2(void **state) {
  (void)state;
  conv_case c = {"conv 3x3 stride 2 pad 1 (2,4,9,10)->6", 2, 4, 9, 10, 6, 3, 3, 2, 1, true, 0};
  run_conv(&c, 3);
  // N = 1: dW is a single product, no batch sum.
  conv_case one = {"conv 3x3 stride 2, one image (1,5,11,8)->3", 1, 5, 11, 8, 3, 3, 3, 2, 1, true, 0};
  run_conv(&one, 10);
}

static void test_conv_1x1(void **state) {
  (void)state;
  conv_case c = {"conv 1x1 (2,6,7,5)->4", 2, 6, 7, 5, 4, 1, 1, 1, 0, true, 0};   // im2col skipped
  run_conv(&c, 4);
  conv_case s2 = {"conv 1x1 stride 2 (2,3,7,6)->5", 2, 3, 7, 6, 5, 1, 1, 2, 0, false, 0};   // through im2col
  run_conv(&s2, 5);
}

static void test_conv_patch_embed(void **state) {
  (void)state;
  conv_case c = {"conv 8x8 stride 8 patch embedding (2,3,32,32)->16", 2, 3, 32, 32, 16, 8, 8, 8, 0, true, 0};
  run_conv(&c, 6);
}

// Dispatches of `shader` recorded for the forward convolution of case c alone.
static uint64_t forward_dispatches_of(const conv_case *c, const char *shader) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *x = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 4, (int64_t[]){c->N, c->Cin, c->H, c->W});
  vkp_tensor *w = vkp_tensor_input(g, "w", VKP_DTYPE_F32, 4, (int64_t[]){c->Cout, c->Cin, c->KH, c->KW});
  vkp_tensor *b = c->bias ? vkp_tensor_input(g, "b", VKP_DTYPE_F32, 1, (int64_t[]){c->Cout}) : NULL;
  vkp_graph_output(g, vkp_conv2d(g, x, w, b, c->stride, c->pad));
  uint64_t before = vkp_ctx_shader_dispatches(ctx, shader);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  uint64_t n = vkp_ctx_shader_dispatches(ctx, shader) - before;
  vkp_graph_free(g);
  return n;
}

// The per-channel bias is added by the product's own kernels (one bias per output row): each of
// the product paths that can take a convolution's (Cout, K) x (K, L) per image — the generic
// kernel (a 1x1 conv of 3 channels: odd K read in place), the direct one, the skinny one
// (L <= 16) and the packed one — with a bias. An odd K through im2col gets a zero row in the
// columns and a zero column in the weight (K 27 -> 28), so its product leaves the generic kernel.
static void test_conv_bias_paths(void **state) {
  (void)state;
  static const struct {
    conv_case c;
    const char *shader;   // taken by the forward product at subgroup size 8
  } cases[] = {
      {{"conv bias, generic product (1x1, K 3)", 2, 3, 5, 7, 5, 1, 1, 1, 0, true, 0}, "matmul_generic"},
      {{"conv bias, direct product (6x64x18)", 2, 2, 8, 8, 6, 3, 3, 1, 1, true, 0}, "matmul_nn"},
      {{"conv bias, skinny product (40x16x18)", 2, 2, 4, 4, 40, 3, 3, 1, 1, true, 0}, "matmul_skinny_ak_bn"},
      {{"conv bias, packed product (64x256x144)", 2, 16, 16, 16, 64, 3, 3, 1, 1, true, 0}, "matmul_packed"},
      {{"conv bias, odd K 27 padded (direct)", 2, 3, 8, 8, 6, 3, 3, 1, 1, true, 0}, "matmul_nn"},
      {{"conv, odd K 49 padded (skinny: the demo's patches)", 3, 1, 28, 28, 40, 7, 7, 7, 0, true, 0},
       "matmul_skinny_ak_bn"},
  };
  vkp_ctx *ctx = vkp_test_ctx();
  bool gpu = vkp_test_gpu_kernels();   // the GPU kernel family: its smallest tile for all of these
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    conv_case c = cases[i].c;
    run_conv(&c, 20 + (int)i);
    const char *want = gpu ? "matmul_gpu_32" : cases[i].shader;
    if ((gpu || vkp_ctx_info(ctx)->subgroup_size == 8) && forward_dispatches_of(&c, want) != 1)
      fail_msg("%s: the forward product is not %s", c.name, want);
    if (forward_dispatches_of(&c, "matmul_generic") != (i == 0 && !gpu))
      fail_msg("%s: generic product %s", c.name, i == 0 && !gpu ? "not taken" : "taken");
  }
}

// A chain of convs whose weights are frozen 16-bit tensors (base_dtype f16) and whose input is
// trained: the kernels read a conv's weight as f32, through a cast. Each cast must exist only
// around the product that reads it — forward and, cast again, backward — not from the start of
// the forward pass to the end of backward (which held the f32 copy of every conv weight of the
// SD 1.5 UNet in the arena: 2.6 GB at 32x32 latents, 0.5 GB with this). The arena of the f16
// chain stays within two f32 weight copies of the same chain with f32 weights, and the input's
// gradient equals that chain's (weights rounded to f16 in both).
#define CHAIN 8
static uint64_t conv_chain(vkp_ctx *ctx, vkp_dtype wdt, float *grad_out, size_t n_grad) {
  const int C = 64, S = 6;
  size_t wn = (size_t)C * C * 9;
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *x = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 4, (int64_t[]){1, C, S, S});
  vkp_tensor *h = x;
  vkp_buffer *bufs[CHAIN];
  float *w32 = malloc(wn * sizeof *w32);
  uint16_t *w16 = malloc(wn * sizeof *w16);
  vkp_rng rng = vkp_rng_new(77);
  for (int l = 0; l < CHAIN; l++) {
    for (size_t i = 0; i < wn; i++) {
      w16[i] = vkp_f32_to_f16((float)(vkp_rng_uniform(&rng) - 0.5) * 0.1f);
      w32[i] = vkp_f16_to_f32(w16[i]);
    }
    bool half = wdt == VKP_DTYPE_F16;
    VKP_ASSERT_OK(ctx, vkp_buffer_new(ctx, wn * (half ? 2 : 4), &bufs[l]));
    VKP_ASSERT_OK(ctx, vkp_buffer_write(bufs[l], 0, half ? (void *)w16 : (void *)w32, wn * (half ? 2 : 4)));
    vkp_tensor *w = vkp_tensor_external(g, "w", bufs[l], 0, wdt, 4, (int64_t[]){C, C, 3, 3});
    h = vkp_conv2d(g, h, w, NULL, 1, 1);
  }
  vkp_tensor *loss = vkp_sum(g, vkp_mul(g, h, h));
  vkp_tensor *gx = NULL;
  VKP_ASSERT_OK(ctx, vkp_graph_backward(g, loss, &x, 1, &gx));
  vkp_graph_output(g, gx);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  float *xv = malloc(n_grad * sizeof *xv);
  for (size_t i = 0; i < n_grad; i++) xv[i] = (float)(vkp_rng_uniform(&rng) - 0.5);
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, x, xv, n_grad * sizeof *xv));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, gx, grad_out, n_grad * sizeof *grad_out));
  uint64_t arena = vkp_graph_get_stats(g).arena_bytes;
  vkp_graph_free(g);
  for (int l = 0; l < CHAIN; l++) vkp_buffer_free(bufs[l]);
  free(w32), free(w16), free(xv);
  return arena;
}

static void test_conv_f16_weight_casts_short_lived(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  size_t n = 64 * 6 * 6;
  float *g16 = malloc(n * sizeof *g16), *g32 = malloc(n * sizeof *g32);
  uint64_t a16 = conv_chain(ctx, VKP_DTYPE_F16, g16, n), a32 = conv_chain(ctx, VKP_DTYPE_F32, g32, n);
  uint64_t wbytes = 64 * 64 * 9 * 4;
  print_message("arena: f16 weights %llu bytes, f32 weights %llu bytes (one f32 weight: %llu)\n",
                (unsigned long long)a16, (unsigned long long)a32, (unsigned long long)wbytes);
  if (a16 > a32 + 2 * wbytes) fail_msg("f16 weights' f32 copies live too long: arena %llu vs %llu", (unsigned long long)a16, (unsigned long long)a32);
  double worst = 0, scale = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(g32[i]));
  for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(g16[i] - g32[i]));
  if (!(scale > 0) || worst > 1e-5 * scale) fail_msg("input gradient differs: %g of %g", worst, scale);
  free(g16), free(g32);
}

static void test_conv_errors(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *x = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 4, (int64_t[]){1, 3, 8, 8});
  vkp_tensor *w = vkp_tensor_input(g, "w", VKP_DTYPE_F32, 4, (int64_t[]){4, 2, 3, 3});
  assert_null(vkp_conv2d(g, x, w, NULL, 1, 1));
  assert_int_equal(vkp_graph_status(g), VKP_ERR_SHAPE);
  assert_non_null(strstr(vkp_graph_error(g), "'w'"));
  vkp_graph_free(g);

  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  x = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 4, (int64_t[]){1, 3, 4, 4});
  w = vkp_tensor_input(g, "w", VKP_DTYPE_F32, 4, (int64_t[]){4, 3, 7, 7});   // larger than the image
  assert_null(vkp_conv2d(g, x, w, NULL, 1, 1));
  assert_int_equal(vkp_graph_status(g), VKP_ERR_SHAPE);
  vkp_graph_free(g);

  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  x = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 4, (int64_t[]){1, 3, 4, 4});
  w = vkp_tensor_input(g, "w", VKP_DTYPE_F32, 4, (int64_t[]){4, 3, 3, 3});
  vkp_tensor *b = vkp_tensor_input(g, "b", VKP_DTYPE_F32, 1, (int64_t[]){3});   // wrong length
  assert_null(vkp_conv2d(g, x, w, b, 1, 1));
  assert_int_equal(vkp_graph_status(g), VKP_ERR_SHAPE);
  vkp_graph_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_im2col),       cmocka_unit_test(test_conv_3x3),         cmocka_unit_test(test_conv_stride2),
      cmocka_unit_test(test_conv_1x1),     cmocka_unit_test(test_conv_patch_embed), cmocka_unit_test(test_conv_errors),
      cmocka_unit_test(test_conv_f16_weight_casts_short_lived), cmocka_unit_test(test_conv_bias_paths),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
