// Push constants of the fused attention family (attention_fwd/_delta/_dq/_dkv.comp).
// q (B, H, Tq, D), k, v (B, H, Tk, D) are read through strides (last dim contiguous), so permuted
// views (B, T, H, D) -> (B, H, T, D) need no copy. Everything else is contiguous.
//   fwd:   dst = O (B, H, Tq, D), lse (B, H, Tq) written (natural log of the softmax denominator,
//          +inf for a row whose keys are all masked).
//   delta: delta[row] = sum_d dout * q over the rows of lse, with q = O, dst = delta.
//   dq:    dst = dQ (B, H, Tq, D).
//   dkv:   dst = (2, B, H, Tk, D): dK then dV.
// O, dO, dQ, dK/dV may be stored (B, T, H, D) instead (the *_BTHD flags).
#include "vkp_push.h"

#define VKP_ATTN_CAUSAL 1u        // key j is visible to query i iff j <= i (PyTorch's is_causal)
#define VKP_ATTN_MASK_ROWS 2u     // mask is (Bm, 1, Tq, Tk); otherwise (Bm, 1, 1, Tk)
#define VKP_ATTN_MASK_BCAST 4u    // mask batch is 1 (shared by every batch)
// Layouts of the row tensors (default (B, H, T, D)): stored (B, T, H, D) instead, the layout of
// the projections around attention, so the head permutes there cost no copy (core/ops/attention.c).
#define VKP_ATTN_O_BTHD 8u        // O (forward output) and dO
#define VKP_ATTN_DQ_BTHD 16u      // dQ
#define VKP_ATTN_DKV_BTHD 32u     // dK and dV: (2 B, Tk, H, D)

VKP_PUSH(vkp_pc_attention) {
  VKP_PTR(F32Buf) q;
  VKP_PTR(F32Buf) k;
  VKP_PTR(F32Buf) v;
  VKP_PTR(F32Buf) mask;      // additive f32; address 0 = no mask
  VKP_PTR(F32Buf) lse;       // (B, H, Tq)
  VKP_PTR(F32Buf) dout;      // dO (B, H, Tq, D)
  VKP_PTR(F32Buf) delta;     // (B, H, Tq)
  VKP_PTR(F32Buf) dst;
  int32_t q_stride[3];       // elements per step of b, h, t
  int32_t k_stride[3];
  int32_t v_stride[3];
  int32_t H, Tq, Tk, D;
  float scale;
  uint32_t flags;            // VKP_ATTN_*
  int32_t B;                 // batch (attention.glsl: rows packed across heads, 1-D grid)
} VKP_PUSH_END(vkp_pc_attention);
VKP_PUSH_CHECK(vkp_pc_attention, 128)
