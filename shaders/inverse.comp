#version 450
// inverse.comp — batched inverse of small matrices by Gauss-Jordan elimination with partial
// (row) pivoting, in place in shared memory (the classic in-place scheme: the inverse overwrites
// the matrix, the row swaps are undone as column swaps at the end). One workgroup per matrix;
// invocation t owns row t for the elimination and column t for swaps and the pivot row, so no
// invocation loops more than about n * n times (Mesa 22's lavapipe stops loops at 65,535).
#include "common.glsl"
#include "push/linalg.h"
layout(local_size_x = 64) in;

shared float M[VKP_INVERSE_MAX_N * VKP_INVERSE_MAX_N];
shared int perm[VKP_INVERSE_MAX_N];
shared float pivot;

void main() {
  uint mat = vkp_group_index();
  if (mat >= pc.count) return;   // uniform per workgroup: no barrier is skipped by part of it
  uint n = pc.n, t = gl_LocalInvocationID.x, WG = gl_WorkGroupSize.x;
  uint base = mat * n * n;
  for (uint i = t; i < n * n; i += WG) M[i] = pc.src.v[base + i];
  barrier();
  for (uint k = 0u; k < n; k++) {
    if (t == 0u) {   // pivot: the largest |entry| of column k at or below the diagonal
      uint p = k;
      float best = abs(M[k * n + k]);
      for (uint i = k + 1u; i < n; i++) {
        float a = abs(M[i * n + k]);
        if (a > best) best = a, p = i;
      }
      perm[k] = int(p);
    }
    barrier();
    uint p = uint(perm[k]);
    if (p != k)
      for (uint j = t; j < n; j += WG) {
        float a = M[k * n + j];
        M[k * n + j] = M[p * n + j];
        M[p * n + j] = a;
      }
    barrier();
    if (t == 0u) pivot = M[k * n + k];
    barrier();
    for (uint j = t; j < n; j += WG) M[k * n + j] = (j == k ? 1.0 : M[k * n + j]) / pivot;
    barrier();
    for (uint i = t; i < n; i += WG) {
      if (i == k) continue;
      float f = M[i * n + k];
      M[i * n + k] = 0.0;
      for (uint j = 0u; j < n; j++) M[i * n + j] -= f * M[k * n + j];
    }
    barrier();
  }
  for (uint i = t; i < n; i += WG)   // undo the row swaps as column swaps, last first
    for (int k = int(n) - 1; k >= 0; k--) {
      uint p = uint(perm[k]);
      if (p == uint(k)) continue;
      float a = M[i * n + uint(k)];
      M[i * n + uint(k)] = M[i * n + p];
      M[i * n + p] = a;
    }
  barrier();
  for (uint i = t; i < n * n; i += WG) pc.dst.v[base + i] = M[i];
}
