// attention.c — fused scaled-dot-product attention (flash-attention style), forward and backward.
//
// Kernels (shaders/attention.glsl, one variant per head-dim capacity DV = 16, 32, 64, 128, 160): one
// invocation owns a query row (forward, dQ) or key row (dK/dV) — the backward kernels up to DV 64
// own two (i, i + 4) — the rows of all heads packed on a 1-D grid of 64-invocation workgroups; the
// other side's rows stream through registers, shared within groups of 4 lanes by subgroupShuffle,
// each streamed row serving every row the invocation owns.
// Head dims 161..1024 (shaders/attention_wide.glsl, DV = 256, 512, 1024): a row is split over 8
// lanes (each owns every 8th column pair), dot products are completed with subgroupShuffleXor,
// and each group of 8 lanes owns 4 rows, so a streamed row is loaded once for 4 (32 rows per
// workgroup); same outputs, same backward.
// Forward: online softmax over key blocks; the (Tq, Tk) score matrix is never stored. Besides O
// it writes the per-row logsumexp into an auxiliary tensor `lse` (B, H, Tq): a node with no
// dispatches of its own, listed as a source of O so the memory planner gives it storage before O
// runs and keeps it until the backward kernels (its other readers) are done.
// Backward: delta = rowsum(dO * O) (attention_delta.comp), then dQ per query row
// (attention_dq_d*) and dK, dV per key row (attention_dkv_d*), both recomputing
// P = exp(scale * q.k + mask - lse) instead of reading a stored matrix.
//
// q, k, v are read through their strides (last dim contiguous) with 64-bit loads, so the usual
// permuted view (B, T, H, D) -> (B, H, T, D) costs no copy. Odd strides or offsets get a
// contiguous copy; an odd D is zero-padded to D + 1 (concat) and the output sliced back. Causal
// masking follows PyTorch's scaled_dot_product_attention(is_causal=True): query i sees keys j <= i
// (top-left aligned, also when Tq != Tk). A row whose keys are all masked outputs zeros (PyTorch
// gives NaN) and gets zero gradients. The mask is not differentiated.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "vkp_op.h"
#include "vkp_ops.h"
#include "../../shaders/push/attention.h"

#define ATTN_DMAX 1024        // largest DV variant (attention_wide.glsl)
#define ATTN_NARROW_DMAX 160  // largest DV of attention.glsl
#define ATTN_WIDE_LANES 8     // lanes per row in attention_wide.glsl (G there)
#define ATTN_ROWS 64          // invocations per workgroup of attention.glsl
#define ATTN_BWD_RB2_DMAX 64  // dQ and dK/dV kernels up to this capacity own 2 rows per invocation (RB)
#define ATTN_WIDE_ROWS 32     // rows per workgroup of attention_wide.glsl (ROWS = 64 / G * RB, RB = 4)

// params: f[0] scale, i[1] flags (VKP_ATTN_*)
// node srcs: q, k, v, lse, [mask]

static void strides3(const vkp_tensor *t, int32_t s[3]) {
  for (int d = 0; d < 3; d++) s[d] = (int32_t)t->stride[d];
}

// Push constants common to every kernel of the family, for node `t` whose srcs are q, k, v.
static void fill_pc(vkp_recorder *rec, const vkp_tensor *q, const vkp_tensor *k, const vkp_tensor *v,
                    const vkp_tensor *mask, const vkp_tensor *params, vkp_pc_attention *pc) {
  memset(pc, 0, sizeof *pc);
  pc->q = vkp_rec_addr(rec, q);
  pc->k = vkp_rec_addr(rec, k);
  pc->v = vkp_rec_addr(rec, v);
  pc->mask = mask ? vkp_rec_addr(rec, mask) : 0;
  strides3(q, pc->q_stride);
  strides3(k, pc->k_stride);
  strides3(v, pc->v_stride);
  pc->H = (int32_t)q->shape[1];
  pc->Tq = (int32_t)q->shape[2];
  pc->Tk = (int32_t)k->shape[2];
  pc->D = (int32_t)q->shape[3];
  pc->scale = params->params.f[0];
  pc->flags = (uint32_t)params->params.i[1];
  pc->B = (int32_t)q->shape[0];
}

// Dispatches kernel `name` over n rows of every head. attention.glsl packs the rows of all heads
// on a 1-D grid, rb rows per invocation (its variant's RB), each head's rows padded to a multiple
// of 4 rb; attention_wide.glsl takes a grid of (row blocks, H, B).
static vkp_status dispatch_rows(vkp_recorder *rec, const char *name, const vkp_pc_attention *pc, int64_t n, int rb) {
  if (pc->D > ATTN_NARROW_DMAX)
    return vkp_rec_dispatch(rec, name, pc, sizeof *pc, (uint32_t)((n + ATTN_WIDE_ROWS - 1) / ATTN_WIDE_ROWS),
                            (uint32_t)pc->H, (uint32_t)pc->B);
  int64_t padded = (n + 4 * rb - 1) / (4 * rb) * (4 * rb);
  uint64_t slots = (uint64_t)pc->B * (uint64_t)pc->H * (uint64_t)(padded / rb);
  return vkp_rec_dispatch_1d(rec, name, pc, sizeof *pc, slots, ATTN_ROWS);
}

