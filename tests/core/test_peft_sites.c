// test_peft_sites.c — block- and sequence-level adapter sites beyond a ViT block, against float64
// references:
//   * prefix tuning under a causal mask, a padding mask (B, 1, 1, Tk), a row mask (B, 1, Tq, Tk),
//     and both: the learned keys/values are visible to every query, the model's own keys follow
//     the mask and the causal rule (query i sees keys j <= i); gradients of the prefix by central
//     differences;
//   * prefix on cross-attention: only when targeted (the default takes self-attention);
//   * bottleneck (Houlsby) on a block with a cross-attention site: one adapter per site, each
//     applied at its own site; on a ResNet-style block (site VKP_NN_AFTER_BLOCK) over the channels
//     of an (N, C, H, W) map.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_nn.h"
#include "vkp_peft.h"
#include "vkp_test.h"

enum { B = 2, H = 2, T = 5, D = 4, C = H * D, P = 3 };

// ---- prefix tuning with masks ------------------------------------------------------------------

typedef struct prefix_case {
  const char *name;
  bool causal;
  int mask;   // 0 none, 1 padding (B, 1, 1, T), 2 rows (B, 1, T, T)
} prefix_case;

static float g_mask[B * T * T];

static void make_mask(int kind) {
  for (int b = 0; b < B; b++)
    for (int i = 0; i < (kind == 2 ? T : 1); i++)
      for (int j = 0; j < T; j++) {
        bool drop = kind == 1 ? (b == 1 && j >= T - 2)                              // batch 1: last two keys padded
                              : ((i + j + b) % 3 == 1 && j != 0);                   // rows: a scattered pattern, key 0 kept
        g_mask[(b * (kind == 2 ? T : 1) + i) * T + j] = drop ? -INFINITY : 0.0f;
      }
}

// out (B, H, T, D) = softmax(q k'^T / sqrt(D) + mask') v' with k' = [prefix keys; k], v' likewise.
static void prefix_ref(const prefix_case *c, const double *q, const double *k, const double *v, const double *pk,
                       const double *pv, double *out) {
  double s[P + T], kk[(P + T) * D], vv[(P + T) * D];
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      for (int j = 0; j < P + T; j++)
        for (int d = 0; d < D; d++) {
          kk[j * D + d] = j < P ? pk[j * C + h * D + d] : k[((b * H + h) * T + j - P) * D + d];
          vv[j * D + d] = j < P ? pv[j * C + h * D + d] : v[((b * H + h) * T + j - P) * D + d];
        }
      for (int i = 0; i < T; i++) {
        double mx = -INFINITY, z = 0;
        for (int j = 0; j < P + T; j++) {
          bool vis = true;
          if (j >= P) {
            int jj = j - P;
            if (c->causal && jj > i) vis = false;
            if (c->mask == 1 && isinf(g_mask[b * T + jj])) vis = false;
            if (c->mask == 2 && isinf(g_mask[(b * T + i) * T + jj])) vis = false;
          }
          double acc = 0;
          for (int d = 0; d < D; d++) acc += q[((b * H + h) * T + i) * D + d] * kk[j * D + d];
          s[j] = vis ? acc / sqrt((double)D) : -INFINITY;
          mx = fmax(mx, s[j]);
        }
        for (int j = 0; j < P + T; j++) z += isinf(s[j]) ? 0 : exp(s[j] - mx);
        for (int d = 0; d < D; d++) {
          double acc = 0;
          for (int j = 0; j < P + T; j++) acc += isinf(s[j]) ? 0 : exp(s[j] - mx) / z * vv[j * D + d];
          out[((b * H + h) * T + i) * D + d] = acc;
        }
      }
    }
}

#define NQ (B * H * T * D)

