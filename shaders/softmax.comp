#version 450
// softmax.comp — softmax / log_softmax over the last axis, stable:
//   M = max(x); S = sum(exp(x - M));  softmax = exp(x - M) / S;  log_softmax = x - M - log(S).
// Three passes over the row (max, sum, write) cost one exp per element per pass instead of the
// two an online max/sum would need; re-reads hit the cache. Rows are mapped as in
// group_norm.comp: one per subgroup, or one per workgroup when pc.wide.
#include "common.glsl"
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "push/softmax.h"
#define WG 128u
layout(local_size_x = 128) in;

shared float red[WG];

float row_max(float v, bool wide) {
  v = subgroupMax(v);
  if (!wide) return v;
  if (subgroupElect()) red[gl_SubgroupID] = v;
  barrier();
  float m = red[0];
  for (uint k = 1u; k < gl_NumSubgroups; k++) m = max(m, red[k]);
  barrier();
  return m;
}

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
  uint lane = wide ? gl_LocalInvocationID.x : subgroupExclusiveAdd(1u);
  uint width = wide ? WG : subgroupAdd(1u);
  uint units = wide ? 1u : gl_NumSubgroups;
  uint first = vkp_group_index() * units + (wide ? 0u : gl_SubgroupID);
  uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * units;
  for (uint row = first; row < pc.rows; row += stride) {   // uniform per workgroup when wide
    uint base = row * pc.len;
    float m = uintBitsToFloat(0xff800000u);   // -inf
    for (uint i = lane; i < pc.len; i += width) m = max(m, pc.x.v[base + i]);
    m = row_max(m, wide);
    float s = 0.0;
    for (uint i = lane; i < pc.len; i += width) s += exp(pc.x.v[base + i] - m);
    s = row_sum(s, wide);
    if (pc.op == VKP_SOFTMAX) {
      float inv = 1.0 / s;
      for (uint i = lane; i < pc.len; i += width) pc.dst.v[base + i] = exp(pc.x.v[base + i] - m) * inv;
    } else {
      float lse = m + log(s);
      for (uint i = lane; i < pc.len; i += width) pc.dst.v[base + i] = pc.x.v[base + i] - lse;
    }
  }
}