// Shader variant for head dim D: the smallest capacity DV >= D (attention_<kernel>_d<DV>, or
// _w<DV> past 160).
static const char *variant(const char *kernel, int64_t D, char *buf, size_t cap) {
  static const int dvs[] = {16, 32, 64, 128, 160, 256, 512, 1024};
  int dv = ATTN_DMAX;
  for (size_t i = 0; i < sizeof dvs / sizeof *dvs; i++)
    if (D <= dvs[i]) {
      dv = dvs[i];
      break;
    }
  snprintf(buf, cap, "attention_%s_%c%d", kernel, dv > ATTN_NARROW_DMAX ? 'w' : 'd', dv);
  return buf;
}

// ---- auxiliary storage ----------------------------------------------------------------------

static vkp_status aux_record(vkp_recorder *rec, const vkp_tensor *t) {
  (void)rec, (void)t;
  return VKP_OK;   // storage only: written by the node that lists it as a source
}
static const vkp_op_def op_attention_lse = {.name = "attention_lse", .record = aux_record, .backward = NULL};

// ---- backward kernels -----------------------------------------------------------------------

// delta node: srcs O, dO -> (B, H, Tq)
static vkp_status delta_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_pc_attention pc = {0};
  pc.q = vkp_rec_addr(rec, t->src[0]);
  pc.dout = vkp_rec_addr(rec, t->src[1]);
  pc.delta = vkp_rec_addr(rec, t);
  pc.D = (int32_t)t->src[0]->shape[3];
  int64_t rows = vkp_tensor_numel(t);
  pc.Tk = (int32_t)rows;
  pc.H = (int32_t)t->shape[1];    // t: (B, H, Tq) like lse
  pc.Tq = (int32_t)t->shape[2];
  pc.flags = (uint32_t)t->src[0]->params.i[1] & VKP_ATTN_O_BTHD;
  return vkp_rec_dispatch_1d(rec, "attention_delta", &pc, sizeof pc, (uint64_t)rows, 64);
}
static const vkp_op_def op_attention_delta = {.name = "attention_delta", .record = delta_record, .backward = NULL};

// dq node: srcs q, k, v, lse, dO, delta, [mask] -> (B, H, Tq, D)
// dkv node: same srcs -> (2, B*H, Tk, D)
static vkp_status grad_record(vkp_recorder *rec, const vkp_tensor *t, bool dq) {
  const vkp_tensor *q = t->src[0], *k = t->src[1];
  vkp_pc_attention pc;
  fill_pc(rec, q, k, t->src[2], t->nsrc > 6 ? t->src[6] : NULL, t, &pc);
  pc.lse = vkp_rec_addr(rec, t->src[3]);
  pc.dout = vkp_rec_addr(rec, t->src[4]);
  pc.delta = vkp_rec_addr(rec, t->src[5]);
  pc.dst = vkp_rec_addr(rec, t);
  char name[32];
  return dispatch_rows(rec, variant(dq ? "dq" : "dkv", q->shape[3], name, sizeof name), &pc,
                       dq ? q->shape[2] : k->shape[2], q->shape[3] <= ATTN_BWD_RB2_DMAX ? 2 : 1);
}
static vkp_status dq_record(vkp_recorder *rec, const vkp_tensor *t) { return grad_record(rec, t, true); }
static vkp_status dkv_record(vkp_recorder *rec, const vkp_tensor *t) { return grad_record(rec, t, false); }
static const vkp_op_def op_attention_dq = {.name = "attention_dq", .record = dq_record, .backward = NULL};
static const vkp_op_def op_attention_dkv = {.name = "attention_dkv", .record = dkv_record, .backward = NULL};

// ---- forward --------------------------------------------------------------------------------

static vkp_status fwd_record(vkp_recorder *rec, const vkp_tensor *t) {
  const vkp_tensor *q = t->src[0];
  vkp_pc_attention pc;
  fill_pc(rec, q, t->src[1], t->src[2], t->nsrc > 4 ? t->src[4] : NULL, t, &pc);
  pc.lse = vkp_rec_addr(rec, t->src[3]);
  pc.dst = vkp_rec_addr(rec, t);
  char name[32];
  return dispatch_rows(rec, variant("fwd", q->shape[3], name, sizeof name), &pc, q->shape[2], 1);
}

