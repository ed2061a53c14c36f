// test_peft_conv.c — weight-level PEFT methods on a Conv2d module (LoRA, DoRA, LoHa, LoKr, (IA)^3),
// against a float64 host reference written here from the methods' definitions (HF peft):
//   LoRA   ΔW = s·B·A with A (r, Cin, kh, kw) applied as a conv, B (Cout, r, 1, 1), s = alpha/r
//   DoRA   y = m / ||W + ΔW||_row ⊙ conv(x, W + ΔW) + b (the norm detached in the gradient)
//   LoHa   ΔW = s·(w1a·w1b) ⊙ (w2a·w2b) over (Cout, Cin·kh·kw), s = alpha/r
//   LoKr   ΔW = s·kron(w1, w2), w1 (out_l, in_m), w2 (out_k, in_n, kh, kw); Cin = in_m·in_n and
//          Cout = out_l·out_k factorised as peft's `factorization`, s = alpha/r
//   (IA)^3 y = l ⊙ (conv(x, W) + b) with l (1, Cout, 1, 1); feed-forward: conv(x ⊙ l, W) + b, l (1, Cin, 1, 1)
// Checks: forward (two stride/padding settings), gradients of every adapter parameter entry vs
// central differences of the reference, merge == unmerged and unmerge restoring W, b.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_nn.h"
#include "vkp_peft.h"
#include "vkp_test.h"

#define NB 2
#define CIN 4
#define COUT 6
#define KS 3
#define IH 7
#define IW 5
#define COLS (CIN * KS * KS)
#define NX (NB * CIN * IH * IW)
#define NW (COUT * COLS)
#define MAXY (NB * COUT * IH * IW)

typedef struct ref_model {
  const char *method;        // "lora", "dora", "loha", "lokr", "ia3", "ia3_ff"
  double s;                  // method scaling
  int np;
  const char *names[6];      // parameter names (module "net.conv")
  vkp_param *p[6];
  int64_t n[6];
  double *v[6];              // host copies (perturbed by the finite differences)
  double W[NW], b[COUT];
  const double *fixed_norm;  // DoRA: row norms held fixed (detached), or NULL to compute
  double u;                  // DoRA: user scale (vkpeft: f = u·m/||W + u·ΔW|| + 1 - u); 0 means 1
} ref_model;

// y (NB, COUT, OH, OW) = conv(x, w) (+ bias if non-NULL).
static void conv_ref(const double *x, const double *w, const double *bias, int stride, int pad, double *y, int *oh_out,
                     int *ow_out) {
  int oh = (IH + 2 * pad - KS) / stride + 1, ow = (IW + 2 * pad - KS) / stride + 1;
  for (int n = 0; n < NB; n++)
    for (int o = 0; o < COUT; o++)
      for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++) {
          double acc = bias ? bias[o] : 0;
          for (int c = 0; c < CIN; c++)
            for (int ki = 0; ki < KS; ki++)
              for (int kj = 0; kj < KS; kj++) {
                int yy = i * stride + ki - pad, xx = j * stride + kj - pad;
                if (yy < 0 || yy >= IH || xx < 0 || xx >= IW) continue;
                acc += w[((o * CIN + c) * KS + ki) * KS + kj] * x[((n * CIN + c) * IH + yy) * IW + xx];
              }
          y[((n * COUT + o) * oh + i) * ow + j] = acc;
        }
  *oh_out = oh, *ow_out = ow;
}

