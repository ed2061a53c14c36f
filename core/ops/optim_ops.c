// optim_ops.c — graph nodes of the optimizer (see vkp_optim.h): global gradient norm in two
// stages and the fused multi-tensor AdamW / SGD update. The per-graph tables (parameter entries
// and chunks) and the hyper-parameter buffer are built and owned by core/optim.c; the nodes carry
// only their device addresses.
#include <string.h>

#include "vkp_op.h"
#include "vkp_ops.h"
#include "../../shaders/push/optim.h"

// Node params: u64 table, u64 chunks, u64 hparams, u64 qmap (8-bit code book or 0),
// u32 n_chunks, u32 kind (0 AdamW, 1 SGD).
typedef struct optim_node_params {
  uint64_t table, chunks, hparams, qmap;
  uint32_t n_chunks, kind;
} optim_node_params;
_Static_assert(sizeof(optim_node_params) <= VKP_OP_PARAM_BYTES, "optimizer node params must fit");

static optim_node_params get_params(const vkp_tensor *t) {
  optim_node_params p;
  memcpy(&p, t->params.bytes, sizeof p);
  return p;
}

static vkp_pc_optim push_for(vkp_recorder *rec, const vkp_tensor *t) {
  optim_node_params p = get_params(t);
  vkp_pc_optim pc = {0};
  pc.params = p.table;
  pc.chunks = p.chunks;
  pc.hparams = p.hparams;
  pc.scalars = vkp_rec_scalars_addr(rec);
  pc.n_chunks = p.n_chunks;
  pc.chunk_elems = VKP_OPTIM_CHUNK;
  pc.qmap = p.qmap;
  return pc;
}

// Stage 1: src none (reads the persistent gradient buffers); out (n_chunks) partial sums.
static vkp_status sumsq_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_optim pc = push_for(rec, t);
  pc.partial = vkp_rec_addr(rec, t);
  return vkp_rec_dispatch_1d(rec, "grad_norm_partial", &pc, sizeof pc, pc.n_chunks, 1);
}
static const vkp_op_def op_grad_sumsq = {.name = "grad_sumsq", .record = sumsq_record, .backward = NULL};

// Stage 2: src[0] partial sums; out [1] the norm.
static vkp_status norm_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_optim pc = push_for(rec, t);
  pc.partial = vkp_rec_addr(rec, t->src[0]);
  pc.norm = vkp_rec_addr(rec, t);
  return vkp_rec_dispatch(rec, "grad_norm", &pc, sizeof pc, 1, 1, 1);
}
static const vkp_op_def op_grad_norm = {.name = "grad_norm", .record = norm_record, .backward = NULL};

// Update: src[0] the norm (clip coefficient); writes parameters, state and gradients in place.
static vkp_status update_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_optim pc = push_for(rec, t);
  pc.norm = vkp_rec_addr(rec, t->src[0]);
  const char *shader = get_params(t).kind == 0 ? "adamw" : "sgd";
  return vkp_rec_dispatch_1d(rec, shader, &pc, sizeof pc, pc.n_chunks, 1);
}
static const vkp_op_def op_optim_update = {.name = "optim_update", .record = update_record, .backward = NULL};

vkp_tensor *vkp_optim_append_nodes(vkp_graph *g, uint64_t table, uint64_t chunks, uint32_t n_chunks,
                                   uint64_t hparams, uint64_t qmap, int kind, vkp_tensor **norm_out);

// Appends sumsq -> norm -> update; returns the update node (to expand after the gradient
// accumulations) and the norm in *norm_out. n_chunks must be > 0.
vkp_tensor *vkp_optim_append_nodes(vkp_graph *g, uint64_t table, uint64_t chunks, uint32_t n_chunks,
                                   uint64_t hparams, uint64_t qmap, int kind, vkp_tensor **norm_out) {
  optim_node_params p = {table, chunks, hparams, qmap, n_chunks, (uint32_t)kind};
  *norm_out = NULL;
  vkp_tensor *partial = vkp_node_new(g, &op_grad_sumsq, VKP_DTYPE_F32, 1, (int64_t[]){n_chunks}, NULL, 0);
  if (!partial) return NULL;
  memcpy(partial->params.bytes, &p, sizeof p);
  vkp_tensor *norm = vkp_node_new(g, &op_grad_norm, VKP_DTYPE_F32, 1, (int64_t[]){1}, &partial, 1);
  if (!norm) return NULL;
  memcpy(norm->params.bytes, &p, sizeof p);
  vkp_tensor *upd = vkp_node_new(g, &op_optim_update, VKP_DTYPE_F32, 1, (int64_t[]){1}, &norm, 1);
  if (!upd) return NULL;
  memcpy(upd->params.bytes, &p, sizeof p);
  *norm_out = vkp_tensor_set_name(norm, "grad_norm");
  return upd;
}
