// matmul.c — batched matrix products (vkp_matmul) and nn.Linear (vkp_linear).
//
// One node computes C = op(A)·op(B) (+ bias) for up to two broadcast batch dims. Transposes are
// strides: the kernels read op(A)[m][k] = a[m*a_ms + k*a_ks] and op(B)[k][n] = b[k*b_ks + n*b_ns],
// so a transposed view (or a row-strided slice) never costs a copy. The record step picks a
// kernel per call:
//   matmul_nn / matmul_nt / matmul_tn   register-blocked kernels for the common layouts (unit
//                                       stride along K or along M/N as the name says)
//   matmul_generic                      any strides (one output per invocation)
// and splits work that exceeds device limits: K in chunks of VKP_MM_K_CHUNK (later chunks
// accumulate into C, keeping per-invocation loops short on lavapipe), M in chunks whose
// workgroup count fits the y limit.
//
// Backward (only for inputs that require grad; a 16-bit b is a frozen weight and gets none):
//   d op(A) = dC · op(B)^T,   d op(B) = op(A)^T · dC
// expressed as matmul nodes with the transposes folded into trans flags. When b is shared by
// every batch (2-D) and a's batch dims fold into its rows, dB is one product with K = batch*M
// rather than a per-batch product followed by a sum; other broadcast batch dims are summed back
// with vkp_sum_to. The bias gradient is dC summed over rows (vkp_sum_to).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../vkp_op.h"
#include "../vkp_ops.h"
#include "../../shaders/push/matmul.h"

#define VKP_MM_K_CHUNK 16384   // longest K range one dispatch handles (loop-length cap)

// params.i[0] = trans_a, i[1] = trans_b, i[2] = has bias (src[2])

typedef struct mm_geom {
  int64_t M, N, K;
  int64_t a_ms, a_ks, b_ks, b_ns, c_ms;
  int64_t batch0, batch1;               // output batch dims (1 when absent)
  int64_t a_bs[2], b_bs[2], c_bs[2];    // batch strides (0 on broadcast dims)
} mm_geom;

// Shapes and strides of the product `t` as the kernels see them.
static void mm_geometry(const vkp_tensor *t, mm_geom *g) {
  const vkp_tensor *a = t->src[0], *b = t->src[1];
  bool ta = t->params.i[0] != 0, tb = t->params.i[1] != 0;
  int32_t as[4], ast[4], bs[4], bst[4], cs[4], cst[4];
  vkp_shape4(a, as, ast);
  vkp_shape4(b, bs, bst);
  vkp_shape4(t, cs, cst);
  memset(g, 0, sizeof *g);
  g->M = cs[2];
  g->N = cs[3];
  g->K = ta ? as[2] : as[3];
  g->a_ms = ta ? ast[3] : ast[2];
  g->a_ks = ta ? ast[2] : ast[3];
  g->b_ks = tb ? bst[3] : bst[2];
  g->b_ns = tb ? bst[2] : bst[3];
  g->c_ms = cst[2];
  g->batch0 = cs[0];
  g->batch1 = cs[1];
  for (int d = 0; d < 2; d++) {
    g->a_bs[d] = as[d] == 1 ? 0 : ast[d];
    g->b_bs[d] = bs[d] == 1 ? 0 : bst[d];
    g->c_bs[d] = cs[d] == 1 ? 0 : cst[d];
  }
  // A shared B with A's batch dims laid out like extra rows: one (batch*M, K) product.
  bool fold = g->b_bs[0] == 0 && g->b_bs[1] == 0 && (g->batch0 > 1 || g->batch1 > 1);
  if (fold && g->batch1 > 1) fold = g->a_bs[1] == g->M * g->a_ms && g->c_bs[1] == g->M * g->c_ms;
  if (fold && g->batch0 > 1)
    fold = g->a_bs[0] == g->batch1 * g->M * g->a_ms && g->c_bs[0] == g->batch1 * g->M * g->c_ms;
  if (fold) {
    g->M *= g->batch0 * g->batch1;
    g->batch0 = g->batch1 = 1;
    memset(g->a_bs, 0, sizeof g->a_bs);
    memset(g->c_bs, 0, sizeof g->c_bs);
  }
  // Strides of size-1 dims do not matter: make them unit so the fast layouts still match.
  if (g->K == 1) g->a_ks = g->b_ks = 1;
}

typedef struct mm_kernel {
  const char *shader;
  uint32_t tile_m, tile_n;   // outputs per workgroup along M and N
} mm_kernel;

static bool even(int64_t v) { return (v & 1) == 0; }