// ΔW (COUT, CIN, KS, KS) of the method, scaled.
static void ref_delta(const ref_model *r, double *d) {
  memset(d, 0, NW * sizeof *d);
  const char *m = r->method;
  if (!strcmp(m, "lora") || !strcmp(m, "dora")) {
    const double *A = r->v[0], *B = r->v[1];   // A (R, CIN, KS, KS), B (COUT, R, 1, 1)
    int64_t R = r->n[0] / COLS;
    for (int o = 0; o < COUT; o++)
      for (int j = 0; j < COLS; j++)
        for (int64_t k = 0; k < R; k++) d[o * COLS + j] += r->s * B[o * R + k] * A[k * COLS + j];
  } else if (!strcmp(m, "loha")) {
    const double *w1a = r->v[0], *w1b = r->v[1], *w2a = r->v[2], *w2b = r->v[3];   // (COUT, R), (R, COLS)
    int64_t R = r->n[0] / COUT;
    for (int o = 0; o < COUT; o++)
      for (int j = 0; j < COLS; j++) {
        double a = 0, b = 0;
        for (int64_t k = 0; k < R; k++) a += w1a[o * R + k] * w1b[k * COLS + j], b += w2a[o * R + k] * w2b[k * COLS + j];
        d[o * COLS + j] = r->s * a * b;
      }
  } else if (!strcmp(m, "lokr")) {
    // torch.kron(w1, w2) with w1 (OL, IM) viewed as (OL, IM, 1, 1) and w2 (OK, IN, KS, KS):
    // ΔW[a·OK + c, bb·IN + e, i, j] = w1[a, bb] · w2[c, e, i, j].
    const double *w1 = r->v[0], *w2 = r->v[1];
    int OL = (int)r->p[0]->shape[0], IM = (int)r->p[0]->shape[1], OK = (int)r->p[1]->shape[0], IN = (int)r->p[1]->shape[1];
    for (int a = 0; a < OL; a++)
      for (int bb = 0; bb < IM; bb++)
        for (int c = 0; c < OK; c++)
          for (int e = 0; e < IN; e++)
            for (int i = 0; i < KS; i++)
              for (int j = 0; j < KS; j++)
                d[(((a * OK + c) * CIN + bb * IN + e) * KS + i) * KS + j] =
                    r->s * w1[a * IM + bb] * w2[((c * IN + e) * KS + i) * KS + j];
  }
}

// The adapted module's output for x.
static void ref_forward(const ref_model *r, const double *x, int stride, int pad, double *y, int *oh, int *ow) {
  double w[NW], d[NW];
  const char *m = r->method;
  if (!strcmp(m, "ia3")) {
    conv_ref(x, r->W, r->b, stride, pad, y, oh, ow);
    int hw = *oh * *ow;
    for (int n = 0; n < NB; n++)
      for (int o = 0; o < COUT; o++)
        for (int k = 0; k < hw; k++) y[(n * COUT + o) * hw + k] *= r->v[0][o];
    return;
  }
  if (!strcmp(m, "ia3_ff")) {
    double xs[NX];
    for (int n = 0; n < NB; n++)
      for (int c = 0; c < CIN; c++)
        for (int k = 0; k < IH * IW; k++) xs[(n * CIN + c) * IH * IW + k] = x[(n * CIN + c) * IH * IW + k] * r->v[0][c];
    conv_ref(xs, r->W, r->b, stride, pad, y, oh, ow);
    return;
  }
  ref_delta(r, d);
  for (int i = 0; i < NW; i++) w[i] = r->W[i] + d[i];
  if (strcmp(m, "dora")) {
    conv_ref(x, w, r->b, stride, pad, y, oh, ow);
    return;
  }
  conv_ref(x, w, NULL, stride, pad, y, oh, ow);
  int hw = *oh * *ow;
  for (int o = 0; o < COUT; o++) {
    double nn = 0;
    for (int j = 0; j < COLS; j++) nn += w[o * COLS + j] * w[o * COLS + j];
    double u = r->u ? r->u : 1, norm = r->fixed_norm ? r->fixed_norm[o] : sqrt(nn), f = u * r->v[2][o] / norm + 1 - u;
    for (int n = 0; n < NB; n++)
      for (int k = 0; k < hw; k++) y[(n * COUT + o) * hw + k] = f * y[(n * COUT + o) * hw + k] + r->b[o];
  }
}

// ---- device side ---------------------------------------------------------------------------------

static vkp_model *make_model(vkp_module **mod, uint64_t seed) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_model *m;
  VKP_ASSERT_OK(ctx, vkp_model_new(ctx, &m));
  *mod = vkp_model_add_module(m, "net.conv", NULL, VKP_MODULE_CONV2D, 0, 4, (int64_t[]){COUT, CIN, KS, KS}, COUT);
  assert_non_null(*mod);
  vkp_rng r = vkp_rng_new(seed);
  float w[NW], b[COUT];
  vkp_rng_uniform_fill(&r, w, NW, -0.3f, 0.3f);
  vkp_rng_uniform_fill(&r, b, COUT, -0.2f, 0.2f);
  VKP_ASSERT_OK(ctx, vkp_param_write_f32(m, (*mod)->weight, w));
  VKP_ASSERT_OK(ctx, vkp_param_write_f32(m, (*mod)->bias, b));
  return m;
}

