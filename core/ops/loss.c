// loss.c — cross-entropy (fused log-softmax + NLL, ignore_index) and mean squared error.
//
// Cross-entropy node (output [1]) records two dispatches: cross_entropy.comp (a subgroup or a
// workgroup per row: lse and loss into an aux tensor) and cross_entropy_mean.comp (sum over
// counted rows / count, and the count itself saved in the aux tensor). The aux tensor is a node of its own that
// records nothing; it is a source of the loss node, so the planner reserves its storage before the
// loss runs (see the "second output" note in norm.c). aux = [loss (N) | lse (N) | count].
// The backward reads aux and lists the loss node as a source, so it is always scheduled after it.
//
// Labels: int32 class indices. ignore_index (-100) rows are left out of the mean, as in
// torch.nn.functional.cross_entropy. Any other label outside [0, C) is treated the same way
// (ignored: no loss, no gradient, not counted) instead of reading out of range; PyTorch raises an
// error there, which a replayed device graph cannot do. When every row is ignored the loss and
// its gradient are 0 (PyTorch returns NaN), so one all-padding batch cannot poison training.
#include <string.h>

#include "vkp_op.h"
#include "vkp_ops.h"
#include "ops_internal.h"
#include "../../shaders/push/loss.h"

static vkp_status noop_record(vkp_recorder *rec, const vkp_tensor *t) {
  (void)rec, (void)t;
  return VKP_OK;
}
// Storage written by the dispatches of the node that lists it as a source.
static const vkp_op_def op_aux = {.name = "loss_aux", .record = noop_record, .backward = NULL};

static vkp_tensor *aux_new(vkp_graph *g, int64_t n, vkp_tensor *after) {
  return vkp_node_new(g, &op_aux, VKP_DTYPE_F32, 1, &n, &after, 1);
}

// ---- cross-entropy --------------------------------------------------------------------------
// forward srcs: logits (N, C), labels (N), aux (2N + 1)
// backward srcs: logits, labels, aux, loss node, grad ([1])

// Rows take a subgroup each, or a workgroup each when long (ops_internal.h).
static vkp_status dispatch_rows(vkp_recorder *rec, const char *shader, vkp_pc_loss *pc) {
  pc->mode = vkp_rows_wide(rec, pc->cols);
  return vkp_rec_dispatch_rows(rec, shader, pc, sizeof *pc, pc->rows, pc->mode);
}

static vkp_status ce_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_loss pc = {0};
  pc.a = vkp_rec_addr(rec, t->src[0]);
  pc.labels = vkp_rec_addr(rec, t->src[1]);
  pc.aux = vkp_rec_addr(rec, t->src[2]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.rows = (uint32_t)t->src[0]->shape[0];
  pc.cols = (uint32_t)t->src[0]->shape[1];
  VKP_TRY(dispatch_rows(rec, "cross_entropy", &pc));
  return vkp_rec_dispatch(rec, "cross_entropy_mean", &pc, sizeof pc, 1, 1, 1);
}

static vkp_status ce_backward_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_loss pc = {0};
  pc.a = vkp_rec_addr(rec, t->src[0]);
  pc.labels = vkp_rec_addr(rec, t->src[1]);
  pc.aux = vkp_rec_addr(rec, t->src[2]);
  pc.grad = vkp_rec_addr(rec, t->src[4]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.rows = (uint32_t)t->shape[0];
  pc.cols = (uint32_t)t->shape[1];
  return dispatch_rows(rec, "cross_entropy_backward", &pc);
}
static const vkp_op_def op_ce_backward = {
    .name = "cross_entropy_backward", .record = ce_backward_record, .backward = NULL};

static void ce_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  vkp_tensor *logits = t->src[0];
  if (!logits->requires_grad) return;
  vkp_tensor *srcs[5] = {logits, t->src[1], t->src[2], t, vkp_contiguous(g, grad)};
  vkp_grad_accumulate(g, logits, vkp_node_new(g, &op_ce_backward, VKP_DTYPE_F32, 2, logits->shape, srcs, 5));
}
static const vkp_op_def op_ce = {.name = "cross_entropy", .record = ce_record, .backward = ce_backward};

vkp_tensor *vkp_cross_entropy(vkp_graph *g, vkp_tensor *logits, vkp_tensor *labels) {
  if (!logits || !labels) return NULL;
  if (logits->ndim != 2 ||
      (logits->dtype != VKP_DTYPE_F32 && logits->dtype != VKP_DTYPE_F16 && logits->dtype != VKP_DTYPE_BF16)) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "cross_entropy: logits '%s' must be a float (N, C) tensor", logits->name);
    return NULL;
  }
  if (labels->dtype != VKP_DTYPE_I32 || labels->ndim != 1 || labels->shape[0] != logits->shape[0]) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "cross_entropy: labels '%s' must be an int32 tensor of shape (%lld)",
                   labels->name, (long long)logits->shape[0]);
    return NULL;
  }
  logits = vkp_contiguous(g, vkp_cast_f32(g, logits));
  labels = vkp_contiguous(g, labels);
  if (!logits || !labels) return NULL;
  vkp_tensor *srcs[3] = {logits, labels, aux_new(g, 2 * logits->shape[0] + 1, logits)};
  int64_t one = 1;
  return vkp_node_new(g, &op_ce, VKP_DTYPE_F32, 1, &one, srcs, 3);
}

