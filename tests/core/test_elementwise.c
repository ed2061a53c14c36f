// test_elementwise.c — binary (broadcasting), unary activations, views, concat, reductions, fill,
// accumulate/assign: forward vs float64 references, backward vs finite differences. The cases
// reach every kernel path: 1-D and 4-D loops on vec4s (with the n % 4 tail and operands broadcast
// along the last dim) and on scalars (odd sizes, misaligned or strided views), permutes with and
// without unit-stride rows, column/row/full reductions in 1-3 passes, and a dispatch of more than
// 65535 workgroups.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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
      // vec4 fast paths (push/elementwise.h): bias rows, a column / row broadcast along the last
      // dim, carries over 4 dims, several workgroups, a scalar operand, a long 1-D loop with tail
      {0, {37, 12}, {12}, {37, 12}, 2, 1, 2},
      {2, {9, 16}, {9, 1}, {9, 16}, 2, 2, 2},
      {1, {9, 1}, {9, 8}, {9, 8}, 2, 2, 2},
      {0, {3, 5, 1, 8}, {5, 6, 8}, {3, 5, 6, 8}, 4, 3, 4},
      {3, {70, 300}, {300}, {70, 300}, 2, 1, 2},
      {2, {1}, {13, 9}, {13, 9}, 1, 2, 2},
      {0, {251, 1001}, {251, 1001}, {251, 1001}, 2, 2, 2},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    bin_case *bc = &cases[k];
    char name[64];
    snprintf(name, sizeof name, "binary case %zu", k);
    vkp_op_check c = {.name = name, .n_inputs = 2, .build = build_binary, .ref = ref_binary, .user = bc,
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

// ---- binary and unary on views: strided and misaligned operands (scalar paths) -------------
// x, y (6, 13). Each operand is a 2-D view (R, C) of its input: element (r, c) at
// off + r * s0 + c * s1; the kernels see odd offsets (4-byte aligned only) or non-unit strides.
typedef struct view2 {
  int64_t off, s0, s1;
} view2;
typedef struct view_case {
  int kind;   // 0: a = x[:, 1:13] (offset 1) + y[:, 0:12]; 1: rows 1..4 of x (offset 13) * rows 2..5
              // of y (contiguous, misaligned); 2: x^T (13, 6) - y viewed (13, 6); 3: scale(rows 1..4
              // of x); 4: gelu(rows 1..4 of x)
  int64_t R, C;
  view2 a, b;
} view_case;

static vkp_tensor *build_view_op(vkp_graph *g, vkp_tensor **in, void *user) {
  view_case *c = user;
  switch (c->kind) {
    case 0: return vkp_add(g, vkp_slice(g, in[0], 1, 1, 12), vkp_slice(g, in[1], 1, 0, 12));
    case 1: return vkp_mul(g, vkp_slice(g, in[0], 0, 1, 4), vkp_slice(g, in[1], 0, 2, 4));
    case 2: return vkp_sub(g, vkp_transpose(g, in[0], 0, 1), vkp_reshape(g, in[1], 2, (int64_t[]){13, 6}));
    case 3: return vkp_scale(g, vkp_slice(g, in[0], 0, 1, 4), -1.5f);
    default: return vkp_gelu(g, vkp_slice(g, in[0], 0, 1, 4));
  }
}

static void ref_view_op(const double *const *in, double *out, void *user) {
  view_case *c = user;
  for (int64_t r = 0; r < c->R; r++)
    for (int64_t k = 0; k < c->C; k++) {
      double x = in[0][c->a.off + r * c->a.s0 + k * c->a.s1];
      double y = c->kind <= 2 ? in[1][c->b.off + r * c->b.s0 + k * c->b.s1] : 0;
      double v = c->kind == 0 ? x + y : c->kind == 1 ? x * y : c->kind == 2 ? x - y : c->kind == 3 ? -1.5 * x
                                                                                  : r_gelu(x);
      out[r * c->C + k] = v;
    }
}

static void test_views_misaligned(void **state) {
  (void)state;
  view_case cases[] = {
      {0, 6, 12, {1, 13, 1}, {0, 13, 1}},
      {1, 4, 13, {13, 13, 1}, {26, 13, 1}},
      {2, 13, 6, {0, 1, 13}, {0, 6, 1}},
      {3, 4, 13, {13, 13, 1}, {0, 0, 0}},
      {4, 4, 13, {13, 13, 1}, {0, 0, 0}},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    char name[64];
    snprintf(name, sizeof name, "view op %d", cases[k].kind);
    vkp_op_check c = {.name = name, .n_inputs = 2, .build = build_view_op, .ref = ref_view_op, .user = &cases[k],
                      .fwd_rtol = 2e-6, .fwd_atol = 1e-6, .grad_rtol = 1e-3, .grad_atol = 1e-4, .seed = 40 + k};
    for (int i = 0; i < 2; i++)
      c.in[i] = (vkp_check_input){.ndim = 2, .shape = {6, 13}, .dtype = VKP_DTYPE_F32, .trainable = true,
                                  .lo = -2, .hi = 2};
    if (cases[k].kind >= 3) c.in[1].trainable = false;   // unused
    vkp_op_check_run(&c);
  }
}

// Unary on a long odd-sized tensor: several workgroups on vec4s plus the n % 4 tail.
static void test_unary_long(void **state) {
  (void)state;
  un_case cases[] = {{"gelu long", vkp_gelu, r_gelu, -5, 5}, {"silu long", vkp_silu, r_silu, -6, 6}};
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    g_unary_n = 3 * 10001;
    vkp_op_check c = {.name = cases[k].name, .n_inputs = 1, .build = build_unary, .ref = ref_unary,
                      .user = &cases[k], .fwd_rtol = 2e-6, .fwd_atol = 1e-6, .grad_rtol = 2e-3,
                      .grad_atol = 1e-4, .fd_samples = 64, .seed = 200 + k};
    c.in[0] = (vkp_check_input){.ndim = 2, .shape = {3, 10001}, .dtype = VKP_DTYPE_F32, .trainable = true,
                                .lo = cases[k].lo, .hi = cases[k].hi};
    vkp_op_check_run(&c);
  }
}

