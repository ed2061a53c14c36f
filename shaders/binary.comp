#version 450
// binary.comp — broadcasting add/sub/mul/div, and in-place accumulation.
#include "common.glsl"
#include "push/elementwise.h"
#include "elementwise_index.glsl"
layout(local_size_x = 256) in;

void main() {
  uint i = vkp_global_index();
  if (i >= pc.n) return;
  if (pc.op == VKP_EW_ACCUM) {
    pc.dst.v[i] += pc.a.v[i];
    return;
  }
  // beta encodes the layout: 0 general strides; 1 both contiguous and equal; 2 b repeats with
  // period alpha over a contiguous a (bias rows); 3 a repeats with period alpha over b.
  uint mode = uint(pc.beta), period = uint(pc.alpha);
  float x, y;
  if (mode == 1u) {
    x = pc.a.v[i];
    y = pc.b.v[i];
  } else if (mode == 2u) {
    x = pc.a.v[i];
    y = pc.b.v[i % period];
  } else if (mode == 3u) {
    x = pc.a.v[i % period];
    y = pc.b.v[i];
  } else {
    x = pc.a.v[vkp_strided_offset(i, pc.shape, pc.a_stride)];
    y = pc.b.v[vkp_strided_offset(i, pc.shape, pc.b_stride)];
  }
  float r;
  switch (pc.op) {
    case VKP_EW_ADD: r = x + y; break;
    case VKP_EW_SUB: r = x - y; break;
    case VKP_EW_MUL: r = x * y; break;
    default: r = x / y; break;
  }
  pc.dst.v[i] = r;
}
