#version 450
// matmul_skinny.glsl — C = op(A)·op(B) when op(B) has few columns (N <= NB, or a block of NB
// columns of it): the rank-r products of LoRA (u = x·A^T, v = dY·B, dB = s·dY^T·u, and dA through
// its transpose) that the lanes-along-N kernels of matmul_tile.glsl run with most lanes idle.
// Compiled by the matmul_skinny_* rows of variants.cmake, which define one of
//   SK_AK  op(A) rows contiguous along k (a_ks = 1): a lane reads k pairs of its own rows;
//   SK_AM  op(A) columns contiguous along m (a_ms = 1, op(A) = a^T): a lane reads m pairs;
// one of
//   SK_BK  op(B) pairs along k (b_ks = 1: x·A^T, B stored (N, K));
//   SK_BN  op(B) pairs along n (b_ns = 1: dY·B, B stored (K, N));
// and TR (rows per invocation), NB (columns per workgroup). Operands f32.
//
// Design (lavapipe): lanes run along M, each invocation holds TR rows x NB columns of C in
// registers. The NB x 2 values of op(B) for a k pair are the same for every lane: lane q loads one
// 64-bit pair of them (one gather per k pair for the subgroup) and subgroupShuffle broadcasts each
// where it is used (an address uniform across lanes is still a gather on lavapipe 25). op(A)
// costs one 64-bit gather per row (k pair, SK_AK) or row pair (SK_AM) per k pair.
//   SK_BK:  lane q holds op(B)[k, k+1][n0 + q]
//   SK_BN:  lane q holds op(B)[k + q / 4][n0 + 2 (q % 4) + {0, 1}]
// so the kernel needs subgroups of at least NB = 8 lanes, K even, and for pairs along n N even.
// Output: C[m][n] = c[m * c_ms + n * c_ns] (c_ns = 1 for a plain product; the host computes a
// product with few rows as the transposed one with c_ms = 1).
#include "common.glsl"
#include "push/matmul.h"
#include "matmul_load.glsl"
layout(buffer_reference, std430, buffer_reference_align = 8) buffer U64Buf { uint64_t v[]; };
layout(local_size_x = WG) in;
#if !(defined(SK_AK) || defined(SK_AM)) || !(defined(SK_BK) || defined(SK_BN)) || !defined(TR) || !defined(NB) || !defined(WG) || !defined(UK)
#error "matmul_skinny.glsl: define SK_AK or SK_AM, SK_BK or SK_BN, TR and NB"
#endif
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#if NB != 8
#error "matmul_skinny.glsl: the B pair layout assumes NB = 8"
#endif

vec2 sk_pair(uint64_t addr, uint w) {
  uint64_t x = U64Buf(addr).v[w];
  return vec2(uintBitsToFloat(uint(x)), uintBitsToFloat(uint(x >> 32)));
}