static int run_prefix(vkp_model *m, vkp_module *attn, const prefix_case *c, const float *q, const float *k, const float *v,
                      float *out, const float *w, vkp_param **pp, float *gk, float *gv) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_model_begin_graph(m, g);
  int64_t shape[4] = {B, H, T, D};
  vkp_tensor *qt = vkp_tensor_input(g, "q", VKP_DTYPE_F32, 4, shape), *kt = vkp_tensor_input(g, "k", VKP_DTYPE_F32, 4, shape),
             *vt = vkp_tensor_input(g, "v", VKP_DTYPE_F32, 4, shape), *mt = NULL;
  if (c->mask == 1) mt = vkp_tensor_input(g, "mask", VKP_DTYPE_F32, 4, (int64_t[]){B, 1, 1, T});
  if (c->mask == 2) mt = vkp_tensor_input(g, "mask", VKP_DTYPE_F32, 4, (int64_t[]){B, 1, T, T});
  vkp_tensor *o = vkp_nn_attention(m, attn, qt, kt, vt, mt, c->causal);
  if (!o) fail_msg("%s: %s", c->name, vkp_graph_error(g));
  assert_int_equal(vkp_tensor_numel(o), NQ);
  vkp_graph_output(g, o);
  vkp_tensor *wt = NULL, *grads[2] = {0};
  if (w) {
    wt = vkp_tensor_input(g, "w", VKP_DTYPE_F32, 4, shape);
    vkp_tensor *loss = vkp_sum(g, vkp_mul(g, o, wt));
    vkp_tensor *pt[2] = {vkp_param_tensor(m, pp[0]), vkp_param_tensor(m, pp[1])};
    VKP_ASSERT_OK(ctx, vkp_graph_backward(g, loss, pt, 2, grads));
    vkp_graph_output(g, grads[0]);
    vkp_graph_output(g, grads[1]);
  }
  if (vkp_graph_compile(g)) fail_msg("compile: %s / %s", vkp_graph_error(g), vkp_ctx_error(ctx));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, qt, q, NQ * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, kt, k, NQ * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, vt, v, NQ * 4));
  if (mt) VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, mt, g_mask, (uint64_t)vkp_tensor_numel(mt) * 4));
  if (wt) VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, wt, w, NQ * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, o, out, NQ * 4));
  if (w) {
    VKP_ASSERT_OK(ctx, vkp_graph_read(g, grads[0], gk, P * C * 4));
    VKP_ASSERT_OK(ctx, vkp_graph_read(g, grads[1], gv, P * C * 4));
  }
  vkp_graph_free(g);
  return NQ;
}

static void to_double(const float *f, double *d, int n) {
  for (int i = 0; i < n; i++) d[i] = f[i];
}

static void test_prefix_masks(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_model *m;
  VKP_ASSERT_OK(ctx, vkp_model_new(ctx, &m));
  vkp_module *attn = vkp_model_add_module(m, "enc.layers.0.self_attn", NULL, VKP_MODULE_ATTENTION, 0, 0, NULL, 0);
  assert_non_null(attn);
  attn->in = attn->out = C;
  vkp_peft_config cfg;
  vkp_peft_config_init(&cfg, VKP_PEFT_PREFIX);
  cfg.n_tokens = P;
  vkp_adapter *a;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &cfg, 3, &a));
  vkp_peft_config_clear(&cfg);
  vkp_param *pp[2] = {vkp_model_find_param(m, "enc.layers.0.self_attn.prefix_keys"),
                      vkp_model_find_param(m, "enc.layers.0.self_attn.prefix_values")};
  assert_non_null(pp[0]), assert_non_null(pp[1]);
  vkp_rng r = vkp_rng_new(8);
  float pk[P * C], pv[P * C], q[NQ], k[NQ], v[NQ], w[NQ], out[NQ], gk[P * C], gv[P * C];
  vkp_rng_uniform_fill(&r, pk, P * C, -1, 1);
  vkp_rng_uniform_fill(&r, pv, P * C, -1, 1);
  VKP_ASSERT_OK(ctx, vkp_param_write_f32(m, pp[0], pk));
  VKP_ASSERT_OK(ctx, vkp_param_write_f32(m, pp[1], pv));
  vkp_rng_uniform_fill(&r, q, NQ, -1, 1);
  vkp_rng_uniform_fill(&r, k, NQ, -1, 1);
  vkp_rng_uniform_fill(&r, v, NQ, -1, 1);
  vkp_rng_uniform_fill(&r, w, NQ, -1, 1);
  double qd[NQ], kd[NQ], vd[NQ], pkd[P * C], pvd[P * C], want[NQ], yp[NQ], ym[NQ];
  to_double(q, qd, NQ), to_double(k, kd, NQ), to_double(v, vd, NQ), to_double(pk, pkd, P * C), to_double(pv, pvd, P * C);
  const prefix_case cases[] = {{"no mask", false, 0},          {"causal", true, 0},
                               {"padding mask", false, 1},     {"causal + padding mask", true, 1},
                               {"row mask", false, 2},         {"causal + row mask", true, 2}};
  for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
    const prefix_case *c = &cases[ci];
    make_mask(c->mask);
    run_prefix(m, attn, c, q, k, v, out, w, pp, gk, gv);
    prefix_ref(c, qd, kd, vd, pkd, pvd, want);
    double e = 0, sc = 0;
    for (int i = 0; i < NQ; i++) e = fmax(e, fabs(out[i] - want[i])), sc = fmax(sc, fabs(want[i]));
    // Gradients of the prefix keys and values by central differences of the reference.
    double ge = 0, gs = 0;
    const double h = 1e-5;
    for (int t = 0; t < 2; t++)
      for (int i = 0; i < P * C; i++) {
        double *p = t ? pvd : pkd, keep = p[i];
        p[i] = keep + h;
        prefix_ref(c, qd, kd, vd, pkd, pvd, yp);
        p[i] = keep - h;
        prefix_ref(c, qd, kd, vd, pkd, pvd, ym);
        p[i] = keep;
        double fd = 0;
        for (int j = 0; j < NQ; j++) fd += (yp[j] - ym[j]) * w[j];
        fd /= 2 * h;
        ge = fmax(ge, fabs((t ? gv : gk)[i] - fd)), gs = fmax(gs, fabs(fd));
      }
    printf("  prefix %-24s forward max err %.2e (scale %.2f); prefix gradients max err %.2e (scale %.2f)\n", c->name, e,
           sc, ge, gs);
    if (!(e <= 2e-6 * fmax(sc, 1))) fail_msg("prefix %s: forward error %.3e", c->name, e);
    if (!(ge <= 1e-4 * fmax(gs, 1))) fail_msg("prefix %s: gradient error %.3e", c->name, ge);
  }
  vkp_model_free(m);
}

