#version 450
// conv_batch_sum.comp — dst[i] = sum over b < batch of src[b * n + i]: folds the per-image weight
// gradients dY_b · cols_b^T of a batched matmul into dW. Reads are coalesced along i.
#include "common.glsl"
#include "push/conv.h"
layout(local_size_x = 256) in;

void main() {
  uint i = vkp_global_index();
  if (i >= pc.n) return;
  float s = 0.0;
  for (uint b = 0; b < uint(pc.batch); b++) s += pc.src.v[b * pc.n + i];
  pc.dst.v[i] = s;
}
