// test_attention.c — fused attention (vkp_attention): forward vs a float64 softmax(QK^T*s + M)V
// reference, and dQ, dK, dV vs finite differences; masks, causal, Tq != Tk, strided (permuted)
// inputs, odd head sizes, a longer sequence, head dims past 160 (200, 512, 1000: the wide kernels)
// and the fully masked row convention (zeros).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_test.h"

typedef struct attn_case {
  const char *name;
  int B, H, Tq, Tk, D;
  bool causal;
  int mask;            // 0 none, 1 (B,1,1,Tk), 2 (B,1,Tq,Tk), 3 (1,1,1,Tk)
  bool bthd;           // inputs stored (B, T, H, D) and permuted to (B, H, T, D) in the graph
  bool fused;          // one input (B, H, T, 3D + 1) sliced into q, k, v at odd offsets (Tq = Tk)
  float scale;         // 0 = 1/sqrt(D)
  const float *mask_data;
} attn_case;

static size_t idx(const attn_case *c, int b, int h, int t, int T, int d) {
  return c->bthd ? (((size_t)b * T + t) * c->H + h) * c->D + d : (((size_t)b * c->H + h) * T + t) * c->D + d;
}

// Element d of row t of q (which 0), k (1) or v (2).
static double qkv(const attn_case *c, const double *const *in, int which, int b, int h, int t, int d) {
  if (c->fused) return in[0][(((size_t)b * c->H + h) * c->Tq + t) * (3 * c->D + 1) + 1 + which * c->D + d];
  return in[which][idx(c, b, h, t, which ? c->Tk : c->Tq, d)];
}

static vkp_tensor *build_attn(vkp_graph *g, vkp_tensor **in, void *user) {
  attn_case *c = user;
  vkp_tensor *q = in[0], *k = in[1], *v = in[2];
  if (c->fused) {
    q = vkp_slice(g, in[0], 3, 1, c->D);
    k = vkp_slice(g, in[0], 3, 1 + c->D, c->D);
    v = vkp_slice(g, in[0], 3, 1 + 2 * c->D, c->D);
  }
  if (c->bthd) {
    int perm[4] = {0, 2, 1, 3};
    q = vkp_permute(g, q, perm);
    k = vkp_permute(g, k, perm);
    v = vkp_permute(g, v, perm);
  }
  return vkp_attention(g, q, k, v, c->mask ? in[c->fused ? 1 : 3] : NULL, c->causal, c->scale);
}

static void ref_attn(const double *const *in, double *out, void *user) {
  attn_case *c = user;
  double scale = c->scale != 0 ? c->scale : 1.0 / sqrt((double)c->D);
  double *s = malloc((size_t)c->Tk * sizeof *s);
  for (int b = 0; b < c->B; b++)
    for (int h = 0; h < c->H; h++)
      for (int i = 0; i < c->Tq; i++) {
        double m = -INFINITY;
        for (int j = 0; j < c->Tk; j++) {
          double dot = 0;
          for (int d = 0; d < c->D; d++) dot += qkv(c, in, 0, b, h, i, d) * qkv(c, in, 1, b, h, j, d);
          s[j] = dot * scale;
          const double *mk = in[c->fused ? 1 : 3];
          if (c->mask == 1) s[j] += mk[(size_t)b * c->Tk + j];
          if (c->mask == 2) s[j] += mk[((size_t)b * c->Tq + i) * c->Tk + j];
          if (c->mask == 3) s[j] += mk[j];
          if (c->causal && j > i) s[j] = -INFINITY;
          if (s[j] > m) m = s[j];
        }
        double l = 0;
        for (int j = 0; j < c->Tk; j++) l += s[j] = m == -INFINITY ? 0 : exp(s[j] - m);
        double *o = out + (((size_t)b * c->H + h) * c->Tq + i) * c->D;
        for (int d = 0; d < c->D; d++) {
          double acc = 0;
          for (int j = 0; j < c->Tk; j++) acc += s[j] * qkv(c, in, 2, b, h, j, d);
          o[d] = l > 0 ? acc / l : 0;
        }
      }
  free(s);
}

