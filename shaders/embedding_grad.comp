#version 450
// embedding_grad.comp — dtable[ids[i], d] += dout[i, d] with float atomics (repeated ids add up;
// ids outside [0, V) are skipped). dtable is zeroed by a fill dispatch of the same node first.
#extension GL_EXT_shader_atomic_float : require
#include "common.glsl"
#include "push/embedding.h"
layout(local_size_x = 256) in;

void main() {
  uint e = vkp_global_index();
  if (e >= pc.n) return;
  uint i = e / uint(pc.D), d = e - i * uint(pc.D);
  int id = pc.ids.v[i];
  if (id >= 0 && id < pc.V) atomicAdd(pc.table.v[uint(id) * uint(pc.D) + d], pc.rows.v[e]);
}
