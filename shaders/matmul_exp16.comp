#version 450
#define TM 12
#define TN2 1
#define UJ 2
// experiment: NN, 64-bit loads (two floats per lane per gather) for A and B.
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "push/matmul.h"
#include "matmul_load.glsl"
layout(buffer_reference, std430, buffer_reference_align = 8) buffer U64Buf { uint64_t v[]; };
#ifndef TM
#define TM 8
#define TN2 1
#define UJ 2
#endif
#define TN (2 * TN2)
layout(local_size_x = 64) in;

void main() {
  uint S = gl_SubgroupSize, lane = gl_SubgroupInvocationID;
  uint ao, bo, co;
  mm_batch_offsets(gl_WorkGroupID.z, ao, bo, co);
  uint WM = TM * gl_NumSubgroups;   // one subtile per subgroup (experiment)
  uint m0 = gl_WorkGroupID.y * WM + gl_SubgroupID * TM, n0 = gl_WorkGroupID.x * (TN * S);
  if (m0 >= pc.M || n0 >= pc.N) return;
  U64Buf A = U64Buf(uint64_t(pc.a)), B = U64Buf(uint64_t(pc.b));
  uint arow[TM];   // 64-bit word index of A[m][0] + lane
  [[unroll]] for (int r = 0; r < TM; r++) arow[r] = (ao + min(m0 + r, pc.M - 1) * uint(pc.a_ms)) / 2 + lane;
  uint bcol[TN2];  // 64-bit word index of B[0][n0 + 2 lane + 2 S t]
  [[unroll]] for (int t = 0; t < TN2; t++) bcol[t] = (bo + min(n0 + 2 * (lane + S * t), pc.N - 2)) / 2;
  uint bks2 = uint(pc.b_ks) / 2;
  float acc[TM][TN];
  [[unroll]] for (int r = 0; r < TM; r++) [[unroll]] for (int t = 0; t < TN; t++) acc[r][t] = 0.0;
  uint k0 = 0;
  for (; k0 + 2 * S <= pc.K; k0 += 2 * S) {
    float alo[TM], ahi[TM];
    [[unroll]] for (int r = 0; r < TM; r++) {
      uint64_t w = A.v[arow[r] + k0 / 2];
      alo[r] = uintBitsToFloat(uint(w));
      ahi[r] = uintBitsToFloat(uint(w >> 32));
    }
    uint bk = k0 * bks2;
    for (uint j = 0; j < S; j += UJ) {
      float part[TM][TN];
      [[unroll]] for (int u = 0; u < 2 * UJ; u++) {
        float av[TM], bv[TN];
        [[unroll]] for (int t = 0; t < TN2; t++) {
          uint64_t w = B.v[bcol[t] + bk];
          bv[2 * t] = uintBitsToFloat(uint(w));
          bv[2 * t + 1] = uintBitsToFloat(uint(w >> 32));
        }
        bk += bks2;
        [[unroll]] for (int r = 0; r < TM; r++) av[r] = subgroupShuffle((u & 1) == 0 ? alo[r] : ahi[r], j + u / 2);
        [[unroll]] for (int r = 0; r < TM; r++) [[unroll]] for (int t = 0; t < TN; t++)
          part[r][t] = u == 0 ? av[r] * bv[t] : fma(av[r], bv[t], part[r][t]);
      }
      [[unroll]] for (int r = 0; r < TM; r++) [[unroll]] for (int t = 0; t < TN; t++) acc[r][t] += part[r][t];
    }
  }
  if (k0 < pc.K) {   // K tail (K even): fewer than 2S values
    float alo[TM], ahi[TM];
    bool live = k0 + 2 * lane < pc.K;
    [[unroll]] for (int r = 0; r < TM; r++) {
      uint64_t w = A.v[live ? arow[r] + k0 / 2 : arow[r] - lane];
      alo[r] = live ? uintBitsToFloat(uint(w)) : 0.0;
      ahi[r] = live ? uintBitsToFloat(uint(w >> 32)) : 0.0;
    }
    for (uint kk = 0; k0 + kk < pc.K; kk++) {
      uint bk = (k0 + kk) * bks2;
      float av[TM], bv[TN];
      [[unroll]] for (int t = 0; t < TN2; t++) {
        uint64_t w = B.v[bcol[t] + bk];
        bv[2 * t] = uintBitsToFloat(uint(w));
        bv[2 * t + 1] = uintBitsToFloat(uint(w >> 32));
      }
      [[unroll]] for (int r = 0; r < TM; r++) av[r] = subgroupShuffle((kk & 1) == 0 ? alo[r] : ahi[r], kk / 2);
      [[unroll]] for (int r = 0; r < TM; r++) [[unroll]] for (int t = 0; t < TN; t++) acc[r][t] = fma(av[r], bv[t], acc[r][t]);
    }
  }
  [[unroll]] for (int r = 0; r < TM; r++) {
    uint m = m0 + r;
    if (m >= pc.M) break;
    [[unroll]] for (int t = 0; t < TN; t++) {
      uint n = n0 + 2 * (lane + S * (t / 2)) + (t & 1);
      if (n < pc.N) mm_store(co + m * uint(pc.c_ms) + n, n, acc[r][t]);
    }
  }
}