static void run_attn(attn_case *ac, int fd_samples, uint64_t seed) {
  // Attention is smooth: central differences (h = 1e-4) of the float64 reference are accurate to
  // ~1e-8, and f32 gradients measured within 2e-5 relative; the tolerances leave 10x margin.
  vkp_op_check c = {.name = ac->name, .n_inputs = ac->mask ? 4 : 3, .build = build_attn, .ref = ref_attn,
                    .user = ac, .fwd_rtol = 1e-4, .fwd_atol = 2e-6, .grad_rtol = 2e-4, .grad_atol = 1e-5,
                    .fd_samples = fd_samples, .seed = seed};
  int64_t qs[4] = {ac->B, ac->H, ac->Tq, ac->D}, ks[4] = {ac->B, ac->H, ac->Tk, ac->D};
  if (ac->bthd) {
    qs[1] = ac->Tq, qs[2] = ac->H;
    ks[1] = ac->Tk, ks[2] = ac->H;
  }
  c.in[0] = (vkp_check_input){.ndim = 4, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -1, .hi = 1};
  memcpy(c.in[0].shape, qs, sizeof qs);
  for (int i = 1; i < 3; i++) {
    c.in[i] = (vkp_check_input){.ndim = 4, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -1, .hi = 1};
    memcpy(c.in[i].shape, ks, sizeof ks);
  }
  int mi = 3;
  if (ac->fused) {   // one input holds q, k and v
    c.in[0].shape[3] = 3 * ac->D + 1;
    c.n_inputs -= 2;
    mi = 1;
  }
  if (ac->mask) {
    int64_t ms[4] = {ac->mask == 3 ? 1 : ac->B, 1, ac->mask == 2 ? ac->Tq : 1, ac->Tk};
    c.in[mi] = (vkp_check_input){.ndim = 4, .dtype = VKP_DTYPE_F32, .lo = -2, .hi = 2, .data = ac->mask_data};
    memcpy(c.in[mi].shape, ms, sizeof ms);
  }
  vkp_op_check_run(&c);
}

static void test_attention_plain(void **state) {
  (void)state;
  attn_case c = {.name = "attention B2 H3 T17 D16", .B = 2, .H = 3, .Tq = 17, .Tk = 17, .D = 16};
  run_attn(&c, 64, 1);
  attn_case s = {.name = "attention scale 0.3, D 7", .B = 1, .H = 2, .Tq = 19, .Tk = 19, .D = 7, .scale = 0.3f};
  run_attn(&s, 48, 2);
}

static void test_attention_causal(void **state) {
  (void)state;
  attn_case c = {.name = "attention causal B2 H3 T17 D16", .B = 2, .H = 3, .Tq = 17, .Tk = 17, .D = 16,
                 .causal = true};
  run_attn(&c, 64, 3);
  // PyTorch's is_causal with Tq != Tk: query i sees keys j <= i (top-left aligned).
  attn_case wide = {.name = "attention causal Tq 5 < Tk 21", .B = 1, .H = 2, .Tq = 5, .Tk = 21, .D = 16,
                    .causal = true};
  run_attn(&wide, 48, 4);
  attn_case tall = {.name = "attention causal Tq 37 > Tk 9", .B = 1, .H = 2, .Tq = 37, .Tk = 9, .D = 12,
                    .causal = true};
  run_attn(&tall, 48, 5);
}

static void test_attention_masks(void **state) {
  (void)state;
  // Padding mask (B,1,1,Tk): batch 0 keeps every key, batch 1 drops the last 5.
  float pad[2 * 17];
  for (int j = 0; j < 17; j++) pad[j] = 0, pad[17 + j] = j >= 12 ? -INFINITY : 0;
  attn_case p = {.name = "attention padding mask", .B = 2, .H = 3, .Tq = 17, .Tk = 17, .D = 16, .mask = 1,
                 .mask_data = pad};
  run_attn(&p, 64, 6);
  // Additive per-row mask (B,1,Tq,Tk) with random values, Tq != Tk, combined with causal.
  attn_case r = {.name = "attention row mask Tq 9 Tk 23 causal", .B = 2, .H = 2, .Tq = 9, .Tk = 23, .D = 16,
                 .mask = 2, .causal = true};
  run_attn(&r, 48, 7);
  attn_case r2 = {.name = "attention row mask Tq 23 Tk 9", .B = 2, .H = 2, .Tq = 23, .Tk = 9, .D = 20, .mask = 2};
  run_attn(&r2, 48, 8);
  // One mask (1,1,1,Tk) shared by every batch.
  attn_case sh = {.name = "attention shared mask", .B = 3, .H = 2, .Tq = 11, .Tk = 13, .D = 8, .mask = 3};
  run_attn(&sh, 48, 9);
}

