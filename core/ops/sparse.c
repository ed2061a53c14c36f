// sparse.c — base + scatter(values at unique flat indices): the weight of masked (sparse) tuning.
#include "vkp_op.h"
#include "vkp_ops.h"
#include "../../shaders/push/sparse.h"

static vkp_status sparse_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_sparse pc = {0};
  pc.src = vkp_rec_addr(rec, t->src[0]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)vkp_tensor_numel(t);
  VKP_TRY(vkp_rec_dispatch_1d(rec, "sparse_add", &pc, sizeof pc, pc.n, 256));
  pc.values = vkp_rec_addr(rec, t->src[1]);
  pc.index = vkp_rec_addr(rec, t->src[2]);
  pc.n = (uint32_t)vkp_tensor_numel(t->src[1]);
  pc.mode = 1;
  return vkp_rec_dispatch_1d(rec, "sparse_add", &pc, sizeof pc, pc.n, 256);
}

static vkp_status gather_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_sparse pc = {0};
  pc.src = vkp_rec_addr(rec, t->src[0]);
  pc.index = vkp_rec_addr(rec, t->src[1]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)vkp_tensor_numel(t);
  pc.mode = 2;
  return vkp_rec_dispatch_1d(rec, "sparse_add", &pc, sizeof pc, pc.n, 256);
}
static const vkp_op_def op_gather = {.name = "sparse_gather", .record = gather_record, .backward = NULL};

static void sparse_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  grad = vkp_contiguous(g, grad);
  vkp_grad_accumulate(g, t->src[0], grad);
  if (t->src[1]->requires_grad) {
    vkp_tensor *srcs[2] = {grad, t->src[2]};
    vkp_grad_accumulate(g, t->src[1], vkp_node_new(g, &op_gather, VKP_DTYPE_F32, t->src[1]->ndim, t->src[1]->shape, srcs, 2));
  }
}
static const vkp_op_def op_sparse = {.name = "sparse_add", .record = sparse_record, .backward = sparse_backward};

vkp_tensor *vkp_sparse_add(vkp_graph *g, vkp_tensor *base, vkp_tensor *values, vkp_tensor *index) {
  if (!base || !values || !index) return NULL;
  base = vkp_contiguous(g, vkp_cast_f32(g, base));
  if (!base) return NULL;
  if (values->dtype != VKP_DTYPE_F32 || index->dtype != VKP_DTYPE_I32 || vkp_tensor_numel(values) != vkp_tensor_numel(index) ||
      !vkp_tensor_is_contiguous(values) || !vkp_tensor_is_contiguous(index)) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "sparse_add: '%s' (f32) and '%s' (i32) must be contiguous with equal sizes", values->name,
                   index->name);
    return NULL;
  }
  vkp_tensor *srcs[3] = {base, values, index};
  return vkp_node_new(g, &op_sparse, VKP_DTYPE_F32, base->ndim, base->shape, srcs, 3);
}
