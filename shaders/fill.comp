#version 450
// fill.comp — out[i] = alpha, or (op == 1) the loss scale from the step scalars (pc.a). A 1-D loop
// over one block of the n elements of a contiguous output per workgroup, on vec4s when
// VKP_EW_F_VEC4 (dst 16-byte aligned). A zero `iters` means one item per invocation (embedding.c
// dispatches one invocation per element with flags and iters 0).
#include "common.glsl"
#include "push/elementwise.h"
#include "elementwise_index.glsl"
layout(local_size_x = 256) in;

void main() {
  const uint wg = gl_WorkGroupSize.x;
  uint first, end;
  float v = pc.op == 1u ? StepScalars(uint64_t(pc.a)).loss_scale : pc.alpha;
  if ((pc.flags & VKP_EW_F_VEC4) != 0u) {
    VkpQuadBuf d4 = VkpQuadBuf(uint64_t(pc.dst));
    uint64_t w = packUint2x32(uvec2(floatBitsToUint(v)));
    uint nv = pc.n / 4u;
    vkp_block(nv, wg, pc.iters, first, end);
    for (uint k = first; k < end; k += wg) d4.v[k] = u64vec2(w);
    first = 4u * nv + vkp_global_index();   // the n % 4 tail
    end = min(pc.n, 4u * nv + 4u);
  } else {
    vkp_block(pc.n, wg, pc.iters, first, end);
  }
  for (uint i = first; i < end; i += wg) pc.dst.v[i] = v;
}
