#version 450
// matmul_packed.comp — C (+)= Ap · Bp over k in [k_begin, k_begin + K) from the panels written
// by matmul_pack_a/b.comp (layout in push/matmul.h). The fastest kernel on lavapipe for all but
// small products:
// - every load is a gather on lavapipe (about as costly for 8 x 64 bits as for 8 x 32 bits), so
//   lanes load pairs of floats (64-bit words), and the panels make each gather one contiguous
//   64-byte line (in L1: the panels stream, no 4 KiB-strided rows, no TLB misses);
// - each subgroup owns a TM x NW tile, TM = 32 rows by NW = TC * S columns: lane l holds columns
//   2(l + S t) + {0, 1}, t < TC/2, for all TM rows (TM * TC accumulators; LLVM keeps part of them
//   on the stack, which costs less than the loads a smaller tile would need);
// - A values are loaded once per chunk of 2S k by distinct lanes (lane l: k = 2l, 2l + 1) and
//   broadcast with subgroupShuffle (vpermd);
// - the k steps of UJ lanes are unrolled so the loop-carried accumulators are written (and
//   masked by lavapipe) once per 2 UJ k steps.
// A may be read in place instead of from a panel (pc.flags VKP_MM_A_INPLACE: op(A) rows
// contiguous along k; the host checks even strides, 8-byte alignment and K a multiple of 2S, so
// no k is padded): the same 64-byte line per gather from rows a_ms apart, one pack pass fewer.
// Rows past M read the last valid row (their results are not stored). (B read in place measured
// slower than packed: bench/RESULTS.md, "Matmul on the ViT-S shapes".)
// The panel layout assumes pc.sg == gl_SubgroupSize (the host's reported size); if a device runs
// another size, a slow path computes the same tile correctly.
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "push/matmul.h"
#include "matmul_load.glsl"
layout(buffer_reference, std430, buffer_reference_align = 8) buffer U64Buf { uint64_t v[]; };
layout(local_size_x = 64) in;

#define TM VKP_MM_PK_TM
#define TC VKP_MM_PK_TC
#define TP (TC / 2)
#define UJ 1   // lanes' k pairs per unrolled step (1 measured best: 2 and 4 spill more)

vec2 pair(uint64_t p, uint w) {
  uint64_t x = U64Buf(p).v[w];
  return vec2(uintBitsToFloat(uint(x)), uintBitsToFloat(uint(x >> 32)));
}

void main() {
  uint S = pc.sg, KC = 2u * S, NW = TC * S, nch = pc.kp / KC;
  uint ao, bo, co;
  mm_batch_offsets(gl_WorkGroupID.z, ao, bo, co);
  uint panel = gl_WorkGroupID.x, n0 = panel * NW;
  uint64_t pa = uint64_t(pc.a), pb = uint64_t(pc.b);
  bool a_in = (pc.flags & VKP_MM_A_INPLACE) != 0u;

  if (gl_SubgroupSize != S) {
    // Slow path: the workgroup's tile, one output per invocation at a time.
    uint rows = pc.tile_m;
    for (uint o = gl_LocalInvocationID.x; o < rows * NW; o += gl_WorkGroupSize.x) {
      uint m = gl_WorkGroupID.y * rows + o / NW, n = n0 + o % NW;
      if (m >= pc.M || n >= pc.N) continue;
      float acc = 0.0;
      for (uint k = pc.k_begin; k < pc.k_begin + pc.K; k++) {
        uint ai = a_in ? ao + m * uint(pc.a_ms) + k : ao + (((m / TM) * nch + k / KC) * TM + m % TM) * KC + k % KC;
        uint bi = bo + (panel * pc.kp + k) * NW + n % NW;
        acc = fma(pc.a.v[ai], pc.b.v[bi], acc);
      }
      mm_store(co + m * uint(pc.c_ms) + n, n, acc);
    }
    return;
  }

  uint lane = gl_SubgroupInvocationID;
  uint tile = gl_WorkGroupID.y * gl_NumSubgroups + gl_SubgroupID, m0 = tile * TM;
  if (m0 >= pc.M) return;
  float acc[TM][TC];
  [[unroll]] for (int r = 0; r < TM; r++) [[unroll]] for (int c = 0; c < TC; c++) acc[r][c] = 0.0;

  uint c0 = pc.k_begin / KC, c1 = c0 + pc.K / KC;
  // Words (pairs): aw = A[m0][k_begin + 2 lane] (in place) or Ap[tile][c0][0][2 lane], a_row
  // between rows, a_step per chunk of 2S k; r_last: the last row to read.
  uint aw, a_row, a_step, r_last = min(TM - 1u, pc.M - 1u - m0);
  if (a_in) {
    aw = (ao + m0 * uint(pc.a_ms) + pc.k_begin) / 2u + lane, a_row = uint(pc.a_ms) / 2u, a_step = S;
  } else {
    aw = ao / 2u + (tile * nch + c0) * TM * S + lane, a_row = S, a_step = TM * S, r_last = TM - 1u;
  }
  uint bw = bo / 2u + (panel * pc.kp + pc.k_begin) * (NW / 2u) + lane;   // word of Bp[panel][k][2 lane]
  for (uint c = c0; c < c1; c++) {
    vec2 ap[TM];
    [[unroll]] for (int r = 0; r < TM; r++) ap[r] = pair(pa, aw + min(uint(r), r_last) * a_row);
    aw += a_step;
    for (uint j = 0; j < S; j += UJ) {
      [[unroll]] for (int u = 0; u < 2 * UJ; u++) {
        vec2 bp[TP];
        [[unroll]] for (int t = 0; t < TP; t++) bp[t] = pair(pb, bw + t * S);
        bw += NW / 2u;
        [[unroll]] for (int r = 0; r < TM; r++) {
          float av = subgroupShuffle(ap[r][u & 1], j + u / 2);
          [[unroll]] for (int t = 0; t < TP; t++) {
            acc[r][2 * t] = fma(av, bp[t].x, acc[r][2 * t]);
            acc[r][2 * t + 1] = fma(av, bp[t].y, acc[r][2 * t + 1]);
          }
        }
      }
    }
  }

  [[unroll]] for (int r = 0; r < TM; r++) {
    uint m = m0 + r;
    if (m >= pc.M) break;
    [[unroll]] for (int c = 0; c < TC; c++) {
      uint n = n0 + 2u * (lane + S * (c / 2)) + (c & 1);
      if (n < pc.N) mm_store(co + m * uint(pc.c_ms) + n, n, acc[r][c]);
    }
  }
}
