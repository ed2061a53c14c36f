// Push constants of reduce_sum.comp: sums a 4-D tensor over some dims (keepdim semantics).
#include "vkp_push.h"

VKP_PUSH(vkp_pc_reduce_sum) {
  VKP_PTR(F32Buf) src;
  VKP_PTR(F32Buf) dst;     // contiguous, shape keep_shape
  uint32_t n_out;          // product of keep_shape
  uint32_t n_red;          // product of red_shape
  int32_t keep_shape[4];   // output shape: reduced dims are 1
  int32_t red_shape[4];    // reduced extent per dim: kept dims are 1
  int32_t in_stride[4];
  float alpha;             // result scale (1 for sum, 1/n for mean)
  uint32_t pad;
} VKP_PUSH_END(vkp_pc_reduce_sum);
VKP_PUSH_CHECK(vkp_pc_reduce_sum, 80)
