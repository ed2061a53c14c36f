#version 450
// attention_delta.comp — delta[row] = sum_d dO[row, d] * O[row, d] for the attention backward,
// rows in lse's (B, H, Tq) order; q = O and dout = dO are contiguous (B, H, Tq, D), or
// (B, Tq, H, D) with VKP_ATTN_O_BTHD. Tk holds the number of rows here.
#include "common.glsl"
#include "push/attention.h"
layout(local_size_x = 64) in;

void main() {
  uint row = vkp_global_index();
  if (row >= uint(pc.Tk)) return;
  uint base = row * uint(pc.D);
  if ((pc.flags & VKP_ATTN_O_BTHD) != 0u) {   // row = (b H + h) Tq + t
    uint Tq = uint(pc.Tq), H = uint(pc.H), bh = row / Tq, t = row - bh * Tq, b = bh / H, h = bh - b * H;
    base = ((b * Tq + t) * H + h) * uint(pc.D);
  }
  float s = 0.0;
  for (int d = 0; d < pc.D; d++) s += pc.dout.v[base + d] * pc.q.v[base + d];
  pc.delta.v[row] = s;
}