// Runs the module on x; with `wy` also L = sum(y ⊙ wy) and the gradients of every trainable
// parameter (grads[i] gets numel floats, order of vkp_model_trainable).
static int run_device(vkp_model *m, vkp_module *mod, const float *x, int stride, int pad, float *y, int ny,
                      const float *wy, vkp_param ***tp_out, float ***grads_out) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_model_begin_graph(m, g);
  vkp_tensor *xt = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 4, (int64_t[]){NB, CIN, IH, IW});
  vkp_tensor *yt = vkp_nn_conv2d(m, mod, xt, stride, pad);
  if (!yt) fail_msg("conv2d: %s", vkp_graph_error(g));
  if (vkp_tensor_numel(yt) != ny) fail_msg("output has %lld elements, want %d", (long long)vkp_tensor_numel(yt), ny);
  vkp_graph_output(g, yt);
  vkp_param **tp = NULL;
  int nt = 0;
  vkp_tensor *wt = NULL, *grads[8] = {0};
  if (wy) {
    wt = vkp_tensor_input(g, "wy", VKP_DTYPE_F32, yt->ndim, yt->shape);
    vkp_tensor *loss = vkp_sum(g, vkp_mul(g, yt, wt));
    vkp_graph_output(g, loss);
    nt = vkp_model_trainable(m, &tp);
    assert_true(nt <= 8);
    vkp_tensor *pt[8];
    for (int i = 0; i < nt; i++) pt[i] = vkp_param_tensor(m, tp[i]);
    VKP_ASSERT_OK(ctx, vkp_graph_backward(g, loss, pt, nt, grads));
    for (int i = 0; i < nt; i++) {
      if (!grads[i]) fail_msg("no gradient for %s", tp[i]->name);
      vkp_graph_output(g, grads[i]);
    }
  }
  if (vkp_graph_compile(g)) fail_msg("compile: %s / %s", vkp_graph_error(g), vkp_ctx_error(ctx));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, xt, x, NX * 4));
  if (wt) VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, wt, wy, (uint64_t)ny * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, yt, y, (uint64_t)ny * 4));
  if (wy) {
    *grads_out = calloc((size_t)nt, sizeof **grads_out);
    for (int i = 0; i < nt; i++) {
      (*grads_out)[i] = malloc((size_t)vkp_param_numel(tp[i]) * 4);
      VKP_ASSERT_OK(ctx, vkp_graph_read(g, grads[i], (*grads_out)[i], (uint64_t)vkp_param_numel(tp[i]) * 4));
    }
    *tp_out = tp;
  }
  vkp_graph_free(g);
  return nt;
}

static void ref_load(vkp_model *m, vkp_module *mod, ref_model *r) {
  float w[NW], b[COUT];
  VKP_ASSERT_OK(m->ctx, vkp_param_read_f32(m, mod->weight, w));
  VKP_ASSERT_OK(m->ctx, vkp_param_read_f32(m, mod->bias, b));
  for (int i = 0; i < NW; i++) r->W[i] = w[i];
  for (int i = 0; i < COUT; i++) r->b[i] = b[i];
  for (int k = 0; k < r->np; k++) {
    r->p[k] = vkp_model_find_param(m, r->names[k]);
    if (!r->p[k]) fail_msg("%s: no parameter %s", r->method, r->names[k]);
    r->n[k] = vkp_param_numel(r->p[k]);
    float *f = malloc((size_t)r->n[k] * 4);
    VKP_ASSERT_OK(m->ctx, vkp_param_read_f32(m, r->p[k], f));
    free(r->v[k]);
    r->v[k] = malloc((size_t)r->n[k] * sizeof(double));
    for (int64_t i = 0; i < r->n[k]; i++) r->v[k][i] = f[i];
    free(f);
  }
}

static void ref_free(ref_model *r) {
  for (int k = 0; k < r->np; k++) free(r->v[k]), r->v[k] = NULL;
}

