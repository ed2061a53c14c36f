// Push constants of the elementwise family (binary*.comp and unary*.comp with their bodies
// binary.glsl and unary.glsl, copy.comp, fill.comp; also cast_f32.comp, which uses a, dst, n, op).
#include "vkp_push.h"

// Shapes are right-aligned to 4 dims (unused leading dims are 1); strides in elements,
// 0 on broadcast dims. The host merges dims that are contiguous in every operand
// (vkp_ew_collapse below), so the usual cases reach the kernels as 1-D or 2-D loops.
VKP_PUSH(vkp_pc_elementwise) {
  VKP_PTR(F32Buf) a;       // first input
  VKP_PTR(F32Buf) b;       // second input (binary, backward of unary: the upstream gradient)
  VKP_PTR(F32Buf) dst;
  uint32_t n;              // number of output elements
  uint32_t op;             // VKP_EW_* below
  int32_t shape[4];        // output shape
  int32_t a_stride[4];
  int32_t b_stride[4];     // copy.comp: the destination's strides
  float alpha;             // scale / fill value / op parameter
  float beta;
  uint32_t flags;          // VKP_EW_F_* below; 0 = scalar loads, any strides
  uint32_t iters;          // items per invocation: workgroup g handles items [g, g + 1) * 256 * iters
                           // (vec4s or floats), lane-interleaved; 0 counts as 1
} VKP_PUSH_END(vkp_pc_elementwise);
VKP_PUSH_CHECK(vkp_pc_elementwise, 96)

// flags
// VKP_EW_F_VEC4: every operand is read/written as vec4 along dim 3: all addresses 16-byte
// aligned, every stride a multiple of 4 except dim 3's, which is 1 (or 0: a scalar broadcast
// along dim 3, read with scalar loads), and shape[3] % 4 == 0 unless dims 0-2 are all 1 (a 1-D
// loop, whose n % 4 tail the kernel handles).
#define VKP_EW_F_VEC4 1u

// binary.glsl ops: one module per op (binary_add, ...: rows of variants.cmake setting VKP_BINARY_OP)
#define VKP_EW_ADD 0
#define VKP_EW_SUB 1
#define VKP_EW_MUL 2
#define VKP_EW_DIV 3
// unary.glsl forward (out = f(a)) and backward (out = b * f'(a)) ops: one module per op
// (unary_<op>: rows of variants.cmake setting VKP_UNARY_OP)
#define VKP_EW_SCALE 10       // alpha * a + beta
#define VKP_EW_GELU_ERF 11
#define VKP_EW_GELU_TANH 12
#define VKP_EW_SILU 13
#define VKP_EW_RELU 14
#define VKP_EW_SIGMOID 15
#define VKP_EW_TANH 16
#define VKP_EW_EXP 17
#define VKP_EW_LOG 18
#define VKP_EW_SQR 19
#define VKP_EW_SQRT 20
#define VKP_EW_BACKWARD 64    // added to a unary op: gradient form
// copy.comp: dst viewed through b_stride = a viewed through a_stride; fill.comp: out = alpha
// (op 1: the loss scale of the step scalars).

#ifndef VKP_GLSL
#include <stdbool.h>
// ---- host side: loop layout -----------------------------------------------------------------
// Kernels of this family loop over one block of items per workgroup (vec4s or floats), the
// lanes interleaved (coalesced on GPUs, one sequential stream per operand for a CPU's
// prefetchers). On lavapipe an invocation costs far more than an element (a coroutine call per
// 8 lanes), so CPUs get several items per invocation (see ew_dispatch in elementwise.c).
#define VKP_EW_WG 256u

// Merges the dims of an elementwise loop over `shape` (ndim <= 4) with `nops` operands whose
// strides (in elements, 0 = broadcast) are given per dim: drops size-1 dims and merges
// neighbours that are contiguous in every operand. Writes 4 right-aligned dims.
static inline void vkp_ew_collapse(int ndim, const int64_t *shape, int nops, const int64_t (*strides)[4],
                                   int32_t out_shape[4], int32_t (*out_strides)[4]) {
  int64_t s[4], st[3][4];
  int k = 0;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] == 1) continue;
    bool merge = k > 0;
    for (int o = 0; o < nops && merge; o++) merge = st[o][k - 1] == strides[o][d] * shape[d];
    if (merge) {
      s[k - 1] *= shape[d];
      for (int o = 0; o < nops; o++) st[o][k - 1] = strides[o][d];
    } else {
      s[k] = shape[d];
      for (int o = 0; o < nops; o++) st[o][k] = strides[o][d];
      k++;
    }
  }
  for (int d = 0; d < 4; d++) {
    int src = d - (4 - k);
    out_shape[d] = src >= 0 ? (int32_t)s[src] : 1;
    for (int o = 0; o < nops; o++) out_strides[o][d] = src >= 0 ? (int32_t)st[o][src] : 0;
  }
}

// True when the collapsed loop can run on vec4s (see VKP_EW_F_VEC4) for the operands at
// addresses addr[o] with strides st[o]. Operands broadcast along dim 3 (stride 0: one scalar per
// vec4, any alignment) are accepted as long as one operand varies.
static inline bool vkp_ew_vec4_ok(const int32_t shape[4], int nops, const int32_t (*st)[4], const uint64_t *addr) {
  bool linear = shape[0] == 1 && shape[1] == 1 && shape[2] == 1;
  if (!linear && shape[3] % 4 != 0) return false;
  int varying = 0;
  for (int o = 0; o < nops; o++) {
    if (st[o][3] == 0) continue;   // broadcast along dim 3: scalar loads, any alignment
    varying++;
    if (st[o][3] != 1 || addr[o] % 16 != 0) return false;
    for (int d = 0; d < 3; d++)
      if (shape[d] > 1 && st[o][d] % 4 != 0) return false;
  }
  return varying > 0;
}
#endif
