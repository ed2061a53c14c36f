// Push constants of embedding.comp (gather rows of a table) and embedding_grad.comp (scatter-add
// the output gradient into the table gradient with float atomics).
#include "vkp_push.h"

VKP_PUSH(vkp_pc_embedding) {
  VKP_PTR(F32Buf) table;   // forward: table (V, D); backward: dtable (V, D), zeroed first
  VKP_PTR(I32Buf) ids;     // (n_ids) contiguous
  VKP_PTR(F32Buf) rows;    // forward: out (n_ids, D); backward: dout (n_ids, D)
  uint32_t n;              // n_ids * D
  int32_t V, D;
  uint32_t pad_;
} VKP_PUSH_END(vkp_pc_embedding);
VKP_PUSH_CHECK(vkp_pc_embedding, 40)
