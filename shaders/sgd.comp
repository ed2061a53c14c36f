#version 450
// sgd.comp — torch.optim.SGD over every chunk of every parameter, after the global-norm clip
// coefficient; the gradient is zeroed after use:
//   g = grad * clip + wd * p
//   momentum != 0: buf = (t <= 1) ? g : momentum * buf + (1 - dampening) * g
//                  g = nesterov ? g + momentum * buf : buf
//   p = p - lr * g
// (torch starts the momentum buffer as a copy of the first gradient; here the first step is
// t <= 1 of vkp_step_scalars.step). Nothing runs unless apply_update == 1.
#include "common.glsl"
#include "push/optim.h"
layout(local_size_x = VKP_OPTIM_GROUP) in;

void main() {
  uint c = vkp_group_index();
  if (c >= pc.n_chunks || pc.scalars.apply_update != 1u) return;
  OptHparams hp = pc.hparams;
  float lr = pc.scalars.lr;
  bool first = pc.scalars.step <= 1.0;
  float coef = 1.0;
  if (hp.max_grad_norm > 0.0) coef = min(1.0, hp.max_grad_norm / (pc.norm.v[0] + 1e-6));
  float wd = hp.weight_decay, mom = hp.momentum, damp = 1.0 - hp.dampening;
  bool nesterov = hp.nesterov != 0u;

  uvec2 ch = pc.chunks.v[c];
  OptParam P = pc.params.v[ch.x];
  F32Buf p = F32Buf(P.p), g = F32Buf(P.g), buf = F32Buf(P.s1);
  uint end = min(ch.y + pc.chunk_elems, P.n);
  for (uint i = ch.y + gl_LocalInvocationID.x; i < end; i += VKP_OPTIM_GROUP) {
    float pi = p.v[i];
    float gi = g.v[i] * coef;
    if (wd != 0.0) gi += wd * pi;
    if (mom != 0.0) {
      float b = first ? gi : mom * buf.v[i] + damp * gi;
      buf.v[i] = b;
      gi = nesterov ? gi + mom * b : b;
    }
    p.v[i] = pi - lr * gi;
    g.v[i] = 0.0;
  }
}
