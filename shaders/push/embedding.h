// Push constants of embedding.comp (gather rows of a table) and embedding_grad.comp (scatter-add
// the output gradient into the table gradient with float atomics).
#include "vkp_push.h"

#define VKP_EMB_F32 0u
#define VKP_EMB_F16 1u
#define VKP_EMB_BF16 2u

VKP_PUSH(vkp_pc_embedding) {
  VKP_PTR(F32Buf) table;   // forward: table (V, D) (16-bit: the 4-byte word holding element 0 of
                           // the word-aligned base, see table_off); backward: dtable (V, D) f32
  VKP_PTR(I32Buf) ids;     // (n_ids) contiguous
  VKP_PTR(F32Buf) rows;    // forward: out (n_ids, D); backward: dout (n_ids, D)
  uint32_t n;              // n_ids * D
  int32_t V, D;
  uint32_t dtype;          // VKP_EMB_*: how the forward reads the table (frozen 16-bit tables)
  uint32_t table_off;      // 16-bit tables: element offset of the table from `table`
  uint32_t pad_;
} VKP_PUSH_END(vkp_pc_embedding);
VKP_PUSH_CHECK(vkp_pc_embedding, 48)
