#version 450
// experiment: straight-line (no loops), KC k-steps fully unrolled; uniform A loads; one subtile per subgroup.
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : require
#include "push/matmul.h"
#include "matmul_load.glsl"
#ifndef TM
#define TM 8
#define TN 3
#define KC 64
#endif
layout(local_size_x = 64) in;

void main() {
  uint S = gl_SubgroupSize, lane = gl_SubgroupInvocationID;
  uint ao, bo, co;
  mm_batch_offsets(gl_WorkGroupID.z, ao, bo, co);
  uint m0 = gl_WorkGroupID.y * (TM * gl_NumSubgroups) + gl_SubgroupID * TM, n0 = gl_WorkGroupID.x * (TN * S);
  uint arow[TM];
  [[unroll]] for (int r = 0; r < TM; r++) arow[r] = ao + min(m0 + r, pc.M - 1) * uint(pc.a_ms);
  uint bcol[TN];
  [[unroll]] for (int t = 0; t < TN; t++) bcol[t] = bo + min(n0 + lane + S * t, pc.N - 1);
  float acc[TM][TN];
  [[unroll]] for (int r = 0; r < TM; r++) [[unroll]] for (int t = 0; t < TN; t++) acc[r][t] = 0.0;
  uint bks = uint(pc.b_ks);
  [[unroll]] for (uint k = 0; k < KC; k++) {
    float av[TM], bv[TN];
    [[unroll]] for (int r = 0; r < TM; r++) av[r] = pc.a.v[arow[r] + k];
    [[unroll]] for (int t = 0; t < TN; t++) bv[t] = pc.b.v[bcol[t] + k * bks];
    [[unroll]] for (int r = 0; r < TM; r++) [[unroll]] for (int t = 0; t < TN; t++) acc[r][t] = fma(av[r], bv[t], acc[r][t]);
  }
  [[unroll]] for (int r = 0; r < TM; r++) {
    uint m = m0 + r;
    [[unroll]] for (int t = 0; t < TN; t++) {
      uint n = n0 + lane + S * t;
      if (m < pc.M && n < pc.N) mm_store(co + m * uint(pc.c_ms) + n, n, acc[r][t]);
    }
  }
}