// Adds uniform noise to every adapter parameter (so none sits at its special initial value).
static void perturb_adapter(vkp_model *m, ref_model *r, uint64_t seed) {
  vkp_rng g = vkp_rng_new(seed);
  for (int k = 0; k < r->np; k++) {
    float *f = malloc((size_t)r->n[k] * 4);
    VKP_ASSERT_OK(m->ctx, vkp_param_read_f32(m, r->p[k], f));
    for (int64_t i = 0; i < r->n[k]; i++) f[i] += (float)(0.2 * (2 * vkp_rng_uniform(&g) - 1));
    VKP_ASSERT_OK(m->ctx, vkp_param_write_f32(m, r->p[k], f));
    free(f);
  }
}

static double max_abs(const double *v, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) s = fmax(s, fabs(v[i]));
  return s;
}

static void check_forward(const char *what, vkp_model *m, vkp_module *mod, const ref_model *r, const float *x,
                          const double *xd, int stride, int pad) {
  double want[MAXY];
  float got[MAXY];
  int oh, ow;
  ref_forward(r, xd, stride, pad, want, &oh, &ow);
  int ny = NB * COUT * oh * ow;
  run_device(m, mod, x, stride, pad, got, ny, NULL, NULL, NULL);
  double err = 0, scale = max_abs(want, ny);
  for (int i = 0; i < ny; i++) err = fmax(err, fabs(got[i] - want[i]));
  printf("  %-8s %-34s stride %d pad %d: max err %.2e (scale %.2f)\n", r->method, what, stride, pad, err, scale);
  if (!(err <= 2e-6 * fmax(scale, 1))) fail_msg("%s %s: forward error %.3e (scale %.3f)", r->method, what, err, scale);
}

// Gradient of every adapter parameter entry vs central differences of the float64 reference.
static void check_gradients(vkp_model *m, vkp_module *mod, ref_model *r, const float *x, const double *xd) {
  int oh = IH, ow = IW, ny = NB * COUT * oh * ow;   // stride 1, pad 1
  float wy[MAXY], y[MAXY];
  vkp_rng g = vkp_rng_new(77);
  vkp_rng_uniform_fill(&g, wy, (size_t)ny, -1, 1);
  vkp_param **tp;
  float **grads;
  int nt = run_device(m, mod, x, 1, 1, y, ny, wy, &tp, &grads);
  assert_int_equal(nt, r->np);   // exactly the adapter's parameters train
  double norm[COUT];
  if (!strcmp(r->method, "dora")) {   // peft detaches ||W + ΔW||: hold it at the current value
    double d[NW];
    ref_delta(r, d);
    for (int o = 0; o < COUT; o++) {
      double nn = 0;
      for (int j = 0; j < COLS; j++) nn += (r->W[o * COLS + j] + d[o * COLS + j]) * (r->W[o * COLS + j] + d[o * COLS + j]);
      norm[o] = sqrt(nn);
    }
    r->fixed_norm = norm;
  }
  const double h = 1e-5;
  double yp[MAXY], ym[MAXY];
  for (int t = 0; t < nt; t++) {
    int k = 0;
    while (k < r->np && r->p[k] != tp[t]) k++;
    if (k == r->np) fail_msg("%s: trainable %s is not an adapter parameter", r->method, tp[t]->name);
    double worst = 0, scale = 0;
    int64_t worst_i = 0;
    double *fd = malloc((size_t)r->n[k] * sizeof *fd);
    for (int64_t i = 0; i < r->n[k]; i++) {
      double keep = r->v[k][i];
      r->v[k][i] = keep + h;
      ref_forward(r, xd, 1, 1, yp, &oh, &ow);
      r->v[k][i] = keep - h;
      ref_forward(r, xd, 1, 1, ym, &oh, &ow);
      r->v[k][i] = keep;
      double acc = 0;
      for (int q = 0; q < ny; q++) acc += (yp[q] - ym[q]) * wy[q];
      fd[i] = acc / (2 * h);
      scale = fmax(scale, fabs(fd[i]));
    }
    for (int64_t i = 0; i < r->n[k]; i++) {
      double e = fabs(grads[t][i] - fd[i]);
      if (e > worst) worst = e, worst_i = i;
    }
    printf("  %-8s grad %-34s %4lld entries: max err %.2e (scale %.2f)\n", r->method, tp[t]->name, (long long)r->n[k],
           worst, scale);
    if (!(worst <= 1e-4 * fmax(scale, 1)))
      fail_msg("%s: gradient of %s[%lld] = %.6g, finite differences %.6g", r->method, tp[t]->name, (long long)worst_i,
               grads[t][worst_i], fd[worst_i]);
    free(fd);
    free(grads[t]);
  }
  r->fixed_norm = NULL;
  free(grads);
  free(tp);
}

