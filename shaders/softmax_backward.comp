#version 450
// softmax_backward.comp — dx from the forward output y and the upstream gradient dy, per row
// (rows mapped as in softmax.comp):
//   softmax:     dx = y * (dy - sum(dy * y))
//   log_softmax: dx = dy - exp(y) * sum(dy)
#include "common.glsl"
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "push/softmax.h"
#define WG 128u
layout(local_size_x = 128) in;

shared float red[WG];

float row_sum(float v, bool wide) {
  v = subgroupAdd(v);
  if (!wide) return v;
  if (subgroupElect()) red[gl_SubgroupID] = v;
  barrier();
  float s = 0.0;
  for (uint k = 0u; k < gl_NumSubgroups; k++) s += red[k];
  barrier();
  return s;
}

void main() {
  bool wide = pc.wide != 0u;
  bool soft = pc.op == VKP_SOFTMAX;
  uint lane = wide ? gl_LocalInvocationID.x : subgroupExclusiveAdd(1u);
  uint width = wide ? WG : subgroupAdd(1u);
  uint units = wide ? 1u : gl_NumSubgroups;
  uint first = vkp_group_index() * units + (wide ? 0u : gl_SubgroupID);
  uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * units;
  for (uint row = first; row < pc.rows; row += stride) {   // uniform per workgroup when wide
    uint base = row * pc.len;
    float s = 0.0;
    for (uint i = lane; i < pc.len; i += width) s += soft ? pc.dy.v[base + i] * pc.x.v[base + i] : pc.dy.v[base + i];
    s = row_sum(s, wide);
    if (soft) {
      for (uint i = lane; i < pc.len; i += width) pc.dst.v[base + i] = pc.x.v[base + i] * (pc.dy.v[base + i] - s);
    } else {
      for (uint i = lane; i < pc.len; i += width) pc.dst.v[base + i] = pc.dy.v[base + i] - exp(pc.x.v[base + i]) * s;
    }
  }
}
