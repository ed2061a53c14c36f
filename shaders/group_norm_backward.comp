#version 450
// group_norm_backward.comp — dx of the row normalisation (group norm and layer norm) from the
// saved statistics, rows mapped as in group_norm.comp:
//   g = dy * w[c];  xhat = (x - K - m) * rstd  (K = x[row, 0], see group_norm.comp);
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
// Variant group_norm_backward_silu (-DGN_SILU): the forward was y = silu(a), a = xhat * w + b;
// dy is first taken through SiLU's derivative, with a recomputed from x and the statistics (the
// pre-SiLU tensor is never stored): dy_a = dy * s * (1 + a * (1 - s)), s = sigmoid(a). The first
// pass parks g in dst and the second reads it back (dst never shares storage with x or dy: the
// planner places a node's output before releasing its inputs).
#include "common.glsl"
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "push/norm.h"
#define WG 128u
layout(local_size_x = 128) in;

shared vec2 red[WG];

// The gradient reaching the normalised value: dy (times SiLU's derivative in the fused variant),
// times the weight.
float grad_xhat(float dy, float xh, uint c, bool has_w, bool has_b) {
  float w = has_w ? pc.w.v[c] : 1.0;
#ifdef GN_SILU
  float a = xh * w + (has_b ? pc.b.v[c] : 0.0);
  float s = 1.0 / (1.0 + exp(-a));
  dy *= s * (1.0 + a * (1.0 - s));
#endif
  return dy * w;
}

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
  bool has_w = (pc.flags & VKP_NORM_HAS_W) != 0u, has_b = (pc.flags & VKP_NORM_HAS_B) != 0u;
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
      float g = grad_xhat(pc.dy.v[base + i], xh, c, has_w, has_b);
      acc += vec2(g, g * xh);
#ifdef GN_SILU
      pc.dst.v[base + i] = g;   // kept for the second pass (SiLU's derivative costs an exp)
#endif
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
#ifdef GN_SILU
      float g = pc.dst.v[base + i];   // this invocation's own write of the first pass
#else
      float g = grad_xhat(pc.dy.v[base + i], xh, c, has_w, has_b);
#endif
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
