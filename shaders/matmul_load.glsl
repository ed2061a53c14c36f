// matmul_load.glsl — operand access shared by the matmul kernels (after push/matmul.h).
// A is f32; B is f32 or a 16-bit type read as packed 32-bit words (no 16-bit storage needed).

// Element e of b (relative to the batch/chunk base already folded into pc.b_off for 16-bit).
float mm_load_b(uint e) {
  uint dt = pc.flags & VKP_MM_B_DTYPE_MASK;
  if (dt == VKP_MM_B_F32) return pc.b.v[e];
  uint i = pc.b_off + e;
  uint word = U32Buf(uint64_t(pc.b)).v[i >> 1];
  uint h = (i & 1u) == 0u ? (word & 0xffffu) : (word >> 16);
  return dt == VKP_MM_B_BF16 ? uintBitsToFloat(h << 16) : unpackHalf2x16(h).x;
}

// z / pc.batch1 for z, batch1 < 2^16 (workgroup counts): exact in float. lavapipe turns a vector
// integer division (and a float-to-uint conversion) into a scalar loop per lane; float division
// and float-to-int are single instructions.
uint mm_div_batch(uint z) { return uint(int((float(z) + 0.5) / float(pc.batch1))); }

// Batch offsets of workgroup z (elements).
void mm_batch_offsets(uint z, out uint ao, out uint bo, out uint co) {
  uint i0 = mm_div_batch(z), i1 = z - i0 * pc.batch1;
  ao = i0 * uint(pc.a_bs[0]) + i1 * uint(pc.a_bs[1]);
  bo = i0 * uint(pc.b_bs[0]) + i1 * uint(pc.b_bs[1]);
  co = i0 * uint(pc.c_bs[0]) + i1 * uint(pc.c_bs[1]);
}

// Writes result (m, n): scale, bias (per column, or per row with VKP_MM_BIAS_ROW), accumulation
// into an earlier K chunk (or an earlier product of the same node: a LoRA term added to its base
// product; or the gradient buffer a weight gradient accumulates into).
void mm_store(uint ci, uint m, uint n, float v) {
  if ((pc.flags & VKP_MM_SCALE) != 0u) v *= pc.alpha;
  if ((pc.flags & VKP_MM_BIAS) != 0u) v += pc.bias.v[(pc.flags & VKP_MM_BIAS_ROW) != 0u ? m : n];
  if ((pc.flags & VKP_MM_ACCUMULATE) != 0u) v += pc.c.v[ci];
  pc.c.v[ci] = v;
}
