// Push constants of softmax.comp and softmax_backward.comp (last axis, one workgroup per row).
#include "vkp_push.h"

VKP_PUSH(vkp_pc_softmax) {
  VKP_PTR(F32Buf) x;     // forward: input; backward: the forward's output y
  VKP_PTR(F32Buf) dy;    // backward: upstream gradient
  VKP_PTR(F32Buf) dst;   // forward: y; backward: dx
  uint32_t rows;
  uint32_t len;          // elements per row (the last dim)
  uint32_t op;           // VKP_SOFTMAX or VKP_LOG_SOFTMAX
  uint32_t wide;         // 1: one row per workgroup; 0: one row per subgroup
} VKP_PUSH_END(vkp_pc_softmax);
VKP_PUSH_CHECK(vkp_pc_softmax, 40)

#define VKP_SOFTMAX 0u
#define VKP_LOG_SOFTMAX 1u
