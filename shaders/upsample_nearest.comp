#version 450
// upsample_nearest.comp — nearest-neighbour 2x upsampling of (planes, H, W) -> (planes, 2H, 2W)
// and its backward. One invocation per input pixel: forward writes its 2x2 block (two vec2
// stores), backward sums the 2x2 block of the output gradient.
#include "common.glsl"
#include "push/upsample.h"
layout(local_size_x = 256) in;

void main() {
  uint i = vkp_global_index();
  if (i >= pc.n) return;
  uint W = uint(pc.W), W2 = 2u * W;
  uint x = i % W;
  uint py = i / W;                       // plane * H + y
  uint top = (2u * py) * W2 + 2u * x;   // (plane, 2y, 2x) in the large tensor
  if (pc.backward == 0u) {
    float val = pc.src.v[i];
    pc.dst.v[top] = val;
    pc.dst.v[top + 1u] = val;
    pc.dst.v[top + W2] = val;
    pc.dst.v[top + W2 + 1u] = val;
  } else {
    pc.dst.v[i] = (pc.src.v[top] + pc.src.v[top + 1u]) + (pc.src.v[top + W2] + pc.src.v[top + W2 + 1u]);
  }
}
