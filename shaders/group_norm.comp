#version 450
// group_norm.comp — row normalisation forward, for group norm and layer norm alike (layer norm is
// the case groups = 1, hw = 1, cpg = D):
//   K = x[row, 0];  m = sum(x - K) / len;  var = sum((x - K - m)^2) / len;
//   y = (x - K - m) * rstd * w[c] + b[c],  rstd = 1/sqrt(var + eps).
// Shifting by the row's first element keeps the mean exact to f32 rounding of the deviations and
// the two passes avoid E[x^2] - E[x]^2 cancellation, so rows with |mean| >> std stay accurate.
// Writes stats[row] = (m, rstd) (m is the mean relative to K) for the backward kernels.
// Variant group_norm_silu (-DGN_SILU, shaders/variants.cmake): y = silu(a) = a * sigmoid(a) of the
// affine result a, in the same pass (GroupNorm + SiLU of the diffusion resnets, one dispatch).
//
// Row mapping (all row kernels of this family): narrow rows go one per subgroup, reduced with
// subgroup operations only (barriers cost ~30x on lavapipe); wide rows (flags & VKP_NORM_WIDE) go
// one per workgroup, combined across subgroups in shared memory. Rows are visited in a grid-stride
// loop, so any number of workgroups is correct and the subgroup size is never assumed.
#include "common.glsl"
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "push/norm.h"
#define WG 128u
layout(local_size_x = 128) in;

shared float red[WG];   // one slot per subgroup

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
    float K = pc.x.v[base];
    float s = 0.0;
    for (uint i = lane; i < pc.len; i += width) s += pc.x.v[base + i] - K;
    float mean = row_sum(s, wide) / float(pc.len);
    float q = 0.0;
    for (uint i = lane; i < pc.len; i += width) {
      float d = (pc.x.v[base + i] - K) - mean;
      q += d * d;
    }
    float rstd = inversesqrt(row_sum(q, wide) / float(pc.len) + pc.eps);
    if (lane == 0u) {
      pc.stats.v[2u * row] = mean;
      pc.stats.v[2u * row + 1u] = rstd;
    }
    // Channel of element i is c0 + i / hw, tracked incrementally (no division per element).
    uint c = (row % pc.groups) * pc.cpg + lane / pc.hw, r = lane % pc.hw;
    for (uint i = lane; i < pc.len; i += width) {
      float v = ((pc.x.v[base + i] - K) - mean) * rstd;
      if (has_w) v *= pc.w.v[c];
      if (has_b) v += pc.b.v[c];
#ifdef GN_SILU
      v /= 1.0 + exp(-v);   // a * sigmoid(a); exp overflow gives -0, the limit
#endif
      pc.dst.v[base + i] = v;
      c += step_c;
      r += step_r;
      if (r >= pc.hw) {
        r -= pc.hw;
        c++;
      }
    }
  }
}
