// test_peft_oft.c — OFT (peft 0.21 OFTConfig semantics) against a float64 host reference written
// here from peft's definitions (peft/tuners/oft/layer.py):
//   Q_k     skew-symmetric from row k of oft_R.weight (np, b(b-1)/2): upper triangle in
//           torch.triu_indices(b, b, 1) order, Q = U - U^T; block_share: one row for every block
//   R_k     Cayley-Neumann (default): I + 2Q + 2Q^2 [+ ...] + Q^m as peft's _cayley_batch loop;
//           exact: R = (I - Q)(I + Q)^-1 (torch.linalg.solve(I + Q, I - Q, left=False))
//   linear  y = (x R_bd) W^T + b (peft rotates the input; the bias is not rotated)
//   conv2d  y = conv(x, W R_bd^T) + b over W as (Cout, Cin·kh·kw) (peft's merged form)
//   coft    rows with ||Q||_F > eps/sqrt(np) are scaled onto that sphere, in the parameter itself
// Checks per case: parameter layout, forward (after attach and perturbed), the gradient of every
// oft_R entry by central differences, merge == unmerged and unmerge restoring W, a user scale,
// and an HF PEFT save / load round trip (keys and adapter_config.json).
// And against peft 0.21 itself: tests/core/data/peft_oft_reference.safetensors, written by
// gen_peft_oft_reference.py (peft's forward, its gradient of oft_R, COFT's in-place projection,
// its merged weights) for linear and conv layers in every mode above.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "vkp_nn.h"
#include "vkp_peft.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"

#define NB 3            // linear batch rows
#define IN 12
#define OUT 6
#define CB 2            // conv batch
#define CIN 3
#define COUT 4
#define KS 2
#define IH 5
#define IW 4
#define NCOL (CIN * KS * KS)   // 12
#define MAXY 256
#define MAXP 64

typedef struct oft_case {
  const char *name;
  bool conv;
  int r, block;           // the config's r / oft_block_size
  bool neumann;
  int terms;
  bool share, coft;
  float eps;
  int want_b, want_np;    // geometry peft derives
} oft_case;

static const oft_case cases[] = {
    {"linear, block 4, Neumann 5", false, 0, 4, true, 5, false, false, 6e-5f, 4, 3},
    {"linear, r 3, exact Cayley", false, 3, 0, false, 5, false, false, 6e-5f, 4, 3},
    {"linear, block 6, Neumann 2", false, 0, 6, true, 2, false, false, 6e-5f, 6, 2},
    {"linear, block 3, Neumann 7", false, 0, 3, true, 7, false, false, 6e-5f, 3, 4},
    {"linear, shared block 4, Neumann 3", false, 0, 4, true, 3, true, false, 6e-5f, 4, 1},
    {"linear, block 5 -> 4 (adjusted)", false, 0, 5, true, 5, false, false, 6e-5f, 4, 3},
    {"linear, COFT eps 0.4", false, 0, 4, true, 5, false, true, 0.4f, 4, 3},
    {"linear, COFT shared, exact", false, 0, 4, false, 5, true, true, 0.2f, 4, 1},
    {"conv 2x2, block 6, exact", true, 0, 6, false, 5, false, false, 6e-5f, 6, 2},
    {"conv 2x2, r 3, Neumann 5", true, 3, 0, true, 5, false, false, 6e-5f, 4, 3},
};

// ---- float64 reference -------------------------------------------------------------------------

static void mm(const double *a, const double *b, int n, double *out) {
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      double s = 0;
      for (int k = 0; k < n; k++) s += a[i * n + k] * b[k * n + j];
      out[i * n + j] = s;
    }
}

// Inverse by Gauss-Jordan with partial pivoting on [A | I].
static void inv(const double *a, int n, double *out) {
  double m[2 * 16 * 16];
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
    for (int i = 0; i < n; i++)
      if (i != k) {
        double f = m[i * 2 * n + k];
        for (int j = 0; j < 2 * n; j++) m[i * 2 * n + j] -= f * m[k * 2 * n + j];
      }
  }
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) out[i * n + j] = m[i * 2 * n + n + j];
}

