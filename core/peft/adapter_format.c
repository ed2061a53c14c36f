// adapter_format.c — the adapter file formats (vkp_adapter_format.h): the registry, and what
// every format's reader and writer shares: the adapter's tensors in a stable order, module lookup
// through a format's spelling of module names, and the all-or-nothing binding of a file's tensors
// to an adapter's parameters.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peft_internal.h"

const vkp_adapter_format *const vkp_adapter_formats[] = {&vkp_adapter_format_peft, &vkp_adapter_format_kohya,
                                                         &vkp_adapter_format_diffusers, NULL};

const vkp_adapter_format *vkp_adapter_format_find(const char *name) {
  for (int i = 0; name && vkp_adapter_formats[i]; i++)
    if (!strcmp(vkp_adapter_formats[i]->name, name)) return vkp_adapter_formats[i];
  return NULL;
}

const vkp_adapter_format *vkp_adapter_format_detect(const char *path) {
  for (int i = 0; vkp_adapter_formats[i]; i++)
    if (vkp_adapter_formats[i]->detect && vkp_adapter_formats[i]->detect(path)) return vkp_adapter_formats[i];
  return NULL;
}

vkp_status vkp_adapter_read(vkp_model *m, const char *path, const char *format, const vkp_adapter_io *io,
                            vkp_adapter **out) {
  *out = NULL;
  const vkp_adapter_format *f = format ? vkp_adapter_format_find(format) : vkp_adapter_format_detect(path);
  if (!f && format) return vkp_error_set(vkp_ctx_err(m->ctx), VKP_ERR_INVALID, "%s: unknown adapter format '%s'", path, format);
  if (!f) return vkp_error_set(vkp_ctx_err(m->ctx), VKP_ERR_FORMAT, "%s: not an adapter in any known format", path);
  vkp_adapter_io none = {0};
  return f->read(m, path, io ? io : &none, out);
}

vkp_status vkp_adapter_write(vkp_model *m, const vkp_adapter *a, const char *path, const char *format,
                             const vkp_adapter_io *io) {
  const vkp_adapter_format *f = vkp_adapter_format_find(format ? format : "peft");
  if (!f || !f->write)
    return vkp_error_set(vkp_ctx_err(m->ctx), VKP_ERR_INVALID, "%s: cannot write adapter format '%s'", path, format);
  vkp_adapter_io none = {0};
  return f->write(m, a, path, io ? io : &none);
}

// ---- the adapter's tensors ----------------------------------------------------------------------

int vkp_adapter_tensor_count(const vkp_adapter *a) {
  int n = a->nshared + a->nsaved;
  for (int i = 0; i < a->nslots; i++) n += a->slots[i]->np;
  return n;
}

vkp_adapter_tensor vkp_adapter_tensor_at(const vkp_adapter *a, int i) {
  vkp_adapter_tensor t = {.slot = -1};
  for (int s = 0; s < a->nslots; s++) {
    if (i < a->slots[s]->np) {
      t.kind = VKP_ADAPTER_TENSOR_SLOT;
      t.param = a->slots[s]->p[i];
      t.module = a->slots[s]->module;
      t.suffix = vkp_slot_suffix(a->slots[s], i);
      t.slot = s;
      return t;
    }
    i -= a->slots[s]->np;
  }
  if (i < a->nsaved) {
    t.kind = VKP_ADAPTER_TENSOR_SAVED;
    t.param = a->saved[i];
    t.module = a->saved[i]->module;
    return t;
  }
  i -= a->nsaved;
  if (i < a->nshared) {
    t.kind = VKP_ADAPTER_TENSOR_SHARED;
    t.param = a->shared[i];
    t.suffix = a->def->shared_keys ? a->def->shared_keys[i] : "?";
  }
  return t;
}

vkp_module *vkp_adapter_find_module(const vkp_model *m, const char *key, vkp_module_spell_fn spell, void *user) {
  char buf[512];
  for (int i = 0; i < m->nmodules; i++) {
    const vkp_module *mod = m->modules[i];
    int n = mod->names && mod->n_names ? mod->n_names : (mod->alias ? 2 : 1);
    for (int k = 0; k < n; k++) {
      const char *name = mod->names && mod->n_names ? mod->names[k] : k ? mod->alias : mod->name;
      if (spell) {
        spell(user, name, buf, sizeof buf);
        name = buf;
      }
      if (!strcmp(name, key)) return m->modules[i];
    }
  }
  return NULL;
}

