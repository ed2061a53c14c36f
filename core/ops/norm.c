// norm.c — layer norm and group norm, forward and backward.
//
// Both normalise contiguous rows and then apply a per-channel affine: layer norm's rows are the
// last dim (one channel per element), group norm's rows are the (sample, group) blocks of
// C/G channels x HW elements. One forward kernel (group_norm.comp) and one dx kernel
// (group_norm_backward.comp) serve both; the weight/bias gradients differ in shape of reduction:
// a column sum over rows for layer norm (layer_norm_dwdb.comp: partial sums over row chunks, then
// a sum of the partials), a per-channel sum over (N, HW) for group norm (group_norm_dwdb.comp).
//
// Second output (the saved statistics). The forward dispatch writes y and, for backward, each
// row's (mean - x[row, 0], rstd) (the shift keeps rows with |mean| >> std exact; see
// group_norm.comp). A graph node has one output, so the statistics live in companion tensors:
//   stats  an "aux" node (records nothing) of shape (rows, 2), made a source of y: the planner
//          reserves its storage before y runs, and never lets y alias it;
//   y      the op node; its one dispatch writes y and stats;
//   ready  (made by backward) a view of stats whose source is y (records nothing): readers of the
//          statistics read `ready`, so they are scheduled after y, and they keep the small stats
//          tensor alive, not y.
// An aux node also provides scratch space to a node with several dispatches (layer_norm_dwdb's
// partial sums): it lives from just before that node to its end.
//
// Group norm fused with SiLU (vkp_group_norm_silu): y = silu(group_norm(x) * w + b) in one
// dispatch (the _silu variants of the three kernels, shaders/variants.cmake). Backward takes dy
// through SiLU's derivative inside the dx and dweight/dbias kernels, recomputing the pre-SiLU value
// from x, the statistics, w and b, so neither the pre-SiLU tensor nor a SiLU-gradient pass exists:
// one dispatch less forward and one less backward than vkp_silu(vkp_group_norm(...)), and one
// activation fewer kept for backward. Those kernels then also read the bias (HAS_B in their flags).
#include <math.h>
#include <string.h>

#include "vkp_op.h"
#include "vkp_ops.h"
#include "ops_internal.h"
#include "../../shaders/push/norm.h"

// params: i[0] flags (VKP_NORM_HAS_*), f[1] eps, i[2] kind, i[3] groups, i[4] fused SiLU (0/1)
enum { KIND_LAYER = 0, KIND_GROUP = 1 };

// The kernel of a node: the plain name, or its _silu variant for the fused op.
static const char *kernel(const vkp_tensor *t, const char *plain, const char *silu) {
  return t->params.i[4] ? silu : plain;
}

// ---- aux outputs ----------------------------------------------------------------------------

static vkp_status noop_record(vkp_recorder *rec, const vkp_tensor *t) {
  (void)rec, (void)t;
  return VKP_OK;
}
static const vkp_op_def op_aux = {.name = "norm_aux", .record = noop_record, .backward = NULL};
static const vkp_op_def op_ready = {.name = "norm_stats", .record = noop_record, .backward = NULL};

// Storage written by another node's dispatch; `after` orders it (a source of the aux node).
static vkp_tensor *aux_new(vkp_graph *g, int64_t n, vkp_tensor *after) {
  return vkp_node_new(g, &op_aux, VKP_DTYPE_F32, 1, &n, &after, 1);
}

// A view of `aux` (written by `producer`) that depends on the producer.
static vkp_tensor *aux_ready(vkp_graph *g, vkp_tensor *aux, vkp_tensor *producer) {
  vkp_tensor *v = vkp_node_new(g, &op_ready, VKP_DTYPE_F32, aux->ndim, aux->shape, &producer, 1);
  if (v) v->view_src = aux;   // offset 0, contiguous strides, arena storage of aux
  return v;
}

// ---- geometry -------------------------------------------------------------------------------