void main() {
  uint ao, bo, co;
  mm_batch_offsets(gl_WorkGroupID.z, ao, bo, co);
  uint n0 = gl_WorkGroupID.x * NB;
  uint inv = gl_LocalInvocationID.x, q = gl_SubgroupInvocationID % NB;
  // A runtime zero: shuffle indices j + zero stay runtime values (a literal index costs LLVM two
  // instructions per shuffle on lavapipe).
  uint zero = pc.k_begin;
  // Word of lane q's B pair at k = 0 and its step per k pair (columns past N read column N - 1 or
  // the last pair; stores skip them).
#ifdef SK_BK
  uint bw = (bo + min(n0 + q, pc.N - 1) * uint(pc.b_ns)) / 2u, bstep = 1u;
#else
  uint bw = (bo + (q / 4u) * uint(pc.b_ks) + min(n0 + 2u * (q % 4u), pc.N - 2u)) / 2u, bstep = uint(pc.b_ks);
#endif

  float acc[TR][NB];
  [[unroll]] for (int i = 0; i < TR; i++) [[unroll]] for (int j = 0; j < NB; j++) acc[i][j] = 0.0;

#ifdef SK_AK
  // Rows m = base + inv + WG i; the lane reads the pair (k, k + 1) of each.
  uint base = gl_WorkGroupID.y * (WG * TR);
  uint aw[TR];
  [[unroll]] for (int i = 0; i < TR; i++) aw[i] = (ao + min(base + inv + WG * i, pc.M - 1) * uint(pc.a_ms)) / 2u;
#define SK_ROW(i) (base + inv + WG * uint(i))
#else
  // Rows m = base + 2 inv + 2 WG p + {0, 1}: the lane reads the row pair at k and at k + 1.
  uint base = gl_WorkGroupID.y * (WG * TR);
  uint aw[TR / 2];
  [[unroll]] for (int p = 0; p < TR / 2; p++) aw[p] = (ao + min(base + 2u * inv + 2u * WG * p, pc.M - 2u)) / 2u;
  uint aks = uint(pc.a_ks) / 2u;
#define SK_ROW(i) (base + 2u * inv + 2u * WG * uint((i) / 2) + uint((i) & 1))
#endif

  // UK k pairs per iteration: each accumulator is loaded, updated 2 UK times, blended (lavapipe
  // masks every loop-carried write) and stored once per iteration. A last odd k pair runs alone.
  uint k = 0;
  for (uint step = 2u * UK; k < pc.K; k += step) {
    uint pairs = pc.K - k >= 2u * UK ? UK : 1u;
    step = 2u * pairs;
    vec2 bp[UK];
#ifdef SK_AK
    vec2 a[UK][TR];
#else
    vec2 a0[UK][TR / 2], a1[UK][TR / 2];
#endif
    [[unroll]] for (int u = 0; u < UK; u++) {
      uint kk = u < pairs ? k + 2u * u : k;   // a missing pair reloads the first (weight 0 below)
      bp[u] = sk_pair(uint64_t(pc.b), bw + (kk / 2u) * bstep);
      if (u >= pairs) bp[u] = vec2(0.0);
#ifdef SK_AK
      [[unroll]] for (int i = 0; i < TR; i++) a[u][i] = sk_pair(uint64_t(pc.a), aw[i] + kk / 2u);
#else
      [[unroll]] for (int p = 0; p < TR / 2; p++) {
        a0[u][p] = sk_pair(uint64_t(pc.a), aw[p] + kk * aks);
        a1[u][p] = sk_pair(uint64_t(pc.a), aw[p] + (kk + 1u) * aks);
      }
#endif
    }
    [[unroll]] for (int j = 0; j < NB; j++) {
      float b0[UK], b1[UK];   // op(B)[k + 2u][n0 + j], op(B)[k + 2u + 1][n0 + j]
      [[unroll]] for (int u = 0; u < UK; u++) {
#ifdef SK_BK
        b0[u] = subgroupShuffle(bp[u].x, zero + j);
        b1[u] = subgroupShuffle(bp[u].y, zero + j);
#else
        b0[u] = subgroupShuffle((j & 1) == 0 ? bp[u].x : bp[u].y, zero + j / 2);
        b1[u] = subgroupShuffle((j & 1) == 0 ? bp[u].x : bp[u].y, zero + 4 + j / 2);
#endif
      }
#ifdef SK_AK
      [[unroll]] for (int i = 0; i < TR; i++) {
        float v = acc[i][j];
        [[unroll]] for (int u = 0; u < UK; u++) v = fma(a[u][i].y, b1[u], fma(a[u][i].x, b0[u], v));
        acc[i][j] = v;
      }
#else
      [[unroll]] for (int p = 0; p < TR / 2; p++) {
        float v0 = acc[2 * p][j], v1 = acc[2 * p + 1][j];
        [[unroll]] for (int u = 0; u < UK; u++) {
          v0 = fma(a1[u][p].x, b1[u], fma(a0[u][p].x, b0[u], v0));
          v1 = fma(a1[u][p].y, b1[u], fma(a0[u][p].y, b0[u], v1));
        }
        acc[2 * p][j] = v0;
        acc[2 * p + 1][j] = v1;
      }
#endif
    }
  }

  uint cns = uint(pc.c_ns);
  [[unroll]] for (int i = 0; i < TR; i++) {
    uint m = SK_ROW(i);
    if (m >= pc.M) continue;
    [[unroll]] for (int j = 0; j < NB; j++) {
      uint n = n0 + j;
      if (n >= pc.N) break;
      mm_store(co + m * uint(pc.c_ms) + n * cns, m, n, acc[i][j]);
    }
  }
}
