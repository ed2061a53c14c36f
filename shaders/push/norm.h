// Push constants of the row-normalisation family: group_norm.comp (forward, serves layer norm
// too), group_norm_backward.comp (dx), group_norm_dwdb.comp and layer_norm_dwdb.comp (weight and
// bias gradients). A "row" is the block normalised together: the last dim for layer norm, one
// (sample, group) block of C/G channels x HW elements for group norm. Rows are contiguous.
#include "vkp_push.h"

VKP_PUSH(vkp_pc_norm) {
  VKP_PTR(F32Buf) x;        // (rows, len) input
  VKP_PTR(F32Buf) w;        // (channels) weight, when flags & VKP_NORM_HAS_W
  VKP_PTR(F32Buf) b;        // (channels) bias, when flags & VKP_NORM_HAS_B
  VKP_PTR(F32Buf) dy;       // (rows, len) upstream gradient (backward kernels)
  VKP_PTR(F32Buf) stats;    // (rows, 2): mean - x[row, 0], 1/sqrt(var + eps); written by the forward
  VKP_PTR(F32Buf) scratch;  // (chunks, 2, channels) partial sums (layer_norm_dwdb)
  VKP_PTR(F32Buf) dst;      // y, dx, or (2, channels) = [dweight; dbias]
  uint32_t rows;            // number of rows: N*G (group norm), numel/D (layer norm)
  uint32_t len;             // elements per row: cpg*hw
  uint32_t hw;              // consecutive elements sharing one channel (1 for layer norm)
  uint32_t cpg;             // channels per row: C/G (D for layer norm)
  uint32_t groups;          // rows per sample: G (1 for layer norm)
  uint32_t channels;        // C (group norm), D (layer norm)
  uint32_t batch;           // N (group_norm_dwdb)
  uint32_t chunk;           // rows per partial sum (layer_norm_dwdb)
  uint32_t chunks;          // number of partial sums (layer_norm_dwdb)
  uint32_t flags;           // VKP_NORM_HAS_*
  float eps;
  uint32_t mode;            // layer_norm_dwdb: 0 partial sums, 1 sum of the partials
} VKP_PUSH_END(vkp_pc_norm);
VKP_PUSH_CHECK(vkp_pc_norm, 104)

#define VKP_NORM_HAS_W 1u
#define VKP_NORM_HAS_B 2u
#define VKP_NORM_WIDE 4u    // row kernels: one row per workgroup (else one per subgroup)
