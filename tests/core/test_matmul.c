// test_matmul.c — vkp_matmul / vkp_linear: forward vs a float64 reference, gradients vs finite
// differences of that reference, for every layout (NN, NT, TN, TT), batch broadcasting, views
// (transposes and slices fed without copies), odd and tile-straddling sizes, split K (K above
// one dispatch's chunk), f16/bf16 weights, and the builders' error paths. The sizes are chosen to
// run all three paths of core/ops/matmul.c: generic (odd sizes, odd offsets), direct
// register-blocked kernels (small even sizes) and packed (from ~2^20 multiply-adds).
// (Also run by hand with LP_NATIVE_VECTOR_WIDTH=128 and =512, i.e. subgroup sizes 4 and 16.)
//
// Tolerances (f32 accumulation against an exact reference, inputs in [-1, 1]): forward
// |err| <= 1e-6 + 2e-7 * K + 1e-5 * |want| (rounding of a length-K dot product grows at most
// ~K * eps * |partial sums| and typically ~sqrt(K) * that); gradients reduce over N (dA) or over
// the rows (dB, bias), so the same form with that length. The finite differences of the
// bilinear float64 reference are exact up to rounding.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_dtype.h"
#include "vkp_test.h"

// ---- reference ------------------------------------------------------------------------------

// How the reference reads an operand from its stored data (before the trans flag applies).
typedef struct mm_view {
  int ndim;
  int64_t shape[4];
  int64_t stride[4];   // 0 = contiguous strides filled in by view_init
  int64_t off;
} mm_view;

enum { BUILD_FLAGS, BUILD_TVIEW, BUILD_SLICE_A, BUILD_LINEAR, BUILD_LINEAR_NOBIAS };

typedef struct mm_case {
  const char *name;
  int build;
  bool ta, tb;
  int a_nd, b_nd;
  int64_t a_shape[4], b_shape[4];   // stored input shapes
  int64_t slice_off, slice_len;     // BUILD_SLICE_A: a's last dim [off, off + len)
  // derived by case_init
  mm_view av, bv;                   // reference views (BUILD_SLICE_A: a's slice; others: = stored)
  int out_nd;
  int64_t out_shape[4], M, N, K;
} mm_case;

// A table entry: every field up to the derived ones (slice fields 0 unless given).
#define CASE(name, build, ta, tb, and_, bnd, as, bs) \
  { name, build, ta, tb, and_, bnd, as, bs, 0, 0, {0}, {0}, 0, {0}, 0, 0, 0 }

static void view_init(mm_view *v, int nd, const int64_t *shape) {
  v->ndim = nd;
  memcpy(v->shape, shape, (size_t)nd * sizeof *shape);
  int64_t s = 1;
  for (int d = nd - 1; d >= 0; d--) v->stride[d] = s, s *= shape[d];
  v->off = 0;
}

// Element (i, j) of the view's matrix for output batch (b0, b1) (right-aligned, broadcast).
static double view_at(const double *x, const mm_view *v, int64_t b0, int64_t b1, int64_t i, int64_t j) {
  int nd = v->ndim;
  int64_t o = v->off + i * v->stride[nd - 2] + j * v->stride[nd - 1];
  if (nd >= 3 && v->shape[nd - 3] != 1) o += b1 * v->stride[nd - 3];
  if (nd >= 4 && v->shape[nd - 4] != 1) o += b0 * v->stride[nd - 4];
  return x[o];
}

static void case_init(mm_case *c) {
  if (c->build != BUILD_SLICE_A) view_init(&c->av, c->a_nd, c->a_shape);
  else {
    c->av = (mm_view){.ndim = c->a_nd, .off = c->slice_off};
    memcpy(c->av.shape, c->a_shape, sizeof c->a_shape);
    c->av.shape[c->a_nd - 1] = c->slice_len;
    int64_t s = 1;
    for (int d = c->a_nd - 1; d >= 0; d--) c->av.stride[d] = s, s *= c->a_shape[d];
  }
  view_init(&c->bv, c->b_nd, c->b_shape);
  const mm_view *a = &c->av, *b = &c->bv;
  c->M = a->shape[a->ndim - (c->ta ? 1 : 2)];
  c->K = a->shape[a->ndim - (c->ta ? 2 : 1)];
  c->N = b->shape[b->ndim - (c->tb ? 2 : 1)];
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  c->out_nd = nd;
  for (int d = 0; d < nd - 2; d++) {
    int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
    int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
    c->out_shape[d] = sa > sb ? sa : sb;
  }
  c->out_shape[nd - 2] = c->M;
  c->out_shape[nd - 1] = c->N;
}