// R (b, b) from one parameter row, peft's formulas.
static void rotation(const oft_case *c, const double *row, int b, double *R) {
  double Q[256] = {0}, P[256], T[256];
  for (int i = 0, e = 0; i < b; i++)
    for (int j = i + 1; j < b; j++, e++) Q[i * b + j] = row[e], Q[j * b + i] = -row[e];
  for (int i = 0; i < b * b; i++) R[i] = i % (b + 1) == 0;
  if (!c->neumann) {
    double A[256], Ai[256], B[256];
    for (int i = 0; i < b * b; i++) A[i] = R[i] + Q[i], B[i] = R[i] - Q[i];
    inv(A, b, Ai);
    mm(B, Ai, b, R);
    return;
  }
  // peft _cayley_batch: R = I; if n > 1: R += 2Q; if n > 2: R += 2Q^2, Q^k for k in 3..n-2 with
  // weight 2, then the next power with weight 1.
  int n = c->terms;
  if (n > 1)
    for (int i = 0; i < b * b; i++) R[i] += 2 * Q[i];
  if (n > 2) {
    mm(Q, Q, b, P);
    for (int i = 0; i < b * b; i++) R[i] += 2 * P[i];
    for (int k = 3; k < n - 1; k++) {
      mm(P, Q, b, T);
      memcpy(P, T, sizeof(double) * (size_t)(b * b));
      for (int i = 0; i < b * b; i++) R[i] += 2 * P[i];
    }
    mm(P, Q, b, T);
    for (int i = 0; i < b * b; i++) R[i] += T[i];
  }
}

// COFT projection of the parameter rows (np, ne), in place.
static void project(const oft_case *c, double *p, int np, int ne) {
  double e = c->eps / sqrt((double)np);
  for (int k = 0; k < np; k++) {
    double nn = 0;
    for (int i = 0; i < ne; i++) nn += 2 * p[k * ne + i] * p[k * ne + i];
    if (sqrt(nn) > e)
      for (int i = 0; i < ne; i++) p[k * ne + i] *= e / sqrt(nn);
  }
}

typedef struct ref_state {
  const oft_case *c;
  int b, np, ne, nblocks;
  double W[OUT * IN], bias[OUT];   // linear (OUT, IN) or conv (COUT, NCOL)
  double p[MAXP];                  // oft_R rows
  double u;                        // user scale
} ref_state;

// y for input x: linear (NB, IN) -> (NB, OUT); conv (CB, CIN, IH, IW), stride 1, pad 1 ->
// (CB, COUT, IH+1, IW+1).
static int ref_forward(const ref_state *s, const double *x, double *y) {
  int b = s->b;
  double R[MAXP / 2][64];
  for (int k = 0; k < s->nblocks; k++) {
    double row[64];
    for (int i = 0; i < s->ne; i++) row[i] = s->u * s->p[(s->np == 1 ? 0 : k) * s->ne + i];
    rotation(s->c, row, b, R[k]);
  }
  if (!s->c->conv) {   // peft's form: rotate the input, then the base layer
    for (int n = 0; n < NB; n++) {
      double xr[IN];
      for (int k = 0; k < s->nblocks; k++)
        for (int j = 0; j < b; j++) {
          double acc = 0;
          for (int i = 0; i < b; i++) acc += x[n * IN + k * b + i] * R[k][i * b + j];
          xr[k * b + j] = acc;
        }
      for (int o = 0; o < OUT; o++) {
        double acc = s->bias[o];
        for (int i = 0; i < IN; i++) acc += xr[i] * s->W[o * IN + i];
        y[n * OUT + o] = acc;
      }
    }
    return NB * OUT;
  }
  double Wr[COUT * NCOL];   // W R_bd^T
  for (int o = 0; o < COUT; o++)
    for (int k = 0; k < s->nblocks; k++)
      for (int j = 0; j < b; j++) {
        double acc = 0;
        for (int i = 0; i < b; i++) acc += s->W[o * NCOL + k * b + i] * R[k][j * b + i];
        Wr[o * NCOL + k * b + j] = acc;
      }
  int oh = IH + 1, ow = IW + 1;
  for (int n = 0; n < CB; n++)
    for (int o = 0; o < COUT; o++)
      for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++) {
          double acc = s->bias[o];
          for (int ci = 0; ci < CIN; ci++)
            for (int ki = 0; ki < KS; ki++)
              for (int kj = 0; kj < KS; kj++) {
                int yy = i + ki - 1, xx = j + kj - 1;
                if (yy < 0 || yy >= IH || xx < 0 || xx >= IW) continue;
                acc += Wr[o * NCOL + (ci * KS + ki) * KS + kj] * x[((n * CIN + ci) * IH + yy) * IW + xx];
              }
          y[((n * COUT + o) * oh + i) * ow + j] = acc;
        }
  return CB * COUT * oh * ow;
}

