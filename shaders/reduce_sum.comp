#version 450
// reduce_sum.comp — one workgroup per output element; lanes stride over the reduced elements,
// then a subgroup reduction and a shared-memory pass across subgroups (any subgroup size).
#include "common.glsl"
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "push/reduce_sum.h"
#include "elementwise_index.glsl"
layout(local_size_x = 64) in;

shared float partial[64];

void main() {
  uint o = vkp_group_index();
  if (o >= pc.n_out) return;   // uniform per workgroup
  int base = vkp_strided_offset(o, pc.keep_shape, pc.in_stride);
  float acc = 0.0;
  for (uint k = gl_LocalInvocationID.x; k < pc.n_red; k += 64u)
    acc += pc.src.v[base + vkp_strided_offset(k, pc.red_shape, pc.in_stride)];
  acc = subgroupAdd(acc);
  if (subgroupElect()) partial[gl_SubgroupID] = acc;
  barrier();
  if (gl_LocalInvocationID.x == 0) {
    float s = 0.0;
    for (uint g = 0; g < gl_NumSubgroups; g++) s += partial[g];
    pc.dst.v[o] = s * pc.alpha;
  }
}
