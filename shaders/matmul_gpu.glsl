#version 450
// matmul_gpu.glsl — C (+)= op(A)·op(B) (+ bias) with shared-memory tiles: the matmul of the GPU
// kernel family (vkp_ctx_kernels() == VKP_KERNELS_GPU: discrete, integrated and virtual GPUs, or
// VKPEFT_KERNELS=gpu anywhere). The rows of variants.cmake define the tile:
//   BM x BN outputs per workgroup, BK k per shared-memory stage, TM x TN outputs per invocation,
//   so a workgroup has (BM / TM) * (BN / TN) invocations.
// core/ops/matmul.c (mm_gpu_pick) chooses the variant from the device's limits (shared memory,
// invocations per workgroup) and the product's size.
//
// Design (the classic SGEMM blocking of discrete GPUs; nothing here depends on the subgroup size):
// - each stage, the workgroup copies a BM x BK slab of op(A) and a BK x BN slab of op(B) into
//   shared memory, one element per invocation and load, consecutive invocations along whichever
//   dimension of the operand is contiguous in memory (a_ks == 1: along k; else along m; B: along
//   n when b_ns == 1, else along k), so global reads coalesce for every layout of nn.Linear's
//   forward (nt), dX (nn) and weight gradient (tn) without a transposed copy;
// - slabs are stored k-major (As[k][m], Bs[k][n]) with one float of padding per k row, so the
//   stores of an operand read along k do not all fall in one bank;
// - invocation (tx, ty) owns rows ty + i * (BM / TM) and columns tx + j * (BN / TN): the reads of
//   a k row are then consecutive words across a subgroup (Bs) or a broadcast (As), and the stores
//   of C are consecutive along n;
// - f16/bf16 B (frozen base weights) is widened when the slab is loaded (mm_load_b); products
//   accumulate in f32. Edges are zero-filled in the slabs and masked at the store, so any M, N, K,
//   stride and alignment is correct (no pair loads, unlike the CPU family's kernels).
#include "common.glsl"
#include "push/matmul.h"
#include "matmul_load.glsl"
#if !defined(BM) || !defined(BN) || !defined(BK) || !defined(TM) || !defined(TN)
#error "matmul_gpu.glsl: define BM, BN, BK, TM, TN"
#endif
#define RT (BM / TM)   // invocations along m
#define CT (BN / TN)   // invocations along n
#define WG (RT * CT)
#if (BM * BK) % WG != 0 || (BK * BN) % WG != 0
#error "matmul_gpu.glsl: each slab must be a whole number of loads per invocation"
#endif
layout(local_size_x = WG) in;

shared float As[BK * (BM + 1)];   // As[k * (BM + 1) + m] = op(A)[m0 + m][k0 + k]
shared float Bs[BK * (BN + 1)];   // Bs[k * (BN + 1) + n] = op(B)[k0 + k][n0 + n]

void main() {
  uint ao, bo, co;
  mm_batch_offsets(gl_WorkGroupID.z, ao, bo, co);
  uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
  uint tid = gl_LocalInvocationID.x, tx = tid % CT, ty = tid / CT;
  uint a_ms = uint(pc.a_ms), a_ks = uint(pc.a_ks), b_ks = uint(pc.b_ks), b_ns = uint(pc.b_ns);
  bool a_along_k = pc.a_ks == 1, b_along_n = pc.b_ns == 1;

  float acc[TM][TN];
  [[unroll]] for (int i = 0; i < TM; i++) [[unroll]] for (int j = 0; j < TN; j++) acc[i][j] = 0.0;

  for (uint k0 = 0u; k0 < pc.K; k0 += BK) {
    [[unroll]] for (uint r = 0u; r < BM * BK / WG; r++) {
      uint e = tid + r * WG;
      uint m = a_along_k ? e / BK : e % BM, k = a_along_k ? e % BK : e / BM;
      uint gm = m0 + m, gk = k0 + k;
      As[k * (BM + 1) + m] = gm < pc.M && gk < pc.K ? pc.a.v[ao + gm * a_ms + gk * a_ks] : 0.0;
    }
    [[unroll]] for (uint r = 0u; r < BK * BN / WG; r++) {
      uint e = tid + r * WG;
      uint n = b_along_n ? e % BN : e / BK, k = b_along_n ? e / BN : e % BK;
      uint gn = n0 + n, gk = k0 + k;
      Bs[k * (BN + 1) + n] = gn < pc.N && gk < pc.K ? mm_load_b(bo + gk * b_ks + gn * b_ns) : 0.0;
    }
    barrier();
    [[unroll]] for (uint k = 0u; k < BK; k++) {
      float a[TM], b[TN];
      [[unroll]] for (int i = 0; i < TM; i++) a[i] = As[k * (BM + 1) + ty + uint(i) * RT];
      [[unroll]] for (int j = 0; j < TN; j++) b[j] = Bs[k * (BN + 1) + tx + uint(j) * CT];
      [[unroll]] for (int i = 0; i < TM; i++)
        [[unroll]] for (int j = 0; j < TN; j++) acc[i][j] = fma(a[i], b[j], acc[i][j]);
    }
    barrier();
  }

  [[unroll]] for (int i = 0; i < TM; i++) {
    uint m = m0 + ty + uint(i) * RT;
    if (m >= pc.M) break;
    [[unroll]] for (int j = 0; j < TN; j++) {
      uint n = n0 + tx + uint(j) * CT;
      if (n < pc.N) mm_store(co + m * uint(pc.c_ms) + n, m, n, acc[i][j]);
    }
  }
}