// ---- device -----------------------------------------------------------------------------------

static vkp_model *make_model(bool conv, vkp_module **mod) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_model *m;
  VKP_ASSERT_OK(ctx, vkp_model_new(ctx, &m));
  if (conv) *mod = vkp_model_add_module(m, "net.conv", NULL, VKP_MODULE_CONV2D, 0, 4, (int64_t[]){COUT, CIN, KS, KS}, COUT);
  else *mod = vkp_model_add_module(m, "lin", NULL, VKP_MODULE_LINEAR, 0, 2, (int64_t[]){OUT, IN}, OUT);
  assert_non_null(*mod);
  vkp_rng r = vkp_rng_new(conv ? 3 : 2);
  float w[OUT * IN], b[OUT];
  int nw = conv ? COUT * NCOL : OUT * IN, no = conv ? COUT : OUT;
  vkp_rng_uniform_fill(&r, w, (size_t)nw, -0.4f, 0.4f);
  vkp_rng_uniform_fill(&r, b, (size_t)no, -0.2f, 0.2f);
  VKP_ASSERT_OK(ctx, vkp_param_write_f32(m, (*mod)->weight, w));
  VKP_ASSERT_OK(ctx, vkp_param_write_f32(m, (*mod)->bias, b));
  return m;
}

static int n_input(bool conv) { return conv ? CB * CIN * IH * IW : NB * IN; }

// Runs the module on x; with wy also the gradient of L = sum(y ⊙ wy) w.r.t. the OFT parameter.
static int run_device(vkp_model *m, vkp_module *mod, vkp_param *p, const float *x, float *y, const float *wy, float *grad) {
  vkp_ctx *ctx = vkp_test_ctx();
  bool conv = mod->kind == VKP_MODULE_CONV2D;
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_model_begin_graph(m, g);
  vkp_tensor *xt = conv ? vkp_tensor_input(g, "x", VKP_DTYPE_F32, 4, (int64_t[]){CB, CIN, IH, IW})
                        : vkp_tensor_input(g, "x", VKP_DTYPE_F32, 2, (int64_t[]){NB, IN});
  vkp_tensor *yt = conv ? vkp_nn_conv2d(m, mod, xt, 1, 1) : vkp_nn_linear(m, mod, xt);
  if (!yt) fail_msg("forward: %s", vkp_graph_error(g));
  vkp_graph_output(g, yt);
  int ny = (int)vkp_tensor_numel(yt);
  vkp_tensor *wt = NULL, *gt = NULL;
  if (wy) {
    wt = vkp_tensor_input(g, "wy", VKP_DTYPE_F32, yt->ndim, yt->shape);
    vkp_tensor *loss = vkp_sum(g, vkp_mul(g, yt, wt));
    vkp_tensor *pt = vkp_param_tensor(m, p);
    VKP_ASSERT_OK(ctx, vkp_graph_backward(g, loss, &pt, 1, &gt));
    if (!gt) fail_msg("no gradient for %s", p->name);
    vkp_graph_output(g, gt);
  }
  if (vkp_graph_compile(g)) fail_msg("compile: %s / %s", vkp_graph_error(g), vkp_ctx_error(ctx));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, xt, x, (uint64_t)n_input(conv) * 4));
  if (wt) VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, wt, wy, (uint64_t)ny * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, yt, y, (uint64_t)ny * 4));
  if (gt) VKP_ASSERT_OK(ctx, vkp_graph_read(g, gt, grad, (uint64_t)vkp_param_numel(p) * 4));
  vkp_graph_free(g);
  return ny;
}

static void load_state(vkp_model *m, vkp_module *mod, vkp_param *p, ref_state *s) {
  float w[OUT * IN], b[OUT], v[MAXP];
  int nw = (int)vkp_param_numel(mod->weight);
  VKP_ASSERT_OK(m->ctx, vkp_param_read_f32(m, mod->weight, w));
  VKP_ASSERT_OK(m->ctx, vkp_param_read_f32(m, mod->bias, b));
  VKP_ASSERT_OK(m->ctx, vkp_param_read_f32(m, p, v));
  for (int i = 0; i < nw; i++) s->W[i] = w[i];
  for (int i = 0; i < (int)mod->out; i++) s->bias[i] = b[i];
  for (int i = 0; i < s->np * s->ne; i++) s->p[i] = v[i];
}

