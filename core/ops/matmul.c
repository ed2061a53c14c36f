// matmul.c — batched matrix products (vkp_matmul) and nn.Linear (vkp_linear).
//
// One node computes C = op(A)·op(B) (+ bias) for up to two broadcast batch dims. Transposes are
// strides: the kernels read op(A)[m][k] = a[m*a_ms + k*a_ks] and op(B)[k][n] = b[k*b_ks + n*b_ns],
// so a transposed view (or a row-strided slice) never costs a copy. On the GPU kernel family
// (vkp_ctx_kernels: any device but a CPU, or VKPEFT_KERNELS=gpu) every product runs
// matmul_gpu_* (shared-memory tiles read in place, any layout, sized from the device's limits by
// mm_gpu_pick). On the CPU family (lavapipe) there are four ways to run it:
//   packed      (products from about 2^20 multiply-adds, any layout and dtype) two pack nodes
//               copy op(A) and op(B) into zero-padded panels (matmul_pack_a/b.comp) and
//               matmul_packed.comp runs a 32 x 4S register tile per subgroup over contiguous
//               64-byte loads. The builder decides (shapes and the device's subgroup size are
//               known then) and adds the pack nodes as extra sources of the matmul node. An
//               op(A) with rows contiguous along K (and K a multiple of 2S) is read in place
//               instead (mm_a_in_place): no pack A pass.
//   skinny      matmul_skinny_*: lanes along M for products with few columns or few k (LoRA's
//               rank-r products), or the transpose of one with few rows (mm_skinny below);
//   direct      matmul_nn / matmul_nt / matmul_tn (+ _f16/_bf16 B): register-blocked kernels for
//               the common layouts that read the operands in place (small products: no extra
//               passes or dispatches);
//   generic     matmul_generic, any strides and alignments (one output per invocation).
// Why: on lavapipe every load in a loop is a gather (~25 cycles for 8 lanes, as much for 64-bit
// as for 32-bit lanes), so the kernels load pairs, share A values across lanes with
// subgroupShuffle, and the packed path removes 4 KiB-strided rows (cache-set and TLB misses).
// Measured numbers: bench/RESULTS.md.
//
// Work that exceeds device limits is split at record time: K in chunks of VKP_MM_K_CHUNK (later
// chunks accumulate into C, keeping per-invocation loops short on lavapipe), M in chunks whose
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

#include "vkp_op.h"
#include "vkp_ops.h"
#include "../../shaders/push/matmul.h"

#define VKP_MM_K_CHUNK 16384   // longest K range one dispatch handles (loop-length cap)

// params.i[0] = trans_a, i[1] = trans_b, i[2] = has bias (src[2]), i[3] = packed (MM_PACKED, plus
// MM_A_IN when A is read in place: srcs end with A's panel unless MM_A_IN, then B's), i[4] = second
// product (MM2_*: srcs a2, b2 after the bias),
// i[5] = its transposes (bit 0: a2, bit 1: b2), f[6] = its scale, i[7] = 1 when the main product
// is scaled by f[8], i[9] = 1 when C accumulates into what its storage holds (accumulate_into),
// i[10] = 1 when the bias runs along rows (bias[m]: vkp_matmul_bias_rows).
//
// Second product: C = alpha·op(A)·op(B) + bias + s·op(A2)·op(B2) with the same output. On the
// packed path with A read in place it is appended to the main product (MM_K2: s·op(B2) packed
// after op(B)'s panel rows, op(A2) read in place for k2 more k); otherwise the record runs the main
// product, then the second one with a skinny or direct kernel that scales and accumulates into C
// (VKP_MM_SCALE | VKP_MM_ACCUMULATE): no separate scale and add passes.
//   MM2_DUAL  a plain sum of two products (LoRA's dx = dY·W + s·(dY·B)·A);
//   MM2_LORA  A2 = u = xd·A^T is a matmul node built by vkp_linear_add_lora (u->src[0] = xd,
//             u->src[1] = A): backward gives xd, A and B their gradients directly (u gets none),
//             so dx = dY·W + s·v·A with v = dY·B is one node and no add joins two gradients of x.
enum { MM2_NONE = 0, MM2_DUAL = 1, MM2_LORA = 2 };
enum { MM_PACKED = 1, MM_A_IN = 2, MM_K2 = 4 };   // params.i[3]; MM_K2: the second product appended

typedef struct mm_geom {
  int64_t M, N, K;
  int64_t a_ms, a_ks, b_ks, b_ns, c_ms;
  int64_t batch0, batch1;               // output batch dims (1 when absent)
  int64_t a_bs[2], b_bs[2], c_bs[2];    // batch strides (0 on broadcast dims)
} mm_geom;

