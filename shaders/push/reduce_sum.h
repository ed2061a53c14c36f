// Push constants of reduce_sum.comp: sums over some dims of a strided tensor (keepdim
// semantics), as one or more passes of partial sums.
//
// The host merges the input's dims into at most two kept dims (the outputs, o = o0 * keep_shape[1]
// + o1) and two reduced dims (k = k0 * red_shape[1] + k1); element (o, k) is at
//   o0 * keep_stride[0] + o1 * keep_stride[1] + k0 * red_stride[0] + k1 * red_stride[1].
// A pass splits every output's n_red elements into `chunks` chunks of `chunk` and writes one
// partial sum per (o, p) to dst[o * dst_stride[0] + p * dst_stride[1]] (times alpha); the next
// pass sums those partials (chunks == 1 ends it, writing the output).
#include "vkp_push.h"

VKP_PUSH(vkp_pc_reduce_sum) {
  VKP_PTR(F32Buf) src;
  VKP_PTR(F32Buf) dst;
  uint32_t n_out;          // outputs
  uint32_t n_red;          // reduced elements per output
  uint32_t chunk;          // reduced elements per partial sum
  uint32_t chunks;         // partial sums per output: ceil(n_red / chunk)
  int32_t keep_shape[2];
  int32_t keep_stride[2];
  int32_t red_shape[2];
  int32_t red_stride[2];
  int32_t dst_stride[2];
  float alpha;             // result scale (1 for sum, 1/n for mean; 1 in partial passes)
  uint32_t mode;           // VKP_REDUCE_*
} VKP_PUSH_END(vkp_pc_reduce_sum);
VKP_PUSH_CHECK(vkp_pc_reduce_sum, 80)

// ROWS: one subgroup per (output, chunk), lanes stride over the chunk, subgroupAdd (no barrier);
//       partials at dst[o * chunks + p]. For reductions along the innermost (or a strided) dim.
// COLS: one invocation per (output, chunk), adjacent invocations on adjacent outputs (coalesced
//       when the innermost kept dim has unit stride: column sums such as bias gradients);
//       partials at dst[p * n_out + o].
#define VKP_REDUCE_ROWS 0u
#define VKP_REDUCE_COLS 1u
// COLS on vec4s: 4 adjacent outputs per invocation (keep_shape[1] % 4 == 0, keep_stride[1] == 1,
// every other stride a multiple of 4, src and dst 16-byte aligned).
#define VKP_REDUCE_COLS4 2u