static double max_err(const float *got, const double *want, int n, double *scale) {
  double e = 0;
  *scale = 0;
  for (int i = 0; i < n; i++) e = fmax(e, fabs(got[i] - want[i])), *scale = fmax(*scale, fabs(want[i]));
  return e;
}

static void check_forward(const char *what, vkp_model *m, vkp_module *mod, vkp_param *p, const ref_state *s,
                          const float *x, const double *xd) {
  float y[MAXY];
  double want[MAXY], scale;
  int ny = run_device(m, mod, p, x, y, NULL, NULL);
  assert_int_equal(ref_forward(s, xd, want), ny);
  double e = max_err(y, want, ny, &scale);
  printf("  %-36s %-26s max err %.2e (scale %.2f)\n", s->c->name, what, e, scale);
  if (!(e <= 2e-6 * fmax(scale, 1))) fail_msg("%s %s: forward error %.3e", s->c->name, what, e);
}

static void run_case(const oft_case *c) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_module *mod;
  vkp_model *m = make_model(c->conv, &mod);
  vkp_peft_config cfg;
  vkp_peft_config_init(&cfg, VKP_PEFT_OFT);
  cfg.r = c->r, cfg.oft_block_size = c->block, cfg.use_cayley_neumann = c->neumann;
  cfg.num_cayley_neumann_terms = c->terms, cfg.block_share = c->share, cfg.coft = c->coft, cfg.eps = c->eps;
  cfg.init_weights = true;
  cfg.target_modules[cfg.n_target_modules++] = strdup(c->conv ? "conv" : "lin");
  vkp_adapter *a;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &cfg, 5, &a));
  vkp_peft_config_clear(&cfg);
  char pname[64];
  snprintf(pname, sizeof pname, "%s.oft_R.weight", c->conv ? "net.conv" : "lin");
  vkp_param *p = vkp_model_find_param(m, pname);
  if (!p) fail_msg("%s: no parameter %s", c->name, pname);
  ref_state s = {.c = c, .b = c->want_b, .np = c->want_np, .ne = c->want_b * (c->want_b - 1) / 2,
                 .nblocks = (c->conv ? NCOL : IN) / c->want_b, .u = 1};
  // peft's layout: (blocks or 1, b(b-1)/2), zeros at init (R = I).
  assert_int_equal(p->ndim, 2);
  assert_int_equal(p->shape[0], s.np);
  assert_int_equal(p->shape[1], s.ne);
  assert_true(p->trainable);
  int nx = n_input(c->conv);
  float x[CB * CIN * IH * IW];
  double xd[CB * CIN * IH * IW];
  vkp_rng r = vkp_rng_new(19);
  vkp_rng_uniform_fill(&r, x, (size_t)nx, -1, 1);
  for (int i = 0; i < nx; i++) xd[i] = x[i];
  load_state(m, mod, p, &s);
  check_forward("at init (identity)", m, mod, p, &s, x, xd);
  // Random rotation parameters (one COFT row small enough to stay inside the sphere).
  float v[MAXP];
  vkp_rng_uniform_fill(&r, v, (size_t)(s.np * s.ne), -0.3f, 0.3f);
  if (c->coft && s.np > 1)
    for (int i = 0; i < s.ne; i++) v[i] *= 0.01f;
  VKP_ASSERT_OK(ctx, vkp_param_write_f32(m, p, v));
  load_state(m, mod, p, &s);
  if (c->coft) project(c, s.p, s.np, s.ne);   // what the forward pass uses
  check_forward("perturbed", m, mod, p, &s, x, xd);
  if (c->coft) {   // the parameter itself now holds the projected rows (peft: weight.copy_)
    float now[MAXP];
    VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, p, now));
    double e = 0, moved = 0;
    for (int i = 0; i < s.np * s.ne; i++) e = fmax(e, fabs(now[i] - s.p[i])), moved = fmax(moved, fabs(now[i] - v[i]));
    printf("  %-36s parameter projected in place: err %.2e (moved %.2e)\n", c->name, e, moved);
    if (!(e <= 1e-6) || !(moved > 1e-3)) fail_msg("%s: COFT projection of the parameter wrong (%.3e, %.3e)", c->name, e, moved);
  }
  // Gradients of every parameter entry vs central differences (at the parameter's current value;
  // COFT differentiates at the projected point, where the projection is the identity to first order
  // only for rows inside the sphere, so the reference skips the projection, as peft's no_grad does).
  float wy[MAXY], y[MAXY], grad[MAXP];
  vkp_rng_uniform_fill(&r, wy, MAXY, -1, 1);
  int ny = run_device(m, mod, p, x, y, wy, grad);
  load_state(m, mod, p, &s);
  oft_case nocoft = *c;
  nocoft.coft = false;
  ref_state sf = s;
  sf.c = &nocoft;
  double yp[MAXY], ym[MAXY], worst = 0, scale = 0;
  int worst_i = 0;
  const double h = 1e-5;
  double fd[MAXP];
  for (int i = 0; i < s.np * s.ne; i++) {
    double keep = sf.p[i];
    sf.p[i] = keep + h;
    ref_forward(&sf, xd, yp);
    sf.p[i] = keep - h;
    ref_forward(&sf, xd, ym);
    sf.p[i] = keep;
    double acc = 0;
    for (int q = 0; q < ny; q++) acc += (yp[q] - ym[q]) * wy[q];
    fd[i] = acc / (2 * h);
    scale = fmax(scale, fabs(fd[i]));
  }
  for (int i = 0; i < s.np * s.ne; i++)
    if (fabs(grad[i] - fd[i]) > worst) worst = fabs(grad[i] - fd[i]), worst_i = i;
  printf("  %-36s grad oft_R %3d entries         max err %.2e (scale %.2f)\n", c->name, s.np * s.ne, worst, scale);
  if (!(worst <= 1e-4 * fmax(scale, 1)))
    fail_msg("%s: gradient [%d] = %.6g, finite differences %.6g", c->name, worst_i, grad[worst_i], fd[worst_i]);
  // Merge == unmerged forward; unmerge restores W.
  float y1[MAXY], y2[MAXY], w0[OUT * IN], w1[OUT * IN];
  int nw = (int)vkp_param_numel(mod->weight);
  VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, mod->weight, w0));
  run_device(m, mod, p, x, y1, NULL, NULL);
  VKP_ASSERT_OK(ctx, vkp_adapter_merge(m, a));
  run_device(m, mod, p, x, y2, NULL, NULL);
  VKP_ASSERT_OK(ctx, vkp_adapter_unmerge(m, a));
  VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, mod->weight, w1));
  double em = 0, ew = 0, sy = 0;
  for (int i = 0; i < ny; i++) em = fmax(em, fabs(y2[i] - y1[i])), sy = fmax(sy, fabs(y1[i]));
  for (int i = 0; i < nw; i++) ew = fmax(ew, fabs(w1[i] - w0[i]));
  printf("  %-36s merged vs unmerged %.2e; unmerge restores W to %.2e\n", c->name, em, ew);
  if (!(em <= 1e-5 * fmax(sy, 1))) fail_msg("%s: merged output differs by %.3e", c->name, em);
  if (!(ew <= 1e-6)) fail_msg("%s: unmerge leaves W off by %.3e", c->name, ew);
  // A user scale u rotates by the Cayley transform of u·Q (0: the base layer).
  vkp_adapter_set_scale(a, 0.5f);
  s.u = 0.5;
  load_state(m, mod, p, &s);
  check_forward("user scale 0.5", m, mod, p, &s, x, xd);
  VKP_ASSERT_OK(ctx, vkp_adapter_merge(m, a));
  run_device(m, mod, p, x, y2, NULL, NULL);
  double want[MAXY], sc;
  ref_forward(&s, xd, want);
  double e = max_err(y2, want, ny, &sc);
  if (!(e <= 1e-5 * fmax(sc, 1))) fail_msg("%s: merged at scale 0.5 differs by %.3e", c->name, e);
  vkp_adapter_set_scale(a, 1.0f);
  VKP_ASSERT_OK(ctx, vkp_adapter_unmerge(m, a));
  vkp_adapter_set_scale(a, 0.0f);
  s.u = 0;
  check_forward("user scale 0 == base", m, mod, p, &s, x, xd);
  vkp_model_free(m);
}