static void check_merge(vkp_model *m, vkp_module *mod, vkp_adapter *a, const ref_model *r, const float *x) {
  vkp_ctx *ctx = vkp_test_ctx();
  float y1[MAXY], y2[MAXY], w0[NW], b0[COUT], w[NW], b[COUT];
  int ny = NB * COUT * IH * IW;
  VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, mod->weight, w0));
  VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, mod->bias, b0));
  run_device(m, mod, x, 1, 1, y1, ny, NULL, NULL, NULL);
  VKP_ASSERT_OK(ctx, vkp_adapter_merge(m, a));
  run_device(m, mod, x, 1, 1, y2, ny, NULL, NULL, NULL);
  double e = 0, scale = 0;
  for (int i = 0; i < ny; i++) e = fmax(e, fabs(y2[i] - y1[i])), scale = fmax(scale, fabs(y1[i]));
  VKP_ASSERT_OK(ctx, vkp_adapter_unmerge(m, a));
  VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, mod->weight, w));
  VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, mod->bias, b));
  double ew = 0, sw = 0;
  for (int i = 0; i < NW; i++) ew = fmax(ew, fabs(w[i] - w0[i])), sw = fmax(sw, fabs(w0[i]));
  for (int i = 0; i < COUT; i++) ew = fmax(ew, fabs(b[i] - b0[i]));
  printf("  %-8s merged vs unmerged: max err %.2e (scale %.2f); unmerge restores W, b to %.2e\n", r->method, e, scale, ew);
  if (!(e <= 1e-5 * fmax(scale, 1))) fail_msg("%s: merged output differs by %.3e", r->method, e);
  if (!(ew <= 1e-6 * fmax(sw, 1))) fail_msg("%s: unmerge leaves W/b off by %.3e", r->method, ew);
}

