// copy.c — contiguous copies of views, concatenation, slice gradients, dtype casts.
#include <string.h>

#include "vkp_op.h"
#include "vkp_ops.h"
#include "../../shaders/push/elementwise.h"

// ---- launch (shared with elementwise.c) ----------------------------------------------------
// Every kernel of the elementwise family loops over one block of items per workgroup
// (push/elementwise.h): a CPU device gets 8 items (vec4s, or 4 floats each on the scalar path)
// per invocation, a GPU 4. lavapipe pays a coroutine call per 8 invocations; 8 vec4s per
// invocation measured best for the adds of the demo's training step (4 and 16: 10-25% slower).
vkp_status vkp_ew_dispatch(vkp_recorder *rec, const char *shader, const vkp_pc_elementwise *pc);
vkp_status vkp_ew_dispatch(vkp_recorder *rec, const char *shader, const vkp_pc_elementwise *pc) {
  uint32_t iters = vkp_ctx_info(vkp_rec_ctx(rec))->type == VKP_DEVICE_CPU ? 8u : 4u;
  vkp_pc_elementwise p = *pc;
  bool vec4 = (p.flags & VKP_EW_F_VEC4) != 0;
  p.iters = vec4 ? iters : 4 * iters;
  uint64_t items = vec4 ? (uint64_t)p.n / 4 : p.n;
  return vkp_rec_dispatch_1d(rec, shader, &p, sizeof p, items ? items : 1, VKP_EW_WG * p.iters);
}

// Copies src (any strides) into dst_view (any strides, same shape) at dst_addr. Dims contiguous
// in both are merged; vec4 moves when both have unit stride along the (merged) last dim, e.g.
// the attention heads' (B, T, H, D) <-> (B, H, T, D) with D % 4 == 0.
vkp_status vkp_ew_record_copy(vkp_recorder *rec, const vkp_tensor *src, uint64_t dst_addr,
                              const vkp_tensor *dst_view);
vkp_status vkp_ew_record_copy(vkp_recorder *rec, const vkp_tensor *src, uint64_t dst_addr,
                              const vkp_tensor *dst_view) {
  vkp_pc_elementwise pc = {0};
  pc.a = vkp_rec_addr(rec, src);
  pc.dst = dst_addr;
  pc.n = (uint32_t)vkp_tensor_numel(src);
  int64_t st[2][4];
  int32_t cst[2][4];
  memcpy(st[0], src->stride, sizeof st[0]);
  memcpy(st[1], dst_view->stride, sizeof st[1]);
  vkp_ew_collapse(src->ndim, src->shape, 2, (const int64_t(*)[4])st, pc.shape, cst);
  memcpy(pc.a_stride, cst[0], sizeof pc.a_stride);
  memcpy(pc.b_stride, cst[1], sizeof pc.b_stride);
  uint64_t addr[2] = {pc.a, pc.dst};
  if (cst[0][3] == 1 && cst[1][3] == 1 && vkp_ew_vec4_ok(pc.shape, 2, (const int32_t(*)[4])cst, addr))
    pc.flags = VKP_EW_F_VEC4;
  return vkp_ew_dispatch(rec, "copy", &pc);
}

// ---- contiguous -----------------------------------------------------------------------------

static vkp_status contiguous_record(vkp_recorder *rec, const vkp_tensor *t) {
  return vkp_ew_record_copy(rec, t->src[0], vkp_rec_addr(rec, t), t);
}
static void contiguous_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  vkp_grad_accumulate(g, t->src[0], grad);   // same shape; the view's own backward maps it back
}
static const vkp_op_def op_contiguous = {
    .name = "contiguous", .record = contiguous_record, .backward = contiguous_backward};

vkp_tensor *vkp_contiguous(vkp_graph *g, vkp_tensor *t) {
  if (!t || vkp_tensor_is_contiguous(t)) return t;
  if (vkp_dtype_size(t->dtype) != 4) {
    vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "contiguous: '%s' must be a 32-bit tensor", t->name);
    return NULL;
  }
  return vkp_node_new(g, &op_contiguous, t->dtype, t->ndim, t->shape, &t, 1);
}

// ---- concat ---------------------------------------------------------------------------------
// params.i[0] = dim

static void view_of(const vkp_tensor *t, int dim, int64_t start, int64_t len, vkp_tensor *v) {
  *v = *t;
  v->shape[dim] = len;
  v->offset = t->offset + start * t->stride[dim];
}

static vkp_status concat_record(vkp_recorder *rec, const vkp_tensor *t) {
  int dim = t->params.i[0];
  vkp_tensor part;
  view_of(t, dim, 0, t->src[0]->shape[dim], &part);
  VKP_TRY(vkp_ew_record_copy(rec, t->src[0], vkp_rec_addr(rec, t), &part));
  view_of(t, dim, t->src[0]->shape[dim], t->src[1]->shape[dim], &part);
  return vkp_ew_record_copy(rec, t->src[1], vkp_rec_addr(rec, &part), &part);
}

