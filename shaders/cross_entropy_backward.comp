#version 450
// cross_entropy_backward.comp — dlogits = (softmax(x) - onehot(label)) * grad / count per row,
// softmax from the saved lse: exp(x - lse). Ignored rows (and all rows when count is 0) get 0.
// Rows take a subgroup each, or a workgroup each when pc.mode == 1 (no reductions here).
#include "common.glsl"
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "push/loss.h"
#define WG 128u
layout(local_size_x = 128) in;

void main() {
  bool wide = pc.mode != 0u;
  uint lane = wide ? gl_LocalInvocationID.x : subgroupExclusiveAdd(1u);
  uint width = wide ? WG : subgroupAdd(1u);
  uint units = wide ? 1u : gl_NumSubgroups;
  uint first = vkp_group_index() * units + (wide ? 0u : gl_SubgroupID);
  uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * units;
  float count = pc.aux.v[2u * pc.rows];
  float scale = count > 0.0 ? pc.grad.v[0] / count : 0.0;
  for (uint row = first; row < pc.rows; row += stride) {
    uint base = row * pc.cols;
    int label = pc.labels.v[row];
    if (label < 0 || label >= int(pc.cols) || count <= 0.0) {
      for (uint i = lane; i < pc.cols; i += width) pc.dst.v[base + i] = 0.0;
      continue;
    }
    float lse = pc.aux.v[pc.rows + row];
    for (uint i = lane; i < pc.cols; i += width) {
      float p = exp(pc.a.v[base + i] - lse);
      pc.dst.v[base + i] = (i == uint(label) ? p - 1.0 : p) * scale;
    }
  }
}
