#version 450
// reduce_sum.comp — one pass of a strided sum reduction (push/reduce_sum.h). No barriers (they
// cost ~30x on lavapipe) and no long loops: every invocation sums at most `chunk` elements
// (ROWS: chunk / subgroup size), the host adds passes over the partial sums.
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "push/reduce_sum.h"
#include "elementwise_index.glsl"
layout(local_size_x = 64) in;

int keep_offset(uint o) {
  uint ki = uint(pc.keep_shape[1]);
  uint o0 = o / ki;
  return int(o0) * pc.keep_stride[0] + int(o - o0 * ki) * pc.keep_stride[1];
}

void main() {
  uint ri = uint(pc.red_shape[1]);
  ivec2 rs = ivec2(pc.red_stride[0], pc.red_stride[1]);
  if (pc.mode == VKP_REDUCE_COLS4) {   // as COLS, on 4 adjacent outputs
    uint u = vkp_global_index(), n4 = pc.n_out / 4u;
    if (u >= n4 * pc.chunks) return;
    uint p = u / n4, o = 4u * (u - p * n4);
    uint k0 = p * pc.chunk, k1 = min(pc.n_red, k0 + pc.chunk);
    int base = keep_offset(o);
    uint c0 = k0 / ri, c1 = k0 - c0 * ri;
    uint64_t src = uint64_t(pc.src);
    vec4 acc = vec4(0.0);
    for (uint k = k0; k < k1; k++) {
      acc += vkp_load4(src, uint(base + int(c0) * rs.x + int(c1) * rs.y) >> 2);
      c1++;
      if (c1 == ri) {
        c1 = 0u;
        c0++;
      }
    }
    vkp_store4(uint64_t(pc.dst), uint(int(o) * pc.dst_stride[0] + int(p) * pc.dst_stride[1]) >> 2, acc * pc.alpha);
    return;
  }
  if (pc.mode == VKP_REDUCE_COLS) {
    uint u = vkp_global_index();
    if (u >= pc.n_out * pc.chunks) return;
    uint p = u / pc.n_out, o = u - p * pc.n_out;
    uint k0 = p * pc.chunk, k1 = min(pc.n_red, k0 + pc.chunk);
    int base = keep_offset(o);
    uint c0 = k0 / ri, c1 = k0 - c0 * ri;
    float acc = 0.0;
    for (uint k = k0; k < k1; k++) {
      acc += pc.src.v[base + int(c0) * rs.x + int(c1) * rs.y];
      c1++;
      if (c1 == ri) {
        c1 = 0u;
        c0++;
      }
    }
    pc.dst.v[int(o) * pc.dst_stride[0] + int(p) * pc.dst_stride[1]] = acc * pc.alpha;
    return;
  }
  // ROWS: units (o, p) visited in a grid-stride loop, one per subgroup at a time.
  uint lane = subgroupExclusiveAdd(1u), width = subgroupAdd(1u);
  uint units = pc.n_out * pc.chunks;
  uint step = gl_NumWorkGroups.x * gl_NumWorkGroups.y * gl_NumSubgroups;
  uint d0 = width / ri, d1 = width - d0 * ri;   // lane stride in reduced coordinates
  for (uint u = vkp_group_index() * gl_NumSubgroups + gl_SubgroupID; u < units; u += step) {
    uint o = u / pc.chunks, p = u - o * pc.chunks;
    uint k0 = p * pc.chunk + lane, k1 = min(pc.n_red, p * pc.chunk + pc.chunk);
    int base = keep_offset(o);
    uint c0 = k0 / ri, c1 = k0 - c0 * ri;
    float acc = 0.0;
    for (uint k = k0; k < k1; k += width) {
      acc += pc.src.v[base + int(c0) * rs.x + int(c1) * rs.y];
      c1 += d1;
      c0 += d0;
      if (c1 >= ri) {
        c1 -= ri;
        c0++;
      }
    }
    acc = subgroupAdd(acc);
    if (subgroupElect()) pc.dst.v[int(o) * pc.dst_stride[0] + int(p) * pc.dst_stride[1]] = acc * pc.alpha;
  }
}
