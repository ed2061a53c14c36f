#version 450
// col2im.comp — backward of im2col as a gather: dx[n, c, ih, iw] sums dcols over the (kh, kw) whose
// window covers (ih, iw): oh = (ih + p - kh) / s must be whole and in range. Only kernel offsets
// congruent to (ih + p) mod s are visited, so a patch embedding (kernel = stride) reads one value.
// Grid (ceil(H*W / 64), C, N): one invocation per input pixel of one channel.
#include "common.glsl"
#include "push/conv.h"
layout(local_size_x = 64) in;

void main() {
  uint HW = uint(pc.H * pc.W);
  uint hw = gl_GlobalInvocationID.x;
  if (hw >= HW) return;
  uint c = gl_WorkGroupID.y, n = gl_WorkGroupID.z;
  int ih = int(hw / uint(pc.W));
  int iw = int(hw) - ih * pc.W;
  uint L = uint(pc.OH * pc.OW);
  uint KHW = uint(pc.KH * pc.KW);
  uint base = (n * uint(pc.C) + c) * KHW * L;
  int y = ih + pc.pad, x = iw + pc.pad;   // >= 0
  int kh0 = y % pc.stride, kw0 = x % pc.stride;
  int oh0 = (y - kh0) / pc.stride, ow0 = (x - kw0) / pc.stride;
  float acc = 0.0;
  // kh = kh0 + a*s <-> oh = oh0 - a; likewise for kw.
  for (int kh = kh0, oh = oh0; kh < pc.KH && oh >= 0; kh += pc.stride, oh--) {
    if (oh >= pc.OH) continue;
    for (int kw = kw0, ow = ow0; kw < pc.KW && ow >= 0; kw += pc.stride, ow--) {
      if (ow >= pc.OW) continue;
      acc += pc.src.v[base + uint(kh * pc.KW + kw) * L + uint(oh * pc.OW + ow)];
    }
  }
  pc.dst.v[(n * uint(pc.C) + c) * HW + hw] = acc;
}