static void test_attention_fully_masked(void **state) {
  (void)state;
  // Batch 1 masks every key: its rows give zeros (not NaN) and zero gradients.
  float m[2 * 10];
  for (int j = 0; j < 10; j++) m[j] = j % 3 == 0 ? -INFINITY : 0, m[10 + j] = -INFINITY;
  attn_case c = {.name = "attention fully masked rows", .B = 2, .H = 2, .Tq = 6, .Tk = 10, .D = 8, .mask = 1,
                 .mask_data = m};
  run_attn(&c, 96, 10);
}

static void test_attention_strided(void **state) {
  (void)state;
  // q, k, v stored (B, T, H, D) and permuted: read through strides, gradients mapped back.
  attn_case c = {.name = "attention permuted (B,T,H,D) inputs, D 18", .B = 2, .H = 3, .Tq = 17, .Tk = 17, .D = 18,
                 .causal = true, .bthd = true};
  run_attn(&c, 64, 11);
  attn_case x = {.name = "attention permuted, Tq 7 != Tk 12, row mask", .B = 2, .H = 2, .Tq = 7, .Tk = 12, .D = 16,
                 .bthd = true, .mask = 2};
  run_attn(&x, 64, 21);
  // q, k, v sliced from one (B, H, T, 3D + 1) tensor at odd offsets: copied to even alignment.
  attn_case f = {.name = "attention q, k, v slices at odd offsets", .B = 2, .H = 2, .Tq = 13, .Tk = 13, .D = 16,
                 .mask = 1, .fused = true};
  run_attn(&f, 96, 14);
}

// A transformer's use: q, k, v head-permuted from (B, T, H, D) projections, the output permuted
// back and reshaped to (B, T, C). O, dO, dQ, dK and dV then live in (B, T, H, D) (the *_BTHD
// layouts), so neither direction needs a copy: no copy dispatch in the whole training graph.
static void test_attention_no_copies(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  const int64_t B = 2, T = 9, H = 3, D = 16, shape[4] = {B, T, H, D};
  static const int perm[4] = {0, 2, 1, 3};
  for (int wide = 0; wide < 2; wide++) {
    int64_t s[4] = {B, T, H, wide ? 200 : D};
    vkp_graph *g;
    VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
    vkp_tensor *in[3];
    for (int i = 0; i < 3; i++) {
      in[i] = vkp_tensor_input(g, "qkv", VKP_DTYPE_F32, 4, wide ? s : shape);
      in[i]->requires_grad = true;
    }
    vkp_tensor *o = vkp_attention(g, vkp_permute(g, in[0], perm), vkp_permute(g, in[1], perm),
                                  vkp_permute(g, in[2], perm), NULL, false, 0.0f);
    vkp_tensor *y = vkp_reshape(g, vkp_permute(g, o, perm), 3, (int64_t[]){B, T, H * s[3]});
    vkp_tensor *loss = vkp_sum(g, vkp_mul(g, y, y));
    vkp_graph_output(g, loss);
    vkp_tensor *grads[3];
    VKP_ASSERT_OK(ctx, vkp_graph_backward(g, loss, in, 3, grads));
    for (int i = 0; i < 3; i++) vkp_graph_output(g, grads[i]);
    uint64_t copies = vkp_ctx_shader_dispatches(ctx, "copy");
    VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
    assert_int_equal(vkp_ctx_shader_dispatches(ctx, "copy") - copies, 0);
    vkp_graph_free(g);
  }
}

