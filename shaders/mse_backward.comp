#version 450
// mse_backward.comp — dst = alpha * (a - b) * grad[0], alpha = +-2/n (prediction / target).
#include "common.glsl"
#include "push/loss.h"
layout(local_size_x = 256) in;

void main() {
  uint i = vkp_global_index();
  if (i >= pc.n) return;
  pc.dst.v[i] = pc.alpha * pc.grad.v[0] * (pc.a.v[i] - pc.b.v[i]);
}
