#version 450
// mse.comp — sums for the mean squared error, one workgroup per chunk of elements:
// mode 0: dst[p] = alpha * sum((a - b)^2) over elements [p*chunk, (p+1)*chunk);
// mode 1: dst[0] = alpha * sum(aux[0..rows)) (the partials of mode 0).
#include "common.glsl"
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "push/loss.h"
#define WG 256u
layout(local_size_x = 256) in;

shared float red[WG];

void main() {
  uint lane = gl_LocalInvocationID.x;
  uint p = vkp_group_index();
  float s = 0.0;
  if (pc.mode == 0u) {
    if (p >= pc.rows) return;   // uniform per workgroup
    uint i0 = p * pc.chunk, i1 = min(pc.n, i0 + pc.chunk);
    for (uint i = i0 + lane; i < i1; i += WG) {
      float d = pc.a.v[i] - pc.b.v[i];
      s += d * d;
    }
  } else {
    for (uint i = lane; i < pc.rows; i += WG) s += pc.aux.v[i];
  }
  s = subgroupAdd(s);
  if (subgroupElect()) red[gl_SubgroupID] = s;
  barrier();
  if (lane == 0u) {
    float t = 0.0;
    for (uint k = 0u; k < gl_NumSubgroups; k++) t += red[k];
    pc.dst.v[p] = t * pc.alpha;
  }
}
