#version 450
// conv_bias.comp — y[n, c, l] += bias[c] in place, y contiguous (N, C, OH*OW).
// Grid (ceil(OH*OW / 256), C, N).
#include "common.glsl"
#include "push/conv.h"
layout(local_size_x = 256) in;

void main() {
  uint L = uint(pc.OH * pc.OW);
  uint l = gl_GlobalInvocationID.x;
  if (l >= L) return;
  uint c = gl_WorkGroupID.y, n = gl_WorkGroupID.z;
  pc.dst.v[(n * uint(pc.C) + c) * L + l] += pc.bias.v[c];
}
