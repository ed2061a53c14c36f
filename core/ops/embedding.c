// embedding.c — row lookup in a table (nn.Embedding) and its scatter-add backward.
// Out-of-range ids (negative or >= V) produce zero rows and receive no gradient. A frozen f16/bf16
// table is read in place (no f32 copy); only an f32 table can be trained. The backward
// adds rows of the output gradient into the table gradient with float atomics
// (shaderBufferFloat32AtomicAdd); devices without them fail at build time with VKP_ERR_UNSUPPORTED.
#include "vkp_op.h"
#include "vkp_ops.h"
#include "../../shaders/push/elementwise.h"
#include "../../shaders/push/embedding.h"

// srcs: table (V, D), ids (n) contiguous int32

static void fill_pc(vkp_recorder *rec, const vkp_tensor *table_like, const vkp_tensor *ids, const vkp_tensor *rows,
                    vkp_pc_embedding *pc) {
  uint64_t addr = vkp_rec_addr(rec, table_like);
  pc->table = addr;
  if (table_like->dtype != VKP_DTYPE_F32) {   // 16-bit: word-aligned base + element offset
    pc->table = addr & ~(uint64_t)3;
    pc->table_off = (uint32_t)((addr & 3) >> 1);
    pc->dtype = table_like->dtype == VKP_DTYPE_BF16 ? VKP_EMB_BF16 : VKP_EMB_F16;
  }
  pc->ids = vkp_rec_addr(rec, ids);
  pc->rows = vkp_rec_addr(rec, rows);
  pc->V = (int32_t)table_like->shape[0];
  pc->D = (int32_t)table_like->shape[1];
  pc->n = (uint32_t)vkp_tensor_numel(rows);
}

static vkp_status embedding_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_embedding pc = {0};
  fill_pc(rec, t->src[0], t->src[1], t, &pc);
  return vkp_rec_dispatch_1d(rec, "embedding", &pc, sizeof pc, pc.n, 256);
}

// grad node: srcs ids, dout -> (V, D). Zero fill, barrier, scatter-add.
static vkp_status embedding_grad_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_elementwise fill = {0};
  fill.dst = vkp_rec_addr(rec, t);
  fill.n = (uint32_t)vkp_tensor_numel(t);
  VKP_TRY(vkp_rec_dispatch_1d(rec, "fill", &fill, sizeof fill, fill.n, 256));
  vkp_rec_barrier(rec);
  vkp_pc_embedding pc = {0};
  fill_pc(rec, t, t->src[0], t->src[1], &pc);
  return vkp_rec_dispatch_1d(rec, "embedding_grad", &pc, sizeof pc, pc.n, 256);
}
static const vkp_op_def op_embedding_grad = {
    .name = "embedding_grad", .record = embedding_grad_record, .backward = NULL};

static void embedding_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  vkp_tensor *table = t->src[0], *ids = t->src[1];
  if (!table->requires_grad) return;
  if (table->dtype != VKP_DTYPE_F32) {
    vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "embedding: '%s' is %s: 16-bit tables are frozen (no gradient)",
                   table->name, vkp_dtype_name(table->dtype));
    return;
  }
  if (!vkp_ctx_info(vkp_graph_ctx(g))->float_atomics) {
    vkp_graph_fail(g, VKP_ERR_UNSUPPORTED,
                   "embedding: the gradient of '%s' needs float atomics (shaderBufferFloat32AtomicAdd), which %s "
                   "lacks",
                   table->name, vkp_ctx_info(vkp_graph_ctx(g))->name);
    return;
  }
  vkp_tensor *srcs[2] = {ids, vkp_contiguous(g, grad)};
  vkp_grad_accumulate(g, table, vkp_node_new(g, &op_embedding_grad, VKP_DTYPE_F32, 2, table->shape, srcs, 2));
}
static const vkp_op_def op_embedding = {
    .name = "embedding", .record = embedding_record, .backward = embedding_backward};

vkp_tensor *vkp_embedding(vkp_graph *g, vkp_tensor *table, vkp_tensor *ids) {
  if (!table || !ids) return NULL;
  if (table->ndim != 2) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "embedding: table '%s' must be 2-D (V, D), has %d dims", table->name, table->ndim);
    return NULL;
  }
  if (ids->dtype != VKP_DTYPE_I32) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "embedding: ids '%s' must be int32, not %s", ids->name,
                   vkp_dtype_name(ids->dtype));
    return NULL;
  }
  if (ids->ndim >= VKP_MAX_DIMS) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "embedding: ids '%s' have %d dims (at most %d)", ids->name, ids->ndim,
                   VKP_MAX_DIMS - 1);
    return NULL;
  }
  if (table->shape[0] > INT32_MAX) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "embedding: table '%s' has more than 2^31 rows", table->name);
    return NULL;
  }
  if (table->dtype != VKP_DTYPE_F32 && table->dtype != VKP_DTYPE_F16 && table->dtype != VKP_DTYPE_BF16) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "embedding: table '%s' has dtype %s (f32, f16 or bf16 expected)", table->name,
                   vkp_dtype_name(table->dtype));
    return NULL;
  }
  if (!vkp_tensor_is_contiguous(table)) {
    if (table->dtype != VKP_DTYPE_F32) {
      vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "embedding: 16-bit table '%s' must be contiguous", table->name);
      return NULL;
    }
    table = vkp_contiguous(g, table);
  }
  ids = vkp_contiguous(g, ids);
  if (!table || !ids) return NULL;
  int64_t shape[VKP_MAX_DIMS];
  for (int d = 0; d < ids->ndim; d++) shape[d] = ids->shape[d];
  shape[ids->ndim] = table->shape[1];
  vkp_tensor *srcs[2] = {table, ids};
  return vkp_node_new(g, &op_embedding, VKP_DTYPE_F32, ids->ndim + 1, shape, srcs, 2);
}