// Picks the register-blocked kernel when the layout and alignment allow its pair loads (64-bit
// words of f32, 32-bit words of 16-bit B), else the generic one. a_addr/b_addr: byte addresses.
static mm_kernel mm_pick(vkp_recorder *rec, const mm_geom *g, uint32_t b_dtype, uint64_t a_addr, uint64_t b_addr) {
  static const mm_kernel generic = {"matmul_generic", 8, 8};
  const char *ex = getenv("VKP_MM_EXP");   // TEMP experiments
  if (ex && g->a_ks == 1 && g->b_ns == 1 && b_dtype == 0) {
    static char nm[64];
    snprintf(nm, sizeof nm, "matmul_exp%s", ex);
    return (mm_kernel){nm, (uint32_t)atoi(getenv("VKP_MM_WM")), (uint32_t)atoi(getenv("VKP_MM_WN"))};
  }
  uint32_t S = vkp_ctx_info(vkp_rec_ctx(rec))->subgroup_size;
  if (S == 0 || S > 64) return generic;   // the fast kernels run 64-invocation workgroups
  bool b16 = b_dtype != VKP_MM_B_F32;
  bool a_ok = (a_addr & 7) == 0 && even(g->a_bs[0]) && even(g->a_bs[1]);
  bool b_ok = (b_addr & (b16 ? 3 : 7)) == 0 && even(g->b_bs[0]) && even(g->b_bs[1]);
  if (!a_ok || !b_ok) return generic;
  const char *name = NULL;
  uint32_t tm = 8, tc = 0;
  if (g->a_ks == 1 && g->b_ns == 1 && even(g->a_ms) && even(g->K) && even(g->b_ks) && even(g->N)) {
    name = b_dtype == VKP_MM_B_F16 ? "matmul_nn_f16" : b_dtype == VKP_MM_B_BF16 ? "matmul_nn_bf16" : "matmul_nn";
    tc = 2;
  } else if (g->a_ks == 1 && g->b_ks == 1 && even(g->a_ms) && even(g->K) && even(g->b_ns)) {
    name = b_dtype == VKP_MM_B_F16 ? "matmul_nt_f16" : b_dtype == VKP_MM_B_BF16 ? "matmul_nt_bf16" : "matmul_nt";
    tc = 2;
  } else if (!b16 && g->a_ms == 1 && g->b_ns == 1 && even(g->a_ks) && even(g->M) && even(g->b_ks) && even(g->N)) {
    name = "matmul_tn";
    tc = 2;
  }
  if (!name) return generic;
  const char *e = getenv("VKP_MM_FORCE");
  if (e && !strcmp(e, "generic")) return generic;
  const char *ov = getenv("VKP_MM_SHADER");   // TEMP name:tm:tc
  if (ov) {
    static char nm2[64];
    int otm = 8, otc = 2;
    sscanf(ov, "%63[^:]:%d:%d", nm2, &otm, &otc);
    return (mm_kernel){nm2, (uint32_t)otm * (64 / S), (uint32_t)otc * S};
  }
  if (getenv("VKP_MM_TRACE")) fprintf(stderr, "MMTRACE %s M=%lld N=%lld K=%lld\n", name, (long long)g->M, (long long)g->N, (long long)g->K);
  return (mm_kernel){name, tm * (64 / S), tc * S};
}

