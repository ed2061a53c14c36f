#version 450
// binary.glsl — body of the binary kernels: broadcasting add/sub/mul/div into a contiguous output
// (in-place accumulation is an add with b = dst). A loop over one block of the collapsed 4-D
// output per workgroup (push/elementwise.h): vec4 loads and stores when VKP_EW_F_VEC4, else
// scalars; a 1-D loop (dims 0-2 of size 1) needs no coordinates, a 4-D one advances them with
// carries (no division inside the loop). Each op has its own shader (a binary_<op> row of
// variants.cmake sets VKP_BINARY_OP): lavapipe runs a switch on a push constant as masked code
// for every case (a division per element even for an add).
#include "common.glsl"
#include "push/elementwise.h"
#include "elementwise_index.glsl"
layout(local_size_x = 256) in;

#ifndef VKP_BINARY_OP
#error "binary.glsl: define VKP_BINARY_OP"
#endif
#define OP VKP_BINARY_OP

vec4 apply(vec4 x, vec4 y) {
  switch (OP) {
    case VKP_EW_ADD: return x + y;
    case VKP_EW_SUB: return x - y;
    case VKP_EW_MUL: return x * y;
    default: return x / y;
  }
}

float apply1(float x, float y) { return apply(vec4(x), vec4(y)).x; }

void main() {
  const uint wg = gl_WorkGroupSize.x;
  uint first, end;
  ivec4 s = vkp_ivec4(pc.shape), sa = vkp_ivec4(pc.a_stride), sb = vkp_ivec4(pc.b_stride);
  bool linear = s.x == 1 && s.y == 1 && s.z == 1;
  if ((pc.flags & VKP_EW_F_VEC4) != 0u) {
    uint64_t a4 = uint64_t(pc.a), b4 = uint64_t(pc.b), d4 = uint64_t(pc.dst);
    uint nv = pc.n / 4u;
    vkp_block(nv, wg, pc.iters, first, end);
    if (linear) {   // unit strides, or one operand a single broadcast value (stride 0)
      if (sa.w != 0 && sb.w != 0)
        for (uint k = first; k < end; k += wg) vkp_store4(d4, k, apply(vkp_load4(a4, k), vkp_load4(b4, k)));
      else if (sa.w != 0)
        for (uint k = first; k < end; k += wg) vkp_store4(d4, k, apply(vkp_load4(a4, k), vec4(pc.b.v[0])));
      else
        for (uint k = first; k < end; k += wg) vkp_store4(d4, k, apply(vec4(pc.a.v[0]), vkp_load4(b4, k)));
      uint i = 4u * nv + vkp_global_index();   // the n % 4 tail
      if (i < pc.n) pc.dst.v[i] = apply1(pc.a.v[i * uint(sa.w)], pc.b.v[i * uint(sb.w)]);
      return;
    }
    s.w /= 4;   // coordinates count vec4s along dim 3; element offsets of dim 3 step by 4
    sa.w *= 4;
    sb.w *= 4;
    ivec4 c = vkp_coords(first, s), d = vkp_coords(wg, s);
    // One loop per operand kind (a uniform choice inside the loop would run both loads).
#define VKP_BINARY_LOOP(X, Y)                       \
    for (uint k = first; k < end; k += wg) {        \
      vkp_store4(d4, k, apply(X, Y));               \
      c = vkp_coords_add(c, d, s);                  \
    }
    if (sa.w != 0 && sb.w != 0)
      VKP_BINARY_LOOP(vkp_load4(a4, uint(vkp_offset(c, sa)) >> 2), vkp_load4(b4, uint(vkp_offset(c, sb)) >> 2))
    else if (sa.w != 0)   // b broadcast along dim 3
      VKP_BINARY_LOOP(vkp_load4(a4, uint(vkp_offset(c, sa)) >> 2), vec4(pc.b.v[vkp_offset(c, sb)]))
    else
      VKP_BINARY_LOOP(vec4(pc.a.v[vkp_offset(c, sa)]), vkp_load4(b4, uint(vkp_offset(c, sb)) >> 2))
    return;
  }
  vkp_block(pc.n, wg, pc.iters, first, end);
  if (linear) {
    for (uint i = first; i < end; i += wg) pc.dst.v[i] = apply1(pc.a.v[i * uint(sa.w)], pc.b.v[i * uint(sb.w)]);
    return;
  }
  ivec4 c = vkp_coords(first, s), d = vkp_coords(wg, s);
  for (uint i = first; i < end; i += wg) {
    pc.dst.v[i] = apply1(pc.a.v[vkp_offset(c, sa)], pc.b.v[vkp_offset(c, sb)]);
    c = vkp_coords_add(c, d, s);
  }
}
