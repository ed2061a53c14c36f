// Push constants of dropout.comp: y = keep(i) ? x * scale : 0, keep(i) drawn from a counter-based
// hash of (step seed, salt, i). The backward applies the same map to the output gradient.
#include "vkp_push.h"

VKP_PUSH(vkp_pc_dropout) {
  VKP_PTR(F32Buf) src;
  VKP_PTR(F32Buf) dst;
  VKP_PTR(U32Buf) scalars;   // vkp_step_scalars (the seed is read at run time)
  uint32_t n;
  uint32_t salt;
  uint32_t threshold;        // drop when (hash >> 8) < threshold = round(p * 2^24)
  float scale;               // 1 / (1 - p)
} VKP_PUSH_END(vkp_pc_dropout);
VKP_PUSH_CHECK(vkp_pc_dropout, 40)
