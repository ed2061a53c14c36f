#version 450
// matmul_tile.glsl — register-blocked C = op(A)·op(B) for the common contiguous layouts, reading
// the operands in place (the "direct" path of core/ops/matmul.c: products too small for the
// packed path's two extra passes), compiled by the matmul_nn*, matmul_nt* and matmul_tn rows of
// variants.cmake, which define (-D) one of
//   MM_NN  A (M,K) row-major, B (K,N) row-major      (x @ W, dX = dY @ W of nn.Linear)
//   MM_NT  A (M,K) row-major, B (N,K) row-major      (x @ W^T: nn.Linear forward)
//   MM_TN  A (K,M) row-major, B (K,N) row-major      (A^T @ B: weight gradients)
// and MM_B16 (+ MM_BF16) when B is stored in 16 bits; TM (rows per lane), TP (B pair loads per
// lane and step) and UJ (inner unroll) set the register tile.
//
// Design (measured on lavapipe, where every per-lane load becomes a gather of 8 lanes and a
// gather costs about as much for 8 x 64 bits as for 8 x 32 bits):
// - each lane loads *pairs* of values: 64-bit words for f32, 32-bit words for f16/bf16;
// - a subgroup computes a TM x (TC * S) sub-tile (S = gl_SubgroupSize, TC columns per lane);
//   every lane holds TM x TC accumulators in registers;
// - op(A) values are loaded once per chunk of k by *distinct* lanes (lane l loads k = k0+2l,
//   k0+2l+1, or row k0+l for TN) and broadcast with subgroupShuffle (one vpermd on lavapipe)
//   instead of every lane loading the same value;
// - the k steps of UJ lanes are unrolled, so the loop-carried accumulators are written (and
//   masked with a blend by lavapipe, as every loop-carried write is) once per unrolled block.
// The workgroup covers pc.tile_m x pc.tile_n outputs; its subgroups loop over the sub-tiles, so
// the kernel is correct for any subgroup size (the host sizes the tile so that, at the reported
// subgroup size, each subgroup gets exactly one sub-tile). Edges: rows and columns are clamped
// for loads and masked for stores; K needs no multiple of anything beyond the pair alignment
// the host checks (see mm_pick in core/ops/matmul.c).
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "push/matmul.h"
#include "matmul_load.glsl"
layout(buffer_reference, std430, buffer_reference_align = 8) buffer U64Buf { uint64_t v[]; };
layout(local_size_x = 64) in;
#if !(defined(MM_NN) || defined(MM_NT) || defined(MM_TN)) || !defined(TM) || !defined(TP) || !defined(UJ)
#error "matmul_tile.glsl: define one of MM_NN, MM_NT, MM_TN, and TM, TP, UJ"
#endif

#if defined(MM_NN) || defined(MM_TN)
#define TC (2 * TP)   // B pairs run along n: two columns per load
#else
#define TC TP         // B pairs run along k: one column per load
#endif

vec2 mm_a_pair(uint w) {
  uint64_t x = U64Buf(uint64_t(pc.a)).v[w];
  return vec2(uintBitsToFloat(uint(x)), uintBitsToFloat(uint(x >> 32)));
}

#ifdef MM_B16
#define MM_B_BASE pc.b_off   // element offset of b from its word-aligned address
vec2 mm_b_pair(uint w) {
  uint x = U32Buf(uint64_t(pc.b)).v[w];
#ifdef MM_BF16
  return vec2(uintBitsToFloat(x << 16), uintBitsToFloat(x & 0xffff0000u));
#else
  return unpackHalf2x16(x);
#endif
}
#else
#define MM_B_BASE 0u
vec2 mm_b_pair(uint w) {
  uint64_t x = U64Buf(uint64_t(pc.b)).v[w];
  return vec2(uintBitsToFloat(uint(x)), uintBitsToFloat(uint(x >> 32)));
}
#endif

// Column of accumulator c for this lane, relative to the sub-tile's first column.
uint mm_col(uint c, uint lane, uint S) {
#ifdef MM_NT
  return lane + S * c;
#else
  return 2u * (lane + S * (c >> 1)) + (c & 1u);
#endif
}