// Shapes and strides of the product op(a)·op(b) written to `t` as the kernels see them.
static void mm_geometry_of(const vkp_tensor *t, const vkp_tensor *a, const vkp_tensor *b, bool ta, bool tb,
                           mm_geom *g) {
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

static void mm_geometry(const vkp_tensor *t, mm_geom *g) {
  mm_geometry_of(t, t->src[0], t->src[1], t->params.i[0] != 0, t->params.i[1] != 0, g);
}

// The second product's operands (MM2_*), after a and b and the bias, and its geometry.
static vkp_tensor *mm_a2(const vkp_tensor *t) { return t->src[2 + (t->params.i[2] != 0)]; }
static vkp_tensor *mm_b2(const vkp_tensor *t) { return t->src[3 + (t->params.i[2] != 0)]; }
static void mm_geometry2(const vkp_tensor *t, mm_geom *g2) {
  mm_geometry_of(t, mm_a2(t), mm_b2(t), t->params.i[5] & 1, (t->params.i[5] & 2) != 0, g2);
}
static float mm_alpha(const vkp_tensor *t) { return t->params.i[7] ? t->params.f[8] : 1.0f; }

typedef struct mm_kernel {
  const char *shader;
  uint32_t tile_m, tile_n;   // outputs per workgroup along M and N
} mm_kernel;

static bool even(int64_t v) { return (v & 1) == 0; }
static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
static uint32_t subgroup_size(vkp_ctx *ctx) { return vkp_ctx_info(ctx)->subgroup_size; }

// Picks the direct register-blocked kernel when the layout and alignment allow its pair loads
// (64-bit words of f32, 32-bit words of 16-bit B), else the generic one. a_addr/b_addr: bytes.
static mm_kernel mm_pick(uint32_t S, const mm_geom *g, uint32_t b_dtype, uint64_t a_addr, uint64_t b_addr) {
  static const mm_kernel generic = {"matmul_generic", 8, 8};
  if (S == 0 || S > 64) return generic;   // the tiled kernels run 64-invocation workgroups
  bool b16 = b_dtype != VKP_MM_B_F32;
  bool a_ok = (a_addr & 7) == 0 && even(g->a_bs[0]) && even(g->a_bs[1]);
  bool b_ok = (b_addr & (b16 ? 3 : 7)) == 0 && even(g->b_bs[0]) && even(g->b_bs[1]);
  if (!a_ok || !b_ok) return generic;
  const char *name = NULL;
  if (g->a_ks == 1 && g->b_ns == 1 && even(g->a_ms) && even(g->K) && even(g->b_ks) && even(g->N))
    name = b_dtype == VKP_MM_B_F16 ? "matmul_nn_f16" : b_dtype == VKP_MM_B_BF16 ? "matmul_nn_bf16" : "matmul_nn";
  else if (g->a_ks == 1 && g->b_ks == 1 && even(g->a_ms) && even(g->K) && even(g->b_ns))
    name = b_dtype == VKP_MM_B_F16 ? "matmul_nt_f16" : b_dtype == VKP_MM_B_BF16 ? "matmul_nt_bf16" : "matmul_nt";
  else if (!b16 && g->a_ms == 1 && g->b_ns == 1 && even(g->a_ks) && even(g->M) && even(g->b_ks) && even(g->N))
    name = "matmul_tn";
  if (!name) return generic;
  // 8 rows x 2 columns per lane (matmul_*.comp: TM 8, TC 2); one sub-tile per subgroup.
  return (mm_kernel){name, 8 * (64 / S), 2 * S};
}

// ---- GPU family -------------------------------------------------------------------------------

// matmul_gpu_* (shaders/matmul_gpu.glsl, shared-memory tiles): BM x BN outputs per workgroup.
typedef struct mm_gpu_tile {
  const char *shader;
  uint32_t bm, bn, bk, invocations;
} mm_gpu_tile;
static const mm_gpu_tile mm_gpu_tiles[] = {   // largest first (variants.cmake)
    {"matmul_gpu_128", 128, 128, 8, 256},
    {"matmul_gpu_64", 64, 64, 16, 256},
    {"matmul_gpu_32", 32, 32, 16, 64},
};
// Workgroups a product should have before it takes a larger tile: about one per compute unit of
// a large discrete GPU (an H100/H200 has 132), so the tile grows only once the device is filled.
#define VKP_MM_GPU_MIN_GROUPS 128

// The largest tile the device's limits allow (invocations per workgroup, shared memory) that still
// gives the product VKP_MM_GPU_MIN_GROUPS workgroups; the smallest that fits otherwise. The
// 32 x 32 tile (64 invocations, 4.1 KiB) is within every conformant device's limits.
static mm_kernel mm_gpu_pick(const vkp_device_info *info, const mm_geom *g) {
  size_t n = sizeof mm_gpu_tiles / sizeof mm_gpu_tiles[0];
  const mm_gpu_tile *pick = &mm_gpu_tiles[n - 1];
  for (size_t i = 0; i < n; i++) {
    const mm_gpu_tile *t = &mm_gpu_tiles[i];
    uint64_t shared = 4ull * t->bk * (t->bm + t->bn + 2);
    if (t->invocations > info->max_workgroup_invocations || shared > info->max_shared_memory) continue;
    int64_t groups = (g->M + t->bm - 1) / t->bm * ((g->N + t->bn - 1) / t->bn) * g->batch0 * g->batch1;
    if (groups >= VKP_MM_GPU_MIN_GROUPS) {
      pick = t;
      break;
    }
  }
  return (mm_kernel){pick->shader, pick->bm, pick->bn};
}

static bool gpu_kernels(vkp_ctx *ctx) { return vkp_ctx_kernels(ctx) == VKP_KERNELS_GPU; }

// ---- packed path ----------------------------------------------------------------------------

typedef struct mm_packing {
  uint32_t S;                 // subgroup size the panels are laid out for
  int64_t Mp, Kp, Np, nz;     // padded sizes, batches
} mm_packing;

static mm_packing mm_pack_dims(const mm_geom *g, uint32_t S) {
  mm_packing p = {S, round_up(g->M, VKP_MM_PK_TM), round_up(g->K, 2 * S), round_up(g->N, VKP_MM_PK_TC * S),
                  g->batch0 * g->batch1};
  return p;
}

// The packed path pays two extra passes over the operands (and two dispatches) to make every
// load of the main kernel contiguous; measured on lavapipe it wins from about a million
// multiply-adds per batch, unless the padding to whole tiles adds more than half the work.
static bool mm_use_packed(vkp_graph *gr, const mm_geom *g) {
  if (gpu_kernels(vkp_graph_ctx(gr))) return false;   // the GPU family's tiles load in place
  uint32_t S = subgroup_size(vkp_graph_ctx(gr));
  if (S < 2 || S > 64 || (S & (S - 1))) return false;
  if (g->M < 16 || g->N < 16 || g->K < 16 || g->M * g->N * g->K < (1 << 20)) return false;
  mm_packing p = mm_pack_dims(g, S);
  if ((double)p.Mp * (double)p.Np * (double)p.Kp > 1.5 * (double)g->M * (double)g->N * (double)g->K) return false;
  // Panels under 2^31 elements; the pack grids (chunks, row tiles, row blocks, panels) fit 65535.
  return p.nz * p.Mp * p.Kp < (1ll << 31) && p.nz * p.Kp * p.Np < (1ll << 31) && p.Kp / (2 * S) <= 65535 &&
         p.Mp / VKP_MM_PK_TM <= 65535 && p.Kp / VKP_MM_PK_ROWS <= 65535 &&
         p.Np / (VKP_MM_PK_TC * S) <= 65535;
}

// Whether t's first element lies on an 8-byte boundary (pair loads): arena storage starts
// 256-byte aligned, external storage at its buffer offset (buffer addresses are aligned further).
static bool starts_8_aligned(const vkp_tensor *t) {
  const vkp_tensor *o = t->view_src ? t->view_src : t;
  uint64_t base = o->kind == VKP_TENSOR_EXTERNAL ? o->buffer_offset : 0;
  return ((base + (uint64_t)t->offset * vkp_dtype_size(t->dtype)) & 7) == 0;
}

// Whether matmul_packed.comp reads op(A) in place rather than from a panel: rows contiguous along
// k with even strides and 8-byte alignment, and K a multiple of 2S (no padded k). Measured on
// lavapipe the product loses less to rows a_ms apart than the pack pass costs; B read in place
// (rows b_ks apart) measured slower than packed (bench/RESULTS.md, "Matmul on the ViT-S shapes").
// With S = 8 the kernel gathers one k pair of 8 rows at a time: rows a multiple of 4 KiB apart
// (a_ms % 1024 == 0) then share one L1 set, and reading A in place measured 2-5 % slower than
// packing it first, pack pass included (1024^2, 6304x384x1024), so A is packed for those.
static bool mm_a_in_place(vkp_graph *gr, const mm_geom *g, const vkp_tensor *a) {
  uint32_t S = subgroup_size(vkp_graph_ctx(gr));
  if (S == 8 && g->a_ms % 1024 == 0) return false;
  return g->K % (2 * S) == 0 && g->a_ks == 1 && even(g->a_ms) && even(g->a_bs[0]) && even(g->a_bs[1]) &&
         starts_8_aligned(a);
}

// Pack nodes: params.i[0] = 0 (A) or 1 (B); params.bytes[8..16) = the matmul node they feed, read
// for its geometry only: the data comes from the pack node's own source (src[0], the same tensor
// as the matmul's operand), so a recomputed copy of a matmul and its packs (activation
// checkpointing) reads the copies' operands.
static const vkp_tensor *pack_owner(const vkp_tensor *t) {
  const vkp_tensor *mm;
  memcpy(&mm, &t->params.bytes[8], sizeof mm);
  return mm;
}

// k of the second product when node t appends it to its packed product (MM_K2), else 0.
static int64_t mm_k2(const vkp_tensor *t) {
  if (!(t->params.i[3] & MM_K2)) return 0;
  mm_geom g2;
  mm_geometry2(t, &g2);
  return g2.K;
}

// Dispatches a pack kernel over (`along` blocks along k, `across` row tiles or column panels, nz
// batches). lavapipe runs workgroups x first, so x walks the dimension that is contiguous in the
// source: k, unless the source's rows run across (`swap`: a transposed A, or B rows that are
// source rows), then the grid is swapped and the kernel told so (VKP_MM_GRID_SWAP).
static vkp_status pack_dispatch(vkp_recorder *rec, const char *shader, vkp_pc_matmul *pc, uint32_t along,
                                uint32_t across, bool swap, uint32_t nz) {
  if (swap) pc->flags |= VKP_MM_GRID_SWAP;
  return vkp_rec_dispatch(rec, shader, pc, sizeof *pc, swap ? across : along, swap ? along : across, nz);
}

static vkp_status pack_record(vkp_recorder *rec, const vkp_tensor *t) {
  const vkp_tensor *mm = pack_owner(t);
  mm_geom g;
  mm_geometry(mm, &g);
  mm_packing p = mm_pack_dims(&g, subgroup_size(vkp_rec_ctx(rec)));
  vkp_pc_matmul pc = {0};
  pc.c = vkp_rec_addr(rec, t);
  pc.M = (uint32_t)g.M;
  pc.N = (uint32_t)g.N;
  pc.K = (uint32_t)g.K;
  pc.sg = p.S;
  pc.kp = (uint32_t)p.Kp;
  pc.tile_m = (uint32_t)p.Mp;
  pc.tile_n = (uint32_t)p.Np;
  pc.batch1 = (uint32_t)g.batch1;
  bool is_b = t->params.i[0] != 0;
  if (!is_b) {
    pc.a = vkp_rec_addr(rec, t->src[0]);
    if (g.a_ks == 1 && even(g.a_ms) && even(g.K) && even(g.a_bs[0]) && even(g.a_bs[1]) && (pc.a & 7) == 0)
      pc.flags = VKP_MM_PAIRS;
    pc.a_ms = (int32_t)g.a_ms;
    pc.a_ks = (int32_t)g.a_ks;
    pc.a_bs[0] = (int32_t)g.a_bs[0];
    pc.a_bs[1] = (int32_t)g.a_bs[1];
  }
  // pack_a: a workgroup per (VKP_MM_PK_CHUNKS k chunks, row tile); pack_b: per (VKP_MM_PK_ROWS
  // rows, column panel).
  if (!is_b)
    return pack_dispatch(rec, "matmul_pack_a", &pc,
                         (uint32_t)((p.Kp / (2 * p.S) + VKP_MM_PK_CHUNKS - 1) / VKP_MM_PK_CHUNKS),
                         (uint32_t)(p.Mp / VKP_MM_PK_TM), g.a_ks != 1 && g.a_ms == 1, (uint32_t)p.nz);
  // B's panel rows [0, Kp), then (MM_K2) the second product's B scaled by s in rows [Kp, Kp + k2).
  int64_t k2 = mm_k2(mm);
  pc.kp = (uint32_t)(p.Kp + k2);
  for (int part = 0; part < (k2 ? 2 : 1); part++) {
    mm_geom gb = g;
    if (part) mm_geometry2(mm, &gb);
    const vkp_tensor *b = t->src[part];
    uint64_t addr = vkp_rec_addr(rec, b);
    pc.flags = b->dtype == VKP_DTYPE_F16 ? VKP_MM_B_F16 : b->dtype == VKP_DTYPE_BF16 ? VKP_MM_B_BF16 : VKP_MM_B_F32;
    pc.b = pc.flags == VKP_MM_B_F32 ? addr : addr & ~(uint64_t)3;
    pc.b_off = pc.flags == VKP_MM_B_F32 ? 0 : (uint32_t)((addr & 3) / 2);
    pc.b_ks = (int32_t)gb.b_ks;
    pc.b_ns = (int32_t)gb.b_ns;
    pc.b_bs[0] = (int32_t)gb.b_bs[0];
    pc.b_bs[1] = (int32_t)gb.b_bs[1];
    if (pc.flags == VKP_MM_B_F32 && gb.b_ns == 1 && even(gb.b_ks) && even(gb.N) && even(gb.b_bs[0]) &&
        even(gb.b_bs[1]) && (pc.b & 7) == 0)
      pc.flags |= VKP_MM_PAIRS;
    pc.K = (uint32_t)gb.K;
    pc.k_begin = part ? (uint32_t)p.Kp : 0u;
    pc.tile_m = (uint32_t)(part ? k2 : p.Kp);   // panel rows this dispatch writes
    if (part) pc.flags |= VKP_MM_K2, pc.alpha = mm->params.f[6];
    VKP_TRY(pack_dispatch(rec, "matmul_pack_b", &pc, (uint32_t)((pc.tile_m + VKP_MM_PK_ROWS - 1) / VKP_MM_PK_ROWS),
                          (uint32_t)(p.Np / (VKP_MM_PK_TC * p.S)), gb.b_ns == 1 && gb.b_ks != 1, (uint32_t)p.nz));
  }
  return VKP_OK;
}
static const vkp_op_def op_pack_a = {.name = "matmul_pack_a", .record = pack_record, .backward = NULL};
static const vkp_op_def op_pack_b = {.name = "matmul_pack_b", .record = pack_record, .backward = NULL};

// ---- record ---------------------------------------------------------------------------------

static uint32_t mm_b_dtype(const vkp_tensor *b) {
  return b->dtype == VKP_DTYPE_F16 ? VKP_MM_B_F16 : b->dtype == VKP_DTYPE_BF16 ? VKP_MM_B_BF16 : VKP_MM_B_F32;
}

static uint32_t mm_max_gy(vkp_ctx *ctx) {
  uint32_t max_gy = vkp_ctx_info(ctx)->max_workgroup_count[1];
  return max_gy > 65535 ? 65535 : max_gy;
}

// Output fields of the push block shared by every dispatch of node t.
static vkp_pc_matmul mm_pc_out(const mm_geom *g, uint64_t bias_addr) {
  vkp_pc_matmul pc = {0};
  pc.N = (uint32_t)g->N;
  pc.c_ms = (int32_t)g->c_ms;
  pc.batch1 = (uint32_t)g->batch1;
  pc.c_bs[0] = (int32_t)g->c_bs[0];
  pc.c_bs[1] = (int32_t)g->c_bs[1];
  pc.bias = bias_addr;
  return pc;
}

// Operand strides of the push block for kernels that read op(A) and op(B) in place.
static void mm_pc_operands(vkp_pc_matmul *pc, const mm_geom *g) {
  pc->a_ms = (int32_t)g->a_ms;
  pc->a_ks = (int32_t)g->a_ks;
  pc->b_ks = (int32_t)g->b_ks;
  pc->b_ns = (int32_t)g->b_ns;
  for (int d = 0; d < 2; d++) {
    pc->a_bs[d] = (int32_t)g->a_bs[d];
    pc->b_bs[d] = (int32_t)g->b_bs[d];
  }
}

// ---- skinny path ----------------------------------------------------------------------------

#define VKP_MM_SK_TR 4   // rows per invocation of matmul_skinny_* (variants.cmake TR)
#define VKP_MM_SK_NB 8   // columns per workgroup column block (variants.cmake NB)
#define VKP_MM_SK_WG 8   // invocations per workgroup (variants.cmake WG)
#define VKP_MM_SK_MIN_ROWS 32   // fewer rows than this: the direct kernels (too few workgroups)

// Products with at most 16 columns (LoRA's rank-r products: u = x·A^T, v = dY·B, dB) or at most
// 16 k (the rank-r update s·u·B^T added into the base product) run lanes along M in
// matmul_skinny_* (each op(B) row shared by the subgroup through shuffles); a product with at most
// 16 rows and many columns (dA = s·v^T·x) runs as its transpose, C^T = op(B)^T·op(A)^T, stored
// transposed (c_ns). Measured against the direct kernels (bench/RESULTS.md, "Skinny products"):
// 1.4-2.4x faster on the demo's and ViT-S's rank-8 products. Needs subgroups of 8 to 64 lanes, K
// even, f32 operands with pair-aligned layouts. Returns the kernel, or NULL when the product does
// not fit (*g and the addresses are then unchanged).
static const char *mm_skinny(uint32_t S, mm_geom *g, uint32_t b_dtype, bool bias, uint64_t *a_addr,
                             uint64_t *b_addr, int64_t *c_ns) {
  if (b_dtype != VKP_MM_B_F32 || S < VKP_MM_SK_NB || S > 64 || !even(g->K)) return NULL;
  bool transpose = !bias && g->M <= 2 * VKP_MM_SK_NB && g->N >= VKP_MM_SK_MIN_ROWS;
  if (!transpose && !((g->N <= 2 * VKP_MM_SK_NB || g->K <= 2 * VKP_MM_SK_NB) && g->M >= VKP_MM_SK_MIN_ROWS)) return NULL;
  mm_geom t = *g;
  uint64_t aa = *a_addr, ba = *b_addr;
  int64_t cns = 1;
  if (transpose) {
    t.M = g->N, t.N = g->M;
    t.a_ms = g->b_ns, t.a_ks = g->b_ks, t.b_ks = g->a_ks, t.b_ns = g->a_ms;
    t.c_ms = 1, cns = g->c_ms;
    for (int d = 0; d < 2; d++) t.a_bs[d] = g->b_bs[d], t.b_bs[d] = g->a_bs[d];
    aa = *b_addr, ba = *a_addr;
  }
  if ((aa & 7) || (ba & 7) || !even(t.a_bs[0]) || !even(t.a_bs[1]) || !even(t.b_bs[0]) || !even(t.b_bs[1]))
    return NULL;
  bool ak = t.a_ks == 1 && even(t.a_ms), am = t.a_ms == 1 && even(t.a_ks) && even(t.M);
  bool bk = t.b_ks == 1 && even(t.b_ns), bn = t.b_ns == 1 && even(t.b_ks) && even(t.N);
  static const char *names[2][2] = {{"matmul_skinny_ak_bk", "matmul_skinny_ak_bn"},
                                    {"matmul_skinny_am_bk", "matmul_skinny_am_bn"}};
  if (!(ak || am) || !(bk || bn)) return NULL;
  *g = t, *a_addr = aa, *b_addr = ba, *c_ns = cns;
  return names[ak ? 0 : 1][bk ? 0 : 1];
}

static vkp_status record_skinny(vkp_recorder *rec, const char *shader, const mm_geom *g, uint64_t a_addr,
                                uint64_t b_addr, int64_t c_ns, uint64_t c_addr, uint64_t bias_addr, uint32_t flags,
                                float alpha) {
  vkp_pc_matmul pc = mm_pc_out(g, bias_addr);
  pc.alpha = alpha;
  pc.c_ns = (int32_t)c_ns;
  mm_pc_operands(&pc, g);
  int64_t rows = VKP_MM_SK_WG * VKP_MM_SK_TR, m_chunk = (int64_t)mm_max_gy(vkp_rec_ctx(rec)) * rows;
  uint32_t gx = (uint32_t)((g->N + VKP_MM_SK_NB - 1) / VKP_MM_SK_NB), gz = (uint32_t)(g->batch0 * g->batch1);
  for (int64_t k0 = 0; k0 < g->K; k0 += VKP_MM_K_CHUNK) {
    pc.K = (uint32_t)(g->K - k0 < VKP_MM_K_CHUNK ? g->K - k0 : VKP_MM_K_CHUNK);
    pc.flags = (flags & VKP_MM_SCALE) | (k0 > 0 || (flags & VKP_MM_ACCUMULATE) ? VKP_MM_ACCUMULATE : 0u) |
               (k0 == 0 && bias_addr ? VKP_MM_BIAS | (flags & VKP_MM_BIAS_ROW) : 0u);
    pc.b = b_addr + (uint64_t)(k0 * g->b_ks) * 4;
    for (int64_t m0 = 0; m0 < g->M; m0 += m_chunk) {
      pc.M = (uint32_t)(g->M - m0 < m_chunk ? g->M - m0 : m_chunk);
      pc.a = a_addr + (uint64_t)(m0 * g->a_ms + k0 * g->a_ks) * 4;
      pc.c = c_addr + (uint64_t)(m0 * g->c_ms) * 4;
      VKP_TRY(vkp_rec_dispatch(rec, shader, &pc, sizeof pc, gx, (uint32_t)((pc.M + rows - 1) / rows), gz));
    }
  }
  return VKP_OK;
}

// C (+)= alpha·op(a)·op(b) (+ bias) with a direct kernel (or the generic one), reading the operands
// in place. flags: VKP_MM_ACCUMULATE to add to C, VKP_MM_SCALE to apply alpha.
static vkp_status record_direct(vkp_recorder *rec, const vkp_tensor *a, const vkp_tensor *b, const mm_geom *g,
                                uint64_t c_addr, uint64_t bias_addr, uint32_t flags, float alpha) {
  vkp_ctx *ctx = vkp_rec_ctx(rec);
  uint32_t max_gy = mm_max_gy(ctx), gz = (uint32_t)(g->batch0 * g->batch1);
  vkp_pc_matmul pc = mm_pc_out(g, bias_addr);
  pc.alpha = alpha;
  uint32_t b_dtype = mm_b_dtype(b);
  bool b16 = b_dtype != VKP_MM_B_F32;
  uint64_t a_addr = vkp_rec_addr(rec, a), b_addr = vkp_rec_addr(rec, b);
  mm_geom sg = *g;
  int64_t c_ns = 1;
  bool gpu = gpu_kernels(ctx);
  const char *sk = gpu ? NULL : mm_skinny(subgroup_size(ctx), &sg, b_dtype, bias_addr != 0, &a_addr, &b_addr, &c_ns);
  if (sk) return record_skinny(rec, sk, &sg, a_addr, b_addr, c_ns, c_addr, bias_addr, flags, alpha);
  mm_kernel kern = gpu ? mm_gpu_pick(vkp_ctx_info(ctx), g) : mm_pick(subgroup_size(ctx), g, b_dtype, a_addr, b_addr);
  mm_pc_operands(&pc, g);
  pc.tile_m = kern.tile_m;
  pc.tile_n = kern.tile_n;
  int64_t m_chunk = (int64_t)max_gy * kern.tile_m;
  uint32_t gx = (uint32_t)((g->N + kern.tile_n - 1) / kern.tile_n);
  for (int64_t k0 = 0; k0 < g->K; k0 += VKP_MM_K_CHUNK) {
    pc.K = (uint32_t)(g->K - k0 < VKP_MM_K_CHUNK ? g->K - k0 : VKP_MM_K_CHUNK);
    pc.flags = b_dtype | (flags & VKP_MM_SCALE) | (k0 > 0 || (flags & VKP_MM_ACCUMULATE) ? VKP_MM_ACCUMULATE : 0u) |
               (k0 == 0 && bias_addr ? VKP_MM_BIAS | (flags & VKP_MM_BIAS_ROW) : 0u);
    for (int64_t m0 = 0; m0 < g->M; m0 += m_chunk) {
      pc.M = (uint32_t)(g->M - m0 < m_chunk ? g->M - m0 : m_chunk);
      pc.a = a_addr + (uint64_t)(m0 * g->a_ms + k0 * g->a_ks) * 4;
      pc.c = c_addr + (uint64_t)(m0 * g->c_ms) * 4;
      if (b16) {   // word-aligned base address + element offset
        pc.b = b_addr & ~(uint64_t)3;
        pc.b_off = (uint32_t)((b_addr & 3) / 2 + (uint64_t)(k0 * g->b_ks));
      } else {
        pc.b = b_addr + (uint64_t)(k0 * g->b_ks) * 4;
        pc.b_off = 0;
      }
      uint32_t gy = (uint32_t)((pc.M + kern.tile_m - 1) / kern.tile_m);
      VKP_TRY(vkp_rec_dispatch(rec, kern.shader, &pc, sizeof pc, gx, gy, gz));
    }
  }
  return VKP_OK;
}

static vkp_status matmul_record(vkp_recorder *rec, const vkp_tensor *t) {
  vkp_ctx *ctx = vkp_rec_ctx(rec);
  mm_geom g;
  mm_geometry(t, &g);
  uint32_t S = subgroup_size(ctx);
  uint64_t c_addr = vkp_rec_addr(rec, t);
  uint64_t bias_addr = t->params.i[2] ? vkp_rec_addr(rec, t->src[2]) : 0;
  uint32_t scale = t->params.i[7] ? VKP_MM_SCALE : 0u, into = t->params.i[9] ? VKP_MM_ACCUMULATE : 0u;
  uint32_t bias_row = t->params.i[10] ? VKP_MM_BIAS_ROW : 0u;

  int64_t k2 = mm_k2(t);
  if (t->params.i[3]) {   // packed: srcs end with the A and B panels
    vkp_pc_matmul_packed pc = {0};
    pc.N = (uint32_t)g.N;
    pc.c_ms = (int32_t)g.c_ms;
    pc.batch1 = (uint32_t)g.batch1;
    pc.c_bs[0] = (int32_t)g.c_bs[0];
    pc.c_bs[1] = (int32_t)g.c_bs[1];
    pc.bias = bias_addr;
    pc.alpha = mm_alpha(t);
    uint32_t max_gy = mm_max_gy(ctx), gz = (uint32_t)(g.batch0 * g.batch1);
    mm_packing p = mm_pack_dims(&g, S);
    bool a_in = t->params.i[3] & MM_A_IN;   // srcs end with A's panel (unless a_in), then B's
    uint64_t a_addr = vkp_rec_addr(rec, a_in ? t->src[0] : t->src[t->nsrc - 2]);
    uint64_t a2_addr = k2 ? vkp_rec_addr(rec, mm_a2(t)) : 0;
    pc.b = vkp_rec_addr(rec, t->src[t->nsrc - 1]);
    if ((a_addr | a2_addr) & 7)
      return vkp_error_set(vkp_ctx_err(ctx), VKP_ERR_INVALID, "matmul '%s': A read in place is not 8-byte aligned",
                           t->name);
    pc.sg = S;
    pc.kp = (uint32_t)(p.Kp + k2);   // B panel rows (the appended ones after Kp)
    pc.tile_m = VKP_MM_PK_TM * (64 / S);
    uint32_t tile_n = VKP_MM_PK_TC * S;
    pc.a_ms = (int32_t)g.a_ms;
    pc.a2_ms = (int32_t)(k2 ? mm_a2(t)->stride[mm_a2(t)->ndim - 2] : 0);
    uint64_t per_a = (uint64_t)(p.Mp * p.Kp), per_b = (uint64_t)((p.Kp + k2) * p.Np);
    pc.a_bs[0] = a_in ? (int32_t)g.a_bs[0] : (int32_t)(uint32_t)(per_a * g.batch1);
    pc.a_bs[1] = a_in ? (int32_t)g.a_bs[1] : (int32_t)(uint32_t)per_a;
    pc.b_bs[0] = (int32_t)(uint32_t)(per_b * g.batch1);
    pc.b_bs[1] = (int32_t)(uint32_t)per_b;
    uint32_t in_flags = a_in ? VKP_MM_A_INPLACE : 0u;
    int64_t m_chunk = (int64_t)max_gy * pc.tile_m;
    uint32_t gx = (uint32_t)(p.Np / tile_n);
    for (int64_t k0 = 0; k0 < p.Kp; k0 += VKP_MM_K_CHUNK) {
      pc.k_begin = (uint32_t)k0;
      pc.K = (uint32_t)(p.Kp - k0 < VKP_MM_K_CHUNK ? p.Kp - k0 : VKP_MM_K_CHUNK);
      bool last = k0 + pc.K == p.Kp;
      pc.k2 = last ? (uint32_t)k2 : 0u;   // the appended product runs with the last k chunk
      pc.flags = in_flags | scale | into | (k0 > 0 ? VKP_MM_ACCUMULATE : 0u) |
                 (k0 == 0 && bias_addr ? VKP_MM_BIAS | bias_row : 0u) | (pc.k2 ? VKP_MM_K2 : 0u);
      for (int64_t m0 = 0; m0 < g.M; m0 += m_chunk) {
        pc.M = (uint32_t)(g.M - m0 < m_chunk ? g.M - m0 : m_chunk);
        pc.a = a_addr + (uint64_t)(m0 * (a_in ? g.a_ms : p.Kp)) * 4;   // m0: a multiple of TM (whole panels)
        pc.a2 = a2_addr + (uint64_t)(m0 * pc.a2_ms) * 4;
        pc.c = c_addr + (uint64_t)(m0 * g.c_ms) * 4;
        uint32_t gy = (pc.M + pc.tile_m - 1) / pc.tile_m;
        VKP_TRY(vkp_rec_dispatch(rec, "matmul_packed", &pc, sizeof pc, gx, gy, gz));
      }
    }
  } else {
    VKP_TRY(record_direct(rec, t->src[0], t->src[1], &g, c_addr, bias_addr, scale | into | bias_row, mm_alpha(t)));
  }
  if (t->params.i[4] != MM2_NONE && !k2) {   // + s·op(A2)·op(B2), accumulated into C
    mm_geom g2;
    mm_geometry2(t, &g2);
    VKP_TRY(record_direct(rec, mm_a2(t), mm_b2(t), &g2, c_addr, 0, VKP_MM_SCALE | VKP_MM_ACCUMULATE, t->params.f[6]));
  }
  return VKP_OK;
}

static void matmul_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad);
static void matmul_accumulate_into(vkp_tensor *t) { t->params.i[9] = 1; }
static const vkp_op_def op_matmul = {
    .name = "matmul", .record = matmul_record, .backward = matmul_backward, .accumulate_into = matmul_accumulate_into};

