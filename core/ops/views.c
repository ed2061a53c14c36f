// views.c — views (reshape, permute, transpose, slice, detach): nodes that execute nothing and
// share their source's storage, and their backward (which needs the copy ops of copy.c).
#include <string.h>

#include "vkp_op.h"
#include "vkp_ops.h"

// ---- views ----------------------------------------------------------------------------------

static void view_backward(vkp_graph *g, vkp_tensor *node, vkp_tensor *grad);
static vkp_status view_record(vkp_recorder *rec, const vkp_tensor *node) {
  (void)rec;
  (void)node;
  return VKP_OK;   // views execute nothing
}

// params.i[0]: view kind; reshape keeps nothing else, permute stores perm in i[1..4],
// slice stores dim, start in i[1], i[2].
enum { VIEW_RESHAPE, VIEW_PERMUTE, VIEW_SLICE, VIEW_DETACH };
static const vkp_op_def vkp_op_view = {.name = "view", .record = view_record, .backward = view_backward};

bool vkp_tensor_is_view(const vkp_tensor *t) { return t && t->op == &vkp_op_view; }

// forward declaration: view_new is below
static vkp_tensor *view_new(vkp_graph *g, vkp_tensor *src, int kind);

vkp_tensor *vkp_order_after(vkp_graph *g, vkp_tensor *x, vkp_tensor *dep) {
  if (!x || !dep) return NULL;
  vkp_tensor *v = view_new(g, x, VIEW_RESHAPE);
  if (v) v->src[v->nsrc++] = dep;   // a second source the view reads nothing from: ordering only
  return v;
}

static vkp_tensor *view_new(vkp_graph *g, vkp_tensor *src, int kind) {
  vkp_tensor *v = vkp_node_new(g, &vkp_op_view, src->dtype, src->ndim, src->shape, &src, 1);
  if (!v) return NULL;
  v->view_src = src->view_src ? src->view_src : src;
  v->params.i[0] = kind;
  memcpy(v->stride, src->stride, sizeof v->stride);
  v->offset = src->offset;
  v->buffer = src->buffer;
  v->buffer_offset = src->buffer_offset;
  return v;
}

vkp_tensor *vkp_reshape(vkp_graph *g, vkp_tensor *t, int ndim, const int64_t *shape) {
  if (!t) return NULL;
  if (!vkp_tensor_is_contiguous(t)) t = vkp_contiguous(g, t);
  if (!t) return NULL;
  int64_t s[VKP_MAX_DIMS], known = 1;
  int infer = -1;
  if (ndim < 1 || ndim > VKP_MAX_DIMS) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "reshape of '%s': %d dims", t->name, ndim);
    return NULL;
  }
  for (int i = 0; i < ndim; i++) {
    s[i] = shape[i];
    if (s[i] == -1 && infer < 0) infer = i;
    else known *= s[i];
  }
  if (infer >= 0 && known > 0) s[infer] = vkp_tensor_numel(t) / known;
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= s[i];
  if (n != vkp_tensor_numel(t)) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "reshape of '%s': %lld elements into a shape of %lld", t->name,
                   (long long)vkp_tensor_numel(t), (long long)n);
    return NULL;
  }
  vkp_tensor *v = view_new(g, t, VIEW_RESHAPE);
  if (!v) return NULL;
  v->ndim = ndim;
  for (int i = 0; i < ndim; i++) v->shape[i] = s[i];
  vkp_strides_contiguous(ndim, v->shape, v->stride);
  return v;
}

vkp_tensor *vkp_permute(vkp_graph *g, vkp_tensor *t, const int *perm) {
  if (!t) return NULL;
  int seen = 0;
  for (int i = 0; i < t->ndim; i++) {
    if (perm[i] < 0 || perm[i] >= t->ndim || (seen & (1 << perm[i]))) {
      vkp_graph_fail(g, VKP_ERR_SHAPE, "permute of '%s': invalid permutation", t->name);
      return NULL;
    }
    seen |= 1 << perm[i];
  }
  vkp_tensor *v = view_new(g, t, VIEW_PERMUTE);
  if (!v) return NULL;
  for (int i = 0; i < t->ndim; i++) {
    v->shape[i] = t->shape[perm[i]];
    v->stride[i] = t->stride[perm[i]];
    v->params.i[1 + i] = perm[i];
  }
  return v;
}

vkp_tensor *vkp_transpose(vkp_graph *g, vkp_tensor *t, int d0, int d1) {
  if (!t) return NULL;
  int perm[VKP_MAX_DIMS] = {0, 1, 2, 3};
  if (d0 < 0) d0 += t->ndim;
  if (d1 < 0) d1 += t->ndim;
  if (d0 < 0 || d1 < 0 || d0 >= t->ndim || d1 >= t->ndim) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "transpose of '%s': dims out of range", t->name);
    return NULL;
  }
  perm[d0] = d1;
  perm[d1] = d0;
  return vkp_permute(g, t, perm);
}

vkp_tensor *vkp_slice(vkp_graph *g, vkp_tensor *t, int dim, int64_t start, int64_t len) {
  if (!t) return NULL;
  if (dim < 0) dim += t->ndim;
  if (dim < 0 || dim >= t->ndim || start < 0 || len <= 0 || start + len > t->shape[dim]) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "slice of '%s': [%lld, +%lld) on dim %d out of range", t->name,
                   (long long)start, (long long)len, dim);
    return NULL;
  }
  vkp_tensor *v = view_new(g, t, VIEW_SLICE);
  if (!v) return NULL;
  v->shape[dim] = len;
  v->offset += start * t->stride[dim];
  v->params.i[1] = dim;
  v->params.i[2] = (int32_t)start;
  return v;
}

vkp_tensor *vkp_detach(vkp_graph *g, vkp_tensor *t) {
  if (!t) return NULL;
  vkp_tensor *v = view_new(g, t, VIEW_DETACH);
  if (v) v->requires_grad = false, v->stop_grad = true;
  return v;
}

static void view_backward(vkp_graph *g, vkp_tensor *node, vkp_tensor *grad) {
  vkp_tensor *src = node->src[0];
  switch (node->params.i[0]) {
    case VIEW_DETACH:
      break;
    case VIEW_RESHAPE:
      vkp_grad_accumulate(g, src, vkp_reshape(g, grad, src->ndim, src->shape));
      break;
    case VIEW_PERMUTE: {
      int inv[VKP_MAX_DIMS];
      for (int i = 0; i < node->ndim; i++) inv[node->params.i[1 + i]] = i;
      // A view, not a copy: a permute undone by the next one (the head permutes around attention)
      // costs nothing, and ops that need contiguous gradients copy them themselves.
      vkp_grad_accumulate(g, src, vkp_permute(g, grad, inv));
      break;
    }
    default:
      vkp_grad_accumulate(g, src, vkp_pad_slice_grad(g, grad, src, node->params.i[1], node->params.i[2]));
  }
}

