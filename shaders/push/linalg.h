// Push constants of inverse.comp: the inverse of each of `count` contiguous row-major (n, n)
// matrices (one workgroup per matrix, n <= VKP_INVERSE_MAX_N).
#include "vkp_push.h"

#define VKP_INVERSE_MAX_N 64

VKP_PUSH(vkp_pc_inverse) {
  VKP_PTR(F32Buf) src;     // A (count, n, n)
  VKP_PTR(F32Buf) dst;     // A^-1 (count, n, n)
  uint32_t n;              // matrix size
  uint32_t count;          // number of matrices
} VKP_PUSH_END(vkp_pc_inverse);
VKP_PUSH_CHECK(vkp_pc_inverse, 24)