static void geometry(const vkp_tensor *x, int kind, int groups, vkp_pc_norm *pc) {
  if (kind == KIND_LAYER) {
    uint32_t d = (uint32_t)x->shape[x->ndim - 1];
    pc->rows = (uint32_t)(vkp_tensor_numel(x) / d);
    pc->len = pc->cpg = pc->channels = d;
    pc->hw = pc->groups = 1;
    pc->batch = pc->rows;
  } else {
    uint32_t n = (uint32_t)x->shape[0], c = (uint32_t)x->shape[1];
    uint32_t hw = (uint32_t)(vkp_tensor_numel(x) / ((int64_t)n * c));
    pc->batch = n;
    pc->channels = c;
    pc->groups = (uint32_t)groups;
    pc->cpg = c / (uint32_t)groups;
    pc->hw = hw;
    pc->rows = n * (uint32_t)groups;
    pc->len = pc->cpg * hw;
  }
}

static void geometry_of(const vkp_tensor *t, const vkp_tensor *x, vkp_pc_norm *pc) {
  geometry(x, t->params.i[2], t->params.i[3], pc);
  pc->flags = (uint32_t)t->params.i[0];
  pc->eps = t->params.f[1];
}

// Row kernels (group_norm.comp, group_norm_backward.comp): a row takes one subgroup, or one
// workgroup when wide (VKP_NORM_WIDE); the rule is ops_internal.h's.
static vkp_status dispatch_rows(vkp_recorder *rec, const char *shader, vkp_pc_norm *pc) {
  bool wide = vkp_rows_wide(rec, pc->len);
  if (wide) pc->flags |= VKP_NORM_WIDE;
  return vkp_rec_dispatch_rows(rec, shader, pc, sizeof *pc, pc->rows, wide);
}

// Layer norm rows of up to 2 S NP elements (layer_norm_rows.glsl): a subgroup per row with the
// row in registers as pairs; w and b loaded once per subgroup. NULL when the row does not fit
// (odd or too long, unaligned operands, subgroups over 64 lanes): the general kernels run it.
// Measured on lavapipe: bench/RESULTS.md, "LayerNorm rows in registers".
static const char *short_rows(vkp_recorder *rec, const vkp_tensor *t, const vkp_pc_norm *pc, bool dx) {
  static const uint32_t nps[] = {4, 12, 24, 48};
  uint32_t S = vkp_ctx_info(vkp_rec_ctx(rec))->subgroup_size;
  if (t->params.i[2] != KIND_LAYER || t->params.i[4] || S == 0 || S > 64 || (pc->len & 1)) return NULL;
  if ((pc->x | pc->w | pc->b | pc->dy | pc->dst | pc->stats) & 7) return NULL;
  static const char *const names[2][4] = {
      {"layer_norm_fwd_p4", "layer_norm_fwd_p12", "layer_norm_fwd_p24", "layer_norm_fwd_p48"},
      {"layer_norm_dx_p4", "layer_norm_dx_p12", "layer_norm_dx_p24", "layer_norm_dx_p48"}};
  for (int i = 0; i < 4; i++)
    if (pc->len <= 2 * S * nps[i]) return names[dx][i];
  return NULL;
}

// Rows of the general kernels (dispatch_rows above), or of a short-rows kernel: about 4 rows per
// subgroup (it loads w and b once for all of them).
static vkp_status dispatch_norm(vkp_recorder *rec, const vkp_tensor *t, vkp_pc_norm *pc, const char *general,
                                bool dx) {
  const char *sr = short_rows(rec, t, pc, dx);
  if (!sr) return dispatch_rows(rec, general, pc);
  uint32_t S = vkp_ctx_info(vkp_rec_ctx(rec))->subgroup_size;
  return vkp_rec_dispatch_1d(rec, sr, pc, sizeof *pc, (pc->rows + 3) / 4, 64 / S);
}

// ---- forward --------------------------------------------------------------------------------
// srcs: x, [weight], [bias], stats (aux)