// What a node computes beyond op(a)·op(b) (+ bias): a scale of that product, a second product.
typedef struct mm_extra {
  float alpha;             // scale of the main product (1: none)
  int mode;                // MM2_*
  vkp_tensor *a2, *b2;     // second product (mode != MM2_NONE)
  bool ta2, tb2;
  float s;                 // its scale
  bool bias_rows;          // the bias has one value per row (M) instead of per column (N)
} mm_extra;
static const mm_extra mm_plain = {1.0f, MM2_NONE, NULL, NULL, false, false, 0.0f, false};

static vkp_tensor *matmul_node(vkp_graph *g, const char *opname, vkp_tensor *a, vkp_tensor *b, vkp_tensor *bias,
                               bool ta, bool tb, const mm_extra *ex);

// alpha · op(a)·op(b)
static vkp_tensor *mm_scaled(vkp_graph *g, vkp_tensor *a, vkp_tensor *b, bool ta, bool tb, float alpha) {
  mm_extra ex = mm_plain;
  ex.alpha = alpha;
  return matmul_node(g, "matmul", a, b, NULL, ta, tb, &ex);
}

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

// For C = alpha·op(a)·op(b) with upstream gradient dc: d op(a) = alpha·dc·op(b)^T (in a's layout).
static vkp_tensor *grad_a(vkp_graph *g, vkp_tensor *b, vkp_tensor *dc, bool ta, bool tb, float alpha) {
  return ta ? mm_scaled(g, b, dc, tb, true, alpha) : mm_scaled(g, dc, b, false, !tb, alpha);
}

