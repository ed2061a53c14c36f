// dropout.c — inverted dropout whose mask is recomputed, never stored: keep(i) is a hash of
// (vkp_step_scalars.seed, salt, i), read at run time, so a replayed graph draws a new mask each
// step the host changes the seed. The backward applies the same map to the gradient.
#include <math.h>

#include "vkp_op.h"
#include "vkp_ops.h"
#include "../../shaders/push/dropout.h"

// params: f[0] p, i[1] salt
static vkp_status dropout_record(vkp_recorder *rec, const vkp_tensor *t) {
  float p = t->params.f[0];
  vkp_pc_dropout pc = {0};
  pc.src = vkp_rec_addr(rec, t->src[0]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.scalars = vkp_rec_scalars_addr(rec);
  pc.n = (uint32_t)vkp_tensor_numel(t);
  pc.salt = (uint32_t)t->params.i[1];
  pc.threshold = (uint32_t)lrint((double)p * 16777216.0);
  pc.scale = 1.0f / (1.0f - p);
  return vkp_rec_dispatch_1d(rec, "dropout", &pc, sizeof pc, pc.n, 256);
}

static void dropout_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad);
static const vkp_op_def op_dropout = {.name = "dropout", .record = dropout_record, .backward = dropout_backward};

static vkp_tensor *dropout_node(vkp_graph *g, vkp_tensor *x, float p, int32_t salt) {
  x = vkp_contiguous(g, vkp_cast_f32(g, x));
  if (!x) return NULL;
  vkp_tensor *t = vkp_node_new(g, &op_dropout, VKP_DTYPE_F32, x->ndim, x->shape, &x, 1);
  if (t) {
    t->params.f[0] = p;
    t->params.i[1] = salt;
  }
  return t;
}

static void dropout_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  vkp_grad_accumulate(g, t->src[0], dropout_node(g, grad, t->params.f[0], t->params.i[1]));   // same key, same mask
}

vkp_tensor *vkp_dropout(vkp_graph *g, vkp_tensor *x, float p, uint32_t salt) {
  if (!x) return NULL;
  if (!(p >= 0.0f && p < 1.0f)) {
    vkp_graph_fail(g, VKP_ERR_INVALID, "dropout on '%s': p = %g must be in [0, 1)", x->name, (double)p);
    return NULL;
  }
  if (p == 0.0f) return x;
  return dropout_node(g, x, p, (int32_t)salt);
}