static void test_oft_cases(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(&cases[i]);
}

// ---- files ---------------------------------------------------------------------------------------

static void test_oft_save_load(void **state) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_module *mod;
  vkp_model *m = make_model(false, &mod);
  vkp_peft_config cfg;
  vkp_peft_config_init(&cfg, VKP_PEFT_OFT);
  cfg.oft_block_size = 4, cfg.coft = true, cfg.eps = 0.5f, cfg.init_weights = false, cfg.module_dropout = 0.1f;
  cfg.target_modules[cfg.n_target_modules++] = strdup("lin");
  vkp_adapter *a;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &cfg, 9, &a));
  vkp_peft_config_clear(&cfg);
  char dir[300], path[400];
  vkp_test_dir_path(state, "oft", dir, sizeof dir);
  VKP_ASSERT_OK(ctx, vkp_peft_save(m, a, dir));
  // peft's key (adapter name removed from oft_R.<name>.weight) and config keys.
  snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
  vkp_safetensors *sf;
  vkp_error err = {0};
  if (vkp_safetensors_open(path, &sf, &err)) fail_msg("%s", err.msg);
  const vkp_st_tensor *t = vkp_safetensors_find(sf, "base_model.model.lin.oft_R.weight");
  assert_non_null(t);
  assert_int_equal(t->ndim, 2);
  assert_int_equal(t->shape[0], 3);
  assert_int_equal(t->shape[1], 6);
  assert_int_equal(vkp_safetensors_count(sf), 1);
  vkp_safetensors_free(sf);
  snprintf(path, sizeof path, "%s/adapter_config.json", dir);
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  char text[4096];
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = 0;
  cJSON *j = cJSON_Parse(text);
  assert_non_null(j);
  assert_string_equal(cJSON_GetObjectItem(j, "peft_type")->valuestring, "OFT");
  assert_int_equal(cJSON_GetObjectItem(j, "r")->valueint, 0);
  assert_int_equal(cJSON_GetObjectItem(j, "oft_block_size")->valueint, 4);
  assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "coft")));
  assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "use_cayley_neumann")));
  assert_int_equal(cJSON_GetObjectItem(j, "num_cayley_neumann_terms")->valueint, 5);
  assert_true(fabs(cJSON_GetObjectItem(j, "module_dropout")->valuedouble - 0.1) < 1e-6);
  cJSON_Delete(j);
  // Load into a fresh copy of the base: same outputs.
  float x[NB * IN], ya[MAXY], yb[MAXY];
  vkp_rng r = vkp_rng_new(4);
  vkp_rng_uniform_fill(&r, x, NB * IN, -1, 1);
  vkp_param *pa = vkp_model_find_param(m, "lin.oft_R.weight");
  run_device(m, mod, pa, x, ya, NULL, NULL);
  vkp_module *mod2;
  vkp_model *m2 = make_model(false, &mod2);
  vkp_adapter *b;
  VKP_ASSERT_OK(ctx, vkp_peft_load(m2, dir, &b));
  const vkp_peft_config *cb = vkp_adapter_config(b);
  assert_int_equal(cb->method, VKP_PEFT_OFT);
  assert_true(cb->coft);
  assert_int_equal(cb->oft_block_size, 4);
  run_device(m2, mod2, vkp_model_find_param(m2, "lin.oft_R.weight"), x, yb, NULL, NULL);
  vkp_assert_close_f("OFT after save/load", yb, ya, NB * OUT, 1e-6, 1e-7);
  printf("  OFT save/load: key base_model.model.lin.oft_R.weight (3, 6), peft_type OFT, outputs equal\n");
  vkp_model_free(m2);
  vkp_model_free(m);
}