// d op(b) = alpha·op(a)^T·dc (in b's layout). When b is shared by every batch (2-D) and a's batch
// dims fold into its rows, one (K, batch*M)·(batch*M, N) product, no batch sum.
static vkp_tensor *grad_b(vkp_graph *g, vkp_tensor *a, vkp_tensor *b, vkp_tensor *dc, bool ta, bool tb, int out_ndim,
                          float alpha) {
  if (b->ndim == 2 && out_ndim > 2 && !ta) {
    vkp_tensor *a2 = rows_2d(g, a), *g2 = rows_2d(g, dc);
    return tb ? mm_scaled(g, g2, a2, true, false, alpha) : mm_scaled(g, a2, g2, true, false, alpha);
  }
  return tb ? mm_scaled(g, dc, a, true, ta, alpha) : mm_scaled(g, a, dc, !ta, false, alpha);
}

static bool frozen_16bit(vkp_graph *g, const vkp_tensor *b) {
  if (b->dtype == VKP_DTYPE_F32) return false;
  vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "matmul: '%s' is %s: 16-bit weights are frozen (no gradient)", b->name,
                 vkp_dtype_name(b->dtype));
  return true;
}

static void matmul_backward(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  vkp_tensor *a = t->src[0], *b = t->src[1];
  bool ta = t->params.i[0] != 0, tb = t->params.i[1] != 0;
  float alpha = mm_alpha(t);
  int mode = t->params.i[4];
  vkp_tensor *a2 = mode ? mm_a2(t) : NULL, *b2 = mode ? mm_b2(t) : NULL;
  bool ta2 = mode && (t->params.i[5] & 1), tb2 = mode && (t->params.i[5] & 2);
  float s = t->params.f[6];
  if (mode == MM2_LORA) {
    // u = xd·A^T, y = x·W^T (+ b) + s·u·B^T. v = dy·B (= du / s);
    //   dx = dy·W + s·v·A (one node when xd is x), dA = s·v^T·xd, dB = s·dy^T·u.
    vkp_tensor *xd = a2->src[0], *A = a2->src[1];
    bool tA = a2->params.i[1] != 0;
    vkp_tensor *v = A->requires_grad || xd->requires_grad ? grad_a(g, b2, grad, false, tb2, 1.0f) : NULL;
    if (a->requires_grad && xd == a && !ta) {
      mm_extra ex = {alpha, MM2_DUAL, v, A, false, !tA, s, false};
      give(g, a, matmul_node(g, "matmul", grad, b, NULL, false, !tb, &ex));
    } else {
      if (a->requires_grad) give(g, a, grad_a(g, b, grad, ta, tb, alpha));
      if (xd->requires_grad) give(g, xd, grad_a(g, A, v, false, tA, s));
    }
    if (A->requires_grad && !frozen_16bit(g, A)) give(g, A, grad_b(g, xd, A, v, false, tA, a2->ndim, s));
    if (b2->requires_grad && !frozen_16bit(g, b2)) give(g, b2, grad_b(g, a2, b2, grad, false, tb2, t->ndim, s));
  } else {
    if (a->requires_grad) give(g, a, grad_a(g, b, grad, ta, tb, alpha));
    if (mode == MM2_DUAL) {
      if (a2->requires_grad) give(g, a2, grad_a(g, b2, grad, ta2, tb2, s));
      if (b2->requires_grad && !frozen_16bit(g, b2)) give(g, b2, grad_b(g, a2, b2, grad, ta2, tb2, t->ndim, s));
    }
  }
  if (b->requires_grad && !frozen_16bit(g, b)) give(g, b, grad_b(g, a, b, grad, ta, tb, t->ndim, alpha));
  if (t->params.i[2] && t->src[2]->requires_grad) {
    vkp_tensor *bias = t->src[2];
    if (t->params.i[10]) {   // vkp_matmul_bias_rows: its callers (conv2d) own the backward
      vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "matmul: the per-row bias '%s' has no gradient here", bias->name);
      return;
    }
    vkp_grad_accumulate(g, bias, vkp_sum_to(g, grad, bias->ndim, bias->shape));
  }
}