static vkp_status matmul_record(vkp_recorder *rec, const vkp_tensor *t) {
  const vkp_tensor *a = t->src[0], *b = t->src[1];
  mm_geom g;
  mm_geometry(t, &g);
  uint32_t b_dtype = b->dtype == VKP_DTYPE_F16 ? VKP_MM_B_F16 : b->dtype == VKP_DTYPE_BF16 ? VKP_MM_B_BF16 : VKP_MM_B_F32;
  bool b16 = b_dtype != VKP_MM_B_F32;
  uint64_t a_addr = vkp_rec_addr(rec, a), b_addr = vkp_rec_addr(rec, b), c_addr = vkp_rec_addr(rec, t);
  mm_kernel kern = mm_pick(rec, &g, b_dtype, a_addr, b_addr);

  vkp_pc_matmul pc = {0};
  pc.N = (uint32_t)g.N;
  pc.a_ms = (int32_t)g.a_ms;
  pc.a_ks = (int32_t)g.a_ks;
  pc.b_ks = (int32_t)g.b_ks;
  pc.b_ns = (int32_t)g.b_ns;
  pc.c_ms = (int32_t)g.c_ms;
  pc.batch1 = (uint32_t)g.batch1;
  for (int d = 0; d < 2; d++) {
    pc.a_bs[d] = (int32_t)g.a_bs[d];
    pc.b_bs[d] = (int32_t)g.b_bs[d];
    pc.c_bs[d] = (int32_t)g.c_bs[d];
  }
  pc.tile_m = kern.tile_m;
  pc.tile_n = kern.tile_n;
  uint64_t bias_addr = t->params.i[2] ? vkp_rec_addr(rec, t->src[2]) : 0;
  uint32_t max_gy = vkp_ctx_info(vkp_rec_ctx(rec))->max_workgroup_count[1];
  if (max_gy > 65535) max_gy = 65535;
  int64_t m_chunk = (int64_t)max_gy * kern.tile_m;
  uint32_t gx = (uint32_t)((g.N + kern.tile_n - 1) / kern.tile_n);
  uint32_t gz = (uint32_t)(g.batch0 * g.batch1);
  int64_t kch = getenv("VKP_MM_KC") ? atoi(getenv("VKP_MM_KC")) : VKP_MM_K_CHUNK;
  for (int64_t k0 = 0; k0 < g.K; k0 += kch) {
    pc.K = (uint32_t)(g.K - k0 < kch ? g.K - k0 : kch);
    pc.flags = b_dtype | (k0 > 0 ? VKP_MM_ACCUMULATE : 0u) | (k0 == 0 && bias_addr ? VKP_MM_BIAS : 0u);
    for (int64_t m0 = 0; m0 < g.M; m0 += m_chunk) {
      pc.M = (uint32_t)(g.M - m0 < m_chunk ? g.M - m0 : m_chunk);
      pc.a = a_addr + (uint64_t)(m0 * g.a_ms + k0 * g.a_ks) * 4;
      pc.c = c_addr + (uint64_t)(m0 * g.c_ms) * 4;
      pc.bias = bias_addr;
      if (b16) {   // word-aligned base address + element offset
        uint64_t e = (b_addr & 3) / 2 + (uint64_t)(k0 * g.b_ks);
        pc.b = b_addr & ~(uint64_t)3;
        pc.b_off = (uint32_t)e;
      } else {
        pc.b = b_addr + (uint64_t)(k0 * g.b_ks) * 4;
        pc.b_off = 0;
      }
      uint32_t gy = (uint32_t)((pc.M + kern.tile_m - 1) / kern.tile_m);
      VKP_TRY(vkp_rec_dispatch(rec, kern.shader, &pc, sizeof pc, gx, gy, gz));
    }
  }
  return VKP_OK;
}

static void matmul_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad);
static const vkp_op_def op_matmul = {"matmul", matmul_record, matmul_backward};

// Sums a gradient computed over the output's batch dims back to x's shape (x broadcast).
static void give(vkp_graph *g, vkp_tensor *x, vkp_tensor *grad) {
  if (!grad) return;
  if (!vkp_tensor_same_shape(x, grad)) grad = vkp_sum_to(g, grad, x->ndim, x->shape);
  vkp_grad_accumulate(g, x, grad);
}

// x (..., C) as (rows, C) (a copy only when x is a non-contiguous view).
static vkp_tensor *rows_2d(vkp_graph *g, vkp_tensor *x) {
  if (x->ndim == 2) return x;
  int64_t rows = 1;
  for (int d = 0; d < x->ndim - 1; d++) rows *= x->shape[d];
  return vkp_reshape(g, x, 2, (int64_t[]){rows, x->shape[x->ndim - 1]});
}

static void matmul_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  vkp_tensor *a = t->src[0], *b = t->src[1];
  bool ta = t->params.i[0] != 0, tb = t->params.i[1] != 0;
  if (a->requires_grad) {
    vkp_tensor *da = ta ? vkp_matmul(g, b, grad, tb, true) : vkp_matmul(g, grad, b, false, !tb);
    give(g, a, da);
  }
  if (b->requires_grad) {
    if (b->dtype != VKP_DTYPE_F32) {
      vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "matmul: '%s' is %s: 16-bit weights are frozen (no gradient)", b->name,
                     vkp_dtype_name(b->dtype));
      return;
    }
    vkp_tensor *db;
    if (b->ndim == 2 && t->ndim > 2 && !ta) {
      // Shared b: fold the batch into K — one (K, batch*M)·(batch*M, N) product, no batch sum.
      vkp_tensor *a2 = rows_2d(g, a), *g2 = rows_2d(g, grad);
      db = tb ? vkp_matmul(g, g2, a2, true, false) : vkp_matmul(g, a2, g2, true, false);
    } else {
      db = tb ? vkp_matmul(g, grad, a, true, ta) : vkp_matmul(g, a, grad, !ta, false);
    }
    give(g, b, db);
  }
  if (t->params.i[2] && t->src[2]->requires_grad) {
    vkp_tensor *bias = t->src[2];
    vkp_grad_accumulate(g, bias, vkp_sum_to(g, grad, bias->ndim, bias->shape));
  }
}