void main() {
  uint S = gl_SubgroupSize, lane = gl_SubgroupInvocationID;
  uint ao, bo, co;
  mm_batch_offsets(gl_WorkGroupID.z, ao, bo, co);
  uint wm0 = gl_WorkGroupID.y * pc.tile_m, wn0 = gl_WorkGroupID.x * pc.tile_n;
  uint m_end = min(pc.M, wm0 + pc.tile_m), n_end = min(pc.N, wn0 + pc.tile_n);
  uint sub_w = TC * S;
  uint sub_cols = (pc.tile_n + sub_w - 1) / sub_w;
  uint nsub = (pc.tile_m / TM) * sub_cols;
  // Full chunks use the unrolled loop; S < UJ (or a short K) leaves everything to the tail loop.
  bool unrolled = S >= UJ;

  for (uint st = gl_SubgroupID; st < nsub; st += gl_NumSubgroups) {
    uint m0 = wm0 + (st / sub_cols) * TM, n0 = wn0 + (st % sub_cols) * sub_w;
    if (m0 >= m_end || n0 >= n_end) continue;
    float acc[TM][TC];
    [[unroll]] for (int r = 0; r < TM; r++) [[unroll]] for (int c = 0; c < TC; c++) acc[r][c] = 0.0;

#if defined(MM_NN) || defined(MM_NT)
    // op(A) rows: lane l reads the pair k = k0 + 2l, k0 + 2l + 1 of each row.
    uint aw[TM];
    [[unroll]] for (int r = 0; r < TM; r++) aw[r] = (ao + min(m0 + r, pc.M - 1) * uint(pc.a_ms)) / 2u + lane;
    uint chunk = 2u * S;
#else
    // op(A) = a^T: lane l reads row k0 + l of a, pairs along m.
    uint aw[TM / 2];
    [[unroll]] for (int p = 0; p < TM / 2; p++) aw[p] = (ao + min(m0 + 2u * p, pc.M - 2u)) / 2u;
    uint astep = uint(pc.a_ks) / 2u;
    uint chunk = S;
#endif
#ifdef MM_NT
    // B rows n (op(B) columns); pairs along k.
    uint bw[TP];
    [[unroll]] for (int t = 0; t < TP; t++)
      bw[t] = (MM_B_BASE + bo + min(n0 + lane + S * t, pc.N - 1) * uint(pc.b_ns)) / 2u;
#else
    // B rows k; pairs along n.
    uint bw[TP];
    [[unroll]] for (int t = 0; t < TP; t++) bw[t] = (MM_B_BASE + bo + min(n0 + 2u * (lane + S * t), pc.N - 2u)) / 2u;
    uint bstep = uint(pc.b_ks) / 2u;
#endif

    uint k0 = 0;
    uint k_full = unrolled ? pc.K - pc.K % chunk : 0u;
    for (; k0 < k_full; k0 += chunk) {
#if defined(MM_NN) || defined(MM_NT)
      vec2 ap[TM];
      [[unroll]] for (int r = 0; r < TM; r++) ap[r] = mm_a_pair(aw[r] + k0 / 2u);
#else
      vec2 ap[TM / 2];
      [[unroll]] for (int p = 0; p < TM / 2; p++) ap[p] = mm_a_pair(aw[p] + (k0 + lane) * astep);
#endif
      for (uint j = 0; j < S; j += UJ) {
#if defined(MM_NN)
        [[unroll]] for (int u = 0; u < 2 * UJ; u++) {
          uint k = k0 + 2u * j + u;
          vec2 bp[TP];
          [[unroll]] for (int t = 0; t < TP; t++) bp[t] = mm_b_pair(bw[t] + k * bstep);
          [[unroll]] for (int r = 0; r < TM; r++) {
            float av = subgroupShuffle(ap[r][u & 1], j + u / 2);
            [[unroll]] for (int t = 0; t < TP; t++) {
              acc[r][2 * t] = fma(av, bp[t].x, acc[r][2 * t]);
              acc[r][2 * t + 1] = fma(av, bp[t].y, acc[r][2 * t + 1]);
            }
          }
        }
#elif defined(MM_NT)
        [[unroll]] for (int u = 0; u < UJ; u++) {
          uint kp = k0 / 2u + j + u;
          vec2 bp[TP];
          [[unroll]] for (int t = 0; t < TP; t++) bp[t] = mm_b_pair(bw[t] + kp);
          [[unroll]] for (int r = 0; r < TM; r++) {
            float alo = subgroupShuffle(ap[r].x, j + u), ahi = subgroupShuffle(ap[r].y, j + u);
            [[unroll]] for (int t = 0; t < TP; t++) {
              acc[r][t] = fma(alo, bp[t].x, fma(ahi, bp[t].y, acc[r][t]));
            }
          }
        }
#else  // MM_TN
        [[unroll]] for (int u = 0; u < UJ; u++) {
          uint k = k0 + j + u;
          vec2 bp[TP];
          [[unroll]] for (int t = 0; t < TP; t++) bp[t] = mm_b_pair(bw[t] + k * bstep);
          [[unroll]] for (int p = 0; p < TM / 2; p++) {
            float a0 = subgroupShuffle(ap[p].x, j + u), a1 = subgroupShuffle(ap[p].y, j + u);
            [[unroll]] for (int t = 0; t < TP; t++) {
              acc[2 * p][2 * t] = fma(a0, bp[t].x, acc[2 * p][2 * t]);
              acc[2 * p][2 * t + 1] = fma(a0, bp[t].y, acc[2 * p][2 * t + 1]);
              acc[2 * p + 1][2 * t] = fma(a1, bp[t].x, acc[2 * p + 1][2 * t]);
              acc[2 * p + 1][2 * t + 1] = fma(a1, bp[t].y, acc[2 * p + 1][2 * t + 1]);
            }
          }
        }
#endif
      }
    }

    // Tail: the last partial chunk (or everything when S < UJ), one k (NN, TN) or k pair (NT)
    // per iteration; lanes past K contribute zeros.
    for (; k0 < pc.K; k0 += chunk) {
#if defined(MM_NN) || defined(MM_NT)
      bool live = k0 + 2u * lane < pc.K;
      vec2 ap[TM];
      [[unroll]] for (int r = 0; r < TM; r++) {
        vec2 v = mm_a_pair(live ? aw[r] + k0 / 2u : aw[r] - lane);
        ap[r] = live ? v : vec2(0.0);
      }
#else
      bool live = k0 + lane < pc.K;
      vec2 ap[TM / 2];
      [[unroll]] for (int p = 0; p < TM / 2; p++) {
        vec2 v = mm_a_pair(aw[p] + (live ? k0 + lane : k0) * astep);
        ap[p] = live ? v : vec2(0.0);
      }
#endif
#if defined(MM_NT)
      uint steps = min(S, (pc.K - k0) / 2u);
#else
      uint steps = min(chunk, pc.K - k0);
#endif
      for (uint i = 0; i < steps; i++) {
        vec2 bp[TP];
#if defined(MM_NN)
        [[unroll]] for (int t = 0; t < TP; t++) bp[t] = mm_b_pair(bw[t] + (k0 + i) * bstep);
        [[unroll]] for (int r = 0; r < TM; r++) {
          float av = subgroupShuffle((i & 1u) == 0u ? ap[r].x : ap[r].y, i / 2u);
          [[unroll]] for (int t = 0; t < TP; t++) {
            acc[r][2 * t] = fma(av, bp[t].x, acc[r][2 * t]);
            acc[r][2 * t + 1] = fma(av, bp[t].y, acc[r][2 * t + 1]);
          }
        }
#elif defined(MM_NT)
        [[unroll]] for (int t = 0; t < TP; t++) bp[t] = mm_b_pair(bw[t] + k0 / 2u + i);
        [[unroll]] for (int r = 0; r < TM; r++) {
          float alo = subgroupShuffle(ap[r].x, i), ahi = subgroupShuffle(ap[r].y, i);
          [[unroll]] for (int t = 0; t < TP; t++) acc[r][t] = fma(alo, bp[t].x, fma(ahi, bp[t].y, acc[r][t]));
        }
#else
        [[unroll]] for (int t = 0; t < TP; t++) bp[t] = mm_b_pair(bw[t] + (k0 + i) * bstep);
        [[unroll]] for (int p = 0; p < TM / 2; p++) {
          float a0 = subgroupShuffle(ap[p].x, i), a1 = subgroupShuffle(ap[p].y, i);
          [[unroll]] for (int t = 0; t < TP; t++) {
            acc[2 * p][2 * t] = fma(a0, bp[t].x, acc[2 * p][2 * t]);
            acc[2 * p][2 * t + 1] = fma(a0, bp[t].y, acc[2 * p][2 * t + 1]);
            acc[2 * p + 1][2 * t] = fma(a1, bp[t].x, acc[2 * p + 1][2 * t]);
            acc[2 * p + 1][2 * t + 1] = fma(a1, bp[t].y, acc[2 * p + 1][2 * t + 1]);
          }
        }
#endif
      }
    }

    [[unroll]] for (int r = 0; r < TM; r++) {
      uint m = m0 + r;
      if (m >= m_end) break;
      [[unroll]] for (int c = 0; c < TC; c++) {
        uint n = n0 + mm_col(c, lane, S);
        if (n < n_end) mm_store(co + m * uint(pc.c_ms) + n, m, n, acc[r][c]);
      }
    }
  }
}