// One method: attach (non-zero init), forward vs reference (also right after attach), gradients,
// merge, and a user scale of 0.5 (forward vs the reference with the delta scaled).
static void run_method(const char *method) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_module *mod;
  vkp_model *m = make_model(&mod, 5);
  vkp_peft_config c;
  ref_model r = {.method = method};
  if (!strcmp(method, "lora") || !strcmp(method, "dora")) {
    vkp_peft_config_init(&c, VKP_PEFT_LORA);
    c.r = 2, c.alpha = 3, c.use_dora = !strcmp(method, "dora");
    r.s = 1.5;
    r.np = c.use_dora ? 3 : 2;
    r.names[0] = "net.conv.lora_A.weight", r.names[1] = "net.conv.lora_B.weight";
    r.names[2] = "net.conv.lora_magnitude_vector";
  } else if (!strcmp(method, "loha")) {
    vkp_peft_config_init(&c, VKP_PEFT_LOHA);
    c.r = 3, c.alpha = 6;
    r.s = 2, r.np = 4;
    r.names[0] = "net.conv.hada_w1_a", r.names[1] = "net.conv.hada_w1_b";
    r.names[2] = "net.conv.hada_w2_a", r.names[3] = "net.conv.hada_w2_b";
  } else if (!strcmp(method, "lokr")) {
    vkp_peft_config_init(&c, VKP_PEFT_LOKR);
    c.r = 4, c.alpha = 2;
    r.s = 0.5, r.np = 2;
    r.names[0] = "net.conv.lokr_w1", r.names[1] = "net.conv.lokr_w2";
  } else {
    vkp_peft_config_init(&c, VKP_PEFT_IA3);
    if (!strcmp(method, "ia3_ff")) c.feedforward_modules[c.n_feedforward_modules++] = strdup("conv");
    r.s = 1, r.np = 1;
    r.names[0] = "net.conv.ia3_l";
  }
  c.target_modules[c.n_target_modules++] = strdup("conv");
  c.init_weights = false;
  vkp_adapter *a;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &c, 3, &a));
  vkp_peft_config_clear(&c);
  ref_load(m, mod, &r);
  // Parameter shapes as peft creates them.
  if (!strcmp(method, "lora") || !strcmp(method, "dora")) {
    const int64_t as[4] = {2, CIN, KS, KS}, bs[4] = {COUT, 2, 1, 1};
    assert_int_equal(r.p[0]->ndim, 4);
    assert_int_equal(r.p[1]->ndim, 4);
    assert_memory_equal(r.p[0]->shape, as, sizeof as);
    assert_memory_equal(r.p[1]->shape, bs, sizeof bs);
    if (r.np == 3) {   // DoRA magnitude: peft's DoraConv2dLayer keeps it as (1, Cout, 1, 1)
      const int64_t ms[4] = {1, COUT, 1, 1};
      assert_int_equal(r.p[2]->ndim, 4);
      assert_memory_equal(r.p[2]->shape, ms, sizeof ms);
    }
  } else if (!strcmp(method, "loha")) {
    assert_int_equal(r.p[0]->shape[0], COUT), assert_int_equal(r.p[0]->shape[1], 3);
    assert_int_equal(r.p[1]->shape[0], 3), assert_int_equal(r.p[1]->shape[1], COLS);
  } else if (!strcmp(method, "lokr")) {
    // factorization(4) = (2, 2), factorization(6) = (2, 3): w1 (2, 2), w2 (3, 2, 3, 3).
    const int64_t w1[2] = {2, 2}, w2[4] = {3, 2, KS, KS};
    assert_int_equal(r.p[0]->ndim, 2);
    assert_int_equal(r.p[1]->ndim, 4);
    assert_memory_equal(r.p[0]->shape, w1, sizeof w1);
    assert_memory_equal(r.p[1]->shape, w2, sizeof w2);
  } else {
    const int64_t ls[4] = {1, !strcmp(method, "ia3_ff") ? CIN : COUT, 1, 1};
    assert_int_equal(r.p[0]->ndim, 4);
    assert_memory_equal(r.p[0]->shape, ls, sizeof ls);
  }
  float x[NX];
  double xd[NX];
  vkp_rng g = vkp_rng_new(19);
  vkp_rng_uniform_fill(&g, x, NX, -1, 1);
  for (int i = 0; i < NX; i++) xd[i] = x[i];
  if (!strcmp(method, "dora")) {
    // At initialisation DoRA's magnitude is ||W + ΔW||, so the output equals LoRA's (peft).
    ref_model lora = r;
    lora.method = "lora";
    check_forward("at init == LoRA", m, mod, &lora, x, xd, 1, 1);
  }
  check_forward("at init", m, mod, &r, x, xd, 1, 1);
  perturb_adapter(m, &r, 23);
  ref_load(m, mod, &r);
  check_forward("", m, mod, &r, x, xd, 1, 1);
  check_forward("", m, mod, &r, x, xd, 2, 0);
  check_gradients(m, mod, &r, x, xd);
  check_merge(m, mod, a, &r, x);
  // User scale 0.5: LoRA-like deltas scale by 0.5; (IA)^3 uses l' = 0.5·l + 0.5 (halfway to identity).
  vkp_adapter_set_scale(a, 0.5f);
  // DoRA: f = 0.5·m/||W + 0.5·ΔW|| + 0.5 on (W + 0.5·ΔW), so scale 0 is the base layer.
  ref_model half = r;
  double *l = malloc((size_t)r.n[0] * sizeof *l);
  if (!strncmp(method, "ia3", 3)) {
    for (int64_t i = 0; i < r.n[0]; i++) l[i] = 0.5 * r.v[0][i] + 0.5;
    half.v[0] = l;
  } else {
    half.s = 0.5 * r.s;
    half.u = 0.5;
  }
  check_forward("user scale 0.5", m, mod, &half, x, xd, 1, 1);
  if (strncmp(method, "ia3", 3)) check_merge(m, mod, a, &half, x);
  else assert_int_equal(vkp_adapter_merge(m, a), VKP_ERR_UNSUPPORTED);   // a scaled (IA)^3 does not merge
  vkp_adapter_set_scale(a, 0.0f);
  ref_model base = {.method = "ia3", .np = 1};
  memcpy(base.W, r.W, sizeof base.W);
  memcpy(base.b, r.b, sizeof base.b);
  double ones[COUT];
  for (int i = 0; i < COUT; i++) ones[i] = 1;
  base.v[0] = ones;
  check_forward("user scale 0 == base layer", m, mod, &base, x, xd, 1, 1);
  free(l);
  ref_free(&r);
  vkp_model_free(m);
}

