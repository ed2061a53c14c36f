#version 450
// sparse_add.comp — masked (sparse) tuning: copy, scatter-add of unique indices, gather.
#include "common.glsl"
#include "push/sparse.h"
layout(local_size_x = 256) in;

void main() {
  uint i = vkp_global_index();
  if (i >= pc.n) return;
  if (pc.mode == 0u) pc.dst.v[i] = pc.src.v[i];
  else if (pc.mode == 1u) pc.dst.v[pc.index.v[i]] += pc.values.v[i];
  else pc.dst.v[i] = pc.src.v[pc.index.v[i]];
}