// ---- permutes (contiguous copies) -----------------------------------------------------------
typedef struct perm_case {
  int ndim;
  int64_t shape[4];
  int perm[4];
} perm_case;

static vkp_tensor *build_perm(vkp_graph *g, vkp_tensor **in, void *user) {
  perm_case *c = user;
  // contiguous() of the permuted view, then a reshape that needs the copy.
  vkp_tensor *p = vkp_contiguous(g, vkp_permute(g, in[0], c->perm));
  return vkp_reshape(g, p, 1, (int64_t[]){-1});
}

static void ref_perm(const double *const *in, double *out, void *user) {
  perm_case *c = user;
  int64_t st[4], os[4], n = 1;
  for (int d = c->ndim - 1; d >= 0; d--) st[d] = n, n *= c->shape[d];
  for (int d = 0; d < c->ndim; d++) os[d] = c->shape[c->perm[d]];
  for (int64_t i = 0; i < n; i++) {
    int64_t r = i, off = 0;
    for (int d = c->ndim - 1; d >= 0; d--) {
      off += (r % os[d]) * st[c->perm[d]];
      r /= os[d];
    }
    out[i] = in[0][off];
  }
}

static void test_permute_copies(void **state) {
  (void)state;
  perm_case cases[] = {
      {4, {2, 5, 3, 8}, {0, 2, 1, 3}},      // (B,T,H,D) -> (B,H,T,D), D % 4 == 0: vec4 with carries
      {4, {2, 3, 5, 8}, {0, 2, 1, 3}},      // and back
      {4, {2, 5, 3, 7}, {0, 2, 1, 3}},      // odd D: scalar
      {4, {64, 50, 4, 16}, {0, 2, 1, 3}},   // the demo ViT's heads: many workgroups
      {3, {6, 64, 49}, {0, 2, 1}},          // patch embedding transpose: unit stride nowhere
      {4, {3, 4, 5, 6}, {3, 1, 2, 0}},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    char name[64];
    snprintf(name, sizeof name, "permute case %zu", k);
    vkp_op_check c = {.name = name, .n_inputs = 1, .build = build_perm, .ref = ref_perm, .user = &cases[k],
                      .fwd_rtol = 0, .fwd_atol = 0, .grad_rtol = 1e-4, .grad_atol = 1e-5, .seed = 60 + k};
    c.in[0] = (vkp_check_input){.ndim = cases[k].ndim, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -1, .hi = 1};
    memcpy(c.in[0].shape, cases[k].shape, sizeof cases[k].shape);
    vkp_op_check_run(&c);
  }
}