// Output shape of op(a)·op(b) (batch dims broadcast) into shape; returns its rank, 0 on error.
static int mm_out_shape(vkp_graph *g, const char *opname, const vkp_tensor *a, const vkp_tensor *b, bool ta, bool tb,
                        int64_t *shape) {
  if (a->ndim < 2 || b->ndim < 2) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: '%s' and '%s' need at least 2 dims (have %d and %d)", opname, a->name,
                   b->name, a->ndim, b->ndim);
    return 0;
  }
  int64_t M = a->shape[a->ndim - (ta ? 1 : 2)], K = a->shape[a->ndim - (ta ? 2 : 1)];
  int64_t Kb = b->shape[b->ndim - (tb ? 1 : 2)], N = b->shape[b->ndim - (tb ? 2 : 1)];
  if (K != Kb) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: inner dims differ: '%s' has K=%lld, '%s' has K=%lld", opname, a->name,
                   (long long)K, b->name, (long long)Kb);
    return 0;
  }
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int d = 0; d < nd - 2; d++) {
    int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
    int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
    if (sa != sb && sa != 1 && sb != 1) {
      vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: batch dims of '%s' and '%s' do not broadcast (dim %d: %lld vs %lld)",
                     opname, a->name, b->name, d, (long long)sa, (long long)sb);
      return 0;
    }
    shape[d] = sa > sb ? sa : sb;
  }
  shape[nd - 2] = M;
  shape[nd - 1] = N;
  return nd;
}

