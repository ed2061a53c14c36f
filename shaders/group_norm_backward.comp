#version 450
// group_norm_backward.comp — dx of the row normalisation (group norm and layer norm) from the
// saved statistics, rows mapped as in group_norm.comp:
//   g = dy * w[c];  xhat = (x - K - m) * rstd  (K = x[row, 0], see group_norm.comp);
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
#include "common.glsl"
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "push/norm.h"
#define WG 128u
layout(local_size_x = 128) in;

shared vec2 red[WG];

vec2 row_sum2(vec2 v, bool wide) {
  v = subgroupAdd(v);
  if (!wide) return v;
  if (subgroupElect()) red[gl_SubgroupID] = v;
  barrier();
  vec2 s = vec2(0.0);
  for (uint k = 0u; k < gl_NumSubgroups; k++) s += red[k];
  barrier();
  return s;
}

void main() {
  bool wide = (pc.flags & VKP_NORM_WIDE) != 0u;
  bool has_w = (pc.flags & VKP_NORM_HAS_W) != 0u;
  uint lane = wide ? gl_LocalInvocationID.x : subgroupExclusiveAdd(1u);
  uint width = wide ? WG : subgroupAdd(1u);
  uint units = wide ? 1u : gl_NumSubgroups;
  uint first = vkp_group_index() * units + (wide ? 0u : gl_SubgroupID);
  uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * units;
  uint step_c = width / pc.hw, step_r = width % pc.hw;
  for (uint row = first; row < pc.rows; row += stride) {   // uniform per workgroup when wide
    uint base = row * pc.len;
    float K = pc.x.v[base], mean = pc.stats.v[2u * row], rstd = pc.stats.v[2u * row + 1u];
    uint c0 = (row % pc.groups) * pc.cpg + lane / pc.hw, r0 = lane % pc.hw;
    vec2 acc = vec2(0.0);   // sum(g), sum(g * xhat)
    uint c = c0, r = r0;
    for (uint i = lane; i < pc.len; i += width) {
      float xh = ((pc.x.v[base + i] - K) - mean) * rstd;
      float g = pc.dy.v[base + i];
      if (has_w) g *= pc.w.v[c];
      acc += vec2(g, g * xh);
      c += step_c;
      r += step_r;
      if (r >= pc.hw) {
        r -= pc.hw;
        c++;
      }
    }
    vec2 m = row_sum2(acc, wide) / float(pc.len);
    c = c0;
    r = r0;
    for (uint i = lane; i < pc.len; i += width) {
      float xh = ((pc.x.v[base + i] - K) - mean) * rstd;
      float g = pc.dy.v[base + i];
      if (has_w) g *= pc.w.v[c];
      pc.dst.v[base + i] = rstd * (g - m.x - xh * m.y);
      c += step_c;
      r += step_r;
      if (r >= pc.hw) {
        r -= pc.hw;
        c++;
      }
    }
  }
}