static vkp_tensor *matmul_node(vkp_graph *g, const char *opname, vkp_tensor *a, vkp_tensor *b, vkp_tensor *bias,
                               bool ta, bool tb) {
  if (!a || !b) return NULL;
  if (a->ndim < 2 || b->ndim < 2) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: '%s' and '%s' need at least 2 dims (have %d and %d)", opname, a->name,
                   b->name, a->ndim, b->ndim);
    return NULL;
  }
  if (a->dtype != VKP_DTYPE_F32) a = vkp_cast_f32(g, a);
  if (!a) return NULL;
  if (b->dtype != VKP_DTYPE_F32 && b->dtype != VKP_DTYPE_F16 && b->dtype != VKP_DTYPE_BF16) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: '%s' has dtype %s (f32, f16 or bf16 expected)", opname, b->name,
                   vkp_dtype_name(b->dtype));
    return NULL;
  }
  int64_t M = a->shape[a->ndim - (ta ? 1 : 2)], K = a->shape[a->ndim - (ta ? 2 : 1)];
  int64_t Kb = b->shape[b->ndim - (tb ? 1 : 2)], N = b->shape[b->ndim - (tb ? 2 : 1)];
  if (K != Kb) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: inner dims differ: '%s' has K=%lld, '%s' has K=%lld", opname, a->name,
                   (long long)K, b->name, (long long)Kb);
    return NULL;
  }
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  int64_t shape[VKP_MAX_DIMS];
  for (int d = 0; d < nd - 2; d++) {
    int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
    int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
    if (sa != sb && sa != 1 && sb != 1) {
      vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: batch dims of '%s' and '%s' do not broadcast (dim %d: %lld vs %lld)",
                     opname, a->name, b->name, d, (long long)sa, (long long)sb);
      return NULL;
    }
    shape[d] = sa > sb ? sa : sb;
  }
  shape[nd - 2] = M;
  shape[nd - 1] = N;
  int64_t batch = 1;
  for (int d = 0; d < nd - 2; d++) batch *= shape[d];
  if (batch > 65535) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: %lld batches of '%s' exceed 65535", opname, (long long)batch, a->name);
    return NULL;
  }
  // Every stride must fit the kernels' 32-bit push constants.
  const vkp_tensor *ops[2] = {a, b};
  for (int i = 0; i < 2; i++)
    for (int d = 0; d < ops[i]->ndim; d++)
      if (ops[i]->stride[d] < 0 || ops[i]->stride[d] > INT32_MAX) {
        vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "%s: '%s' has a stride outside the 32-bit range", opname,
                       ops[i]->name);
        return NULL;
      }
  if (bias) {
    if (bias->dtype != VKP_DTYPE_F32 || vkp_tensor_numel(bias) != N || !vkp_tensor_is_contiguous(bias)) {
      vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: bias '%s' must be a contiguous f32 tensor of %lld elements", opname,
                     bias->name, (long long)N);
      return NULL;
    }
  }
  vkp_tensor *srcs[3] = {a, b, bias};
  vkp_tensor *t = vkp_node_new(g, &op_matmul, VKP_DTYPE_F32, nd, shape, srcs, bias ? 3 : 2);
  if (!t) return NULL;
  t->params.i[0] = ta;
  t->params.i[1] = tb;
  t->params.i[2] = bias != NULL;
  strcpy(t->name, opname);
  return t;
}

vkp_tensor *vkp_matmul(vkp_graph *g, vkp_tensor *a, vkp_tensor *b, bool trans_a, bool trans_b) {
  return matmul_node(g, "matmul", a, b, NULL, trans_a, trans_b);
}

vkp_tensor *vkp_linear(vkp_graph *g, vkp_tensor *x, vkp_tensor *w, vkp_tensor *bias) {
  if (!x || !w) return NULL;
  if (w->ndim != 2) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "linear: weight '%s' must be 2-D (out, in), has %d dims", w->name, w->ndim);
    return NULL;
  }
  if (x->ndim == 1) {   // (in) -> (out)
    vkp_tensor *y = matmul_node(g, "linear", vkp_reshape(g, x, 2, (int64_t[]){1, x->shape[0]}), w, bias, false, true);
    return y ? vkp_reshape(g, y, 1, &y->shape[1]) : NULL;
  }
  return matmul_node(g, "linear", x, w, bias, false, true);
}
