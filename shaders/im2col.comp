#version 450
// im2col.comp — cols[n, (c*KH + kh)*KW + kw, oh*OW + ow] = x[n, c, oh*s - p + kh, ow*s - p + kw]
// (0 outside the image). Grid (ceil(OH*OW / 64), C, N): one invocation per output pixel l of one
// channel writes that pixel's KH*KW column entries — coalesced stores along l, one division per
// invocation, none in the loop. With pc.zero_row, each image has one more row, written as zeros by
// the last channel's invocations (an odd K padded to even for the product's pair loads).
#include "common.glsl"
#include "push/conv.h"
layout(local_size_x = 64) in;

void main() {
  uint L = uint(pc.OH * pc.OW);
  uint l = gl_GlobalInvocationID.x;
  if (l >= L) return;
  uint c = gl_WorkGroupID.y, n = gl_WorkGroupID.z;
  int oh = int(l / uint(pc.OW));
  int ow = int(l) - oh * pc.OW;
  int ih0 = oh * pc.stride - pc.pad, iw0 = ow * pc.stride - pc.pad;
  uint KHW = uint(pc.KH * pc.KW), rows = uint(pc.C) * KHW + pc.zero_row;
  uint src = (n * uint(pc.C) + c) * uint(pc.H * pc.W);
  uint dst = (n * rows + c * KHW) * L + l;
  for (int kh = 0; kh < pc.KH; kh++) {
    int ih = ih0 + kh;
    bool row_in = ih >= 0 && ih < pc.H;
    for (int kw = 0; kw < pc.KW; kw++) {
      int iw = iw0 + kw;
      float val = 0.0;
      if (row_in && iw >= 0 && iw < pc.W) val = pc.src.v[src + uint(ih * pc.W + iw)];
      pc.dst.v[dst] = val;
      dst += L;
    }
  }
  if (pc.zero_row != 0u && c == uint(pc.C) - 1u) pc.dst.v[dst] = 0.0;   // row C KH KW
}