static vkp_status norm_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_norm pc = {0};
  geometry_of(t, t->src[0], &pc);
  int k = 1;
  pc.x = vkp_rec_addr(rec, t->src[0]);
  if (pc.flags & VKP_NORM_HAS_W) pc.w = vkp_rec_addr(rec, t->src[k++]);
  if (pc.flags & VKP_NORM_HAS_B) pc.b = vkp_rec_addr(rec, t->src[k++]);
  pc.stats = vkp_rec_addr(rec, t->src[k]);
  pc.dst = vkp_rec_addr(rec, t);
  return dispatch_norm(rec, t, &pc, kernel(t, "group_norm", "group_norm_silu"), false);
}

// ---- backward -------------------------------------------------------------------------------
// dx node srcs: x, [weight], [bias], ready stats, dy.
// dwdb node srcs: x, ready stats, dy, [weight], [bias], [scratch].
// The bias (and, for dwdb, the weight) only with a fused SiLU, flagged in the node's params.i[0].

static vkp_status dx_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_norm pc = {0};
  geometry_of(t, t->src[0], &pc);
  int k = 1;
  pc.x = vkp_rec_addr(rec, t->src[0]);
  if (pc.flags & VKP_NORM_HAS_W) pc.w = vkp_rec_addr(rec, t->src[k++]);
  if (pc.flags & VKP_NORM_HAS_B) pc.b = vkp_rec_addr(rec, t->src[k++]);
  pc.stats = vkp_rec_addr(rec, t->src[k++]);
  pc.dy = vkp_rec_addr(rec, t->src[k]);
  pc.dst = vkp_rec_addr(rec, t);
  return dispatch_norm(rec, t, &pc, kernel(t, "group_norm_backward", "group_norm_backward_silu"), true);
}
static const vkp_op_def op_norm_dx = {.name = "norm_backward", .record = dx_record, .backward = NULL};
static const vkp_op_def op_norm_silu_dx = {.name = "norm_silu_backward", .record = dx_record, .backward = NULL};

// Layer norm: rows per partial sum, so that at most ~1024 partials exist and every lane loops
// over at most max(32, rows/1024) rows.
static uint32_t ln_chunk(uint32_t rows) {
  uint32_t c = (rows + 1023) / 1024;
  return c < 32 ? 32 : c;
}

static vkp_status dwdb_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_norm pc = {0};
  geometry_of(t, t->src[0], &pc);
  pc.x = vkp_rec_addr(rec, t->src[0]);
  pc.stats = vkp_rec_addr(rec, t->src[1]);
  pc.dy = vkp_rec_addr(rec, t->src[2]);
  pc.dst = vkp_rec_addr(rec, t);
  int k = 3;
  if (pc.flags & VKP_NORM_HAS_W) pc.w = vkp_rec_addr(rec, t->src[k++]);
  if (pc.flags & VKP_NORM_HAS_B) pc.b = vkp_rec_addr(rec, t->src[k++]);
  if (t->params.i[2] == KIND_GROUP)
    return vkp_rec_dispatch_1d(rec, kernel(t, "group_norm_dwdb", "group_norm_dwdb_silu"), &pc, sizeof pc, pc.channels, 1);
  pc.scratch = vkp_rec_addr(rec, t->src[k]);
  pc.chunk = ln_chunk(pc.rows);
  pc.chunks = (pc.rows + pc.chunk - 1) / pc.chunk;
  pc.mode = 0;
  VKP_TRY(vkp_rec_dispatch(rec, "layer_norm_dwdb", &pc, sizeof pc, (pc.channels + 63) / 64, pc.chunks, 1));
  pc.mode = 1;
  return vkp_rec_dispatch_1d(rec, "layer_norm_dwdb", &pc, sizeof pc, 2ull * pc.channels, 64);
}
static const vkp_op_def op_norm_dwdb = {.name = "norm_dwdb", .record = dwdb_record, .backward = NULL};
static const vkp_op_def op_norm_silu_dwdb = {.name = "norm_silu_dwdb", .record = dwdb_record, .backward = NULL};

