// Push constants of sparse_add.comp: dst = base (copy) then dst[index[i]] += values[i], or the
// gather used by its backward: dst[i] = src[index[i]].
#include "vkp_push.h"

VKP_PUSH(vkp_pc_sparse) {
  VKP_PTR(F32Buf) src;     // base weight (copy) / upstream gradient (gather)
  VKP_PTR(F32Buf) values;  // sparse values (scatter)
  VKP_PTR(I32Buf) index;   // flat element indices (unique)
  VKP_PTR(F32Buf) dst;
  uint32_t n;              // elements to copy, or number of sparse entries
  uint32_t mode;           // 0 copy, 1 scatter-add, 2 gather
} VKP_PUSH_END(vkp_pc_sparse);
VKP_PUSH_CHECK(vkp_pc_sparse, 40)
