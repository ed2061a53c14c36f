// linalg.c — small dense linear algebra: the batched inverse of small square matrices (OFT's
// exact Cayley transform R = (I - Q)(I + Q)^-1 needs one per block).
//
// Forward: inverse.comp, Gauss-Jordan with partial pivoting, one workgroup per matrix in shared
// memory (n <= 64). Backward from matmuls: with Y = A^-1, dY = -Y dA Y, so dL/dA = -Y^T G Y^T.
#include "vkp_op.h"
#include "vkp_ops.h"
#include "../../shaders/push/linalg.h"

static vkp_status inverse_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_inverse pc = {0};
  pc.src = vkp_rec_addr(rec, t->src[0]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)t->shape[t->ndim - 1];
  pc.count = (uint32_t)(vkp_tensor_numel(t) / ((int64_t)pc.n * pc.n));
  return vkp_rec_dispatch_1d(rec, "inverse", &pc, sizeof pc, pc.count, 1);
}

static void inverse_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  vkp_tensor *a = t->src[0];
  vkp_tensor *ytg = vkp_matmul(g, t, grad, true, false);   // Y^T G
  vkp_grad_accumulate(g, a, vkp_scale(g, vkp_matmul(g, ytg, t, false, true), -1.0f));
}
static const vkp_op_def op_inverse = {.name = "inverse", .record = inverse_record, .backward = inverse_backward};

vkp_tensor *vkp_inverse(vkp_graph *g, vkp_tensor *a) {
  if (!a) return NULL;
  int64_t n = a->ndim >= 2 ? a->shape[a->ndim - 1] : 0;
  if (a->ndim < 2 || a->shape[a->ndim - 2] != n || n < 1 || n > VKP_INVERSE_MAX_N) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "inverse: '%s' must be (..., n, n) with 1 <= n <= %d", a->name, VKP_INVERSE_MAX_N);
    return NULL;
  }
  a = vkp_contiguous(g, vkp_cast_f32(g, a));
  if (!a) return NULL;
  return vkp_node_new(g, &op_inverse, VKP_DTYPE_F32, a->ndim, a->shape, &a, 1);
}
