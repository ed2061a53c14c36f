#version 450
// grad_norm.comp — stage 2 of the global gradient norm: one workgroup sums the per-chunk partial
// sums and writes norm[0] = sqrt(total). Skipped when vkp_step_scalars.apply_update != 1 (the
// norm then keeps the value of the last update step).
#include "common.glsl"
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "push/optim.h"
layout(local_size_x = VKP_OPTIM_GROUP) in;

shared float sums[VKP_OPTIM_GROUP];

void main() {
  if (pc.scalars.apply_update != 1u) return;
  float acc = 0.0;
  for (uint k = gl_LocalInvocationID.x; k < pc.n_chunks; k += VKP_OPTIM_GROUP) acc += pc.partial.v[k];
  acc = subgroupAdd(acc);
  if (subgroupElect()) sums[gl_SubgroupID] = acc;
  barrier();
  if (gl_LocalInvocationID.x == 0) {
    float s = 0.0;
    for (uint k = 0; k < gl_NumSubgroups; k++) s += sums[k];
    pc.norm.v[0] = sqrt(s);
  }
}