// Concat along dim 1 of (3, 4, 8) and (3, 5, 8): both parts on vec4s (aligned rows).
static vkp_tensor *build_concat8(vkp_graph *g, vkp_tensor **in, void *user) {
  (void)user;
  return vkp_concat(g, in[0], in[1], 1);
}
static void ref_concat8(const double *const *in, double *out, void *user) {
  (void)user;
  int64_t o = 0;
  for (int a = 0; a < 3; a++) {
    for (int k = 0; k < 4 * 8; k++) out[o++] = in[0][a * 32 + k];
    for (int k = 0; k < 5 * 8; k++) out[o++] = in[1][a * 40 + k];
  }
}

static void test_concat_aligned(void **state) {
  (void)state;
  vkp_op_check c = {.name = "concat aligned", .n_inputs = 2, .build = build_concat8, .ref = ref_concat8,
                    .fwd_rtol = 0, .fwd_atol = 0, .grad_rtol = 1e-4, .grad_atol = 1e-5};
  c.in[0] = (vkp_check_input){.ndim = 3, .shape = {3, 4, 8}, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -1, .hi = 1};
  c.in[1] = (vkp_check_input){.ndim = 3, .shape = {3, 5, 8}, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -1, .hi = 1};
  vkp_op_check_run(&c);
}

// ---- reductions: every layout and pass count ------------------------------------------------
typedef struct red_case {
  const char *what;
  int ndim;
  int64_t shape[4];
  int64_t out[4];   // kept dims (1 where summed), same ndim
  int mode;         // 0 sum_to(out), 1 mean (all), 2 sum_axis(-1), 3 sum_axis(-1) of permute (2,0,3,1)
  int fd_samples;
} red_case;

static vkp_tensor *build_red(vkp_graph *g, vkp_tensor **in, void *user) {
  red_case *c = user;
  switch (c->mode) {
    case 0: return vkp_sum_to(g, in[0], c->ndim, c->out);
    case 1: return vkp_mean(g, in[0]);
    case 2: return vkp_sum_axis(g, in[0], -1);
    default: return vkp_sum_axis(g, vkp_permute(g, in[0], (int[]){2, 0, 3, 1}), -1);
  }
}

static void ref_red(const double *const *in, double *out, void *user) {
  red_case *c = user;
  int64_t shape[4], out_shape[4], n = 1, n_out = 1;
  int nd = c->ndim;
  int perm[4] = {0, 1, 2, 3};
  if (c->mode == 3) perm[0] = 2, perm[1] = 0, perm[2] = 3, perm[3] = 1;
  int64_t st[4], acc = 1;   // strides of the input in its own layout
  for (int d = nd - 1; d >= 0; d--) st[d] = acc, acc *= c->shape[d];
  for (int d = 0; d < nd; d++) shape[d] = c->shape[perm[d]];
  for (int d = 0; d < nd; d++) {
    out_shape[d] = c->mode == 1 ? 1 : c->mode >= 2 ? (d == nd - 1 ? 1 : shape[d]) : c->out[d];
    n *= shape[d];
    n_out *= out_shape[d];
  }
  for (int64_t o = 0; o < n_out; o++) out[o] = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t r = i, o = 0, ostride = 1, off = 0;
    for (int d = nd - 1; d >= 0; d--) {
      int64_t cd = r % shape[d];
      r /= shape[d];
      off += cd * st[perm[d]];
      if (out_shape[d] != 1) o += cd * ostride;
      ostride *= out_shape[d];
    }
    out[o] += in[0][off];
  }
  if (c->mode == 1)
    for (int64_t o = 0; o < n_out; o++) out[o] /= (double)n;
}