// Operand checks shared by both products of a node: b's dtype, 32-bit strides.
static bool mm_check_operands(vkp_graph *g, const char *opname, const vkp_tensor *a, const vkp_tensor *b) {
  if (b->dtype != VKP_DTYPE_F32 && b->dtype != VKP_DTYPE_F16 && b->dtype != VKP_DTYPE_BF16) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: '%s' has dtype %s (f32, f16 or bf16 expected)", opname, b->name,
                   vkp_dtype_name(b->dtype));
    return false;
  }
  // Every stride must fit the kernels' 32-bit push constants.
  const vkp_tensor *ops[2] = {a, b};
  for (int i = 0; i < 2; i++)
    for (int d = 0; d < ops[i]->ndim; d++)
      if (ops[i]->stride[d] < 0 || ops[i]->stride[d] > INT32_MAX) {
        vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "%s: '%s' has a stride outside the 32-bit range", opname,
                       ops[i]->name);
        return false;
      }
  return true;
}

// k2 when node t (packed, A read in place) can append its second product to the main one
// (MM_K2), else 0: subgroups of 8 (matmul_packed.comp's 4-k steps), batches folded into rows, k2 a
// multiple of 4, op(A2) rows contiguous along k, 8-byte aligned, and f32 operands.
static int64_t mm_appends(vkp_graph *g, const vkp_tensor *t, const mm_geom *geom) {
  if (t->params.i[4] == MM2_NONE || subgroup_size(vkp_graph_ctx(g)) != 8 || geom->batch0 * geom->batch1 != 1)
    return 0;
  const vkp_tensor *a2 = mm_a2(t), *b2 = mm_b2(t);
  mm_geom g2;
  mm_geometry2(t, &g2);
  bool ok = g2.K % 4 == 0 && g2.K > 0 && g2.a_ks == 1 && even(g2.a_ms) && g2.batch0 * g2.batch1 == 1 &&
            a2->dtype == VKP_DTYPE_F32 && b2->dtype == VKP_DTYPE_F32 && starts_8_aligned(a2);
  return ok ? g2.K : 0;
}