static void test_attention_long(void **state) {
  (void)state;
  attn_case c = {.name = "attention T200 D64", .B = 1, .H = 2, .Tq = 200, .Tk = 200, .D = 64};
  run_attn(&c, 6, 12);
  attn_case d = {.name = "attention D128 causal", .B = 1, .H = 1, .Tq = 70, .Tk = 70, .D = 128, .causal = true};
  run_attn(&d, 8, 13);
  attn_case e = {.name = "attention D160 (SD 1.5 heads)", .B = 1, .H = 2, .Tq = 37, .Tk = 29, .D = 160};
  run_attn(&e, 8, 15);
}

// Head dims past 160: attention_wide.glsl (a row split over 8 lanes), capacities 256, 512, 1024.
static void test_attention_wide(void **state) {
  (void)state;
  // The VAE mid block's single 512-wide head; Tq != Tk and a partial last workgroup (8 rows each).
  attn_case v = {.name = "attention D512 (VAE head) Tq 21 Tk 19", .B = 2, .H = 1, .Tq = 21, .Tk = 19, .D = 512};
  run_attn(&v, 24, 16);
  // Not a multiple of the 16 columns a lane step covers (lanes past D read clamped pairs), with a
  // row mask and causal; a permuted (B, T, H, D) input.
  attn_case n = {.name = "attention D200 causal row mask", .B = 2, .H = 2, .Tq = 13, .Tk = 17, .D = 200, .causal = true,
                 .mask = 2};
  run_attn(&n, 24, 17);
  attn_case p = {.name = "attention D200 permuted, padding mask", .B = 2, .H = 3, .Tq = 9, .Tk = 9, .D = 200,
                 .bthd = true, .mask = 1};
  run_attn(&p, 24, 18);
  // Odd (zero-padded to 162) and the largest capacity.
  attn_case o = {.name = "attention D161", .B = 1, .H = 2, .Tq = 11, .Tk = 7, .D = 161};
  run_attn(&o, 16, 19);
  attn_case w = {.name = "attention D1000 causal", .B = 1, .H = 1, .Tq = 10, .Tk = 10, .D = 1000, .causal = true};
  run_attn(&w, 16, 20);
}

static void test_attention_errors(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *q = vkp_tensor_input(g, "q", VKP_DTYPE_F32, 4, (int64_t[]){1, 2, 5, 8});
  vkp_tensor *k = vkp_tensor_input(g, "k", VKP_DTYPE_F32, 4, (int64_t[]){1, 2, 6, 8});
  vkp_tensor *v = vkp_tensor_input(g, "v", VKP_DTYPE_F32, 4, (int64_t[]){1, 2, 7, 8});
  assert_null(vkp_attention(g, q, k, v, NULL, false, 0));
  assert_int_equal(vkp_graph_status(g), VKP_ERR_SHAPE);
  vkp_graph_free(g);

  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  q = vkp_tensor_input(g, "q", VKP_DTYPE_F32, 4, (int64_t[]){1, 2, 5, 8});
  k = vkp_tensor_input(g, "k", VKP_DTYPE_F32, 4, (int64_t[]){1, 2, 6, 8});
  vkp_tensor *m = vkp_tensor_input(g, "pad_mask", VKP_DTYPE_F32, 4, (int64_t[]){1, 1, 1, 5});   // Tk is 6
  assert_null(vkp_attention(g, q, k, k, m, false, 0));
  assert_int_equal(vkp_graph_status(g), VKP_ERR_SHAPE);
  assert_non_null(strstr(vkp_graph_error(g), "'pad_mask'"));
  vkp_graph_free(g);

  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  q = vkp_tensor_input(g, "q", VKP_DTYPE_F32, 4, (int64_t[]){1, 2, 5, 1025});
  assert_null(vkp_attention(g, q, q, q, NULL, false, 0));
  assert_int_equal(vkp_graph_status(g), VKP_ERR_UNSUPPORTED);
  vkp_graph_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_attention_plain),   cmocka_unit_test(test_attention_causal),
      cmocka_unit_test(test_attention_masks),   cmocka_unit_test(test_attention_fully_masked),
      cmocka_unit_test(test_attention_strided), cmocka_unit_test(test_attention_long),
      cmocka_unit_test(test_attention_wide),    cmocka_unit_test(test_attention_no_copies),
      cmocka_unit_test(test_attention_errors),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
