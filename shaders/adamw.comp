#version 450
// adamw.comp — torch.optim.AdamW (amsgrad off) over every chunk of every parameter, with the
// global-norm clip coefficient applied to the gradient first and the gradient zeroed after use:
//   g = grad * min(1, max_norm / (norm + 1e-6))        (no clipping when max_norm <= 0)
//   p = p * (1 - lr * wd)
//   m = m + (1 - b1) * (g - m)                          (torch's lerp; = b1 m + (1 - b1) g)
//   v = b2 * v + (1 - b2) * g * g
//   p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// lr and t come from vkp_step_scalars; nothing runs unless apply_update == 1.
#include "common.glsl"
#include "push/optim.h"
layout(local_size_x = VKP_OPTIM_GROUP) in;

// 1 - beta^t = -expm1(t * log(beta)), accurate also when t * log(beta) is tiny (b2 = 0.999, t = 1).
float one_minus_pow(float log_beta, float t) {
  float y = t * log_beta;
  if (y < -0.5) return 1.0 - exp(y);
  float s = y * (1.0 + y * (1.0 / 2.0 + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (1.0 / 120.0 +
            y * (1.0 / 720.0 + y * (1.0 / 5040.0 + y * (1.0 / 40320.0))))))));
  return -s;
}

void main() {
  uint c = vkp_group_index();
  if (c >= pc.n_chunks || pc.scalars.apply_update != 1u) return;
  OptHparams hp = pc.hparams;
  float lr = pc.scalars.lr, t = pc.scalars.step;
  float coef = 1.0;
  if (hp.max_grad_norm > 0.0) coef = min(1.0, hp.max_grad_norm / (pc.norm.v[0] + 1e-6));
  float decay = 1.0 - lr * hp.weight_decay;
  float step_size = lr / one_minus_pow(hp.log_beta1, t);
  float bc2_sqrt = sqrt(one_minus_pow(hp.log_beta2, t));
  float b2 = hp.beta2, w1 = hp.one_minus_beta1, w2 = hp.one_minus_beta2, eps = hp.eps;

  uvec2 ch = pc.chunks.v[c];
  OptParam P = pc.params.v[ch.x];
  F32Buf p = F32Buf(P.p), g = F32Buf(P.g), m = F32Buf(P.s1), v = F32Buf(P.s2);
  uint end = min(ch.y + pc.chunk_elems, P.n);
  for (uint i = ch.y + gl_LocalInvocationID.x; i < end; i += VKP_OPTIM_GROUP) {
    float gi = g.v[i] * coef;
    float pi = p.v[i] * decay;
    float mi = m.v[i];
    mi = mi + w1 * (gi - mi);
    float vi = v.v[i] * b2 + w2 * gi * gi;
    float denom = sqrt(vi) / bc2_sqrt + eps;
    p.v[i] = pi - step_size * (mi / denom);
    m.v[i] = mi;
    v.v[i] = vi;
    g.v[i] = 0.0;
  }
}
