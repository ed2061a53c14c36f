#version 450
// im2col.comp — cols[n, (c*KH + kh)*KW + kw, oh*OW + ow] = x[n, c, oh*s - p + kh, ow*s - p + kw]
// (0 outside the image). One invocation per column element; writes are contiguous along ow.
#include "common.glsl"
#include "push/conv.h"
layout(local_size_x = 256) in;

void main() {
  uint i = vkp_global_index();
  if (i >= pc.n) return;
  uint L = uint(pc.OH * pc.OW);
  uint K = uint(pc.C * pc.KH * pc.KW);
  uint l = i % L;
  uint r = i / L;
  uint k = r % K;
  uint n = r / K;
  int kw = int(k % uint(pc.KW));
  int kh = int((k / uint(pc.KW)) % uint(pc.KH));
  int c = int(k / uint(pc.KW * pc.KH));
  int oh = int(l / uint(pc.OW)), ow = int(l % uint(pc.OW));
  int ih = oh * pc.stride - pc.pad + kh;
  int iw = ow * pc.stride - pc.pad + kw;
  float val = 0.0;
  if (ih >= 0 && ih < pc.H && iw >= 0 && iw < pc.W)
    val = pc.src.v[((n * uint(pc.C) + uint(c)) * uint(pc.H) + uint(ih)) * uint(pc.W) + uint(iw)];
  pc.dst.v[i] = val;
}
