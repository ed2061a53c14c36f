#version 450
// copy.comp — strided copy: dst viewed through b_stride = a viewed through a_stride, over the
// collapsed 4-D `shape` (push/elementwise.h). Materialises views (permute, slice) and writes into
// sub-ranges (concat, slice gradients, assign). A loop over one block per workgroup whose
// coordinates advance with carries; vec4 loads and stores along dim 3 when VKP_EW_F_VEC4 (e.g.
// (B,T,H,D) <-> (B,H,T,D) with D % 4 == 0), else scalars.
#include "common.glsl"
#include "push/elementwise.h"
#include "elementwise_index.glsl"
layout(local_size_x = 256) in;

void main() {
  const uint wg = gl_WorkGroupSize.x;
  uint first, end;
  ivec4 s = vkp_ivec4(pc.shape), sa = vkp_ivec4(pc.a_stride), sd = vkp_ivec4(pc.b_stride);
  bool linear = s.x == 1 && s.y == 1 && s.z == 1;
  if ((pc.flags & VKP_EW_F_VEC4) != 0u) {
    uint64_t a4 = uint64_t(pc.a), d4 = uint64_t(pc.dst);
    uint nv = pc.n / 4u;
    vkp_block(nv, wg, pc.iters, first, end);
    if (linear) {   // unit strides
      for (uint k = first; k < end; k += wg) VkpQuadBuf(d4).v[k] = VkpQuadBuf(a4).v[k];
      uint i = 4u * nv + vkp_global_index();   // the n % 4 tail
      if (i < pc.n) pc.dst.v[i] = pc.a.v[i];
      return;
    }
    s.w /= 4;   // coordinates count vec4s along dim 3 (unit stride in both operands)
    sa.w = 4;
    sd.w = 4;
    ivec4 c = vkp_coords(first, s), d = vkp_coords(wg, s);
    for (uint k = first; k < end; k += wg) {
      VkpQuadBuf(d4).v[uint(vkp_offset(c, sd)) >> 2] = VkpQuadBuf(a4).v[uint(vkp_offset(c, sa)) >> 2];
      c = vkp_coords_add(c, d, s);
    }
    return;
  }
  vkp_block(pc.n, wg, pc.iters, first, end);
  if (linear) {
    for (uint i = first; i < end; i += wg) pc.dst.v[i * uint(sd.w)] = pc.a.v[i * uint(sa.w)];
    return;
  }
  ivec4 c = vkp_coords(first, s), d = vkp_coords(wg, s);
  for (uint i = first; i < end; i += wg) {
    pc.dst.v[vkp_offset(c, sd)] = pc.a.v[vkp_offset(c, sa)];
    c = vkp_coords_add(c, d, s);
  }
}
