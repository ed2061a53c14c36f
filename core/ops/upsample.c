// upsample.c — nearest-neighbour 2x upsampling (diffusers Upsample2D) and its backward.
#include "vkp_op.h"
#include "vkp_ops.h"
#include "../../shaders/push/upsample.h"

// params.i[0]: 0 forward (x -> 2x), 1 backward (dy -> dx: sums of 2x2 blocks)
static vkp_status upsample_record(vkp_recorder *rec, const vkp_tensor *t) {
  const vkp_tensor *small = t->params.i[0] ? t : t->src[0];
  vkp_pc_upsample pc = {0};
  pc.src = vkp_rec_addr(rec, t->src[0]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)vkp_tensor_numel(small);
  pc.H = (int32_t)small->shape[2];
  pc.W = (int32_t)small->shape[3];
  pc.backward = (uint32_t)t->params.i[0];
  return vkp_rec_dispatch_1d(rec, "upsample_nearest", &pc, sizeof pc, pc.n, 256);
}

static void upsample_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad);
static const vkp_op_def op_upsample = {
    .name = "upsample_nearest2x", .record = upsample_record, .backward = upsample_backward};
static const vkp_op_def op_upsample_grad = {
    .name = "upsample_nearest2x_grad", .record = upsample_record, .backward = NULL};

static void upsample_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  vkp_tensor *x = t->src[0];
  grad = vkp_contiguous(g, grad);
  vkp_tensor *d = vkp_node_new(g, &op_upsample_grad, VKP_DTYPE_F32, 4, x->shape, &grad, 1);
  if (d) d->params.i[0] = 1;
  vkp_grad_accumulate(g, x, d);
}

vkp_tensor *vkp_upsample_nearest2x(vkp_graph *g, vkp_tensor *x) {
  if (!x) return NULL;
  if (x->ndim != 4) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "upsample_nearest2x: '%s' must be (N, C, H, W), has %d dims", x->name, x->ndim);
    return NULL;
  }
  if (vkp_tensor_numel(x) * 4 > (int64_t)UINT32_MAX) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "upsample_nearest2x: '%s' is too large", x->name);
    return NULL;
  }
  x = vkp_contiguous(g, vkp_cast_f32(g, x));
  if (!x) return NULL;
  int64_t shape[4] = {x->shape[0], x->shape[1], 2 * x->shape[2], 2 * x->shape[3]};
  return vkp_node_new(g, &op_upsample, VKP_DTYPE_F32, 4, shape, &x, 1);
}
