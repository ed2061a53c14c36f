#version 450
// dropout.comp — inverted dropout: dst[i] = keep(i) ? src[i] * scale : 0. keep(i) comes from a
// counter-based hash of (step seed, salt, i) (pcg3d, Jarzynski & Olano 2020), so the backward
// recomputes the same mask from the same key instead of storing it.
#include "common.glsl"
#include "push/dropout.h"
layout(local_size_x = 256) in;

uvec3 pcg3d(uvec3 v) {
  v = v * 1664525u + 1013904223u;
  v.x += v.y * v.z; v.y += v.z * v.x; v.z += v.x * v.y;
  v ^= v >> 16u;
  v.x += v.y * v.z; v.y += v.z * v.x; v.z += v.x * v.y;
  return v;
}

void main() {
  uint i = vkp_global_index();
  if (i >= pc.n) return;
  uint seed = pc.scalars.v[2];   // vkp_step_scalars.seed
  uvec3 h = pcg3d(uvec3(i, seed, pc.salt));
  bool keep = (h.x >> 8u) >= pc.threshold;
  pc.dst.v[i] = keep ? pc.src.v[i] * pc.scale : 0.0;
}