static void norm_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  int flags = t->params.i[0], k = 1;
  bool silu = t->params.i[4] != 0;
  vkp_tensor *x = t->src[0];
  vkp_tensor *w = flags & VKP_NORM_HAS_W ? t->src[k++] : NULL;
  vkp_tensor *b = flags & VKP_NORM_HAS_B ? t->src[k++] : NULL;
  vkp_tensor *stats = aux_ready(g, t->src[k], t);
  vkp_tensor *dy = vkp_contiguous(g, grad);
  if (!stats || !dy) return;
  if (x->requires_grad) {
    vkp_tensor *srcs[5];
    int n = 0, dflags = flags & (int)VKP_NORM_HAS_W;
    srcs[n++] = x;
    if (w) srcs[n++] = w;
    if (silu && b) srcs[n++] = b, dflags |= (int)VKP_NORM_HAS_B;
    srcs[n++] = stats;
    srcs[n++] = dy;
    vkp_tensor *dx = vkp_node_new(g, silu ? &op_norm_silu_dx : &op_norm_dx, VKP_DTYPE_F32, x->ndim, x->shape, srcs, n);
    if (dx) {
      dx->params = t->params;
      dx->params.i[0] = dflags;
    }
    vkp_grad_accumulate(g, x, dx);
  }
  bool need_w = w && w->requires_grad, need_b = b && b->requires_grad;
  if (!need_w && !need_b) return;
  vkp_pc_norm pc = {0};
  geometry(x, t->params.i[2], t->params.i[3], &pc);
  vkp_tensor *srcs[6] = {x, stats, dy};
  int n = 3;
  if (silu) {   // the pre-SiLU value is recomputed from w and b
    if (w) srcs[n++] = w;
    if (b) srcs[n++] = b;
  }
  if (t->params.i[2] == KIND_LAYER) {   // scratch for the partial sums
    uint32_t chunk = ln_chunk(pc.rows), chunks = (pc.rows + chunk - 1) / chunk;
    srcs[n++] = aux_new(g, 2ll * chunks * pc.channels, dy);
  }
  int64_t shape[2] = {2, pc.channels};
  vkp_tensor *d = vkp_node_new(g, silu ? &op_norm_silu_dwdb : &op_norm_dwdb, VKP_DTYPE_F32, 2, shape, srcs, n);
  if (!d) return;
  d->params = t->params;
  d->params.i[0] = silu ? flags : 0;
  int64_t c = pc.channels;
  if (need_w) vkp_grad_accumulate(g, w, vkp_reshape(g, vkp_slice(g, d, 0, 0, 1), 1, &c));
  if (need_b) vkp_grad_accumulate(g, b, vkp_reshape(g, vkp_slice(g, d, 0, 1, 1), 1, &c));
}

static const vkp_op_def op_layer_norm = {.name = "layer_norm", .record = norm_record, .backward = norm_backward};
static const vkp_op_def op_group_norm = {.name = "group_norm", .record = norm_record, .backward = norm_backward};
static const vkp_op_def op_group_norm_silu = {
    .name = "group_norm_silu", .record = norm_record, .backward = norm_backward};

// ---- builders -------------------------------------------------------------------------------

// f32 and contiguous (f16/bf16 converted); NULL stays NULL.
static vkp_tensor *prep(vkp_graph *g, vkp_tensor *t) { return t ? vkp_contiguous(g, vkp_cast_f32(g, t)) : NULL; }

static bool check_affine(vkp_graph *g, const char *op, const vkp_tensor *p, const char *what, int64_t n) {
  if (!p) return true;
  if (p->ndim != 1 || p->shape[0] != n || (p->dtype != VKP_DTYPE_F32 && p->dtype != VKP_DTYPE_F16 &&
                                            p->dtype != VKP_DTYPE_BF16)) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: %s '%s' must be a float tensor of shape (%lld)", op, what, p->name,
                   (long long)n);
    return false;
  }
  return true;
}

