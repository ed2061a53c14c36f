#version 450
// embedding.comp — out[i, d] = table[ids[i], d]; ids outside [0, V) give zero rows. A 16-bit
// (frozen) table is read as packed 32-bit words and widened, so it is never copied to f32.
#include "common.glsl"
#include "push/embedding.h"
layout(local_size_x = 256) in;

void main() {
  uint e = vkp_global_index();
  if (e >= pc.n) return;
  uint i = e / uint(pc.D), d = e - i * uint(pc.D);
  int id = pc.ids.v[i];
  float val = 0.0;
  if (id >= 0 && id < pc.V) {
    uint k = uint(id) * uint(pc.D) + d;
    if (pc.dtype == VKP_EMB_F32) {
      val = pc.table.v[k];
    } else {
      k += pc.table_off;
      uint word = U32Buf(uint64_t(pc.table)).v[k >> 1];
      uint h = (k & 1u) == 0u ? (word & 0xffffu) : (word >> 16);
      val = pc.dtype == VKP_EMB_BF16 ? uintBitsToFloat(h << 16) : unpackHalf2x16(h).x;
    }
  }
  pc.rows.v[e] = val;
}