static vkp_tensor *matmul_node(vkp_graph *g, const char *opname, vkp_tensor *a, vkp_tensor *b, vkp_tensor *bias,
                               bool ta, bool tb, const mm_extra *ex) {
  if (!a || !b) return NULL;
  if (a->dtype != VKP_DTYPE_F32) a = vkp_cast_f32(g, a);
  if (!a) return NULL;
  int64_t shape[VKP_MAX_DIMS];
  int nd = mm_out_shape(g, opname, a, b, ta, tb, shape);
  if (!nd || !mm_check_operands(g, opname, a, b)) return NULL;
  int64_t N = ex->bias_rows ? shape[nd - 2] : shape[nd - 1];   // bias length
  int64_t batch = 1;
  for (int d = 0; d < nd - 2; d++) batch *= shape[d];
  if (batch > 65535) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: %lld batches of '%s' exceed 65535", opname, (long long)batch, a->name);
    return NULL;
  }
  if (ex->mode != MM2_NONE) {   // the second product: f32 A2, the same output shape
    if (!ex->a2 || !ex->b2) return NULL;
    int64_t shape2[VKP_MAX_DIMS];
    int nd2 = ex->a2->dtype == VKP_DTYPE_F32 ? mm_out_shape(g, opname, ex->a2, ex->b2, ex->ta2, ex->tb2, shape2) : 0;
    if (!nd2 || nd2 != nd || memcmp(shape, shape2, (size_t)nd * sizeof *shape) != 0) {
      vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: the product of '%s' and '%s' must be f32 and shaped like the main one",
                     opname, ex->a2->name, ex->b2->name);
      return NULL;
    }
    if (!mm_check_operands(g, opname, ex->a2, ex->b2)) return NULL;
  }
  if (bias) {
    if (bias->dtype != VKP_DTYPE_F32 || vkp_tensor_numel(bias) != N || !vkp_tensor_is_contiguous(bias)) {
      vkp_graph_fail(g, VKP_ERR_SHAPE, "%s: bias '%s' must be a contiguous f32 tensor of %lld elements", opname,
                     bias->name, (long long)N);
      return NULL;
    }
  }
  vkp_tensor *srcs[5] = {a, b};
  int nsrc = 2;
  if (bias) srcs[nsrc++] = bias;
  if (ex->mode != MM2_NONE) srcs[nsrc++] = ex->a2, srcs[nsrc++] = ex->b2;
  vkp_tensor *t = vkp_node_new(g, &op_matmul, VKP_DTYPE_F32, nd, shape, srcs, nsrc);
  if (!t) return NULL;
  t->params.i[0] = ta;
  t->params.i[1] = tb;
  t->params.i[2] = bias != NULL;
  t->params.i[10] = bias && ex->bias_rows;
  t->params.i[4] = ex->mode;
  t->params.i[5] = (ex->ta2 ? 1 : 0) | (ex->tb2 ? 2 : 0);
  t->params.f[6] = ex->s;
  t->params.i[7] = ex->alpha != 1.0f;
  t->params.f[8] = ex->alpha;
  strcpy(t->name, opname);
  mm_geom geom;
  mm_geometry(t, &geom);
  if (mm_use_packed(g, &geom)) {
    mm_packing p = mm_pack_dims(&geom, subgroup_size(vkp_graph_ctx(g)));
    bool a_in = mm_a_in_place(g, &geom, a);
    int64_t k2 = a_in ? mm_appends(g, t, &geom) : 0;
    for (int is_b = a_in; is_b < 2; is_b++) {   // A's panel unless A is read in place, then B's
      int64_t n = is_b ? p.nz * (p.Kp + k2) * p.Np : p.nz * p.Mp * p.Kp;
      vkp_tensor *psrc[2] = {is_b ? b : a, ex->b2};   // B2: the appended rows of B's panel
      vkp_tensor *pk = vkp_node_new(g, is_b ? &op_pack_b : &op_pack_a, VKP_DTYPE_F32, 1, &n, psrc, is_b && k2 ? 2 : 1);
      if (!pk) return NULL;
      pk->params.i[0] = is_b;
      memcpy(&pk->params.bytes[8], &t, sizeof t);
      snprintf(pk->name, sizeof pk->name, "%s.pack_%c", opname, is_b ? 'b' : 'a');
      t->src[t->nsrc++] = pk;
    }
    t->params.i[3] = MM_PACKED | (a_in ? MM_A_IN : 0) | (k2 ? MM_K2 : 0);
  }
  return t;
}

