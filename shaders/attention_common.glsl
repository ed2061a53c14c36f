// attention_common.glsl — what the fused attention bodies share (attention.glsl: one lane per
// row; attention_wide.glsl: a row split over a group of lanes): extensions, includes, 64-bit pair
// loads and the mask's row offsets. Included after the variant's -D checks, before local_size.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "common.glsl"
#include "push/attention.h"
layout(buffer_reference, std430, buffer_reference_align = 8) buffer U64Buf { uint64_t v[]; };

#define KB 4   // keys per online-softmax step (forward)
#define NEG_INF (-uintBitsToFloat(0x7f800000u))
#define POS_INF uintBitsToFloat(0x7f800000u)

vec2 load_pair(F32Buf buf, int e) {   // elements e, e + 1 (e even)
  uint64_t x = U64Buf(uint64_t(buf)).v[e >> 1];
  return vec2(uintBitsToFloat(uint(x)), uintBitsToFloat(uint(x >> 32)));
}

// Element offset of row t (of T) of head (b, h) in O, dO, dQ or dK/dV: (B, H, T, D), or
// (B, T, H, D) when the flags have `bthd` (VKP_ATTN_*_BTHD).
int io_row(int b, int h, int t, int T, uint bthd) {
  return ((pc.flags & bthd) != 0u ? (b * T + t) * pc.H + h : (b * pc.H + h) * T + t) * pc.D;
}

// Offset of mask row (b, row); row is ignored for a (Bm, 1, 1, Tk) mask.
int mask_row(int b, int row) {
  bool rows = (pc.flags & VKP_ATTN_MASK_ROWS) != 0u;
  int mb = (pc.flags & VKP_ATTN_MASK_BCAST) != 0u ? 0 : b;
  return mb * (rows ? pc.Tq * pc.Tk : pc.Tk) + (rows ? row * pc.Tk : 0);
}
