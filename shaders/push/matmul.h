// Push constants of the matmul family (matmul_*): C[z] (+)= op(A[z]) · op(B[z]) (+ bias).
#include "vkp_push.h"

// Logical shapes: op(A) is (M, K), op(B) is (K, N), C is (M, N). Strides are in elements and
// describe the logical (transposed) operands, so a transposed view costs nothing:
//   op(A)[m][k] = a[m * a_ms + k * a_ks],  op(B)[k][n] = b[k * b_ks + n * b_ns],
//   C[m][n] = c[m * c_ms + n] (matmul_skinny: + n * c_ns).
// Batches: workgroup z indexes the flattened batch (z = i0 * batch1 + i1); each operand moves by
// i0 * x_bs[0] + i1 * x_bs[1] (0 on broadcast dims).
// A 16-bit b is read as packed 32-bit words: element e lives in word (b_off + e) >> 1, so b holds
// the 4-byte-aligned address below element 0 and b_off (0 or 1) the element offset from it.
#if !defined(VKP_GLSL) || !defined(VKP_MM_PACKED_KERNEL)
VKP_PUSH(vkp_pc_matmul) {
  VKP_PTR(F32Buf) a;
  VKP_PTR(F32Buf) b;       // f32, or f16/bf16 read as U32Buf
  VKP_PTR(F32Buf) c;
  VKP_PTR(F32Buf) bias;    // (N), used when flags & VKP_MM_BIAS
  uint32_t M, N, K;
  uint32_t flags;          // VKP_MM_* below
  int32_t a_ms, a_ks;
  int32_t b_ks, b_ns;
  int32_t c_ms;
  uint32_t batch1;         // size of the inner batch dim (>= 1)
  int32_t a_bs[2];
  int32_t b_bs[2];
  int32_t c_bs[2];
  uint32_t b_off;
  uint32_t tile_m, tile_n;  // outputs per workgroup (register-blocked kernels)
  uint32_t sg;              // packed path: subgroup size S the panel layout was built for
  uint32_t k_begin;         // packed path: first k of this dispatch (a multiple of 2S)
  uint32_t kp;              // packed path: K padded to a multiple of 2S
  float alpha;              // with VKP_MM_SCALE: C = alpha * op(A)·op(B) (+ bias) (+ C)
  int32_t c_ns;             // matmul_skinny: C[m][n] = c[m * c_ms + n * c_ns] (the others: c_ns = 1)
} VKP_PUSH_END(vkp_pc_matmul);
VKP_PUSH_CHECK(vkp_pc_matmul, 128)
#endif

// matmul_packed.comp's block (it defines VKP_MM_PACKED_KERNEL): the fields it shares with the
// block above keep their names and meaning (matmul_load.glsl reads them); B is a panel, so its
// strides give way to an appended product (VKP_MM_K2): k in [kp_main, kp_main + k2) reads
// A2 in place (rows a2_ms apart) and the panel rows after the main ones (the second product's B,
// scaled, packed there by matmul_pack_b). The LoRA term s·u·B^T of a fused LoRA linear (and
// s·v·A of its dx) then costs K + r multiply-adds per output in the same kernel instead of a
// second pass over C.
#if !defined(VKP_GLSL) || defined(VKP_MM_PACKED_KERNEL)
VKP_PUSH(vkp_pc_matmul_packed) {
  VKP_PTR(F32Buf) a;
  VKP_PTR(F32Buf) b;        // the B panel
  VKP_PTR(F32Buf) c;
  VKP_PTR(F32Buf) bias;
  VKP_PTR(F32Buf) a2;       // with VKP_MM_K2: A2 (M, k2), rows a2_ms apart, 8-byte aligned
  uint32_t M, N, K;
  uint32_t flags;
  int32_t a_ms, a2_ms;
  int32_t c_ms;
  uint32_t batch1;
  int32_t a_bs[2];
  int32_t b_bs[2];
  int32_t c_bs[2];
  uint32_t b_off;           // unused (matmul_load.glsl's mm_load_b reads it)
  uint32_t tile_m;
  uint32_t sg;
  uint32_t k_begin;
  uint32_t kp;              // panel rows per B panel (main rows padded to 2S, then the appended ones)
  float alpha;
  uint32_t k2;              // appended k (a multiple of 4), 0 for none
} VKP_PUSH_END(vkp_pc_matmul_packed);
VKP_PUSH_CHECK(vkp_pc_matmul_packed, 128)
#endif

// Packed path (matmul_pack_a/b.comp, matmul_packed.comp): op(A) and op(B) are first copied
// into zero-padded panels so the main kernel reads only contiguous 64-byte lines:
//   A panel: TM rows x K, stored per chunk of 2S k:   Ap[z][m/TM][k/2S][m%TM][k%2S]
//   B panel: K x NW columns (NW = TC*S), row by row:  Bp[z][n/NW][k][n%NW]
// Each subgroup computes a TM x NW tile (TM x TC accumulators per lane).
#define VKP_MM_PK_TM 32        // rows per subgroup tile
#define VKP_MM_PK_TC 4         // columns per lane (pairs: TC / 2 64-bit loads per k)
#define VKP_MM_PK_CHUNKS 8     // pack_a: k chunks per workgroup
#define VKP_MM_PK_ROWS 64      // pack_b: panel rows per workgroup

#define VKP_MM_B_F32 0u
#define VKP_MM_B_F16 1u
#define VKP_MM_B_BF16 2u
#define VKP_MM_B_DTYPE_MASK 3u
#define VKP_MM_BIAS 4u           // add bias[n]
#define VKP_MM_ACCUMULATE 8u     // C += result (split-K: later K chunks add to earlier ones)
#define VKP_MM_PAIRS 16u         // pack kernels: the source can be read as aligned 64-bit pairs
#define VKP_MM_SCALE 32u         // multiply the product by alpha before bias / accumulation
#define VKP_MM_A_INPLACE 64u     // matmul_packed: read op(A) in place (a, a_ms, a_bs), not a panel
#define VKP_MM_BIAS_ROW 128u     // with VKP_MM_BIAS: bias[m] (one per row: a convolution's channels)
#define VKP_MM_K2 256u           // matmul_packed: an appended product (a2, k2); pack_b: scale by alpha
#define VKP_MM_GRID_SWAP 512u    // pack kernels: workgroup x and y swapped (see matmul_pack_a/b.comp)