// Prefix tuning takes self-attention by default; a cross-attention only when targeted.
static void test_prefix_cross_attention(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_model *m;
  VKP_ASSERT_OK(ctx, vkp_model_new(ctx, &m));
  vkp_module *a1 = vkp_model_add_module(m, "blocks.0.attn1", NULL, VKP_MODULE_ATTENTION, 0, 0, NULL, 0);
  vkp_module *a2 = vkp_model_add_module(m, "blocks.0.attn2", NULL, VKP_MODULE_ATTENTION, 0, 0, NULL, 0);
  a1->in = a1->out = a2->in = a2->out = C;
  a2->cross = true;
  vkp_peft_config cfg;
  vkp_peft_config_init(&cfg, VKP_PEFT_PREFIX);
  cfg.n_tokens = 2;
  vkp_adapter *a;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &cfg, 1, &a));
  assert_non_null(a1->slots);
  assert_null(a2->slots);
  assert_null(vkp_model_find_param(m, "blocks.0.attn2.prefix_keys"));
  snprintf(cfg.name, sizeof cfg.name, "cross");
  cfg.target_modules[cfg.n_target_modules++] = strdup("attn2");
  VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &cfg, 2, &a));
  vkp_peft_config_clear(&cfg);
  assert_non_null(a2->slots);
  assert_non_null(vkp_model_find_param(m, "blocks.0.attn2.cross.prefix_keys"));
  printf("  prefix: default on attn1 (self) only; targeted 'attn2' (cross) gets its own\n");
  vkp_model_free(m);
}

// ---- bottleneck adapters at the sites of a block ------------------------------------------------

static double gelu(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }

// h + s · up(gelu(down(h))) over the last dim (rows of C), down (bn, C) + db, up (C, bn) + ub.
static void bottleneck_ref(const float *h, int rows, int c, int bn, const float *dw, const float *db, const float *uw,
                           const float *ub, double s, double *out) {
  for (int r = 0; r < rows; r++) {
    double z[64];
    for (int j = 0; j < bn; j++) {
      double acc = db[j];
      for (int i = 0; i < c; i++) acc += (double)dw[j * c + i] * h[r * c + i];
      z[j] = gelu(acc);
    }
    for (int i = 0; i < c; i++) {
      double acc = ub[i];
      for (int j = 0; j < bn; j++) acc += (double)uw[i * bn + j] * z[j];
      out[r * c + i] = h[r * c + i] + s * acc;
    }
  }
}

static float *read_named(vkp_model *m, const char *name) {
  vkp_param *p = vkp_model_find_param(m, name);
  if (!p) fail_msg("no parameter %s", name);
  float *v = malloc((size_t)vkp_param_numel(p) * 4);
  VKP_ASSERT_OK(m->ctx, vkp_param_read_f32(m, p, v));
  return v;
}

// Runs vkp_nn_block_adapter(block, site) on h (ndim 3 or 4).
static void run_block(vkp_model *m, vkp_module *block, int site, int ndim, const int64_t *shape, const float *h, float *out) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_model_begin_graph(m, g);
  vkp_tensor *ht = vkp_tensor_input(g, "h", VKP_DTYPE_F32, ndim, shape);
  vkp_tensor *o = vkp_nn_block_adapter(m, block, site, ht, NULL);
  if (o == ht) o = vkp_contiguous(g, vkp_scale(g, ht, 1.0f));
  vkp_graph_output(g, o);
  if (vkp_graph_compile(g)) fail_msg("compile: %s / %s", vkp_graph_error(g), vkp_ctx_error(ctx));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, ht, h, vkp_tensor_nbytes(ht)));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, o, out, vkp_tensor_nbytes(o)));
  vkp_graph_free(g);
}

