// Push constants of timestep_embedding.comp: diffusers' get_timestep_embedding.
#include "vkp_push.h"

VKP_PUSH(vkp_pc_timestep) {
  VKP_PTR(F32Buf) t;       // (N)
  VKP_PTR(F32Buf) dst;     // (N, dim)
  uint32_t n;              // N * dim
  int32_t dim, half_dim;   // half_dim = dim / 2
  uint32_t flip;           // 1: cat(cos, sin); 0: cat(sin, cos)
  float neg_log_period;    // -ln(max_period)
  float denom;             // half_dim - downscale_freq_shift
} VKP_PUSH_END(vkp_pc_timestep);
VKP_PUSH_CHECK(vkp_pc_timestep, 40)