// Config checks: exactly one of r and oft_block_size; the exact Cayley transform's block limit.
static void test_oft_config_errors(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_module *mod;
  vkp_model *m = make_model(false, &mod);
  vkp_peft_config cfg;
  vkp_peft_config_init(&cfg, VKP_PEFT_OFT);
  assert_int_equal(cfg.r, 0);
  assert_int_equal(cfg.oft_block_size, 32);   // peft's defaults
  assert_true(cfg.use_cayley_neumann);
  assert_int_equal(cfg.num_cayley_neumann_terms, 5);
  assert_true(fabsf(cfg.eps - 6e-5f) < 1e-9f);
  cfg.r = 4;   // both set
  cfg.target_modules[cfg.n_target_modules++] = strdup("lin");
  vkp_adapter *a;
  assert_int_equal(vkp_peft_attach(m, &cfg, 1, &a), VKP_ERR_INVALID);
  printf("  r 4 + oft_block_size 32: %s\n", vkp_ctx_error(ctx));
  assert_non_null(strstr(vkp_ctx_error(ctx), "exactly one of 'r' and 'oft_block_size'"));
  cfg.r = 0, cfg.oft_block_size = 0;   // neither
  assert_int_equal(vkp_peft_attach(m, &cfg, 1, &a), VKP_ERR_INVALID);
  // oft_block_size 32 > in 12: peft moves it to 12 (one block).
  cfg.oft_block_size = 32;
  VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &cfg, 1, &a));
  vkp_param *p = vkp_model_find_param(m, "lin.oft_R.weight");
  assert_int_equal(p->shape[0], 1);
  assert_int_equal(p->shape[1], 66);
  vkp_peft_config_clear(&cfg);
  vkp_model_free(m);
}

