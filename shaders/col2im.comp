#version 450
// col2im.comp — backward of im2col as a gather: dx[n, c, ih, iw] sums dcols over the (kh, kw) whose
// window covers (ih, iw): oh = (ih + p - kh) / s must be whole and in range. Only kernel offsets
// congruent to (ih + p) mod s are visited, so a patch embedding (kernel = stride) reads one value.
#include "common.glsl"
#include "push/conv.h"
layout(local_size_x = 256) in;

void main() {
  uint i = vkp_global_index();
  if (i >= pc.n) return;
  int iw = int(i % uint(pc.W));
  uint r = i / uint(pc.W);
  int ih = int(r % uint(pc.H));
  r /= uint(pc.H);
  int c = int(r % uint(pc.C));
  uint n = r / uint(pc.C);
  uint L = uint(pc.OH * pc.OW);
  uint K = uint(pc.C * pc.KH * pc.KW);
  uint base = n * K * L;
  int y = ih + pc.pad, x = iw + pc.pad;
  // oh = (y - kh) / s in [0, OH): kh in (y - s*OH, y], kh ≡ y (mod s), 0 <= kh < KH
  int kh0 = y % pc.stride, kw0 = x % pc.stride;
  float acc = 0.0;
  for (int kh = kh0; kh < pc.KH && kh <= y; kh += pc.stride) {
    int oh = (y - kh) / pc.stride;
    if (oh >= pc.OH) continue;
    for (int kw = kw0; kw < pc.KW && kw <= x; kw += pc.stride) {
      int ow = (x - kw) / pc.stride;
      if (ow >= pc.OW) continue;
      uint k = (uint(c) * uint(pc.KH) + uint(kh)) * uint(pc.KW) + uint(kw);
      acc += pc.src.v[base + k * L + uint(oh * pc.OW + ow)];
    }
  }
  pc.dst.v[i] = acc;
}
