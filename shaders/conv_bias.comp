#version 450
// conv_bias.comp — y[n, c, l] += bias[c] in place, y contiguous (N, C, OH*OW).
#include "common.glsl"
#include "push/conv.h"
layout(local_size_x = 256) in;

void main() {
  uint i = vkp_global_index();
  if (i >= pc.n) return;
  uint c = (i / uint(pc.OH * pc.OW)) % uint(pc.C);
  pc.dst.v[i] += pc.bias.v[c];
}