static void test_lora(void **s) { (void)s; run_method("lora"); }
static void test_dora(void **s) { (void)s; run_method("dora"); }
static void test_loha(void **s) { (void)s; run_method("loha"); }
static void test_lokr(void **s) { (void)s; run_method("lokr"); }
static void test_ia3(void **s) { (void)s; run_method("ia3"); }
static void test_ia3_feedforward(void **s) { (void)s; run_method("ia3_ff"); }

// Two adapters on one conv (LoRA + (IA)^3 output scaling): y = l ⊙ (conv(x, W + ΔW) + b).
static void test_lora_plus_ia3(void **s) {
  (void)s;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_module *mod;
  vkp_model *m = make_model(&mod, 8);
  vkp_peft_config c;
  vkp_adapter *a, *b;
  vkp_peft_config_init(&c, VKP_PEFT_LORA);
  c.r = 2, c.alpha = 4, c.init_weights = false;
  c.target_modules[c.n_target_modules++] = strdup("conv");
  VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &c, 1, &a));
  vkp_peft_config_clear(&c);
  vkp_peft_config_init(&c, VKP_PEFT_IA3);
  c.init_weights = false;
  c.target_modules[c.n_target_modules++] = strdup("conv");
  VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &c, 2, &b));
  vkp_peft_config_clear(&c);
  ref_model rl = {.method = "lora", .s = 2, .np = 2, .names = {"net.conv.lora_A.weight", "net.conv.lora_B.weight"}};
  ref_model ri = {.method = "ia3", .s = 1, .np = 1, .names = {"net.conv.ia3_l"}};
  ref_load(m, mod, &rl);
  ref_load(m, mod, &ri);
  float x[NX], got[MAXY];
  double xd[NX], want[MAXY];
  vkp_rng g = vkp_rng_new(4);
  vkp_rng_uniform_fill(&g, x, NX, -1, 1);
  for (int i = 0; i < NX; i++) xd[i] = x[i];
  int oh, ow, ny = NB * COUT * IH * IW;
  ref_forward(&rl, xd, 1, 1, want, &oh, &ow);
  for (int n = 0; n < NB; n++)
    for (int o = 0; o < COUT; o++)
      for (int k = 0; k < IH * IW; k++) want[(n * COUT + o) * IH * IW + k] *= ri.v[0][o];
  run_device(m, mod, x, 1, 1, got, ny, NULL, NULL, NULL);
  double e = 0, sc = max_abs(want, ny);
  for (int i = 0; i < ny; i++) e = fmax(e, fabs(got[i] - want[i]));
  printf("  lora + ia3 on one conv: max err %.2e (scale %.2f)\n", e, sc);
  if (!(e <= 2e-6 * fmax(sc, 1))) fail_msg("lora + ia3: forward error %.3e", e);
  // Merge both (LoRA first, then (IA)^3), unmerge in reverse: same output, same weights.
  float y2[MAXY], w0[NW], w1[NW];
  VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, mod->weight, w0));
  VKP_ASSERT_OK(ctx, vkp_adapter_merge(m, a));
  VKP_ASSERT_OK(ctx, vkp_adapter_merge(m, b));
  run_device(m, mod, x, 1, 1, y2, ny, NULL, NULL, NULL);
  double em = 0;
  for (int i = 0; i < ny; i++) em = fmax(em, fabs(y2[i] - want[i]));
  VKP_ASSERT_OK(ctx, vkp_adapter_unmerge(m, b));
  VKP_ASSERT_OK(ctx, vkp_adapter_unmerge(m, a));
  VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, mod->weight, w1));
  double ew = 0;
  for (int i = 0; i < NW; i++) ew = fmax(ew, fabs(w1[i] - w0[i]));
  printf("  lora + ia3 merged: max err %.2e; unmerged W off by %.2e\n", em, ew);
  if (!(em <= 1e-5 * fmax(sc, 1))) fail_msg("lora + ia3 merged: error %.3e", em);
  if (!(ew <= 1e-6)) fail_msg("lora + ia3 unmerge: W off by %.3e", ew);
  ref_free(&rl);
  ref_free(&ri);
  vkp_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lora), cmocka_unit_test(test_dora), cmocka_unit_test(test_loha),
      cmocka_unit_test(test_lokr), cmocka_unit_test(test_ia3), cmocka_unit_test(test_ia3_feedforward),
      cmocka_unit_test(test_lora_plus_ia3),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
