// Push constants of upsample_nearest.comp: nearest-neighbour 2x upsampling of contiguous
// (N*C, H, W) planes and its backward (each input pixel sums its 2x2 block of the gradient).
#include "vkp_push.h"

VKP_PUSH(vkp_pc_upsample) {
  VKP_PTR(F32Buf) src;     // forward: x (planes, H, W); backward: dy (planes, 2H, 2W)
  VKP_PTR(F32Buf) dst;     // forward: y (planes, 2H, 2W); backward: dx (planes, H, W)
  uint32_t n;              // elements of the small (input-sized) tensor: planes * H * W
  int32_t H, W;            // input spatial size
  uint32_t backward;       // 0 forward, 1 backward
} VKP_PUSH_END(vkp_pc_upsample);
VKP_PUSH_CHECK(vkp_pc_upsample, 32)
