#version 450
// conv_bias_grad.comp — dbias[c] = sum over n < N, l < OH*OW of dy[n, c, l]. One workgroup per
// channel; lanes stride over the contiguous spatial rows, then a subgroup reduction and a
// shared-memory pass across subgroups (any subgroup size).
#include "common.glsl"
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "push/conv.h"
layout(local_size_x = 256) in;

shared float partial[256];

void main() {
  uint c = vkp_group_index();
  if (c >= uint(pc.C)) return;   // uniform per workgroup
  uint L = uint(pc.OH * pc.OW);
  float acc = 0.0;
  for (uint n = 0; n < uint(pc.batch); n++) {
    uint base = (n * uint(pc.C) + c) * L;
    for (uint l = gl_LocalInvocationID.x; l < L; l += 256u) acc += pc.src.v[base + l];
  }
  acc = subgroupAdd(acc);
  if (subgroupElect()) partial[gl_SubgroupID] = acc;
  barrier();
  if (gl_LocalInvocationID.x == 0) {
    float s = 0.0;
    for (uint g = 0; g < gl_NumSubgroups; g++) s += partial[g];
    pc.dst.v[c] = s;
  }
}