// ---- peft's own numbers ----------------------------------------------------------------------------

static const vkp_st_tensor *need(const vkp_safetensors *sf, const char *c, const char *what) {
  char key[200];
  snprintf(key, sizeof key, "%s.%s", c, what);
  const vkp_st_tensor *t = vkp_safetensors_find(sf, key);
  if (!t) fail_msg("reference: no tensor %s", key);
  return t;
}

static const float *f32(const vkp_st_tensor *t) { return (const float *)t->data; }

static double rel(const float *got, const float *want, size_t n) {
  double e = 0, s = 0;
  for (size_t i = 0; i < n; i++) e = fmax(e, fabs((double)got[i] - want[i])), s = fmax(s, fabs(want[i]));
  return e / fmax(s, 1e-30);
}

static void test_oft_matches_peft(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_error err = {0};
  vkp_safetensors *sf = NULL;
  char path[600];
  snprintf(path, sizeof path, "%s/tests/core/data/peft_oft_reference.safetensors", VKP_SOURCE_DIR);
  if (vkp_safetensors_open(path, &sf, &err)) fail_msg("%s", err.msg);
  cJSON *meta = cJSON_Parse(vkp_safetensors_metadata(sf, "json"));
  assert_non_null(meta);
  printf("  reference: peft %s, torch %s\n", cJSON_GetObjectItem(meta, "peft_version")->valuestring,
         cJSON_GetObjectItem(meta, "torch_version")->valuestring);
  const cJSON *c;
  cJSON_ArrayForEach(c, cJSON_GetObjectItem(meta, "cases")) {
    const char *name = c->string, *layer = cJSON_GetObjectItem(c, "layer")->valuestring;
    bool conv = !strcmp(layer, "conv");
    const vkp_st_tensor *w = need(sf, name, "weight"), *b = need(sf, name, "bias"), *p0 = need(sf, name, "oft_R"),
                        *x = need(sf, name, "x"), *wy = need(sf, name, "wy"), *y = need(sf, name, "y"),
                        *grad = need(sf, name, "grad"), *after = need(sf, name, "oft_R_after"),
                        *ym = need(sf, name, "y_merged"), *wm = need(sf, name, "weight_merged");
    // The model: the same layer and weights; conv padding = (output size - input size + k - 1) / 2.
    vkp_model *m;
    VKP_ASSERT_OK(ctx, vkp_model_new(ctx, &m));
    int pad = 0;
    vkp_module *mod = conv ? vkp_model_add_module(m, "conv", NULL, VKP_MODULE_CONV2D, 0, 4, w->shape, w->shape[0])
                           : vkp_model_add_module(m, "lin", NULL, VKP_MODULE_LINEAR, 0, 2, w->shape, w->shape[0]);
    if (conv) pad = (int)(y->shape[2] - x->shape[2] + w->shape[2] - 1) / 2;
    VKP_ASSERT_OK(ctx, vkp_param_write_f32(m, mod->weight, f32(w)));
    VKP_ASSERT_OK(ctx, vkp_param_write_f32(m, mod->bias, f32(b)));
    // The adapter from peft's config keys, through adapter_config.json parsing.
    cJSON *j = cJSON_Duplicate(cJSON_GetObjectItem(c, "config"), true);
    cJSON_AddStringToObject(j, "peft_type", "OFT");
    cJSON_AddItemToObject(j, "target_modules", cJSON_CreateStringArray((const char *[]){layer}, 1));
    cJSON_AddBoolToObject(j, "init_weights", false);
    vkp_peft_config cfg;
    if (vkp_peft_config_from_json(j, name, &cfg, &err)) fail_msg("%s", err.msg);
    cJSON_Delete(j);
    vkp_adapter *a;
    VKP_ASSERT_OK(ctx, vkp_peft_attach(m, &cfg, 1, &a));
    vkp_peft_config_clear(&cfg);
    char pname[64];
    snprintf(pname, sizeof pname, "%s.oft_R.weight", layer);
    vkp_param *p = vkp_model_find_param(m, pname);
    assert_non_null(p);
    assert_int_equal(p->ndim, 2);   // peft's layout, after its adjustment of r / oft_block_size
    assert_int_equal(p->shape[0], p0->shape[0]);
    assert_int_equal(p->shape[1], p0->shape[1]);
    VKP_ASSERT_OK(ctx, vkp_param_write_f32(m, p, f32(p0)));
    // Forward + gradient. peft's unmerged conv forward folds overlapping patches back by summing
    // them (not its merged map): where patches overlap vkpeft matches peft's merged output.
    int64_t ny = (int64_t)vkp_st_tensor_numel(y);
    bool overlap = conv && vkp_st_tensor_numel(ym) && rel(f32(y), f32(ym), (size_t)ny) > 1e-4;
    float *got = malloc((size_t)ny * 4), *g = malloc(vkp_st_tensor_numel(grad) * 4), *now = malloc(vkp_st_tensor_numel(after) * 4);
    vkp_graph *gr;
    VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &gr));
    vkp_model_begin_graph(m, gr);
    vkp_tensor *xt = vkp_tensor_input(gr, "x", VKP_DTYPE_F32, x->ndim, x->shape);
    vkp_tensor *yt = conv ? vkp_nn_conv2d(m, mod, xt, 1, pad) : vkp_nn_linear(m, mod, xt);
    vkp_tensor *wt = vkp_tensor_input(gr, "wy", VKP_DTYPE_F32, wy->ndim, wy->shape), *gt = NULL, *pt = vkp_param_tensor(m, p);
    vkp_graph_output(gr, yt);
    VKP_ASSERT_OK(ctx, vkp_graph_backward(gr, vkp_sum(gr, vkp_mul(gr, yt, wt)), &pt, 1, &gt));
    vkp_graph_output(gr, gt);
    if (vkp_graph_compile(gr)) fail_msg("%s: %s / %s", name, vkp_graph_error(gr), vkp_ctx_error(ctx));
    VKP_ASSERT_OK(ctx, vkp_graph_set_input(gr, xt, x->data, vkp_st_tensor_numel(x) * 4));
    VKP_ASSERT_OK(ctx, vkp_graph_set_input(gr, wt, wy->data, vkp_st_tensor_numel(wy) * 4));
    VKP_ASSERT_OK(ctx, vkp_graph_run(gr));
    VKP_ASSERT_OK(ctx, vkp_graph_read(gr, yt, got, (uint64_t)ny * 4));
    VKP_ASSERT_OK(ctx, vkp_graph_read(gr, gt, g, vkp_st_tensor_numel(grad) * 4));
    vkp_graph_free(gr);
    VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, p, now));
    double ey = rel(got, f32(overlap ? ym : y), (size_t)ny), eg = rel(g, f32(grad), vkp_st_tensor_numel(grad)),
           ep = rel(now, f32(after), vkp_st_tensor_numel(after));
    // Merge: peft's merged weight.
    VKP_ASSERT_OK(ctx, vkp_adapter_merge(m, a));
    float *wmg = malloc(vkp_st_tensor_numel(wm) * 4);
    VKP_ASSERT_OK(ctx, vkp_param_read_f32(m, mod->weight, wmg));
    double ew = rel(wmg, f32(wm), vkp_st_tensor_numel(wm));
    // (Where patches overlap peft's gradient is that of its fold-sum forward: not compared.)
    printf("  %-26s oft_R %lld x %lld: y rel %.1e%s, grad rel %.1e%s, oft_R after %.1e, merged W rel %.1e\n", name,
           (long long)p->shape[0], (long long)p->shape[1], ey, overlap ? " (vs peft's merged form)" : "", eg,
           overlap ? " (not compared)" : "", ep, ew);
    if (!(ey < 1e-5)) fail_msg("%s: output differs from peft (rel %.3e)", name, ey);
    if (!overlap && !(eg < 1e-4)) fail_msg("%s: gradient differs from peft (rel %.3e)", name, eg);
    if (!(ep < 1e-6)) fail_msg("%s: oft_R after the forward differs from peft (rel %.3e)", name, ep);
    if (!(ew < 1e-5)) fail_msg("%s: merged weight differs from peft (rel %.3e)", name, ew);
    free(got), free(g), free(now), free(wmg);
    vkp_model_free(m);
  }
  cJSON_Delete(meta);
  vkp_safetensors_free(sf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_oft_cases),
      cmocka_unit_test_setup_teardown(test_oft_save_load, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test(test_oft_config_errors),
      cmocka_unit_test(test_oft_matches_peft),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
