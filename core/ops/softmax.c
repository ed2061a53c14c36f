// softmax.c — softmax and log_softmax over the last axis (a subgroup or a workgroup per row),
// forward and backward. The backward reads the forward's output y (not x): dx = y * (dy - sum(dy * y)) for
// softmax, dx = dy - exp(y) * sum(dy) for log_softmax.
#include <string.h>

#include "vkp_op.h"
#include "vkp_ops.h"
#include "ops_internal.h"
#include "../../shaders/push/softmax.h"

// params.i[0] = VKP_SOFTMAX / VKP_LOG_SOFTMAX

static void geometry(const vkp_tensor *t, vkp_pc_softmax *pc) {
  pc->len = (uint32_t)t->shape[t->ndim - 1];
  pc->rows = (uint32_t)(vkp_tensor_numel(t) / pc->len);
  pc->op = (uint32_t)t->params.i[0];
}

// Rows take a subgroup each, or a workgroup each when long (ops_internal.h).
static vkp_status dispatch_rows(vkp_recorder *rec, const char *shader, vkp_pc_softmax *pc) {
  pc->wide = vkp_rows_wide(rec, pc->len);
  return vkp_rec_dispatch_rows(rec, shader, pc, sizeof *pc, pc->rows, pc->wide);
}

static vkp_status softmax_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_softmax pc = {0};
  geometry(t, &pc);
  pc.x = vkp_rec_addr(rec, t->src[0]);
  pc.dst = vkp_rec_addr(rec, t);
  return dispatch_rows(rec, "softmax", &pc);
}

// srcs: y (the forward node), dy
static vkp_status backward_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_softmax pc = {0};
  geometry(t, &pc);
  pc.x = vkp_rec_addr(rec, t->src[0]);
  pc.dy = vkp_rec_addr(rec, t->src[1]);
  pc.dst = vkp_rec_addr(rec, t);
  return dispatch_rows(rec, "softmax_backward", &pc);
}
static const vkp_op_def op_softmax_backward = {.name = "softmax_backward", .record = backward_record, .backward = NULL};

static void softmax_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  vkp_tensor *srcs[2] = {t, vkp_contiguous(g, grad)};
  vkp_tensor *dx = vkp_node_new(g, &op_softmax_backward, VKP_DTYPE_F32, t->ndim, t->shape, srcs, 2);
  if (dx) dx->params = t->params;
  vkp_grad_accumulate(g, t->src[0], dx);
}
static const vkp_op_def op_softmax = {.name = "softmax", .record = softmax_record, .backward = softmax_backward};

static vkp_tensor *softmax(vkp_graph *g, vkp_tensor *x, uint32_t op, const char *name) {
  if (!x) return NULL;
  if (x->dtype != VKP_DTYPE_F32 && x->dtype != VKP_DTYPE_F16 && x->dtype != VKP_DTYPE_BF16) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: '%s' has dtype %s (float expected)", name, x->name, vkp_dtype_name(x->dtype));
    return NULL;
  }
  if (x->ndim < 1) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: '%s' has no dims", name, x->name);
    return NULL;
  }
  x = vkp_contiguous(g, vkp_cast_f32(g, x));
  if (!x) return NULL;
  vkp_tensor *t = vkp_node_new(g, &op_softmax, VKP_DTYPE_F32, x->ndim, x->shape, &x, 1);
  if (!t) return NULL;
  t->params.i[0] = (int32_t)op;
  strcpy(t->name, name);
  return t;
}

vkp_tensor *vkp_softmax(vkp_graph *g, vkp_tensor *x) { return softmax(g, x, VKP_SOFTMAX, "softmax"); }
vkp_tensor *vkp_log_softmax(vkp_graph *g, vkp_tensor *x) { return softmax(g, x, VKP_LOG_SOFTMAX, "log_softmax"); }
