// Push constants of the elementwise family (binary.comp, unary.comp, copy.comp, fill.comp).
#include "vkp_push.h"

// Shapes are right-aligned to 4 dims (unused leading dims are 1); strides in elements,
// 0 on broadcast dims.
VKP_PUSH(vkp_pc_elementwise) {
  VKP_PTR(F32Buf) a;       // first input
  VKP_PTR(F32Buf) b;       // second input (binary, backward of unary: the upstream gradient)
  VKP_PTR(F32Buf) dst;
  uint32_t n;              // number of output elements
  uint32_t op;             // VKP_EW_* below
  int32_t shape[4];        // output shape
  int32_t a_stride[4];
  int32_t b_stride[4];
  float alpha;             // scale / fill value / op parameter
  float beta;
} VKP_PUSH_END(vkp_pc_elementwise);
VKP_PUSH_CHECK(vkp_pc_elementwise, 88)

// binary.comp
#define VKP_EW_ADD 0
#define VKP_EW_SUB 1
#define VKP_EW_MUL 2
#define VKP_EW_DIV 3
#define VKP_EW_ACCUM 4        // out = out + a (in place accumulation; b unused)
// unary.comp forward (out = f(a)) and backward (out = b * f'(a)) ops
#define VKP_EW_SCALE 10       // alpha * a + beta
#define VKP_EW_GELU_ERF 11
#define VKP_EW_GELU_TANH 12
#define VKP_EW_SILU 13
#define VKP_EW_RELU 14
#define VKP_EW_SIGMOID 15
#define VKP_EW_TANH 16
#define VKP_EW_EXP 17
#define VKP_EW_LOG 18
#define VKP_EW_SQR 19
#define VKP_EW_SQRT 20
#define VKP_EW_BACKWARD 64    // added to a unary op: gradient form
// copy.comp: out (contiguous) = a viewed through a_stride; fill.comp: out = alpha
