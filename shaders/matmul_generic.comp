#version 450
// matmul_generic.comp — C = op(A)·op(B) for any strides and any B dtype: one output per
// invocation, 8x8 outputs per workgroup (x: n, y: m, z: batch). The fallback for layouts the
// register-blocked kernels (matmul_nn/nt/tn) do not take.
#include "common.glsl"
#include "push/matmul.h"
#include "matmul_load.glsl"
layout(local_size_x = 8, local_size_y = 8) in;

void main() {
  uint n = gl_GlobalInvocationID.x, m = gl_GlobalInvocationID.y;
  if (n >= pc.N || m >= pc.M) return;
  uint ao, bo, co;
  mm_batch_offsets(gl_WorkGroupID.z, ao, bo, co);
  uint ai = ao + m * uint(pc.a_ms), bi = bo + n * uint(pc.b_ns);
  uint aks = uint(pc.a_ks), bks = uint(pc.b_ks);
  float acc = 0.0;
  for (uint k = 0; k < pc.K; k++) {
    acc = fma(pc.a.v[ai], mm_load_b(bi), acc);
    ai += aks;
    bi += bks;
  }
  mm_store(co + m * uint(pc.c_ms) + n, m, n, acc);
}
