// vkp_vec.h — growable arrays: VKP_VEC(T) is { T *v; int32_t n, cap; }, zero-initialised empty.
//
//   typedef VKP_VEC(vkp_tensor *) vkp_tensor_list;
//   vkp_tensor_list l = {0};
//   if (vkp_vec_push(&l, t)) ... out of memory ...
//   free(l.v);
#ifndef VKP_VEC_H
#define VKP_VEC_H

#include <stddef.h>
#include <stdint.h>

#include "vkp_status.h"

#define VKP_VEC(T) \
  struct {         \
    T *v;          \
    int32_t n, cap; \
  }

// Grows *v (elements of `elem` bytes) so that it holds at least `need` elements (doubling).
// Returns VKP_OK or VKP_ERR_OOM (the array is unchanged then).
vkp_status vkp_vec_reserve_(void **v, int32_t *cap, int64_t need, size_t elem);

#define vkp_vec_reserve(vec, need) vkp_vec_reserve_((void **)&(vec)->v, &(vec)->cap, (need), sizeof *(vec)->v)
// Appends x; VKP_OK or VKP_ERR_OOM.
#define vkp_vec_push(vec, x) \
  (vkp_vec_reserve((vec), (int64_t)(vec)->n + 1) ? VKP_ERR_OOM : ((vec)->v[(vec)->n++] = (x), VKP_OK))

#endif
