#version 450
// copy.comp — strided copy: out[offset(i, b_stride)] = a[offset(i, a_stride)] over `shape`.
// Materialises views (permute, slice) and writes into sub-ranges (concat, slice gradients).
#include "common.glsl"
#include "push/elementwise.h"
#include "elementwise_index.glsl"
layout(local_size_x = 256) in;

void main() {
  uint i = vkp_global_index();
  if (i >= pc.n) return;
  pc.dst.v[vkp_strided_offset(i, pc.shape, pc.b_stride)] = pc.a.v[vkp_strided_offset(i, pc.shape, pc.a_stride)];
}