static void test_bottleneck_sites(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_model *m;
  VKP_ASSERT_OK(ctx, vkp_model_new(ctx, &m));
  // A diffusers BasicTransformerBlock (self-attention, cross-attention, feed-forward) and a ResNet block.
  vkp_module *tb = vkp_model_add_module(m, "down.0.attentions.0.transformer_blocks.0", NULL, VKP_MODULE_BLOCK, 0, 0, NULL, 0);
  vkp_module *rb = vkp_model_add_module(m, "down.0.resnets.0", NULL, VKP_MODULE_BLOCK, 0, 0, NULL, 0);
  tb->in = tb->out = rb->in = rb->out = C;
  tb->sites = VKP_NN_AFTER_ATTN | VKP_NN_AFTER_CROSS_ATTN | VKP_NN_AFTER_MLP;
  rb->sites = VKP_NN_AFTER_BLOCK;
  vkp_peft_config cfg;
  vkp_peft_config_init(&cfg, VKP_PEFT_BOTTLENECK);
  cfg.bottleneck = 3, cfg.adapter_scale = 0.7f, cfg.init_weights = false;
  vkp_adapter *a;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &cfg, 4, &a));
  vkp_peft_config_clear(&cfg);
  int ns = 0;
  while (vkp_adapter_slot_module(a, ns)) ns++;
  assert_int_equal(ns, 4);   // MLP, self, cross on the transformer block; one on the ResNet block
  const char *tn = tb->name, *rn = rb->name;
  const struct { vkp_module *block; int site; const char *prefix; } sites[] = {
      {tb, VKP_NN_AFTER_MLP, "adapter_"}, {tb, VKP_NN_AFTER_ATTN, "attn_adapter_"},
      {tb, VKP_NN_AFTER_CROSS_ATTN, "cross_attn_adapter_"}};
  vkp_rng r = vkp_rng_new(12);
  float h[2 * T * C], out[2 * T * C];
  double want[2 * T * C];
  vkp_rng_uniform_fill(&r, h, 2 * T * C, -1, 1);
  for (int i = 0; i < 3; i++) {
    char n[4][200];
    const char *leaf[4] = {"down.weight", "down.bias", "up.weight", "up.bias"};
    float *p[4];
    for (int k = 0; k < 4; k++) {
      snprintf(n[k], sizeof n[k], "%s.%s%s", tn, sites[i].prefix, leaf[k]);
      p[k] = read_named(m, n[k]);
    }
    run_block(m, tb, sites[i].site, 3, (int64_t[]){2, T, C}, h, out);
    bottleneck_ref(h, 2 * T, C, 3, p[0], p[1], p[2], p[3], 0.7, want);
    vkp_assert_close("bottleneck at its site", out, want, 2 * T * C, 1e-5, 1e-6);
    printf("  bottleneck %-28s at site %d: matches the float64 reference\n", sites[i].prefix, sites[i].site);
    for (int k = 0; k < 4; k++) free(p[k]);
  }
  // ResNet block: (N, C, H, W), the adapter acts per pixel over the channels.
  enum { N = 2, HH = 3, WW = 2 };
  float x[N * C * HH * WW], y[N * C * HH * WW], xl[N * HH * WW * C];
  double yl[N * HH * WW * C];
  vkp_rng_uniform_fill(&r, x, N * C * HH * WW, -1, 1);
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++)
      for (int s = 0; s < HH * WW; s++) xl[(n * HH * WW + s) * C + c] = x[(n * C + c) * HH * WW + s];
  char nm[4][200];
  float *p[4];
  const char *leaf[4] = {"down.weight", "down.bias", "up.weight", "up.bias"};
  for (int k = 0; k < 4; k++) {
    snprintf(nm[k], sizeof nm[k], "%s.adapter_%s", rn, leaf[k]);
    p[k] = read_named(m, nm[k]);
  }
  run_block(m, rb, VKP_NN_AFTER_BLOCK, 4, (int64_t[]){N, C, HH, WW}, x, y);
  bottleneck_ref(xl, N * HH * WW, C, 3, p[0], p[1], p[2], p[3], 0.7, yl);
  double e = 0;
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++)
      for (int s = 0; s < HH * WW; s++) e = fmax(e, fabs(y[(n * C + c) * HH * WW + s] - yl[(n * HH * WW + s) * C + c]));
  printf("  bottleneck on a ResNet block (N, C, H, W): max err %.2e\n", e);
  if (!(e <= 1e-5)) fail_msg("ResNet-block bottleneck: error %.3e", e);
  // The transformer block's sites leave a ResNet-only site alone, and vice versa.
  run_block(m, rb, VKP_NN_AFTER_MLP, 4, (int64_t[]){N, C, HH, WW}, x, y);
  vkp_assert_close_f("no adapter at an absent site", y, x, N * C * HH * WW, 0, 0);
  for (int k = 0; k < 4; k++) free(p[k]);
  vkp_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prefix_masks),
      cmocka_unit_test(test_prefix_cross_attention),
      cmocka_unit_test(test_bottleneck_sites),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