static bool check_x(vkp_graph *g, const char *op, const vkp_tensor *x, float eps) {
  if (x->dtype != VKP_DTYPE_F32 && x->dtype != VKP_DTYPE_F16 && x->dtype != VKP_DTYPE_BF16) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: '%s' has dtype %s (float expected)", op, x->name, vkp_dtype_name(x->dtype));
    return false;
  }
  if (!(eps >= 0.0f) || isinf(eps)) {
    vkp_graph_fail(g, VKP_ERR_INVALID, "%s: eps %g for '%s' must be finite and >= 0", op, (double)eps, x->name);
    return false;
  }
  return true;
}

static vkp_tensor *norm_node(vkp_graph *g, const vkp_op_def *op, int kind, int groups, vkp_tensor *x,
                             vkp_tensor *weight, vkp_tensor *bias, float eps, int64_t rows) {
  x = prep(g, x);
  weight = prep(g, weight);
  bias = prep(g, bias);
  if (vkp_graph_status(g) != VKP_OK || !x) return NULL;
  vkp_tensor *srcs[4];
  int n = 0, flags = 0;
  srcs[n++] = x;
  if (weight) srcs[n++] = weight, flags |= (int)VKP_NORM_HAS_W;
  if (bias) srcs[n++] = bias, flags |= (int)VKP_NORM_HAS_B;
  srcs[n++] = aux_new(g, 2 * rows, x);
  vkp_tensor *t = vkp_node_new(g, op, VKP_DTYPE_F32, x->ndim, x->shape, srcs, n);
  if (!t) return NULL;
  t->params.i[0] = flags;
  t->params.f[1] = eps;
  t->params.i[2] = kind;
  t->params.i[3] = groups;
  return t;
}

vkp_tensor *vkp_layer_norm(vkp_graph *g, vkp_tensor *x, vkp_tensor *weight, vkp_tensor *bias, float eps) {
  // weight and bias may be NULL by choice; a NULL from a failed builder shows in the graph status.
  if (!x || vkp_graph_status(g) != VKP_OK) return NULL;
  if (!check_x(g, "layer_norm", x, eps)) return NULL;
  if (x->ndim < 1) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "layer_norm: '%s' has no dims", x->name);
    return NULL;
  }
  int64_t d = x->shape[x->ndim - 1];
  if (!check_affine(g, "layer_norm", weight, "weight", d) || !check_affine(g, "layer_norm", bias, "bias", d))
    return NULL;
  return norm_node(g, &op_layer_norm, KIND_LAYER, 1, x, weight, bias, eps, vkp_tensor_numel(x) / d);
}

// Group norm, plain (op_group_norm) or fused with SiLU (op_group_norm_silu); `name` in errors.
static vkp_tensor *group_norm_node(vkp_graph *g, const vkp_op_def *op, const char *name, vkp_tensor *x, int groups,
                                   vkp_tensor *weight, vkp_tensor *bias, float eps) {
  if (!x || vkp_graph_status(g) != VKP_OK) return NULL;
  if (!check_x(g, name, x, eps)) return NULL;
  if (x->ndim < 2) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: '%s' must be (N, C, ...) with at least 2 dims", name, x->name);
    return NULL;
  }
  int64_t c = x->shape[1];
  if (groups <= 0 || c % groups != 0) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: %d groups do not divide the %lld channels of '%s'", name, groups,
                   (long long)c, x->name);
    return NULL;
  }
  if (!check_affine(g, name, weight, "weight", c) || !check_affine(g, name, bias, "bias", c)) return NULL;
  vkp_tensor *t = norm_node(g, op, KIND_GROUP, groups, x, weight, bias, eps, x->shape[0] * groups);
  if (t) t->params.i[4] = op == &op_group_norm_silu;
  return t;
}

vkp_tensor *vkp_group_norm(vkp_graph *g, vkp_tensor *x, int groups, vkp_tensor *weight, vkp_tensor *bias,
                           float eps) {
  return group_norm_node(g, &op_group_norm, "group_norm", x, groups, weight, bias, eps);
}

vkp_tensor *vkp_group_norm_silu(vkp_graph *g, vkp_tensor *x, int groups, vkp_tensor *weight, vkp_tensor *bias,
                                float eps) {
  return group_norm_node(g, &op_group_norm_silu, "group_norm_silu", x, groups, weight, bias, eps);
}
