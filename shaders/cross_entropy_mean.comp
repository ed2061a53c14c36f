#version 450
// cross_entropy_mean.comp — one workgroup: count = number of rows whose label is in [0, C),
// dst[0] = sum(aux[0..N)) / count (0 when every row is ignored), aux[2N] = count for backward.
// The count is computed here, on the device, because labels change every step of a replayed graph.
#include "common.glsl"
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "push/loss.h"
#define WG 256u
layout(local_size_x = 256) in;

shared vec2 red[WG];

void main() {
  uint lane = gl_LocalInvocationID.x;
  vec2 acc = vec2(0.0);   // sum of losses, count
  for (uint r = lane; r < pc.rows; r += WG) {
    int label = pc.labels.v[r];
    if (label >= 0 && label < int(pc.cols)) acc += vec2(pc.aux.v[r], 1.0);
  }
  acc = subgroupAdd(acc);
  if (subgroupElect()) red[gl_SubgroupID] = acc;
  barrier();
  if (lane == 0u) {
    vec2 s = vec2(0.0);
    for (uint k = 0u; k < gl_NumSubgroups; k++) s += red[k];
    pc.dst.v[0] = s.y > 0.0 ? s.x / s.y : 0.0;
    pc.aux.v[2u * pc.rows] = s.y;
  }
}