static void concat_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  int dim = t->params.i[0];
  int64_t na = t->src[0]->shape[dim];
  if (t->src[0]->requires_grad) vkp_grad_accumulate(g, t->src[0], vkp_contiguous(g, vkp_slice(g, grad, dim, 0, na)));
  if (t->src[1]->requires_grad)
    vkp_grad_accumulate(g, t->src[1], vkp_contiguous(g, vkp_slice(g, grad, dim, na, t->src[1]->shape[dim])));
}
static const vkp_op_def op_concat = {.name = "concat", .record = concat_record, .backward = concat_backward};

vkp_tensor *vkp_concat(vkp_graph *g, vkp_tensor *a, vkp_tensor *b, int dim) {
  if (!a || !b) return NULL;
  if (dim < 0) dim += a->ndim;
  bool ok = a->ndim == b->ndim && dim >= 0 && dim < a->ndim && a->dtype == b->dtype && vkp_dtype_size(a->dtype) == 4;
  for (int d = 0; ok && d < a->ndim; d++) ok = d == dim || a->shape[d] == b->shape[d];
  if (!ok) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "concat: '%s' and '%s' do not match outside dim %d", a->name, b->name, dim);
    return NULL;
  }
  int64_t shape[VKP_MAX_DIMS];
  memcpy(shape, a->shape, sizeof shape);
  shape[dim] += b->shape[dim];
  vkp_tensor *srcs[2] = {a, b};
  vkp_tensor *t = vkp_node_new(g, &op_concat, a->dtype, a->ndim, shape, srcs, 2);
  if (t) t->params.i[0] = dim;
  return t;
}

// ---- slice gradient: zeros with the gradient written into the sliced range ------------------
// params.i[0] = dim, i[1] = start

static vkp_status pad_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_elementwise pc = {0};
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)vkp_tensor_numel(t);
  if (pc.dst % 16 == 0) pc.flags = VKP_EW_F_VEC4;
  VKP_TRY(vkp_ew_dispatch(rec, "fill", &pc));
  vkp_tensor part;
  view_of(t, t->params.i[0], t->params.i[1], t->src[0]->shape[t->params.i[0]], &part);
  return vkp_ew_record_copy(rec, t->src[0], vkp_rec_addr(rec, &part), &part);
}
static void pad_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  int dim = t->params.i[0];
  vkp_grad_accumulate(g, t->src[0],
                      vkp_contiguous(g, vkp_slice(g, grad, dim, t->params.i[1], t->src[0]->shape[dim])));
}
static const vkp_op_def op_pad = {.name = "slice_grad", .record = pad_record, .backward = pad_backward};

vkp_tensor *vkp_pad_slice_grad(vkp_graph *g, vkp_tensor *grad, const vkp_tensor *full, int dim, int64_t start) {
  if (!grad) return NULL;
  vkp_tensor *t = vkp_node_new(g, &op_pad, VKP_DTYPE_F32, full->ndim, full->shape, &grad, 1);
  if (t) {
    t->params.i[0] = dim;
    t->params.i[1] = (int32_t)start;
  }
  return t;
}

// ---- cast to f32 ----------------------------------------------------------------------------

static vkp_status cast_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_elementwise pc = {0};
  pc.a = vkp_rec_addr(rec, t->src[0]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)vkp_tensor_numel(t);
  pc.op = t->src[0]->dtype == VKP_DTYPE_BF16 ? 1u : 0u;
  return vkp_rec_dispatch_1d(rec, "cast_f32", &pc, sizeof pc, pc.n, 256);
}
static void cast_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  (void)g, (void)t, (void)grad;   // 16-bit tensors are frozen weights: never trainable
}
static const vkp_op_def op_cast = {.name = "cast_f32", .record = cast_record, .backward = cast_backward};

vkp_tensor *vkp_cast_f32(vkp_graph *g, vkp_tensor *x) {
  if (!x || x->dtype == VKP_DTYPE_F32) return x;
  if (x->dtype != VKP_DTYPE_F16 && x->dtype != VKP_DTYPE_BF16) {
    vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "cast_f32: '%s' has dtype %s", x->name, vkp_dtype_name(x->dtype));
    return NULL;
  }
  if (!vkp_tensor_is_contiguous(x) || (x->offset & 1)) {
    vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "cast_f32: '%s' must be contiguous and 4-byte aligned", x->name);
    return NULL;
  }
  return vkp_node_new(g, &op_cast, VKP_DTYPE_F32, x->ndim, x->shape, &x, 1);
}
