#version 450
// embedding.comp — out[i, d] = table[ids[i], d]; ids outside [0, V) give zero rows.
#include "common.glsl"
#include "push/embedding.h"
layout(local_size_x = 256) in;

void main() {
  uint e = vkp_global_index();
  if (e >= pc.n) return;
  uint i = e / uint(pc.D), d = e % uint(pc.D);
  int id = pc.ids.v[i];
  pc.rows.v[e] = (id >= 0 && id < pc.V) ? pc.table.v[uint(id) * uint(pc.D) + d] : 0.0;
}