static void ref_matmul(const double *const *in, double *out, void *user) {
  const mm_case *c = user;
  int nd = c->out_nd;
  int64_t B0 = nd >= 4 ? c->out_shape[nd - 4] : 1, B1 = nd >= 3 ? c->out_shape[nd - 3] : 1;
  bool bias = c->build == BUILD_LINEAR;
  int64_t o = 0;
  for (int64_t b0 = 0; b0 < B0; b0++)
    for (int64_t b1 = 0; b1 < B1; b1++)
      for (int64_t m = 0; m < c->M; m++)
        for (int64_t n = 0; n < c->N; n++) {
          double s = bias ? in[2][n] : 0;
          for (int64_t k = 0; k < c->K; k++) {
            double x = c->ta ? view_at(in[0], &c->av, b0, b1, k, m) : view_at(in[0], &c->av, b0, b1, m, k);
            double y = c->tb ? view_at(in[1], &c->bv, b0, b1, n, k) : view_at(in[1], &c->bv, b0, b1, k, n);
            s += x * y;
          }
          out[o++] = s;
        }
}

static vkp_tensor *build_matmul(vkp_graph *g, vkp_tensor **in, void *user) {
  const mm_case *c = user;
  switch (c->build) {
    case BUILD_TVIEW:   // the transposes as views, the flags off: no copy may be needed
      return vkp_matmul(g, c->ta ? vkp_transpose(g, in[0], -1, -2) : in[0],
                        c->tb ? vkp_transpose(g, in[1], -1, -2) : in[1], false, false);
    case BUILD_SLICE_A:
      return vkp_matmul(g, vkp_slice(g, in[0], -1, c->slice_off, c->slice_len), in[1], c->ta, c->tb);
    case BUILD_LINEAR: return vkp_linear(g, in[0], in[1], in[2]);
    case BUILD_LINEAR_NOBIAS: return vkp_linear(g, in[0], in[1], NULL);
    default: return vkp_matmul(g, in[0], in[1], c->ta, c->tb);
  }
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static void run_case_n(mm_case *c, uint64_t seed, int fd_samples) {
  case_init(c);
  bool bias = c->build == BUILD_LINEAR;
  int64_t red = max64(c->K, max64(c->N, c->M));   // longest reduction among forward and gradients
  if (c->out_nd > 2) red *= c->out_shape[0] * (c->out_nd > 3 ? c->out_shape[1] : 1);   // dB over batches
  vkp_op_check chk = {.name = c->name, .n_inputs = bias ? 3 : 2, .build = build_matmul, .ref = ref_matmul,
                      .user = c, .fwd_rtol = 1e-5, .fwd_atol = 1e-6 + 2e-7 * (double)c->K, .grad_rtol = 1e-4,
                      .grad_atol = 1e-5 + 2e-7 * (double)red, .fd_samples = fd_samples, .fd_step = 1e-2,
                      .seed = seed};
  chk.in[0] = (vkp_check_input){.ndim = c->a_nd, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -1, .hi = 1};
  chk.in[1] = (vkp_check_input){.ndim = c->b_nd, .dtype = VKP_DTYPE_F32, .trainable = true, .lo = -1, .hi = 1};
  memcpy(chk.in[0].shape, c->a_shape, sizeof c->a_shape);
  memcpy(chk.in[1].shape, c->b_shape, sizeof c->b_shape);
  if (bias) chk.in[2] = (vkp_check_input){.ndim = 1, .shape = {c->N}, .dtype = VKP_DTYPE_F32, .trainable = true,
                                          .lo = -1, .hi = 1};
  vkp_op_check_run(&chk);
}

static void run_case(mm_case *c, uint64_t seed) { run_case_n(c, seed, 24); }

#define SH(...) {__VA_ARGS__}

// ---- layouts and sizes ----------------------------------------------------------------------

static void test_layouts(void **state) {
  (void)state;
  mm_case cases[] = {
      // name, build, ta, tb, a_nd, b_nd, a_shape, b_shape
      CASE("1x1x1", BUILD_FLAGS, false, false, 2, 2, SH(1, 1), SH(1, 1)),
      CASE("nn 7x13x5 (generic)", BUILD_FLAGS, false, false, 2, 2, SH(7, 5), SH(5, 13)),
      CASE("nn 65x33x129 (generic)", BUILD_FLAGS, false, false, 2, 2, SH(65, 129), SH(129, 33)),
      CASE("nn 65x34x130 (tiled, edges)", BUILD_FLAGS, false, false, 2, 2, SH(65, 130), SH(130, 34)),
      CASE("nt 33x66x258", BUILD_FLAGS, false, true, 2, 2, SH(33, 258), SH(66, 258)),
      CASE("nt 9x5x7 (generic)", BUILD_FLAGS, false, true, 2, 2, SH(9, 7), SH(5, 7)),
      CASE("tn 66x18x70", BUILD_FLAGS, true, false, 2, 2, SH(70, 66), SH(70, 18)),
      CASE("tn 5x6x3 (generic)", BUILD_FLAGS, true, false, 2, 2, SH(3, 5), SH(3, 6)),
      CASE("tt 20x12x30", BUILD_FLAGS, true, true, 2, 2, SH(30, 20), SH(12, 30)),
      CASE("nn 2x2x2 (one partial tile)", BUILD_FLAGS, false, false, 2, 2, SH(2, 2), SH(2, 2)),
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(&cases[i], 10 + i);
}

// ---- batches, broadcasting, views -----------------------------------------------------------

static void test_batched(void **state) {
  (void)state;
  mm_case cases[] = {
      // shared 2-D b: batch folds into rows; dB folds the batch into K
      CASE("3x(50x64 @ 64x192)", BUILD_FLAGS, false, false, 3, 2, SH(3, 50, 64), SH(64, 192)),
      CASE("3x(50x64 @ 64x191) generic", BUILD_FLAGS, false, false, 3, 2, SH(3, 50, 64), SH(64, 191)),
      CASE("shared b, transposed", BUILD_FLAGS, false, true, 3, 2, SH(2, 7, 12), SH(10, 12)),
      // per-batch b, broadcast over the leading dim: dB summed back
      CASE("4-D, b broadcast", BUILD_FLAGS, false, false, 4, 3, SH(2, 3, 10, 12), SH(3, 12, 6)),
      // a broadcast (2-D a with batched b): dA summed over the batch
      CASE("a broadcast", BUILD_FLAGS, false, false, 2, 3, SH(6, 8), SH(4, 8, 10)),
      // attention-like products
      CASE("q k^T", BUILD_FLAGS, false, true, 4, 4, SH(2, 2, 9, 8), SH(2, 2, 11, 8)),
      CASE("p v", BUILD_FLAGS, false, false, 4, 4, SH(2, 2, 9, 11), SH(2, 2, 11, 8)),
      CASE("batched tn", BUILD_FLAGS, true, false, 3, 3, SH(2, 14, 6), SH(2, 14, 4)),
      // shared 2-D b that cannot fold (a transposed per batch): batch strides, dB summed
      CASE("batched a^T, shared b", BUILD_FLAGS, true, false, 3, 2, SH(3, 20, 12), SH(20, 7)),
      CASE("batched a^T, shared b, packed", BUILD_FLAGS, true, false, 3, 2, SH(2, 96, 128), SH(96, 96)),
      // transposes as strided views (no flags)
      CASE("view a^T b", BUILD_TVIEW, true, false, 2, 2, SH(40, 24), SH(40, 18)),
      CASE("view a b^T", BUILD_TVIEW, false, true, 3, 3, SH(2, 16, 20), SH(2, 10, 20)),
      CASE("view a^T b^T", BUILD_TVIEW, true, true, 2, 2, SH(9, 6), SH(4, 9)),
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(&cases[i], 100 + i);

  // Row-strided slices (e.g. q out of a fused qkv projection): even offset and row stride keep
  // the tiled kernel, an odd offset falls back to the generic one.
  mm_case slices[] = {
      {.name = "slice even", .build = BUILD_SLICE_A, .a_nd = 2, .b_nd = 2, .a_shape = {21, 96}, .b_shape = {32, 14},
       .slice_off = 32, .slice_len = 32},
      {.name = "slice odd", .build = BUILD_SLICE_A, .tb = true, .a_nd = 2, .b_nd = 2, .a_shape = {21, 96},
       .b_shape = {14, 32}, .slice_off = 33, .slice_len = 32},
  };
  for (size_t i = 0; i < sizeof slices / sizeof *slices; i++) run_case(&slices[i], 200 + i);
}

// ---- linear ---------------------------------------------------------------------------------

static void test_linear(void **state) {
  (void)state;
  mm_case cases[] = {
      CASE("linear + bias", BUILD_LINEAR, false, true, 3, 2, SH(4, 6, 20), SH(30, 20)),
      CASE("linear + bias (odd)", BUILD_LINEAR, false, true, 2, 2, SH(5, 7), SH(3, 7)),
      CASE("linear", BUILD_LINEAR_NOBIAS, false, true, 2, 2, SH(17, 64), SH(48, 64)),
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(&cases[i], 300 + i);
}

// ---- split K and M: more than one dispatch --------------------------------------------------

static void test_split(void **state) {
  (void)state;
  mm_case cases[] = {
      // K above the 16384 chunk: the second dispatch accumulates (tiled and generic kernels)
      CASE("split K tiled", BUILD_FLAGS, false, false, 2, 2, SH(3, 16400), SH(16400, 4)),
      CASE("split K generic", BUILD_FLAGS, false, true, 2, 2, SH(2, 16391), SH(3, 16391)),
      // M above 65535 workgroups of the generic kernel's 8 rows
      CASE("split M", BUILD_FLAGS, false, false, 2, 2, SH(65535 * 8 + 5, 3), SH(3, 1)),
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(&cases[i], 400 + i);
}

// ---- packed path ----------------------------------------------------------------------------
// Products from about 2^20 multiply-adds go through the pack kernels and matmul_packed (with a
// subgroup size of 8: 32-row tiles, 32-column panels, K padded to 16): sizes straddle all three.

static void test_packed(void **state) {
  (void)state;
  mm_case cases[] = {
      CASE("packed nn 130x96x100", BUILD_FLAGS, false, false, 2, 2, SH(130, 100), SH(100, 96)),
      CASE("packed nt 120x90x128", BUILD_FLAGS, false, true, 2, 2, SH(120, 128), SH(90, 128)),
      CASE("packed tn 96x100x135", BUILD_FLAGS, true, false, 2, 2, SH(135, 96), SH(135, 100)),
      CASE("packed tt 64x160x110", BUILD_FLAGS, true, true, 2, 2, SH(110, 64), SH(160, 110)),
      CASE("packed batched", BUILD_FLAGS, false, false, 3, 3, SH(2, 128, 96), SH(2, 96, 96)),
      CASE("packed a broadcast", BUILD_FLAGS, false, true, 2, 3, SH(128, 96), SH(2, 96, 96)),
      CASE("packed linear + bias", BUILD_LINEAR, false, true, 3, 2, SH(4, 50, 96), SH(128, 96)),
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case_n(&cases[i], 600 + i, 12);
  // odd slice offset: the pack reads single floats instead of pairs
  mm_case slice = {.name = "packed slice odd", .build = BUILD_SLICE_A, .a_nd = 2, .b_nd = 2, .a_shape = {130, 200},
                   .b_shape = {100, 96}, .slice_off = 33, .slice_len = 100};
  run_case_n(&slice, 610, 12);
  // K above one dispatch's chunk: the second dispatch of matmul_packed accumulates
  mm_case split = CASE("packed split K", BUILD_FLAGS, false, false, 2, 2, SH(32, 16400), SH(16400, 32));
  run_case_n(&split, 611, 4);
}

// A read in place by matmul_packed (op(A) rows contiguous along k, K a multiple of 16, even
// strides; core/ops/matmul.c mm_a_in_place): partial row tiles (the last rows read the last
// valid one), batch strides, a batch folded into rows, a row-strided slice, split K (k_begin > 0).

// Dispatches of the forward op(a)·op(b) alone (a, b inputs of the given shapes, b of dtype dt).
static uint32_t forward_dispatches(const int64_t *as, const int64_t *bs, bool ta, bool tb, vkp_dtype dt) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *a = vkp_tensor_input(g, "a", VKP_DTYPE_F32, 2, as), *b = vkp_tensor_input(g, "b", dt, 2, bs);
  vkp_graph_output(g, vkp_matmul(g, a, b, ta, tb));
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  uint32_t n = vkp_graph_get_stats(g).dispatches;
  vkp_graph_free(g);
  return n;
}

static void test_packed_in_place(void **state) {
  (void)state;
  // The path is taken: pack B + product (A in place, any B); pack A too when A is transposed or
  // K is not a multiple of 2S. Shapes whose padding keeps them on the packed path at subgroup
  // sizes 4, 8 and 16 (N a multiple of 64, K of 32).
  // (The GPU kernel family has no packs: one dispatch each.)
  const vkp_dtype f32 = VKP_DTYPE_F32;
  bool gpu = vkp_test_gpu_kernels();
  assert_int_equal(forward_dispatches((int64_t[]){130, 96}, (int64_t[]){96, 128}, false, false, f32), gpu ? 1 : 2);
  assert_int_equal(forward_dispatches((int64_t[]){130, 96}, (int64_t[]){128, 96}, false, true, f32), gpu ? 1 : 2);
  assert_int_equal(forward_dispatches((int64_t[]){130, 96}, (int64_t[]){96, 128}, false, false, VKP_DTYPE_F16),
                   gpu ? 1 : 2);
  assert_int_equal(forward_dispatches((int64_t[]){144, 96}, (int64_t[]){144, 128}, true, false, f32), gpu ? 1 : 3);
  assert_int_equal(forward_dispatches((int64_t[]){128, 100}, (int64_t[]){100, 128}, false, false, f32), gpu ? 1 : 3);
  // Subgroups of 8 gather a k pair of 8 rows at a time: rows a multiple of 4 KiB apart (a_ms
  // 1,024 floats) would share one L1 set, so A is packed for them (core/ops/matmul.c).
  if (vkp_ctx_info(vkp_test_ctx())->subgroup_size == 8 && !gpu) {
    assert_int_equal(forward_dispatches((int64_t[]){64, 1024}, (int64_t[]){1024, 64}, false, false, f32), 3);
    assert_int_equal(forward_dispatches((int64_t[]){64, 1040}, (int64_t[]){1040, 64}, false, false, f32), 2);
  }
  mm_case cases[] = {
      CASE("in place nn 130x90x96", BUILD_FLAGS, false, false, 2, 2, SH(130, 96), SH(96, 90)),
      CASE("in place nt 130x96x96", BUILD_FLAGS, false, true, 2, 2, SH(130, 96), SH(96, 96)),
      CASE("in place batched 2x(130x90x96)", BUILD_FLAGS, false, false, 3, 3, SH(2, 130, 96), SH(2, 96, 90)),
      CASE("in place folded 3x(50x96x112)", BUILD_FLAGS, false, false, 3, 2, SH(3, 50, 112), SH(112, 96)),
      CASE("rows 4 KiB apart 70x64x1024", BUILD_FLAGS, false, false, 2, 2, SH(70, 1024), SH(1024, 64)),
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case_n(&cases[i], 700 + i, 12);
  mm_case slice = {.name = "in place slice (row stride 200)", .build = BUILD_SLICE_A, .a_nd = 2, .b_nd = 2,
                   .a_shape = {130, 200}, .b_shape = {96, 96}, .slice_off = 32, .slice_len = 96};
  run_case_n(&slice, 710, 12);
  mm_case split = CASE("in place split K", BUILD_FLAGS, false, false, 2, 2, SH(60, 16400), SH(16400, 62));
  run_case_n(&split, 711, 4);
}

// ---- skinny path ----------------------------------------------------------------------------
// Products with at most 16 columns or at most 16 k (LoRA's rank-r products) run lanes along M in
// matmul_skinny_* (subgroups of at least 8 lanes), and products with at most 16 rows and many
// columns (dA = s·v^T·x) run as their transpose with a transposed store: every A/B layout pair,
// partial row blocks and column blocks, batches, bias, the transposed store, and the gradients
// (which take these kernels too: dB of x·A^T has 8 columns, dA has 8 rows).

static const char *const skinny_shaders[] = {"matmul_skinny_ak_bk", "matmul_skinny_ak_bn", "matmul_skinny_am_bk",
                                             "matmul_skinny_am_bn"};

static uint64_t skinny_count(void) {
  uint64_t n = 0;
  for (size_t i = 0; i < sizeof skinny_shaders / sizeof *skinny_shaders; i++)
    n += vkp_ctx_shader_dispatches(vkp_test_ctx(), skinny_shaders[i]);
  return n;
}

// Skinny dispatches recorded for the forward op(a)·op(b) alone.
static uint64_t forward_skinny(const int64_t *as, const int64_t *bs, bool ta, bool tb) {
  uint64_t before = skinny_count();
  forward_dispatches(as, bs, ta, tb, VKP_DTYPE_F32);
  return skinny_count() - before;
}

static void test_skinny(void **state) {
  (void)state;
  mm_case cases[] = {
      CASE("skinny ak_bk: x A^T 100x8x64", BUILD_FLAGS, false, true, 2, 2, SH(100, 64), SH(8, 64)),
      CASE("skinny ak_bn: 70x10x36 (2 column blocks)", BUILD_FLAGS, false, false, 2, 2, SH(70, 36), SH(36, 10)),
      CASE("skinny am_bn: a^T b 66x6x50", BUILD_FLAGS, true, false, 2, 2, SH(50, 66), SH(50, 6)),
      CASE("skinny am_bk: a^T b^T 64x8x40", BUILD_FLAGS, true, true, 2, 2, SH(40, 64), SH(8, 40)),
      CASE("skinny transposed store: a^T b 8x72x90", BUILD_FLAGS, true, false, 2, 2, SH(90, 8), SH(90, 72)),
      CASE("skinny small K: 96x40x8", BUILD_FLAGS, false, true, 2, 2, SH(96, 8), SH(40, 8)),
      CASE("skinny batched 2x(40x8x16)", BUILD_FLAGS, false, false, 3, 3, SH(2, 40, 16), SH(2, 16, 8)),
      CASE("skinny linear + bias 3x20x24 -> 8", BUILD_LINEAR, false, true, 3, 2, SH(3, 20, 24), SH(8, 24)),
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case_n(&cases[i], 800 + i, 12);
  // The path is taken at subgroup sizes of 8 and more (one dispatch), and refused for odd K; the
  // GPU kernel family runs these products in its shared-memory tiles.
  uint64_t want = vkp_ctx_info(vkp_test_ctx())->subgroup_size >= 8 && !vkp_test_gpu_kernels() ? 1 : 0;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const mm_case *c = &cases[i];
    if (c->build != BUILD_FLAGS || c->a_nd != 2 || c->b_nd != 2) continue;
    assert_int_equal(forward_skinny(c->a_shape, c->b_shape, c->ta, c->tb), want);
  }
  assert_int_equal(forward_skinny((int64_t[]){100, 63}, (int64_t[]){8, 63}, false, true), 0);
}

// ---- sums of products -----------------------------------------------------------------------
// (x1 W1^T + x2 W2^T) + x3 W3^T: the later products add themselves into the first one's storage
// (elementwise.c binary_fold) — no add pass, so no binary_add dispatch — against float64, with the
// gradients of every input through the folded adds. Products on the direct and packed paths (a
// folded product's kernels accumulate into C).

static const int64_t sum_k[3] = {20, 96, 128}, sum_rows = 130, sum_n = 96;

static vkp_tensor *build_sum(vkp_graph *g, vkp_tensor **in, void *user) {
  (void)user;
  vkp_tensor *s = NULL;
  for (int i = 0; i < 3; i++) {
    vkp_tensor *p = vkp_matmul(g, in[2 * i], in[2 * i + 1], false, true);
    s = s ? vkp_add(g, s, p) : p;
  }
  return s;
}

static void ref_sum(const double *const *in, double *out, void *user) {
  (void)user;
  for (int64_t m = 0; m < sum_rows; m++)
    for (int64_t n = 0; n < sum_n; n++) {
      double s = 0;
      for (int i = 0; i < 3; i++)
        for (int64_t k = 0; k < sum_k[i]; k++) s += in[2 * i][m * sum_k[i] + k] * in[2 * i + 1][n * sum_k[i] + k];
      out[m * sum_n + n] = s;
    }
}

static void test_sum_of_products(void **state) {
  (void)state;
  vkp_op_check chk = {.name = "sum of three products", .n_inputs = 6, .build = build_sum, .ref = ref_sum,
                      .fwd_rtol = 1e-5, .fwd_atol = 1e-4, .grad_rtol = 1e-4, .grad_atol = 1e-4, .fd_samples = 8,
                      .fd_step = 1e-2, .seed = 900};
  for (int i = 0; i < 3; i++) {
    chk.in[2 * i] = (vkp_check_input){.ndim = 2, .shape = {sum_rows, sum_k[i]}, .dtype = VKP_DTYPE_F32,
                                      .trainable = true, .lo = -1, .hi = 1};
    chk.in[2 * i + 1] = (vkp_check_input){.ndim = 2, .shape = {sum_n, sum_k[i]}, .dtype = VKP_DTYPE_F32,
                                          .trainable = true, .lo = -1, .hi = 1};
  }
  vkp_op_check_run(&chk);
  // The forward alone: three products, no add.
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *in[6];
  for (int i = 0; i < 6; i++) in[i] = vkp_tensor_input(g, "in", VKP_DTYPE_F32, 2, chk.in[i].shape);
  vkp_graph_output(g, build_sum(g, in, NULL));
  uint64_t adds = vkp_ctx_shader_dispatches(ctx, "binary_add");
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  assert_int_equal(vkp_ctx_shader_dispatches(ctx, "binary_add") - adds, 0);
  vkp_graph_free(g);
}

// ---- 16-bit weights -------------------------------------------------------------------------
// b stored as f16/bf16 (frozen): forward of matmul (NN/NT, tiled and generic) and linear, plus
// the gradient of x through the 16-bit weight, against float64 products of the rounded values.

typedef struct w16_case {
  const char *name;
  vkp_dtype dt;
  bool tb, linear;
  int64_t M, N, K;
} w16_case;

static void check_w16(const w16_case *c, uint64_t seed) {
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_rng rng = vkp_rng_new(seed);
  int64_t M = c->M, N = c->N, K = c->K;
  size_t na = (size_t)(M * K), nb = (size_t)(K * N), nc = (size_t)(M * N);
  float *x = malloc(na * 4), *w = malloc(nb * 4), *bias = malloc((size_t)N * 4), *gw = malloc(nc * 4);
  float *got = malloc(nc * 4), *gx = malloc(na * 4);
  double *want = malloc(nc * 8), *want_gx = malloc(na * 8);
  uint16_t *w16 = malloc(nb * 2 + 2);
  vkp_rng_uniform_fill(&rng, x, na, -1, 1);
  vkp_rng_uniform_fill(&rng, w, nb, -1, 1);
  vkp_rng_uniform_fill(&rng, bias, (size_t)N, -1, 1);
  vkp_rng_uniform_fill(&rng, gw, nc, -1, 1);
  vkp_convert_from_f32(c->dt, w, w16, nb);
  vkp_convert_to_f32(c->dt, w16, w, nb);   // the reference uses the rounded weights
  // b (K, N), or (N, K) when tb: element (k, n) of op(b)
#define WB(k, n) ((double)w[c->tb ? (n) * K + (k) : (k) * N + (n)])
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      double s = c->linear ? bias[n] : 0;
      for (int64_t k = 0; k < K; k++) s += (double)x[m * K + k] * WB(k, n);
      want[m * N + n] = s;
    }
  // L = sum(out * gw): dL/dx = gw · op(b)^T
  for (int64_t m = 0; m < M; m++)
    for (int64_t k = 0; k < K; k++) {
      double s = 0;
      for (int64_t n = 0; n < N; n++) s += (double)gw[m * N + n] * WB(k, n);
      want_gx[m * K + k] = s;
    }
#undef WB

  vkp_buffer *bx, *bw, *bbias;
  VKP_ASSERT_OK(ctx, vkp_buffer_new(ctx, na * 4, &bx));
  VKP_ASSERT_OK(ctx, vkp_buffer_new(ctx, nb * 2 + 4, &bw));
  VKP_ASSERT_OK(ctx, vkp_buffer_new(ctx, (uint64_t)N * 4, &bbias));
  VKP_ASSERT_OK(ctx, vkp_buffer_write(bx, 0, x, na * 4));
  VKP_ASSERT_OK(ctx, vkp_buffer_write(bw, 0, w16, nb * 2));
  VKP_ASSERT_OK(ctx, vkp_buffer_write(bbias, 0, bias, (uint64_t)N * 4));
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  int64_t bshape[2] = {c->tb ? N : K, c->tb ? K : N};
  vkp_tensor *tx = vkp_tensor_external(g, "x", bx, 0, VKP_DTYPE_F32, 2, (int64_t[]){M, K});
  vkp_tensor *tw = vkp_tensor_external(g, "w", bw, 0, c->dt, 2, bshape);
  vkp_tensor *tbias = vkp_tensor_external(g, "bias", bbias, 0, VKP_DTYPE_F32, 1, &N);
  vkp_tensor *y = c->linear ? vkp_linear(g, tx, tw, tbias) : vkp_matmul(g, tx, tw, false, c->tb);
  vkp_tensor *tgw = vkp_tensor_input(g, "gw", VKP_DTYPE_F32, 2, (int64_t[]){M, N});
  vkp_tensor *loss = vkp_sum(g, vkp_mul(g, y, tgw));
  vkp_tensor *grad_x = NULL;
  VKP_ASSERT_OK(ctx, vkp_graph_backward(g, loss, &tx, 1, &grad_x));
  assert_non_null(grad_x);
  vkp_graph_output(g, y);
  vkp_graph_output(g, grad_x);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, tgw, gw, nc * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, y, got, nc * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, grad_x, gx, na * 4));
  char what[160];
  snprintf(what, sizeof what, "%s forward", c->name);
  vkp_assert_close(what, got, want, nc, 1e-5, 1e-6 + 2e-7 * (double)K);
  snprintf(what, sizeof what, "%s dx", c->name);
  vkp_assert_close(what, gx, want_gx, na, 1e-5, 1e-6 + 2e-7 * (double)N);
  vkp_graph_free(g);
  vkp_buffer_free(bx);
  vkp_buffer_free(bw);
  vkp_buffer_free(bbias);
  free(x), free(w), free(bias), free(gw), free(got), free(gx), free(want), free(want_gx), free(w16);
}

static void test_weights_16bit(void **state) {
  (void)state;
  w16_case cases[] = {
      {"f16 linear 37x48x64", VKP_DTYPE_F16, true, true, 37, 48, 64},
      {"bf16 linear 37x48x64", VKP_DTYPE_BF16, true, true, 37, 48, 64},
      {"f16 nn 20x34x18", VKP_DTYPE_F16, false, false, 20, 34, 18},
      {"bf16 nn 20x34x18", VKP_DTYPE_BF16, false, false, 20, 34, 18},
      {"f16 nt odd (generic)", VKP_DTYPE_F16, true, false, 7, 5, 9},
      {"f16 linear packed 160x96x80", VKP_DTYPE_F16, true, true, 160, 96, 80},
      {"bf16 nn packed 160x96x80", VKP_DTYPE_BF16, false, false, 160, 96, 80},
      {"bf16 nn odd (generic)", VKP_DTYPE_BF16, false, false, 6, 11, 3},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_w16(&cases[i], 500 + i);
}

// ---- GPU kernel family ----------------------------------------------------------------------
// matmul_gpu_* (shared-memory tiles) on a context of its own that records the GPU family on any
// device: each tile size taken where core/ops/matmul.c (mm_gpu_pick) should take it, with edges
// in M, N and K (no multiple of the tile or of BK), each layout and a 16-bit B, against float64.
// The whole suite also runs on the GPU family (ctest's "[gpu kernels]" entries), gradients
// included.

typedef struct gpu_case {
  const char *name, *shader;
  bool ta, tb;
  vkp_dtype bdt;
  int64_t M, N, K;
} gpu_case;

static void check_gpu_tile(vkp_ctx *ctx, const gpu_case *c, uint64_t seed) {
  int64_t M = c->M, N = c->N, K = c->K;
  size_t na = (size_t)(M * K), nb = (size_t)(K * N), nc = (size_t)(M * N);
  float *a = malloc(na * 4), *b = malloc(nb * 4), *got = malloc(nc * 4);
  uint16_t *b16 = malloc(nb * 2);
  double *want = malloc(nc * 8);
  vkp_rng rng = vkp_rng_new(seed);
  vkp_rng_uniform_fill(&rng, a, na, -1, 1);
  vkp_rng_uniform_fill(&rng, b, nb, -1, 1);
  if (c->bdt != VKP_DTYPE_F32) {
    vkp_convert_from_f32(c->bdt, b, b16, nb);
    vkp_convert_to_f32(c->bdt, b16, b, nb);   // the reference uses the rounded values
  }
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      double s = 0;
      for (int64_t k = 0; k < K; k++)
        s += (double)a[c->ta ? k * M + m : m * K + k] * (double)b[c->tb ? n * K + k : k * N + n];
      want[m * N + n] = s;
    }
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *ta = vkp_tensor_input(g, "a", VKP_DTYPE_F32, 2, c->ta ? (int64_t[]){K, M} : (int64_t[]){M, K});
  vkp_tensor *tb = vkp_tensor_input(g, "b", c->bdt, 2, c->tb ? (int64_t[]){N, K} : (int64_t[]){K, N});
  vkp_tensor *y = vkp_matmul(g, ta, tb, c->ta, c->tb);
  vkp_graph_output(g, y);
  uint64_t before = vkp_ctx_shader_dispatches(ctx, c->shader);
  VKP_ASSERT_OK(ctx, vkp_graph_compile(g));
  if (vkp_ctx_shader_dispatches(ctx, c->shader) - before != 1) fail_msg("%s: not one %s dispatch", c->name, c->shader);
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, ta, a, na * 4));
  VKP_ASSERT_OK(ctx, vkp_graph_set_input(g, tb, c->bdt == VKP_DTYPE_F32 ? (void *)b : (void *)b16,
                                         nb * vkp_dtype_size(c->bdt)));
  VKP_ASSERT_OK(ctx, vkp_graph_run(g));
  VKP_ASSERT_OK(ctx, vkp_graph_read(g, y, got, nc * 4));
  vkp_assert_close(c->name, got, want, nc, 1e-5, 1e-6 + 2e-7 * (double)K);
  vkp_graph_free(g);
  free(a), free(b), free(got), free(b16), free(want);
}

static void test_gpu_tiles(void **state) {
  (void)state;
  vkp_ctx *ctx;
  vkp_error err = {0};
  vkp_ctx_options o = {.validation = true, .kernels = "gpu"};
  if (vkp_ctx_new(&o, &ctx, &err) != VKP_OK) fail_msg("vkp_ctx_new: %s", err.msg);
  assert_int_equal(vkp_ctx_kernels(ctx), VKP_KERNELS_GPU);
  // mm_gpu_pick: the largest tile giving at least 128 workgroups, else the smallest.
  const gpu_case cases[] = {
      {"gpu 128 nn 2100x1100x37", "matmul_gpu_128", false, false, VKP_DTYPE_F32, 2100, 1100, 37},
      {"gpu 128 nt bf16 2050x1030x20", "matmul_gpu_128", false, true, VKP_DTYPE_BF16, 2050, 1030, 20},
      {"gpu 64 nt 800x790x45", "matmul_gpu_64", false, true, VKP_DTYPE_F32, 800, 790, 45},
      {"gpu 64 tn f16 780x800x33", "matmul_gpu_64", true, false, VKP_DTYPE_F16, 780, 800, 33},
      {"gpu 32 tt 70x45x131", "matmul_gpu_32", true, true, VKP_DTYPE_F32, 70, 45, 131},
      {"gpu 32 nn 1x1x1", "matmul_gpu_32", false, false, VKP_DTYPE_F32, 1, 1, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_gpu_tile(ctx, &cases[i], 1000 + i);
  assert_int_equal(vkp_ctx_validation_messages(ctx), 0);
  vkp_ctx_free(ctx);
  // A family other than cpu or gpu is an error naming the value.
  o.kernels = "tpu";
  assert_int_equal(vkp_ctx_new(&o, &ctx, &err), VKP_ERR_INVALID);
  assert_null(ctx);
  assert_non_null(strstr(err.msg, "tpu"));
}

// ---- errors ---------------------------------------------------------------------------------

static void test_errors(void **state) {
  (void)state;
  vkp_ctx *ctx = vkp_test_ctx();
  vkp_graph *g;
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *a = vkp_tensor_input(g, "a", VKP_DTYPE_F32, 2, (int64_t[]){4, 5});
  vkp_tensor *b = vkp_tensor_input(g, "b", VKP_DTYPE_F32, 2, (int64_t[]){6, 7});
  assert_null(vkp_matmul(g, a, b, false, false));
  assert_int_equal(vkp_graph_status(g), VKP_ERR_SHAPE);
  assert_non_null(strstr(vkp_graph_error(g), "'a'"));
  assert_non_null(strstr(vkp_graph_error(g), "'b'"));
  assert_null(vkp_matmul(g, NULL, b, false, false));   // NULL passes through
  vkp_graph_free(g);

  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  vkp_tensor *x = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 3, (int64_t[]){2, 3, 4});
  vkp_tensor *y = vkp_tensor_input(g, "y", VKP_DTYPE_F32, 3, (int64_t[]){5, 4, 2});
  assert_null(vkp_matmul(g, x, y, false, false));   // batch 2 vs 5
  assert_non_null(strstr(vkp_graph_error(g), "batch"));
  vkp_graph_free(g);

  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  x = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 2, (int64_t[]){3, 8});
  vkp_tensor *w = vkp_tensor_input(g, "w", VKP_DTYPE_F32, 2, (int64_t[]){4, 8});
  vkp_tensor *bias = vkp_tensor_input(g, "bias", VKP_DTYPE_F32, 1, (int64_t[]){5});
  assert_null(vkp_linear(g, x, w, bias));
  assert_non_null(strstr(vkp_graph_error(g), "'bias'"));
  vkp_graph_free(g);

  // A 16-bit weight marked trainable has no gradient: backward reports it.
  VKP_ASSERT_OK(ctx, vkp_graph_new(ctx, &g));
  x = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 2, (int64_t[]){3, 8});
  w = vkp_tensor_input(g, "w16", VKP_DTYPE_F16, 2, (int64_t[]){4, 8});
  vkp_tensor *loss = vkp_sum(g, vkp_linear(g, x, w, NULL));
  vkp_tensor *grad = NULL;
  assert_int_equal(vkp_graph_backward(g, loss, &w, 1, &grad), VKP_ERR_UNSUPPORTED);
  assert_non_null(strstr(vkp_graph_error(g), "'w16'"));
  vkp_graph_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_layouts),       cmocka_unit_test(test_batched),
      cmocka_unit_test(test_linear),        cmocka_unit_test(test_split),
      cmocka_unit_test(test_packed),        cmocka_unit_test(test_packed_in_place),
      cmocka_unit_test(test_skinny),        cmocka_unit_test(test_sum_of_products),
      cmocka_unit_test(test_weights_16bit), cmocka_unit_test(test_gpu_tiles),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, vkp_test_teardown);
}
