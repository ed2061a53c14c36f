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
//   broadcast with subgroupShuffle (vpermd); with S = 8 (lavapipe at 256 bits) a k pair of 8 rows
//   is loaded per gather instead, in steps of 4 k (below);
// - the k steps of UJ lanes are unrolled so the loop-carried accumulators are written (and
//   masked by lavapipe) once per 2 UJ k steps (S = 8: once per 4 k steps).
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
#define VKP_MM_PACKED_KERNEL 1   // push/matmul.h: this kernel's own block
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
      if ((pc.flags & VKP_MM_K2) != 0u)   // the appended product: panel rows after this dispatch's
        for (uint k = 0u; k < pc.k2; k++)
          acc = fma(pc.a2.v[m * uint(pc.a2_ms) + k], pc.b.v[bo + (panel * pc.kp + pc.k_begin + pc.K + k) * NW + n % NW], acc);
      mm_store(co + m * uint(pc.c_ms) + n, m, n, acc);
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
  if (S == 8u) {
    // Subgroups of 8 (lavapipe at 256 bits) take another order, measured 12-14 % faster on the
    // ViT-S shapes and 5 % at 1024^2 (bench/RESULTS.md):
    // - A is gathered 8 rows at a time (lane l: row 8q + l) for each k pair, spread over the k
    //   loop, rather than as a burst of TM one-row gathers at the start of each chunk (removing
    //   that burst made the kernel 13 % faster). Each gather touches 8 rows' lines, which are reused
    //   over the chunk's 8 pairs; rows a multiple of 4 KiB apart would share one L1 set, so the
    //   host packs A for those (mm_a_in_place);
    // - a step covers 2 pairs (4 k) row by row: each accumulator is loaded, updated 4 times,
    //   masked and stored once per step (half the blends and spill stores of a 2-k step), and
    //   the step's 16 B vectors stay in registers. 4 pairs per step (26 KB of code) gained nothing.
    uint ro[TM / 8];   // word offset of row 8q + lane from aw
    [[unroll]] for (int q = 0; q < TM / 8; q++) ro[q] = min(uint(8 * q) + lane, r_last) * a_row - lane;
    // sel is 0 (k_begin is a multiple of 2S) but not a constant to LLVM, which would otherwise
    // turn each shuffle by a constant lane into two instructions (vpshufd + vpbroadcastq or
    // vpermq) instead of one vpermd (measured 20-25 % slower).
    uint sel = pc.k_begin % KC;
    // One step: 4 k (2 pairs per row gathered at words A_ + ro[q] + j, + 1) against 4 B rows.
#define PK_STEP(A_, RO_)                                                                             \
    {                                                                                                \
      vec2 ag[2][TM / 8];                                                                            \
      [[unroll]] for (int h = 0; h < 2; h++)                                                         \
        [[unroll]] for (int q = 0; q < TM / 8; q++) ag[h][q] = pair(A_, RO_[q] + j + uint(h));       \
      vec2 bp[4][TP];                                                                                \
      [[unroll]] for (int u = 0; u < 4; u++) {                                                       \
        [[unroll]] for (int t = 0; t < TP; t++) bp[u][t] = pair(pb, bw + t * 8u);                    \
        bw += NW / 2u;                                                                               \
      }                                                                                              \
      [[unroll]] for (int r = 0; r < TM; r++) {                                                      \
        [[unroll]] for (int u = 0; u < 4; u++) {                                                     \
          float av = subgroupShuffle(ag[u / 2][r / 8][u & 1], uint(r % 8) + sel);                    \
          [[unroll]] for (int t = 0; t < TP; t++) {                                                  \
            acc[r][2 * t] = fma(av, bp[u][t].x, acc[r][2 * t]);                                      \
            acc[r][2 * t + 1] = fma(av, bp[u][t].y, acc[r][2 * t + 1]);                              \
          }                                                                                          \
        }                                                                                            \
      }                                                                                              \
    }
    for (uint c = c0; c < c1; c++) {
      uint rw[TM / 8];
      [[unroll]] for (int q = 0; q < TM / 8; q++) rw[q] = aw + ro[q];
      for (uint j = 0; j < 8u; j += 2u) PK_STEP(pa, rw)
      aw += a_step;
    }
    if ((pc.flags & VKP_MM_K2) != 0u) {
      // The appended product (k2 a multiple of 4): A2 rows in place, the B panel's next rows.
      uint rw[TM / 8];
      [[unroll]] for (int q = 0; q < TM / 8; q++) rw[q] = ((m0 + min(uint(8 * q) + lane, r_last)) * uint(pc.a2_ms)) / 2u;
      uint64_t pa2 = uint64_t(pc.a2);
      for (uint j = 0; j < pc.k2 / 2u; j += 2u) PK_STEP(pa2, rw)
    }
  } else {
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
  }

  [[unroll]] for (int r = 0; r < TM; r++) {
    uint m = m0 + r;
    if (m >= pc.M) break;
    [[unroll]] for (int c = 0; c < TC; c++) {
      uint n = n0 + 2u * (lane + S * (c / 2)) + (c & 1);
      if (n < pc.N) mm_store(co + m * uint(pc.c_ms) + n, m, n, acc[r][c]);
    }
  }
}
