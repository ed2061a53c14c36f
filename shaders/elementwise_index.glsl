// elementwise_index.glsl — helpers of the elementwise family: vec4 loads and stores, the block of
// items of a workgroup, and 4-D coordinates of a linear index (x outermost, w fastest), advanced
// incrementally inside loops (divisions once per invocation, then additions with carries).

// vec4 moves as two 64-bit words: lavapipe turns every load/store component into a gather/
// scatter over the 8 lanes, so 64-bit components halve their number (fill: 40% faster than
// vec4 loads). Addresses 16-byte aligned (VKP_EW_F_VEC4).
layout(buffer_reference, std430, buffer_reference_align = 16) buffer VkpQuadBuf { u64vec2 v[]; };

vec4 vkp_load4(uint64_t base, uint k) {
  u64vec2 w = VkpQuadBuf(base).v[k];
  return vec4(uintBitsToFloat(unpackUint2x32(w.x)), uintBitsToFloat(unpackUint2x32(w.y)));
}

void vkp_store4(uint64_t base, uint k, vec4 v) {
  VkpQuadBuf(base).v[k] = u64vec2(packUint2x32(floatBitsToUint(v.xy)), packUint2x32(floatBitsToUint(v.zw)));
}

// This workgroup's block of `count` items, wg * iters of them (0 iters count as 1): the lane
// starts at `first` and steps by wg up to `end`. Pass gl_WorkGroupSize.x as wg (a function
// defined before the shader's layout declaration sees a size of 1). Workgroups past the end (a
// folded dispatch) get an empty range.
void vkp_block(uint count, uint wg, uint iters, out uint first, out uint end) {
  uint64_t block = uint64_t(wg) * uint64_t(max(iters, 1u));
  uint64_t s = uint64_t(vkp_group_index()) * block;
  uint64_t e = min(uint64_t(count), s + block);
  first = uint(min(s + uint64_t(gl_LocalInvocationID.x), e));
  end = uint(e);
}

ivec4 vkp_ivec4(int v[4]) { return ivec4(v[0], v[1], v[2], v[3]); }

// Coordinates of linear index i over shape s; dim x is not wrapped (i may exceed the shape).
ivec4 vkp_coords(uint i, ivec4 s) {
  ivec4 c = ivec4(0);
  if (s.w != 1) {
    c.w = int(i % uint(s.w));
    i /= uint(s.w);
  }
  if (s.z != 1) {
    c.z = int(i % uint(s.z));
    i /= uint(s.z);
  }
  if (s.y != 1) {
    c.y = int(i % uint(s.y));
    i /= uint(s.y);
  }
  c.x = int(i);
  return c;
}

// c += d for d = vkp_coords(step, s) (each digit of d below its dim's size): one carry per dim.
ivec4 vkp_coords_add(ivec4 c, ivec4 d, ivec4 s) {
  c += d;
  int k = c.w >= s.w ? 1 : 0;
  c.w -= k * s.w;
  c.z += k;
  k = c.z >= s.z ? 1 : 0;
  c.z -= k * s.z;
  c.y += k;
  k = c.y >= s.y ? 1 : 0;
  c.y -= k * s.y;
  c.x += k;
  return c;
}

int vkp_offset(ivec4 c, ivec4 st) { return c.x * st.x + c.y * st.y + c.z * st.z + c.w * st.w; }