static void test_reduce_paths(void **state) {
  (void)state;
  red_case cases[] = {
      {"column sum, vec4, 2 passes", 2, {3000, 12}, {1, 12}, 0, 0},
      {"column sum, scalar, 2 passes", 2, {5000, 3}, {1, 3}, 0, 0},
      {"column sum, vec4, 3 passes", 2, {70000, 4}, {1, 4}, 0, 16},
      {"row sums, subgroup per row", 2, {40, 300}, {40, 1}, 2, 0},
      {"short row sums, invocation per row", 2, {7, 50}, {7, 1}, 2, 0},
      {"sum of all, 2 passes", 2, {3, 50000}, {1, 1}, 0, 16},
      {"mean of all, 3 passes", 1, {1100000}, {1}, 1, 8},
      {"channel sum (R, K, R), rows", 3, {6, 8, 70}, {1, 8, 1}, 0, 0},
      {"channel sum (R, K, R), short", 3, {6, 8, 7}, {1, 8, 1}, 0, 0},
      {"channel sum, rows shorter than a subgroup", 3, {40, 8, 7}, {1, 8, 1}, 0, 0},
      {"keep (K, K) reduce (R, R), rows", 4, {3, 20, 4, 30}, {3, 1, 4, 1}, 0, 0},
      {"keep (K, R, K), vec4", 3, {3, 33, 8}, {3, 1, 8}, 0, 0},
      {"permuted view (copied first)", 4, {2, 3, 4, 5}, {0}, 3, 0},
      // 4194305 outputs, one invocation each: 65537 workgroups, folded into a 2-D dispatch
      {"> 65535 workgroups", 2, {2, 4194305}, {1, 4194305}, 0, 8},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    red_case *rc = &cases[k];
    vkp_op_check c = {.name = rc->what, .n_inputs = 1, .build = build_red, .ref = ref_red, .user = rc,
                      .fwd_rtol = 1e-5, .fwd_atol = 1e-5, .grad_rtol = 1e-3, .grad_atol = 1e-6,
                      .fd_samples = rc->fd_samples, .seed = 80 + k};
    c.in[0] = (vkp_check_input){.ndim = rc->ndim, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -1, .hi = 1};
    memcpy(c.in[0].shape, rc->shape, sizeof rc->shape);
    vkp_op_check_run(&c);
  }
}

// ---- fill, accumulate, assign ---------------------------------------------------------------
static vkp_tensor *build_fill(vkp_graph *g, vkp_tensor **in, void *user) {
  return vkp_add(g, in[0], vkp_fill(g, VKP_DTYPE_F32, 2, (const int64_t *)user, 2.5f));
}
static int64_t g_fill_n;
static void ref_fill(const double *const *in, double *out, void *user) {
  (void)user;
  for (int64_t i = 0; i < g_fill_n; i++) out[i] = in[0][i] + 2.5;
}

static void test_fill(void **state) {
  (void)state;
  int64_t shapes[][2] = {{5, 7}, {3, 1001}, {64, 257}};
  for (size_t k = 0; k < 3; k++) {
    g_fill_n = shapes[k][0] * shapes[k][1];
    vkp_op_check c = {.name = "fill", .n_inputs = 1, .build = build_fill, .ref = ref_fill, .user = shapes[k],
                      .fwd_rtol = 0, .fwd_atol = 1e-6, .seed = 300 + k};
    c.in[0] = (vkp_check_input){.ndim = 2, .dtype = VKP_DTYPE_F32, .lo = -1, .hi = 1};
    memcpy(c.in[0].shape, shapes[k], sizeof shapes[k]);
    vkp_op_check_run(&c);
  }
}

