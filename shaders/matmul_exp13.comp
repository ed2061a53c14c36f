#version 450
#define TM 8
#define TN 4
#define WM 64
#define WN 64
#define U 4
// experiment: NN, A loaded per lane along k and broadcast with subgroupShuffle, per-lane B loads.
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "push/matmul.h"
#include "matmul_load.glsl"
#ifndef TM
#define TM 4
#define TN 4
#define WM 32
#define WN 64
#define U 4
#endif
layout(local_size_x = 64) in;

void main() {
  uint S = gl_SubgroupSize, lane = gl_SubgroupInvocationID;
  uint ao, bo, co;
  mm_batch_offsets(gl_WorkGroupID.z, ao, bo, co);
  uint wm0 = gl_WorkGroupID.y * WM, wn0 = gl_WorkGroupID.x * WN;
  uint sub_n = (WN + TN * S - 1) / (TN * S);
  uint nsub = (WM / TM) * sub_n;
  uint bks = uint(pc.b_ks);
  for (uint st = gl_SubgroupID; st < nsub; st += gl_NumSubgroups) {
    uint m0 = wm0 + (st / sub_n) * TM, n0 = wn0 + (st % sub_n) * TN * S;
    if (m0 >= pc.M || n0 >= pc.N) continue;
    uint arow[TM];
    [[unroll]] for (int r = 0; r < TM; r++) arow[r] = ao + min(m0 + r, pc.M - 1) * uint(pc.a_ms) + lane;
    uint bcol[TN];
    [[unroll]] for (int t = 0; t < TN; t++) bcol[t] = bo + min(n0 + lane + S * t, pc.N - 1);
    float acc[TM][TN];
    [[unroll]] for (int r = 0; r < TM; r++) [[unroll]] for (int t = 0; t < TN; t++) acc[r][t] = 0.0;
    uint k0 = 0;
    for (; k0 + S <= pc.K; k0 += S) {
      float areg[TM];
      [[unroll]] for (int r = 0; r < TM; r++) areg[r] = pc.a.v[arow[r] + k0];
      for (uint kk = 0; kk < S; kk += U) {
        float part[TM][TN];
        [[unroll]] for (int u = 0; u < U; u++) {
          uint bi = (k0 + kk + u) * bks;
          float av[TM], bv[TN];
          [[unroll]] for (int t = 0; t < TN; t++) bv[t] = pc.b.v[bcol[t] + bi];
          [[unroll]] for (int r = 0; r < TM; r++) av[r] = subgroupShuffle(areg[r], kk + u);
          [[unroll]] for (int r = 0; r < TM; r++) [[unroll]] for (int t = 0; t < TN; t++)
            part[r][t] = u == 0 ? av[r] * bv[t] : fma(av[r], bv[t], part[r][t]);
        }
        [[unroll]] for (int r = 0; r < TM; r++) [[unroll]] for (int t = 0; t < TN; t++) acc[r][t] += part[r][t];
      }
    }
    if (k0 < pc.K) {   // K tail: fewer than S values
      float areg[TM];
      bool live = k0 + lane < pc.K;
      [[unroll]] for (int r = 0; r < TM; r++) areg[r] = pc.a.v[live ? arow[r] + k0 : arow[r] - lane];
      for (uint kk = 0; k0 + kk < pc.K; kk++) {
        uint bi = (k0 + kk) * bks;
        float av[TM], bv[TN];
        [[unroll]] for (int t = 0; t < TN; t++) bv[t] = pc.b.v[bcol[t] + bi];
        [[unroll]] for (int r = 0; r < TM; r++) av[r] = subgroupShuffle(areg[r], kk);
        [[unroll]] for (int r = 0; r < TM; r++) [[unroll]] for (int t = 0; t < TN; t++) acc[r][t] = fma(av[r], bv[t], acc[r][t]);
      }
    }
    [[unroll]] for (int r = 0; r < TM; r++) {
      uint m = m0 + r;
      if (m >= pc.M) break;
      [[unroll]] for (int t = 0; t < TN; t++) {
        uint n = n0 + lane + S * t;
        if (n < pc.N) mm_store(co + m * uint(pc.c_ms) + n, n, acc[r][t]);
      }
    }
  }
}
