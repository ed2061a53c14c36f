#version 450
// layer_norm_rows.glsl — layer norm over short rows (len <= 4 S NP), forward (LN_FWD) and dx
// (LN_DX), with the same arithmetic as group_norm.comp / group_norm_backward.comp (shift by the
// row's first element, two-pass variance; dx = rstd (g - mean(g) - xhat mean(g xhat))).
// Compiled by the layer_norm_* rows of variants.cmake: LN_FWD or LN_DX, and NP (pairs per lane).
//
// Why (lavapipe): the general kernels read a row three times (forward) or twice (dx) one float
// per lane, and w and b once per row; every such load is an 8-lane gather. Here a subgroup takes a
// row at a time, each lane holding its elements in registers as pairs (64-bit loads: half the
// gathers), w and b are loaded once per subgroup for all its rows, and stores are pairs too.
// Lane l holds pairs l + S j (elements 2 (l + S j) + {0, 1}), j < NP; pairs past len/2 hold 0.
// Rows: grid-stride over subgroups, several rows per subgroup. The host checks len even, len <=
// 2 S NP, and 8-byte aligned x, dy, dst, w, b.
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_ballot : require
#include "push/norm.h"
layout(buffer_reference, std430, buffer_reference_align = 8) buffer V2Buf { vec2 v[]; };
layout(local_size_x = 64) in;
#if !(defined(LN_FWD) || defined(LN_DX)) || !defined(NP)
#error "layer_norm_rows.glsl: define LN_FWD or LN_DX, and NP"
#endif

void main() {
  bool has_w = (pc.flags & VKP_NORM_HAS_W) != 0u, has_b = (pc.flags & VKP_NORM_HAS_B) != 0u;
  uint S = gl_SubgroupSize, lane = gl_SubgroupInvocationID, half_len = pc.len / 2u;
  uint first = vkp_group_index() * gl_NumSubgroups + gl_SubgroupID;
  uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * gl_NumSubgroups;
  float inv_len = 1.0 / float(pc.len);
  // Per-lane pair indices (clamped: pairs past the row reread the last and count as 0).
  uint pi[NP];
  bool live[NP];
  [[unroll]] for (int j = 0; j < NP; j++) {
    uint p = lane + S * uint(j);
    live[j] = p < half_len;
    pi[j] = min(p, half_len - 1u);
  }
  vec2 w[NP];
#ifdef LN_FWD
  vec2 b[NP];
#endif
  [[unroll]] for (int j = 0; j < NP; j++) {
    w[j] = has_w ? V2Buf(uint64_t(pc.w)).v[pi[j]] : vec2(1.0);
#ifdef LN_FWD
    b[j] = has_b ? V2Buf(uint64_t(pc.b)).v[pi[j]] : vec2(0.0);
#endif
  }

  for (uint row = first; row < pc.rows; row += stride) {   // uniform per subgroup
    uint base = row * half_len;
    vec2 x[NP];
    [[unroll]] for (int j = 0; j < NP; j++) x[j] = V2Buf(uint64_t(pc.x)).v[base + pi[j]];
    float K = subgroupBroadcastFirst(x[0].x);   // lane 0 holds element 0
#ifdef LN_FWD
    float s = 0.0;
    [[unroll]] for (int j = 0; j < NP; j++) s += live[j] ? (x[j].x - K) + (x[j].y - K) : 0.0;
    float mean = subgroupAdd(s) * inv_len;
    float q = 0.0;
    [[unroll]] for (int j = 0; j < NP; j++) {
      vec2 d = (x[j] - K) - mean;
      q += live[j] ? d.x * d.x + d.y * d.y : 0.0;
    }
    float rstd = inversesqrt(subgroupAdd(q) * inv_len + pc.eps);
    if (lane == 0u) V2Buf(uint64_t(pc.stats)).v[row] = vec2(mean, rstd);
    [[unroll]] for (int j = 0; j < NP; j++)
      if (live[j]) V2Buf(uint64_t(pc.dst)).v[base + pi[j]] = ((x[j] - K) - mean) * rstd * w[j] + b[j];
#else
    vec2 st = V2Buf(uint64_t(pc.stats)).v[row];   // (mean - K, rstd)
    vec2 xh[NP], gv[NP];
    vec2 acc = vec2(0.0);   // sum(g), sum(g * xhat)
    [[unroll]] for (int j = 0; j < NP; j++) {
      vec2 dy = V2Buf(uint64_t(pc.dy)).v[base + pi[j]];
      xh[j] = ((x[j] - K) - st.x) * st.y;
      gv[j] = live[j] ? dy * w[j] : vec2(0.0);
      acc += vec2(gv[j].x + gv[j].y, dot(gv[j], xh[j]));
    }
    vec2 m = subgroupAdd(acc) * inv_len;
    [[unroll]] for (int j = 0; j < NP; j++)
      if (live[j]) V2Buf(uint64_t(pc.dst)).v[base + pi[j]] = st.y * (gv[j] - m.x - xh[j] * m.y);
#endif
  }
}
