// rows.c — the dispatch rule of row kernels (ops_internal.h), shared by norms, softmax and
// cross-entropy.
#include "ops_internal.h"

#include "vkp_device.h"

bool vkp_rows_wide(vkp_recorder *rec, uint32_t len) {
  return len >= 65536u || (vkp_ctx_info(vkp_rec_ctx(rec))->type != VKP_DEVICE_CPU && len >= 2048u);
}

vkp_status vkp_rec_dispatch_rows(vkp_recorder *rec, const char *shader, const void *push, uint32_t push_bytes,
                                 uint32_t rows, bool wide) {
  uint32_t sg = vkp_ctx_info(vkp_rec_ctx(rec))->subgroup_size;
  uint32_t per = wide || sg == 0 || sg >= VKP_ROW_WG ? 1 : VKP_ROW_WG / sg;
  return vkp_rec_dispatch_1d(rec, shader, push, push_bytes, rows, per);
}
