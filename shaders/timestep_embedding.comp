#version 450
// timestep_embedding.comp — diffusers' get_timestep_embedding: for k < half,
// freq_k = exp(-ln(max_period) * k / (half - shift)) (float32, in diffusers' order of operations);
// emb = cat(sin(t * freq), cos(t * freq)) (flip: cat(cos, sin)); a zero column pads odd dims.
// The argument is reduced to [-pi, pi] in two steps (Cody-Waite) so large t*freq stay accurate.
#include "common.glsl"
#include "push/timestep.h"
layout(local_size_x = 256) in;

void main() {
  uint e = vkp_global_index();
  if (e >= pc.n) return;
  uint n = e / uint(pc.dim);
  int j = int(e % uint(pc.dim));
  if (j >= 2 * pc.half_dim) {
    pc.dst.v[e] = 0.0;
    return;
  }
  bool first = j < pc.half_dim;
  int k = first ? j : j - pc.half_dim;
  float freq = exp((pc.neg_log_period * float(k)) / pc.denom);
  precise float arg = pc.t.v[n] * freq;
  precise float turns = round(arg * 0.15915494309189535);
  precise float red = fma(-turns, 6.28318548202514648, arg);   // 2*pi rounded to float
  red = fma(turns, 1.7484556e-7, red);                         // 2*pi - float(2*pi)
  bool use_sin = first != (pc.flip != 0u);
  pc.dst.v[e] = use_sin ? sin(red) : cos(red);
}
