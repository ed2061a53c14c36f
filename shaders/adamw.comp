#version 450
// adamw.comp — torch.optim.AdamW (amsgrad off) over every chunk of every parameter, with the
// global-norm clip coefficient applied to the gradient first and the gradient zeroed after use:
//   g = grad * min(1, max_norm / (norm + 1e-6))        (no clipping when max_norm <= 0)
//   p = p * (1 - lr * wd)
//   m = m + (1 - b1) * (g - m)                          (torch's lerp; = b1 m + (1 - b1) g)
//   v = b2 * v + (1 - b2) * g * g
//   p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// lr and t come from vkp_step_scalars; nothing runs unless apply_update == 1.
//
// Parameters flagged VKP_OPTIM_FLAG_8BIT keep m and v block-wise quantised (bitsandbytes'
// Adam8bit scheme): per block of 256 elements, m ≈ code_s[c1]·absmax1 and v ≈ code_u[c2]·absmax2
// with the signed / unsigned dynamic maps (pc.qmap). An update dequantises, applies the same
// arithmetic as above, takes the new absmax of the block and stores each value as the index of
// the nearest code of value / absmax. The parameter update uses the unquantised new m and v.
// A workgroup takes its chunk (8 blocks) in two passes of 4 blocks, 64 invocations per block,
// 4 consecutive elements (one packed uint of codes) per invocation.
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

shared float s_code[512];                 // 256 signed codes, then 256 unsigned, ascending
shared float s_red1[VKP_OPTIM_GROUP], s_red2[VKP_OPTIM_GROUP];

// Index of the code nearest to x in the ascending half s_code[base .. base+255] (ties: lower).
uint nearest_code(float x, uint base) {
  uint lo = 0u, hi = 255u;
  for (int it = 0; it < 8; it++) {   // largest i with code[i] <= x (0 when x is below them all)
    uint mid = (lo + hi + 1u) >> 1;
    if (s_code[base + mid] <= x) lo = mid;
    else hi = mid - 1u;
  }
  if (lo < 255u && s_code[base + lo + 1u] - x < x - s_code[base + lo]) lo++;
  return lo;
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
  if ((P.flags & VKP_OPTIM_FLAG_8BIT) != 0u) {   // uniform over the workgroup
    F32Buf p = F32Buf(P.p), g = F32Buf(P.g), a1 = F32Buf(P.a1), a2 = F32Buf(P.a2);
    U32Buf q1 = U32Buf(P.s1), q2 = U32Buf(P.s2);
    uint l = gl_LocalInvocationID.x, b = l >> 6, j = l & 63u;
    for (uint i = l; i < 512u; i += VKP_OPTIM_GROUP) s_code[i] = pc.qmap.v[i];
    barrier();
    for (uint pass = 0u; pass < 2u; pass++) {
      uint blk_start = ch.y + pass * 1024u + b * uint(VKP_OPTIM_QBLOCK);
      uint blk = blk_start / uint(VKP_OPTIM_QBLOCK), e0 = blk_start + 4u * j;
      bool live = blk_start < P.n;
      float am1 = live ? a1.v[blk] : 0.0, am2 = live ? a2.v[blk] : 0.0;
      uint w1c = e0 < P.n ? q1.v[e0 >> 2] : 0u, w2c = e0 < P.n ? q2.v[e0 >> 2] : 0u;
      vec4 mk = vec4(0.0), vk = vec4(0.0);
      float mx1 = 0.0, mx2 = 0.0;
      for (uint k = 0u; k < 4u; k++) {
        uint e = e0 + k;
        if (e >= P.n) break;
        float gi = g.v[e] * coef;
        float mi = s_code[(w1c >> (8u * k)) & 255u] * am1;
        float vi = s_code[256u + ((w2c >> (8u * k)) & 255u)] * am2;
        mi = mi + w1 * (gi - mi);
        vi = vi * b2 + w2 * gi * gi;
        float denom = sqrt(vi) / bc2_sqrt + eps;
        p.v[e] = p.v[e] * decay - step_size * (mi / denom);
        g.v[e] = 0.0;
        mk[k] = mi;
        vk[k] = vi;
        mx1 = max(mx1, abs(mi));
        mx2 = max(mx2, vi);
      }
      s_red1[l] = mx1;
      s_red2[l] = mx2;
      barrier();
      for (uint s = 32u; s > 0u; s >>= 1) {
        if (j < s) {
          s_red1[l] = max(s_red1[l], s_red1[l + s]);
          s_red2[l] = max(s_red2[l], s_red2[l + s]);
        }
        barrier();
      }
      float n1 = s_red1[b * 64u], n2 = s_red2[b * 64u];
      barrier();   // the next pass reuses s_red
      if (e0 < P.n) {
        uint c1 = 0u, c2 = 0u;
        for (uint k = 0u; k < 4u; k++) {
          if (e0 + k >= P.n) break;
          c1 |= nearest_code(n1 > 0.0 ? mk[k] / n1 : 0.0, 0u) << (8u * k);
          c2 |= nearest_code(n2 > 0.0 ? vk[k] / n2 : 0.0, 256u) << (8u * k);
        }
        q1.v[e0 >> 2] = c1;
        q2.v[e0 >> 2] = c2;
      }
      if (j == 0u && live) {
        a1.v[blk] = n1;
        a2.v[blk] = n2;
      }
    }
    return;
  }
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
