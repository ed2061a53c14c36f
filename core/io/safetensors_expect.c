// safetensors_expect.c — checking a checkpoint's tensor shapes against what its config.json
// implies, before a model of that config is allocated (see vkp_safetensors.h).
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "vkp_safetensors.h"

void vkp_st_expect_set(vkp_st_expect *e, const char *keys, int ndim, const int64_t *shape, const char *name_fmt, ...) {
  va_list ap;
  va_start(ap, name_fmt);
  vsnprintf(e->name, sizeof e->name, name_fmt, ap);
  va_end(ap);
  snprintf(e->keys, sizeof e->keys, "%s", keys);
  e->ndim = ndim < 0 ? 0 : ndim > 4 ? 4 : ndim;
  for (int d = 0; d < e->ndim; d++) e->shape[d] = shape[d];
}

vkp_status vkp_safetensors_expect(const vkp_safetensors *st, const char *path, const char *config_path,
                                  const vkp_st_expect *want, int n, vkp_error *err) {
  for (int i = 0; i < n; i++) {
    const vkp_st_expect *w = &want[i];
    const vkp_st_tensor *t = vkp_safetensors_find(st, w->name);
    if (!t)
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s' is missing, but %s (%s) needs it", path, w->name,
                           config_path, w->keys);
    bool same = t->ndim == w->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == w->shape[d];
    if (!same) {
      char got[128], exp[128];
      return vkp_error_set(err, VKP_ERR_SHAPE, "%s: tensor '%s' is %s, but %s (%s) needs %s", path, w->name,
                           vkp_shape_text(t->ndim, t->shape, got, sizeof got), config_path, w->keys,
                           vkp_shape_text(w->ndim, w->shape, exp, sizeof exp));
    }
  }
  return VKP_OK;
}
