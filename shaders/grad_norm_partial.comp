#version 450
// grad_norm_partial.comp — stage 1 of the global gradient norm: workgroup c writes the sum of
// squares of its chunk of the accumulated gradients into partial[c]. Skipped (uniformly) when
// vkp_step_scalars.apply_update != 1.
#include "common.glsl"
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "push/optim.h"
layout(local_size_x = VKP_OPTIM_GROUP) in;

shared float sums[VKP_OPTIM_GROUP];   // one per subgroup (any subgroup size >= 1)

void main() {
  uint c = vkp_group_index();
  if (c >= pc.n_chunks || pc.scalars.apply_update != 1u) return;   // uniform per workgroup
  uvec2 ch = pc.chunks.v[c];
  OptParam P = pc.params.v[ch.x];
  F32Buf g = F32Buf(P.g);
  uint end = min(ch.y + pc.chunk_elems, P.n);
  float acc = 0.0;
  for (uint i = ch.y + gl_LocalInvocationID.x; i < end; i += VKP_OPTIM_GROUP) {
    float x = g.v[i];
    acc += x * x;
  }
  acc = subgroupAdd(acc);
  if (subgroupElect()) sums[gl_SubgroupID] = acc;
  barrier();
  if (gl_LocalInvocationID.x == 0) {
    float s = 0.0;
    for (uint k = 0; k < gl_NumSubgroups; k++) s += sums[k];
    pc.partial.v[c] = s;
  }
}