// Whether x (B, H, T, D) is a head permute of a (B, T, H, D) layout (heads closer than tokens):
// its gradient is then produced in that layout (VKP_ATTN_*_BTHD), so the permute's backward and
// the projection after it need no copy.
static bool heads_inner(const vkp_tensor *x) { return x->shape[1] > 1 && x->stride[1] < x->stride[2]; }

static const int swap_ht[4] = {0, 2, 1, 3};   // (B, H, T, D) <-> (B, T, H, D)

static void fwd_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  vkp_tensor *q = t->src[0], *k = t->src[1], *v = t->src[2], *lse = t->src[3];
  vkp_tensor *mask = t->nsrc > 4 ? t->src[4] : NULL;
  vkp_tensor *dout = vkp_contiguous(g, grad);   // t's own layout: (B, Tq, H, D) with O_BTHD
  vkp_tensor *dsrc[2] = {t, dout};
  vkp_tensor *delta = vkp_node_new(g, &op_attention_delta, VKP_DTYPE_F32, 3, lse->shape, dsrc, 2);
  vkp_tensor *srcs[7] = {q, k, v, lse, dout, delta, mask};
  int nsrc = mask ? 7 : 6;
  int64_t B = q->shape[0], H = q->shape[1], Tq = q->shape[2], Tk = k->shape[2], D = k->shape[3];
  if (q->requires_grad) {
    bool bthd = heads_inner(q);
    vkp_tensor *dq = vkp_node_new(g, &op_attention_dq, VKP_DTYPE_F32, 4,
                                  bthd ? (int64_t[]){B, Tq, H, D} : q->shape, srcs, nsrc);
    if (dq) {
      dq->params = t->params;
      if (bthd) dq->params.i[1] |= (int32_t)VKP_ATTN_DQ_BTHD;
    }
    vkp_grad_accumulate(g, q, bthd ? vkp_permute(g, dq, swap_ht) : dq);
  }
  if (k->requires_grad || v->requires_grad) {
    bool bthd = heads_inner(k) && heads_inner(v);
    int64_t shape[4] = {2, B * H, Tk, D};
    if (bthd) shape[0] = 2 * B, shape[1] = Tk, shape[2] = H;
    vkp_tensor *dkv = vkp_node_new(g, &op_attention_dkv, VKP_DTYPE_F32, 4, shape, srcs, nsrc);
    if (!dkv) return;
    dkv->params = t->params;
    if (bthd) dkv->params.i[1] |= (int32_t)VKP_ATTN_DKV_BTHD;
    vkp_tensor *dk = bthd ? vkp_slice(g, dkv, 0, 0, B) : vkp_reshape(g, vkp_slice(g, dkv, 0, 0, 1), 4, k->shape);
    vkp_tensor *dv = bthd ? vkp_slice(g, dkv, 0, B, B) : vkp_reshape(g, vkp_slice(g, dkv, 0, 1, 1), 4, v->shape);
    if (bthd) {
      dk = vkp_permute(g, dk, swap_ht);
      dv = vkp_permute(g, dv, swap_ht);
    }
    if (k->requires_grad) vkp_grad_accumulate(g, k, dk);
    if (v->requires_grad) vkp_grad_accumulate(g, v, dv);
  }
}
static const vkp_op_def op_attention = {.name = "attention", .record = fwd_record, .backward = fwd_backward};

// True when every row of t starts on an 8-byte boundary (the kernels' 64-bit loads).
static bool pair_aligned(const vkp_tensor *t) {
  const vkp_tensor *o = t->view_src ? t->view_src : t;
  if (t->stride[3] != 1 || (t->offset & 1) || (o->kind == VKP_TENSOR_EXTERNAL && (o->buffer_offset & 7))) return false;
  for (int d = 0; d < 3; d++)
    if (t->shape[d] > 1 && (t->stride[d] & 1)) return false;
  return true;
}

// f32, unit stride along D, D even, rows 8-byte aligned: casts, copies or zero-pads t as needed.
static vkp_tensor *prepare(vkp_graph *g, vkp_tensor *t) {
  t = vkp_cast_f32(g, t);
  if (!t) return NULL;
  if (t->shape[3] & 1) {   // odd D: append a zero column (its gradient is dropped by concat's backward)
    int64_t shape[4] = {t->shape[0], t->shape[1], t->shape[2], 1};
    return vkp_concat(g, vkp_contiguous(g, t), vkp_fill(g, VKP_DTYPE_F32, 4, shape, 0.0f), 3);
  }
  if (pair_aligned(t)) return t;
  if (!vkp_tensor_is_contiguous(t)) t = vkp_contiguous(g, t);
  return pair_aligned(t) ? t : vkp_scale(g, t, 1.0f);   // an external at an odd offset: copy it
}

