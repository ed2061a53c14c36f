#version 450
// matmul_pack_b.comp — copies op(B) (K, N) (f32, f16 or bf16, any strides) into zero-padded f32
// panels for matmul_packed.comp (layout in push/matmul.h):
//   Bp[z][n / NW][k][n % NW],  NW = TC * S,  K padded to pc.kp, N to pc.tile_n.
// Workgroup (x, y, z) = (block of VKP_MM_PK_ROWS rows, panel, batch), or (panel, block, batch)
// with VKP_MM_GRID_SWAP: lavapipe runs workgroups x first, so x should walk the source's
// contiguous dimension — along k when op(B)'s columns are rows of the source (x·W^T), across
// the panels when its rows are (dY·W: B's rows 4 KiB and more apart, walked down one panel at a
// time, missed the TLB on every row: 3x slower); 64-bit pairs (n, n+1),
// read as pairs when pc.flags has VKP_MM_PAIRS (f32, unit stride along n, even offsets). Many
// pairs per invocation and shifts only (see matmul_pack_a.comp).
// A dispatch writes panel rows [k_begin, k_begin + tile_m) from source rows 0.. (K of them, zeros
// after), scaled by alpha with VKP_MM_K2: the appended second product's B goes after the main
// rows (push/matmul.h, vkp_pc_matmul_packed).
#include "common.glsl"
#include "push/matmul.h"
#include "matmul_load.glsl"
layout(buffer_reference, std430, buffer_reference_align = 8) buffer U64Buf { uint64_t v[]; };
layout(local_size_x = 64) in;

void main() {
  uint hw = VKP_MM_PK_TC / 2u * pc.sg, hw_log = uint(findMSB(hw));   // pairs per panel row
  uvec2 wg = (pc.flags & VKP_MM_GRID_SWAP) != 0u ? gl_WorkGroupID.yx : gl_WorkGroupID.xy;
  uint p = wg.y, z = gl_WorkGroupID.z;
  uint k0 = pc.k_begin + wg.x * VKP_MM_PK_ROWS, k1 = min(k0 + VKP_MM_PK_ROWS, pc.k_begin + pc.tile_m);
  uint i0 = mm_div_batch(z), i1 = z - i0 * pc.batch1;
  uint src = i0 * uint(pc.b_bs[0]) + i1 * uint(pc.b_bs[1]);
  uint base = (z * pc.kp * pc.tile_n) / 2u + (p * pc.kp + k0) * hw;
  bool pairs = (pc.flags & VKP_MM_PAIRS) != 0u;
  for (uint e = gl_LocalInvocationID.x; e < ((k1 - k0) << hw_log); e += 64u) {
    uint k = k0 + (e >> hw_log) - pc.k_begin, n = 2u * (p * hw + (e & (hw - 1u)));   // source row k
    uint64_t w = 0ul;
    if (k < pc.K && n < pc.N) {
      uint i = src + k * uint(pc.b_ks) + n * uint(pc.b_ns);
      if (pairs) {
        w = U64Buf(uint64_t(pc.b)).v[i / 2u];
      } else {
        float hi = n + 1u < pc.N ? mm_load_b(i + uint(pc.b_ns)) : 0.0;
        w = uint64_t(floatBitsToUint(mm_load_b(i))) | (uint64_t(floatBitsToUint(hi)) << 32);
      }
      if ((pc.flags & VKP_MM_K2) != 0u) {
        vec2 v = vec2(uintBitsToFloat(uint(w)), uintBitsToFloat(uint(w >> 32))) * pc.alpha;
        w = uint64_t(floatBitsToUint(v.x)) | (uint64_t(floatBitsToUint(v.y)) << 32);
      }
    }
    U64Buf(uint64_t(pc.c)).v[base + e] = w;
  }
}
