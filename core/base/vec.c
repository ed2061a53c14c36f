// vec.c — storage growth for VKP_VEC arrays.
#include <stdlib.h>

#include "vkp_vec.h"

vkp_status vkp_vec_reserve_(void **v, int32_t *cap, int64_t need, size_t elem) {
  if (need <= *cap) return VKP_OK;
  if (need > INT32_MAX) return VKP_ERR_OOM;
  int64_t c = *cap ? *cap : 16;
  while (c < need) c *= 2;
  if (c > INT32_MAX) c = INT32_MAX;
  void *p = realloc(*v, (size_t)c * elem);
  if (!p) return VKP_ERR_OOM;
  *v = p;
  *cap = (int32_t)c;
  return VKP_OK;
}
