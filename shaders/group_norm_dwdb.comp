#version 450
// group_norm_dwdb.comp — weight and bias gradients of group norm, one workgroup per channel c:
//   dst[c] = sum_{n, hw} dy * xhat,  dst[C + c] = sum_{n, hw} dy   (xhat as in group_norm.comp).
#include "common.glsl"
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "push/norm.h"
#define WG 128u
layout(local_size_x = 128) in;

shared vec2 red[WG];

void main() {
  uint c = vkp_group_index();
  if (c >= pc.channels) return;   // uniform per workgroup
  uint lane = gl_LocalInvocationID.x;
  uint grp = c / pc.cpg;
  vec2 acc = vec2(0.0);   // sum(dy * xhat), sum(dy)
  for (uint n = 0u; n < pc.batch; n++) {
    uint row = n * pc.groups + grp;
    float mean = pc.stats.v[2u * row], rstd = pc.stats.v[2u * row + 1u];
    float K = pc.x.v[row * pc.len];   // the shift of group_norm.comp
    uint base = (n * pc.channels + c) * pc.hw;
    for (uint j = lane; j < pc.hw; j += WG) {
      float d = pc.dy.v[base + j];
      acc += vec2(d * ((pc.x.v[base + j] - K) - mean) * rstd, d);
    }
  }
  acc = subgroupAdd(acc);
  if (subgroupElect()) red[gl_SubgroupID] = acc;
  barrier();
  if (lane == 0u) {
    vec2 s = vec2(0.0);
    for (uint k = 0u; k < gl_NumSubgroups; k++) s += red[k];
    pc.dst.v[c] = s.x;
    pc.dst.v[pc.channels + c] = s.y;
  }
}
