// Push constants of the convolution family: im2col.comp (x -> cols) and col2im.comp (dcols -> dx,
// a gather: every input pixel sums the columns that read it, so no atomics are needed).
// x is contiguous (N, C, H, W); cols is contiguous (N, C*KH*KW, OH*OW), row index (c*KH + kh)*KW + kw.
#include "vkp_push.h"

VKP_PUSH(vkp_pc_conv) {
  VKP_PTR(F32Buf) src;     // im2col: x; col2im: dcols
  VKP_PTR(F32Buf) dst;     // im2col: cols; col2im: dx
  uint32_t n;              // number of output elements of this dispatch
  int32_t C, H, W;         // input channels and spatial size
  int32_t KH, KW;          // kernel size
  int32_t OH, OW;          // output spatial size
  int32_t stride, pad;
} VKP_PUSH_END(vkp_pc_conv);
VKP_PUSH_CHECK(vkp_pc_conv, 56)
