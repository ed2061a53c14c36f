#version 450
// cast_f32.comp — f16 (op 0) or bf16 (op 1) to f32; 16-bit values read as packed 32-bit words,
// so no 16-bit storage feature is needed.
#include "common.glsl"
#include "push/elementwise.h"
layout(local_size_x = 256) in;

void main() {
  uint i = vkp_global_index();
  if (i >= pc.n) return;
  uint word = U32Buf(uint64_t(pc.a)).v[i >> 1];
  uint h = (i & 1u) == 0u ? (word & 0xffffu) : (word >> 16);
  pc.dst.v[i] = pc.op == 1u ? uintBitsToFloat(h << 16) : unpackHalf2x16(h).x;
}
