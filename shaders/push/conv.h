// Push constants of the convolution family:
//   im2col.comp          x (N, C, H, W) -> cols (N, C*KH*KW [+ 1 zero row], OH*OW), row (c*KH + kh)*KW + kw
//   col2im.comp          dcols -> dx, a gather: each input pixel sums the columns that read it
//   conv_bias_grad.comp  dbias[c] = sum over n, oh, ow of dy (one workgroup per channel)
//   conv_batch_sum.comp  dst[i] = sum over b < batch of src[b * n + i] (per-image dW partials)
#include "vkp_push.h"

VKP_PUSH(vkp_pc_conv) {
  VKP_PTR(F32Buf) src;     // im2col: x; col2im: dcols; bias grad: dy; batch sum: partials
  VKP_PTR(F32Buf) dst;     // im2col: cols; col2im: dx; bias grad: dbias; batch sum: sum
  uint32_t n;              // elements this dispatch writes (bias grad: elements of dy)
  int32_t batch;           // N (bias grad, batch sum)
  int32_t C, H, W;         // channels and input spatial size
  int32_t KH, KW;          // kernel size
  int32_t OH, OW;          // output spatial size
  int32_t stride, pad;
  uint32_t zero_row;        // im2col: 1 = each image's columns get one more row, of zeros (odd K padded)
} VKP_PUSH_END(vkp_pc_conv);
VKP_PUSH_CHECK(vkp_pc_conv, 64)