vkp_tensor *vkp_attention(vkp_graph *g, vkp_tensor *q, vkp_tensor *k, vkp_tensor *v, vkp_tensor *mask, bool causal,
                          float scale) {
  if (!q || !k || !v) return NULL;
  if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "attention: q '%s', k '%s' and v '%s' must be 4-D (B, H, T, D)", q->name, k->name,
                   v->name);
    return NULL;
  }
  if (!vkp_tensor_same_shape(k, v) || k->shape[0] != q->shape[0] || k->shape[1] != q->shape[1] ||
      k->shape[3] != q->shape[3]) {
    vkp_graph_fail(g, VKP_ERR_SHAPE,
                   "attention: k '%s' (%lld,%lld,%lld,%lld) and v '%s' must be (B, H, Tk, D) for q '%s' "
                   "(%lld,%lld,%lld,%lld)",
                   k->name, (long long)k->shape[0], (long long)k->shape[1], (long long)k->shape[2],
                   (long long)k->shape[3], v->name, q->name, (long long)q->shape[0], (long long)q->shape[1],
                   (long long)q->shape[2], (long long)q->shape[3]);
    return NULL;
  }
  int64_t B = q->shape[0], H = q->shape[1], Tq = q->shape[2], Tk = k->shape[2], D = q->shape[3];
  if (D > ATTN_DMAX) {
    vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "attention: head dim %lld of '%s' exceeds %d", (long long)D, q->name,
                   ATTN_DMAX);
    return NULL;
  }
  uint32_t lanes = D > ATTN_NARROW_DMAX ? ATTN_WIDE_LANES : 4, sg = vkp_ctx_info(vkp_graph_ctx(g))->subgroup_size;
  if (sg % lanes != 0) {
    vkp_graph_fail(g, VKP_ERR_UNSUPPORTED,
                   "attention: head dim %lld needs a subgroup size that is a multiple of %u (the device's is %u)",
                   (long long)D, lanes, sg);
    return NULL;
  }
  int64_t rows = B * H * ((Tq > Tk ? Tq : Tk) + 8);   // packed rows (padded to 4 RB) as int32 in the kernels
  if (B > 65535 || H > 65535 || rows > INT32_MAX) {
    vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "attention: batch %lld x heads %lld x %lld rows of '%s' is too large",
                   (long long)B, (long long)H, (long long)(Tq > Tk ? Tq : Tk), q->name);
    return NULL;
  }
  uint32_t flags = causal ? VKP_ATTN_CAUSAL : 0u;
  if (mask) {
    bool ok = mask->ndim == 4 && (mask->shape[0] == B || mask->shape[0] == 1) && mask->shape[1] == 1 &&
              (mask->shape[2] == 1 || mask->shape[2] == Tq) && mask->shape[3] == Tk;
    if (!ok) {
      vkp_graph_fail(g, VKP_ERR_SHAPE, "attention: mask '%s' must be (%lld or 1, 1, 1 or %lld, %lld)", mask->name,
                     (long long)B, (long long)Tq, (long long)Tk);
      return NULL;
    }
    if (mask->shape[2] == Tq && Tq > 1) flags |= VKP_ATTN_MASK_ROWS;
    if (mask->shape[0] == 1 && B > 1) flags |= VKP_ATTN_MASK_BCAST;
    mask = vkp_contiguous(g, vkp_cast_f32(g, mask));
  }
  q = prepare(g, q);
  k = prepare(g, k);
  v = prepare(g, v);
  int64_t Dp = D + (D & 1);
  int64_t lse_shape[3] = {B, H, Tq};
  vkp_tensor *lse = vkp_node_new(g, &op_attention_lse, VKP_DTYPE_F32, 3, lse_shape, NULL, 0);
  vkp_tensor *srcs[5] = {q, k, v, lse, mask};
  // O in (B, Tq, H, D) when q comes from that layout (the usual head permute of a projection):
  // the node is stored so, and the result is its permuted view.
  bool bthd = Dp == D && heads_inner(q);
  if (bthd) flags |= VKP_ATTN_O_BTHD;
  vkp_tensor *t = vkp_node_new(g, &op_attention, VKP_DTYPE_F32, 4,
                               bthd ? (int64_t[]){B, Tq, H, D} : (int64_t[]){B, H, Tq, Dp}, srcs, mask ? 5 : 4);
  if (!t) return NULL;
  t->params.f[0] = scale != 0.0f ? scale : 1.0f / sqrtf((float)D);
  t->params.i[1] = (int32_t)flags;
  if (bthd) return vkp_permute(g, t, swap_ht);
  return Dp == D ? t : vkp_contiguous(g, vkp_slice(g, t, 3, 0, D));
}