// accumulate into externals at a 16-byte aligned and a 4-byte aligned offset (vec4 and scalar
// paths), assign into a strided view of an external.
static void test_inplace(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  enum { R = 7, C = 37, N = R * C };
  vkp_rng rng = vkp_rng_new(7);
  float base[N + 1], add[N], got[N + 1];
  vkp_rng_uniform_fill(&rng, base, N + 1, -1, 1);
  vkp_rng_uniform_fill(&rng, add, N, -1, 1);
  for (int off = 0; off <= 1; off++) {
    vkp_buffer *buf = NULL;
    vkp_graph *g = NULL;
    VKP_ASSERT_OK(ctx, vkp_buffer_new(ctx, 4 * (N + 1), &buf));
    VKP_ASSERT_OK(ctx, vkp_buffer_write(buf, 0, base, 4 * (N + 1)));
    VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
    vkp_tensor *dst = vkp_tensor_external(g, "dst", buf, 4 * (uint64_t)off, VKP_DTYPE_F32, 2, (int64_t[]){R, C});
    vkp_tensor *src = vkp_tensor_input(g, "src", VKP_DTYPE_F32, 2, (int64_t[]){R, C});
    vkp_graph_expand(g, vkp_accumulate(g, dst, vkp_scale(g, src, 2.0f)));
    VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
    VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, src, add, sizeof add));
    VKP_ASSERT_OK(ctx, vkp_graph_run(g));
    VKP_ASSERT_OK(ctx, vkp_graph_run(g));   // twice: dst += 2 * src, two times
    VKP_ASSERT_OK(ctx, vkp_buffer_read(buf, 0, got, sizeof got));
    double want[N + 1];
    for (int i = 0; i <= N; i++) want[i] = base[i];
    for (int i = 0; i < N; i++) want[off + i] += 4.0 * add[i];
    vkp_assert_close("accumulate", got, want, N + 1, 1e-6, 1e-6);
    vkp_graph_free(g);

    // assign: column block [3, 3 + 16) of dst (R, C) = src (R, 16): strided destination rows.
    VKP_ASSERT_OK(ctx, vkp_buffer_write(buf, 0, base, 4 * (N + 1)));
    VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
    dst = vkp_tensor_external(g, "dst", buf, 4 * (uint64_t)off, VKP_DTYPE_F32, 2, (int64_t[]){R, C});
    src = vkp_tensor_input(g, "src", VKP_DTYPE_F32, 2, (int64_t[]){R, 16});
    vkp_graph_expand(g, vkp_assign(g, vkp_slice(g, dst, 1, 3, 16), src));
    VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
    VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, src, add, 4 * R * 16));
    VKP_ASSERT_OK(ctx, vkp_graph_run(g));
    VKP_ASSERT_OK(ctx, vkp_buffer_read(buf, 0, got, sizeof got));
    for (int i = 0; i <= N; i++) want[i] = base[i];
    for (int r = 0; r < R; r++)
      for (int k = 0; k < 16; k++) want[off + r * C + 3 + k] = add[r * 16 + k];
    vkp_assert_close("assign", got, want, N + 1, 0, 0);
    vkp_graph_free(g);
    vkp_buffer_free(buf);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_binary_broadcast), cmocka_unit_test(test_unary), cmocka_unit_test(test_views),
      cmocka_unit_test(test_concat),           cmocka_unit_test(test_reduce),
      cmocka_unit_test(test_views_misaligned), cmocka_unit_test(test_unary_long),
      cmocka_unit_test(test_permute_copies),   cmocka_unit_test(test_concat_aligned),
      cmocka_unit_test(test_reduce_paths),     cmocka_unit_test(test_fill),
      cmocka_unit_test(test_inplace),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