// ---- binding a file's tensors ------------------------------------------------------------------

vkp_status vkp_adapter_load_tensors(vkp_model *m, vkp_adapter *a, const vkp_safetensors *sf, const char *where,
                                    vkp_adapter_bind_fn bind, void *user) {
  vkp_error *err = vkp_ctx_err(m->ctx);
  // Pass 1: every tensor must belong to the adapter, fit its parameter, and appear once; every
  // adapter parameter must be present. Nothing is written before all of it holds.
  size_t count = vkp_safetensors_count(sf), bound = 0;
  vkp_param **dst = calloc(count + 1, sizeof *dst);
  vkp_status st = dst ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (size_t i = 0; !st && i < count; i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(sf, i);
    vkp_param *p = NULL;
    vkp_adapter_key_kind kind = bind(user, a, t->name, &p);
    if (kind == VKP_ADAPTER_KEY_SKIP) continue;
    if (kind != VKP_ADAPTER_KEY_PARAM || !p) {
      st = vkp_error_set(err, VKP_ERR_SHAPE, "%s: tensor '%s' does not belong to any module of the model this adapter targets", where, t->name);
      break;
    }
    bool same = t->ndim == p->ndim || vkp_st_tensor_numel(t) == (size_t)vkp_param_numel(p);
    for (int d = 0; same && d < p->ndim && t->ndim == p->ndim; d++) same = t->shape[d] == p->shape[d];
    if (!same || vkp_st_tensor_numel(t) != (size_t)vkp_param_numel(p)) {
      char got[128], want[128];
      vkp_shape_text(t->ndim, t->shape, got, sizeof got);
      vkp_shape_text(p->ndim, p->shape, want, sizeof want);
      st = vkp_error_set(err, VKP_ERR_SHAPE, "%s: tensor '%s' has shape %s, the model's '%s' needs %s%s", where, t->name,
                         got, p->name, want,
                         t->ndim == 2 && p->ndim == 2 && t->shape[0] == p->shape[1] && t->shape[1] == p->shape[0]
                             ? " (transposed?)" : "");
      break;
    }
    if (p->dtype != VKP_DTYPE_I32 && !vkp_dtype_is_weight(t->dtype)) {
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s' has dtype %s; adapter weights must be F32, F16 or BF16",
                         where, t->name, vkp_dtype_name(t->dtype));
      break;
    }
    for (size_t k = 0; k < i; k++)
      if (dst[k] == p) {
        st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensors '%s' and '%s' are the same parameter (both spellings)",
                           where, vkp_safetensors_at(sf, k)->name, t->name);
        break;
      }
    if (!st && p->dtype == VKP_DTYPE_I32) {   // indices into the module's weight: must be in range
      if (t->dtype != VKP_DTYPE_I32) {
        st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s' must be I32, not %s", where, t->name, vkp_dtype_name(t->dtype));
        break;
      }
      int64_t lim = p->module && p->module->weight ? vkp_param_numel(p->module->weight) : 0;
      for (size_t k = 0; k < vkp_st_tensor_numel(t) && !st; k++) {
        int32_t ix;
        memcpy(&ix, (const char *)t->data + 4 * k, 4);
        if (ix < 0 || ix >= lim)
          st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s': index %d at [%zu] is outside the weight (%lld elements)",
                             where, t->name, (int)ix, k, (long long)lim);
      }
    }
    dst[i] = p;
    bound++;
  }
  int expected = vkp_adapter_tensor_count(a);
  if (!st && bound != (size_t)expected)
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: %zu of the adapter's %d tensors are present", where, bound, expected);
  // Pass 2: write.
  for (size_t i = 0; !st && i < count; i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(sf, i);
    vkp_param *p = dst[i];
    if (!p) continue;
    size_t n = vkp_st_tensor_numel(t);
    if (p->dtype == VKP_DTYPE_I32) {   // indices: exact copy (checked above)
      st = vkp_buffer_write(p->buf, 0, t->data, n * 4);
      continue;
    }
    float *v = malloc(n * sizeof *v);
    if (!v) {
      st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
      break;
    }
    vkp_convert_to_f32(t->dtype, t->data, v, n);
    st = vkp_param_write_f32(m, p, v);
    free(v);
  }
  free(dst);
  return st;
}
