#version 450
// cross_entropy.comp — fused log-softmax + NLL per row:
//   lse = M + log(sum(exp(x - M))), M = max(x);  loss = lse - x[label].
// Writes aux[row] = loss and aux[N + row] = lse. A label outside [0, C) (ignore_index -100 and
// any invalid value) marks the row as ignored: loss 0, nothing read out of range.
// Rows take a subgroup each, or a workgroup each when pc.mode == 1 (long rows; see softmax.comp).
#include "common.glsl"
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "push/loss.h"
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
  bool wide = pc.mode != 0u;
  uint lane = wide ? gl_LocalInvocationID.x : subgroupExclusiveAdd(1u);
  uint width = wide ? WG : subgroupAdd(1u);
  uint units = wide ? 1u : gl_NumSubgroups;
  uint first = vkp_group_index() * units + (wide ? 0u : gl_SubgroupID);
  uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * units;
  for (uint row = first; row < pc.rows; row += stride) {   // uniform per workgroup when wide
    int label = pc.labels.v[row];
    if (label < 0 || label >= int(pc.cols)) {   // ignored (uniform per row)
      if (lane == 0u) {
        pc.aux.v[row] = 0.0;
        pc.aux.v[pc.rows + row] = 0.0;
      }
      continue;
    }
    uint base = row * pc.cols;
    float m = uintBitsToFloat(0xff800000u);   // -inf
    for (uint i = lane; i < pc.cols; i += width) m = max(m, pc.a.v[base + i]);
    m = row_max(m, wide);
    float s = 0.0;
    for (uint i = lane; i < pc.cols; i += width) s += exp(pc.a.v[base + i] - m);
    float lse = m + log(row_sum(s, wide));
    if (lane == 0u) {
      pc.aux.v[row] = lse - pc.a.v[base + uint(label)];
      pc.aux.v[pc.rows + row] = lse;
    }
  }
}
