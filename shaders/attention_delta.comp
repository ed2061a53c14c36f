#version 450
// attention_delta.comp — delta[row] = sum_d dO[row, d] * O[row, d] for the attention backward.
// q = O and dout = dO are contiguous (rows, D); Tk holds the number of rows here.
#include "common.glsl"
#include "push/attention.h"
layout(local_size_x = 64) in;

void main() {
  uint row = vkp_global_index();
  if (row >= uint(pc.Tk)) return;
  uint base = row * uint(pc.D);
  float s = 0.0;
  for (int d = 0; d < pc.D; d++) s += pc.dout.v[base + d] * pc.q.v[base + d];
  pc.delta.v[row] = s;
}
