// reduce.c — sums and means over dims (keepdim), and sum-to-shape (inverse broadcasting).
#include <string.h>
#include <stdio.h>
#include <stdlib.h>

#include "../vkp_op.h"
#include "../vkp_ops.h"
#include "../../shaders/push/reduce_sum.h"

// params.f[0] = scale (1 sum, 1/n mean)
static vkp_status reduce_record(vkp_recorder *rec, const vkp_tensor *t) {
  const vkp_tensor *in = t->src[0];
  vkp_pc_reduce_sum pc = {0};
  pc.src = vkp_rec_addr(rec, in);
  pc.dst = vkp_rec_addr(rec, t);
  pc.alpha = t->params.f[0];
  int32_t in_shape[4], out_shape[4], out_stride[4];
  vkp_shape4(in, in_shape, pc.in_stride);
  vkp_shape4(t, out_shape, out_stride);
  // t has in's ndim after right-alignment (sum_to pads with leading 1s).
  pc.n_out = pc.n_red = 1;
  for (int d = 0; d < 4; d++) {
    bool reduced = out_shape[d] == 1 && in_shape[d] != 1;
    pc.keep_shape[d] = reduced ? 1 : in_shape[d];
    pc.red_shape[d] = reduced ? in_shape[d] : 1;
    pc.n_out *= (uint32_t)pc.keep_shape[d];
    pc.n_red *= (uint32_t)pc.red_shape[d];
  }
  if (getenv("VKP_EW_DEBUG")) fprintf(stderr, "DBG reduce nout%u nred%u in(%d,%d,%d,%d) keep(%d,%d,%d,%d) st(%d,%d,%d,%d)\n", pc.n_out, pc.n_red, in_shape[0],in_shape[1],in_shape[2],in_shape[3], pc.keep_shape[0],pc.keep_shape[1],pc.keep_shape[2],pc.keep_shape[3], pc.in_stride[0],pc.in_stride[1],pc.in_stride[2],pc.in_stride[3]);
  return vkp_rec_dispatch_1d(rec, "reduce_sum", &pc, sizeof pc, pc.n_out, 1);
}

static void reduce_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  // d(sum)/dx = 1 broadcast back: grad * ones(x) via a broadcasting multiply-add.
  vkp_tensor *x = t->src[0];
  vkp_tensor *ones = vkp_fill(g, VKP_DTYPE_F32, x->ndim, x->shape, t->params.f[0]);
  vkp_grad_accumulate(g, x, vkp_mul(g, ones, vkp_reshape(g, grad, t->ndim, t->shape)));
}
static const vkp_op_def op_reduce = {"reduce_sum", reduce_record, reduce_backward};

static vkp_tensor *reduce(vkp_graph *g, vkp_tensor *a, int ndim, const int64_t *shape, float scale) {
  if (!a) return NULL;
  a = vkp_cast_f32(g, a);
  if (!a) return NULL;
  // shape must be a's shape with some dims set to 1 (right-aligned, leading dims may be absent).
  if (ndim > a->ndim) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "sum_to: target has more dims than '%s'", a->name);
    return NULL;
  }
  int64_t full[VKP_MAX_DIMS];
  int pad = a->ndim - ndim;
  for (int d = 0; d < a->ndim; d++) {
    full[d] = d < pad ? 1 : shape[d - pad];
    if (full[d] != 1 && full[d] != a->shape[d]) {
      vkp_graph_fail(g, VKP_ERR_SHAPE, "sum_to: cannot reduce dim %d of '%s' (%lld) to %lld", d, a->name,
                     (long long)a->shape[d], (long long)full[d]);
      return NULL;
    }
  }
  bool same = true;
  for (int d = 0; d < a->ndim; d++) same = same && full[d] == a->shape[d];
  if (same && scale == 1.0f) return ndim == a->ndim ? a : vkp_reshape(g, a, ndim, shape);
  vkp_tensor *t = vkp_node_new(g, &op_reduce, VKP_DTYPE_F32, a->ndim, full, &a, 1);
  if (!t) return NULL;
  t->params.f[0] = scale;
  return ndim == a->ndim ? t : vkp_reshape(g, t, ndim, shape);
}

vkp_tensor *vkp_sum_to(vkp_graph *g, vkp_tensor *a, int ndim, const int64_t *shape) {
  return reduce(g, a, ndim, shape, 1.0f);
}

vkp_tensor *vkp_sum(vkp_graph *g, vkp_tensor *a) {
  if (!a) return NULL;
  int64_t one[VKP_MAX_DIMS] = {1, 1, 1, 1};
  return vkp_reshape(g, reduce(g, a, a->ndim, one, 1.0f), 1, one);
}

vkp_tensor *vkp_mean(vkp_graph *g, vkp_tensor *a) {
  if (!a) return NULL;
  int64_t one[VKP_MAX_DIMS] = {1, 1, 1, 1};
  return vkp_reshape(g, reduce(g, a, a->ndim, one, 1.0f / (float)vkp_tensor_numel(a)), 1, one);
}

static vkp_tensor *reduce_axis(vkp_graph *g, vkp_tensor *a, int axis, bool mean) {
  if (!a) return NULL;
  if (axis < 0) axis += a->ndim;
  if (axis < 0 || axis >= a->ndim) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "sum_axis: axis out of range for '%s'", a->name);
    return NULL;
  }
  int64_t shape[VKP_MAX_DIMS];
  memcpy(shape, a->shape, sizeof shape);
  shape[axis] = 1;
  return reduce(g, a, a->ndim, shape, mean ? 1.0f / (float)a->shape[axis] : 1.0f);
}

vkp_tensor *vkp_sum_axis(vkp_graph *g, vkp_tensor *a, int axis) { return reduce_axis(g, a, axis, false); }
vkp_tensor *vkp_mean_axis(vkp_graph *g, vkp_tensor *a, int axis) { return reduce_axis(g, a, axis, true); }
