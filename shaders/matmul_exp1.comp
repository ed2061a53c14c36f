#version 450
// experiment: NN, uniform A loads (broadcast), per-lane B loads. Subgroup subtile TM x TN*S.
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : require
#include "push/matmul.h"
#include "matmul_load.glsl"
#define TM 4
#define TN 4
#define WM 32
#define WN 64
layout(local_size_x = 64) in;

void main() {
  uint S = gl_SubgroupSize, lane = gl_SubgroupInvocationID;
  uint ao, bo, co;
  mm_batch_offsets(gl_WorkGroupID.z, ao, bo, co);
  uint wm0 = gl_WorkGroupID.y * WM, wn0 = gl_WorkGroupID.x * WN;
  uint sub_n = (WN + TN * S - 1) / (TN * S);
  uint nsub = (WM / TM) * sub_n;
  for (uint st = gl_SubgroupID; st < nsub; st += gl_NumSubgroups) {
    uint m0 = wm0 + (st / sub_n) * TM, n0 = wn0 + (st % sub_n) * TN * S;
    if (m0 >= pc.M || n0 >= pc.N) continue;
    uint arow[TM];
    [[unroll]] for (int r = 0; r < TM; r++) arow[r] = ao + min(m0 + r, pc.M - 1) * uint(pc.a_ms);
    uint bcol[TN];
    [[unroll]] for (int t = 0; t < TN; t++) bcol[t] = bo + min(n0 + lane + S * t, pc.N - 1);
    float acc[TM][TN];
    [[unroll]] for (int r = 0; r < TM; r++) [[unroll]] for (int t = 0; t < TN; t++) acc[r][t] = 0.0;
    uint bk = 0;
    for (uint k = 0; k < pc.K; k++) {
      float av[TM], bv[TN];
      [[unroll]] for (int r = 0; r < TM; r++) av[r] = pc.a.v[arow[r] + k];
      [[unroll]] for (int t = 0; t < TN; t++) bv[t] = pc.b.v[bcol[t] + bk];
      [[unroll]] for (int r = 0; r < TM; r++) [[unroll]] for (int t = 0; t < TN; t++) acc[r][t] = fma(av[r], bv[t], acc[r][t]);
      bk += uint(pc.b_ks);
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
