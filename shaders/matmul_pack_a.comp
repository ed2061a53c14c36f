#version 450
// matmul_pack_a.comp — copies op(A) (M, K), read through any strides, into zero-padded panels
// for matmul_packed.comp (layout in push/matmul.h):
//   Ap[z][m / TM][k / 2S][m % TM][k % 2S],  M padded to pc.tile_m, K to pc.kp.
// Workgroup (x, y, z) = (group of VKP_MM_PK_CHUNKS k chunks, row tile, batch), or (row tile,
// chunk group, batch) with VKP_MM_GRID_SWAP when op(A) is a transposed source (its k are rows:
// x then walks along the contiguous m, see matmul_pack_b.comp), writes a
// contiguous block as 64-bit pairs (k, k+1), read as pairs too when pc.flags has VKP_MM_PAIRS
// (unit stride along k, even offsets: set by the host). Each invocation handles many pairs:
// lavapipe spends a few hundred cycles setting up every subgroup, and scalarises vector
// integer division (shifts only here).
#include "common.glsl"
#include "push/matmul.h"
#include "matmul_load.glsl"
layout(buffer_reference, std430, buffer_reference_align = 8) buffer U64Buf { uint64_t v[]; };
layout(local_size_x = 64) in;

void main() {
  uint S = pc.sg, s_log = uint(findMSB(S)), blk_log = s_log + uint(findMSB(VKP_MM_PK_TM));
  uvec2 wg = (pc.flags & VKP_MM_GRID_SWAP) != 0u ? gl_WorkGroupID.yx : gl_WorkGroupID.xy;
  uint tile = wg.y, z = gl_WorkGroupID.z;
  uint nch = pc.kp >> (s_log + 1u);
  uint ch0 = wg.x * VKP_MM_PK_CHUNKS, ch1 = min(ch0 + VKP_MM_PK_CHUNKS, nch);
  uint i0 = mm_div_batch(z), i1 = z - i0 * pc.batch1;
  uint src = i0 * uint(pc.a_bs[0]) + i1 * uint(pc.a_bs[1]);
  // pair index within this workgroup's block: (chunk - ch0, row r, pair j of the chunk)
  uint base = (z * pc.tile_m * pc.kp + (tile * nch + ch0) * VKP_MM_PK_TM * 2u * S) / 2u;
  bool pairs = (pc.flags & VKP_MM_PAIRS) != 0u;
  for (uint e = gl_LocalInvocationID.x; e < ((ch1 - ch0) << blk_log); e += 64u) {
    uint ch = ch0 + (e >> blk_log), rem = e & ((1u << blk_log) - 1u);
    uint m = tile * VKP_MM_PK_TM + (rem >> s_log), k = ch * 2u * S + 2u * (rem & (S - 1u));
    uint64_t w = 0ul;
    if (m < pc.M && k < pc.K) {
      uint i = src + m * uint(pc.a_ms) + k * uint(pc.a_ks);
      if (pairs) {
        w = U64Buf(uint64_t(pc.a)).v[i / 2u];
      } else {
        float hi = k + 1u < pc.K ? pc.a.v[i + uint(pc.a_ks)] : 0.0;
        w = uint64_t(floatBitsToUint(pc.a.v[i])) | (uint64_t(floatBitsToUint(hi)) << 32);
      }
    }
    U64Buf(uint64_t(pc.c)).v[base + e] = w;
  }
}
