#version 450
// fill.comp — out[i] = alpha, or (op == 1) the loss scale from the step scalars.
#include "common.glsl"
#include "push/elementwise.h"
layout(local_size_x = 256) in;

void main() {
  uint i = vkp_global_index();
  if (i >= pc.n) return;
  pc.dst.v[i] = pc.op == 1u ? StepScalars(uint64_t(pc.a)).loss_scale : pc.alpha;
}
