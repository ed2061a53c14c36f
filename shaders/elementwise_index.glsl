// elementwise_index.glsl — maps a linear output index to input offsets through 4-D strides.
int vkp_strided_offset(uint i, int shape[4], int stride[4]) {
  int off = 0;
  int rem = int(i);
  [[unroll]] for (int d = 3; d >= 0; d--) {
    int c = rem % shape[d];
    rem /= shape[d];
    off += c * stride[d];
  }
  return off;
}