// ---- mean squared error ---------------------------------------------------------------------
// forward srcs: pred, target, [partials (aux)]; the node is [1].
// backward srcs: pred, target, grad; params.f[0] = alpha (+-2/n)

// Elements per partial sum: at most 1024 partials, at least 4096 elements each (one dispatch
// below that).
static uint32_t mse_chunk(uint32_t n) {
  uint32_t c = (n + 1023) / 1024;
  c = c < 4096 ? 4096 : c;
  return (c + 255) / 256 * 256;
}

static vkp_status mse_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_loss pc = {0};
  pc.a = vkp_rec_addr(rec, t->src[0]);
  pc.b = vkp_rec_addr(rec, t->src[1]);
  pc.n = (uint32_t)vkp_tensor_numel(t->src[0]);
  pc.chunk = mse_chunk(pc.n);
  pc.rows = (pc.n + pc.chunk - 1) / pc.chunk;
  float inv_n = (float)(1.0 / (double)pc.n);
  if (pc.rows == 1) {   // one workgroup: straight to the result
    pc.dst = vkp_rec_addr(rec, t);
    pc.alpha = inv_n;
    return vkp_rec_dispatch(rec, "mse", &pc, sizeof pc, 1, 1, 1);
  }
  pc.aux = vkp_rec_addr(rec, t->src[2]);
  pc.dst = pc.aux;
  pc.alpha = 1.0f;
  pc.mode = 0;
  VKP_TRY(vkp_rec_dispatch_1d(rec, "mse", &pc, sizeof pc, pc.rows, 1));
  pc.dst = vkp_rec_addr(rec, t);
  pc.alpha = inv_n;
  pc.mode = 1;
  return vkp_rec_dispatch(rec, "mse", &pc, sizeof pc, 1, 1, 1);
}

static vkp_status mse_backward_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_loss pc = {0};
  pc.a = vkp_rec_addr(rec, t->src[0]);
  pc.b = vkp_rec_addr(rec, t->src[1]);
  pc.grad = vkp_rec_addr(rec, t->src[2]);
  pc.dst = vkp_rec_addr(rec, t);
  pc.n = (uint32_t)vkp_tensor_numel(t);
  pc.alpha = t->params.f[0];
  return vkp_rec_dispatch_1d(rec, "mse_backward", &pc, sizeof pc, pc.n, 256);
}
static const vkp_op_def op_mse_backward = {.name = "mse_backward", .record = mse_backward_record, .backward = NULL};

static void mse_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  float two_over_n = (float)(2.0 / (double)vkp_tensor_numel(t->src[0]));
  for (int s = 0; s < 2; s++) {
    vkp_tensor *x = t->src[s];
    if (!x->requires_grad) continue;
    vkp_tensor *srcs[3] = {t->src[0], t->src[1], vkp_contiguous(g, grad)};
    vkp_tensor *d = vkp_node_new(g, &op_mse_backward, VKP_DTYPE_F32, x->ndim, x->shape, srcs, 3);
    if (d) d->params.f[0] = s == 0 ? two_over_n : -two_over_n;
    vkp_grad_accumulate(g, x, d);
  }
}
static const vkp_op_def op_mse = {.name = "mse", .record = mse_record, .backward = mse_backward};

vkp_tensor *vkp_mse(vkp_graph *g, vkp_tensor *pred, vkp_tensor *target) {
  if (!pred || !target) return NULL;
  if (!vkp_tensor_same_shape(pred, target)) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "mse: '%s' and '%s' must have the same shape", pred->name, target->name);
    return NULL;
  }
  vkp_tensor *ab[2] = {pred, target};
  for (int s = 0; s < 2; s++)
    if (ab[s]->dtype != VKP_DTYPE_F32 && ab[s]->dtype != VKP_DTYPE_F16 && ab[s]->dtype != VKP_DTYPE_BF16) {
      vkp_graph_fail(g, VKP_ERR_SHAPE, "mse: '%s' has dtype %s (float expected)", ab[s]->name,
                     vkp_dtype_name(ab[s]->dtype));
      return NULL;
    }
  pred = vkp_contiguous(g, vkp_cast_f32(g, pred));
  target = vkp_contiguous(g, vkp_cast_f32(g, target));
  if (!pred || !target) return NULL;
  uint32_t n = (uint32_t)vkp_tensor_numel(pred), chunk = mse_chunk(n);
  vkp_tensor *srcs[3] = {pred, target, NULL};
  int nsrc = 2;
  if (n > chunk) srcs[nsrc++] = aux_new(g, (n + chunk - 1) / chunk, pred);
  int64_t one = 1;
  return vkp_node_new(g, &op_mse, VKP_DTYPE_F32, 1, &one, srcs, nsrc);
}
