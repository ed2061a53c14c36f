#version 450
// group_norm_dwdb.comp — weight and bias gradients of group norm, one workgroup per channel c:
//   dst[c] = sum_{n, hw} dy * xhat,  dst[C + c] = sum_{n, hw} dy   (xhat as in group_norm.comp).
// Variant group_norm_dwdb_silu (-DGN_SILU): dy is first taken through SiLU's derivative at the
// recomputed a = xhat * w + b (see group_norm_backward.comp); w and b are read when flagged.
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
#ifdef GN_SILU
  float wc = (pc.flags & VKP_NORM_HAS_W) != 0u ? pc.w.v[c] : 1.0;
  float bc = (pc.flags & VKP_NORM_HAS_B) != 0u ? pc.b.v[c] : 0.0;
#endif
  for (uint n = 0u; n < pc.batch; n++) {
    uint row = n * pc.groups + grp;
    float mean = pc.stats.v[2u * row], rstd = pc.stats.v[2u * row + 1u];
    float K = pc.x.v[row * pc.len];   // the shift of group_norm.comp
    uint base = (n * pc.channels + c) * pc.hw;
    for (uint j = lane; j < pc.hw; j += WG) {
      float d = pc.dy.v[base + j], xh = ((pc.x.v[base + j] - K) - mean) * rstd;
#ifdef GN_SILU
      float a = xh * wc + bc, s = 1.0 / (1.0 + exp(-a));
      d *= s * (1.0 + a * (1.0 - s));
#endif
      acc += vec2(d * xh, d);
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