vkp_tensor *vkp_matmul(vkp_graph *g, vkp_tensor *a, vkp_tensor *b, bool trans_a, bool trans_b) {
  return matmul_node(g, "matmul", a, b, NULL, trans_a, trans_b, &mm_plain);
}

vkp_tensor *vkp_matmul_bias_rows(vkp_graph *g, vkp_tensor *a, vkp_tensor *b, vkp_tensor *bias) {
  mm_extra ex = mm_plain;
  ex.bias_rows = true;
  return matmul_node(g, "matmul", a, b, bias, false, false, &ex);
}

vkp_tensor *vkp_linear(vkp_graph *g, vkp_tensor *x, vkp_tensor *w, vkp_tensor *bias) {
  if (!x || !w) return NULL;
  if (w->ndim != 2) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "linear: weight '%s' must be 2-D (out, in), has %d dims", w->name, w->ndim);
    return NULL;
  }
  if (x->ndim == 1) {   // (in) -> (out)
    vkp_tensor *y = matmul_node(g, "linear", vkp_reshape(g, x, 2, (int64_t[]){1, x->shape[0]}), w, bias, false, true,
                                &mm_plain);
    return y ? vkp_reshape(g, y, 1, &y->shape[1]) : NULL;
  }
  return matmul_node(g, "linear", x, w, bias, false, true, &mm_plain);
}

vkp_tensor *vkp_linear_add_lora(vkp_graph *g, vkp_tensor *y, vkp_tensor *xd, vkp_tensor *A, vkp_tensor *B, float scale) {
  if (!y || !xd || !A || !B) return NULL;
  // Fused when y is a plain linear node (x·W^T + b, x at least 2-D) and xd is an f32 tensor shaped like x.
  vkp_tensor *x = y->op == &op_matmul ? y->src[0] : NULL;
  bool fuse = x && y->params.i[4] == MM2_NONE && !y->params.i[0] && y->params.i[1] && !y->params.i[7] &&
              y->src[1]->ndim == 2 && xd->dtype == VKP_DTYPE_F32 && A->dtype == VKP_DTYPE_F32 && A->ndim == 2 &&
              B->ndim == 2 && vkp_tensor_same_shape(x, xd);
  // vkp_graph_set_lora_fusion(g, false) builds the plain-op form (bench peft --unfused-lora).
  if (!vkp_graph_lora_fusion(g)) fuse = false;
  if (!fuse) return vkp_add(g, y, vkp_scale(g, vkp_linear(g, vkp_linear(g, xd, A, NULL), B, NULL), scale));
  vkp_tensor *u = matmul_node(g, "lora_down", xd, A, NULL, false, true, &mm_plain);   // (..., r)
  if (!u) return NULL;
  mm_extra ex = {1.0f, MM2_LORA, u, B, false, true, scale, false};
  return matmul_node(g, "linear_lora", x, y->src[1], y->params.i[2] ? y->src[2] : NULL, false, true, &ex);
}
