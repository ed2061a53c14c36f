// peft_io.c — HF PEFT adapter folders: adapter_config.json + adapter_model.safetensors.
//
// Keys follow peft's saved layout: "base_model.model.<module>.<suffix>" with the module in the
// model's alias spelling when it has one (transformers 5 / current peft), e.g.
// "base_model.model.vit.layers.0.attention.q_proj.lora_A.weight"; LN tuning as peft's wrapper,
// "base_model.model.<norm module>.ln_tuning_layers.weight"; other trainable base parameters
// (modules_to_save, BitFit, full) as "base_model.model.<parameter name>". Loading also
// accepts the checkpoint (transformers 4) spelling of every module.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "peft_internal.h"
#include "vkp_fileio.h"
#include "vkp_safetensors.h"

#define PREFIX "base_model.model."

static void slot_key(const vkp_adapter_slot *s, int i, bool alias, char *out, size_t cap) {
  const vkp_module *mod = s->module;
  snprintf(out, cap, PREFIX "%s.%s", alias && mod->alias ? mod->alias : mod->name, vkp_slot_suffix(s, i));
}

// LN tuning as peft saves it: "base_model.model.<norm module>.ln_tuning_layers.<weight|bias>".
static bool ln_tuning_param(const vkp_adapter *a, const vkp_param *p) {
  return a->cfg.method == VKP_PEFT_LN_TUNING && p->module &&
         (p->module->kind == VKP_MODULE_LAYER_NORM || p->module->kind == VKP_MODULE_GROUP_NORM);
}

static void ln_tuning_key(const vkp_param *p, bool alias, char *out, size_t cap) {
  const char *leaf = strrchr(p->name, '.');
  snprintf(out, cap, PREFIX "%s.ln_tuning_layers%s", alias && p->module->alias ? p->module->alias : p->module->name,
           leaf ? leaf : "");
}

static bool saved_is_module_to_save(const vkp_adapter *a, const vkp_param *p) {
  (void)a;
  return p->module != NULL;
}

vkp_status vkp_peft_save(vkp_model *m, const vkp_adapter *a, const char *dir) {
  vkp_error *err = vkp_ctx_err(m->ctx);
  VKP_TRY(vkp_dir_create(dir, err));
  vkp_safetensors_writer *w = NULL;
  vkp_status st = vkp_safetensors_writer_new(&w, err);
  if (!st) st = vkp_safetensors_writer_set_metadata(w, "format", "pt", err);
  char key[600];
  for (int i = 0; i < a->nslots && !st; i++) {
    const vkp_adapter_slot *s = a->slots[i];
    for (int k = 0; k < s->np && !st; k++) {
      vkp_param *p = s->p[k];
      float *v = malloc((size_t)vkp_param_numel(p) * sizeof *v);
      if (!v) return VKP_ERR_OOM;
      slot_key(s, k, true, key, sizeof key);
      if (p->dtype == VKP_DTYPE_I32) {   // indices (masked tuning): stored exactly, as I32
        st = vkp_buffer_read(p->buf, 0, v, (uint64_t)vkp_param_numel(p) * 4);
        if (!st) st = vkp_safetensors_writer_add(w, key, VKP_DTYPE_I32, p->ndim, p->shape, v, err);
      } else {
        st = vkp_param_read_f32(m, p, v);
        if (!st) st = vkp_safetensors_writer_add_f32(w, key, VKP_DTYPE_F32, p->ndim, p->shape, v, err);
      }
      free(v);
    }
  }
  vkp_param *extra[2] = {a->vera_A, a->vera_B};
  const char *extra_names[2] = {"base_model.vera_A", "base_model.vera_B"};
  for (int i = 0; i < a->nsaved + 2 && !st; i++) {
    vkp_param *p = i < a->nsaved ? a->saved[i] : extra[i - a->nsaved];
    if (!p) continue;
    if (i < a->nsaved && ln_tuning_param(a, p)) ln_tuning_key(p, true, key, sizeof key);
    else if (i < a->nsaved) snprintf(key, sizeof key, PREFIX "%s", p->name);
    else snprintf(key, sizeof key, "%s", extra_names[i - a->nsaved]);
    float *v = malloc((size_t)vkp_param_numel(p) * sizeof *v);
    if (!v) return VKP_ERR_OOM;
    st = vkp_param_read_f32(m, p, v);
    if (!st) st = vkp_safetensors_writer_add_f32(w, key, VKP_DTYPE_F32, p->ndim, p->shape, v, err);
    free(v);
  }
  char path[1024];
  snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
  if (!st) st = vkp_safetensors_writer_save(w, path, err);
  vkp_safetensors_writer_free(w);
  if (st) return st;
  cJSON *j = vkp_peft_config_to_json(&a->cfg);
  char *text = j ? cJSON_Print(j) : NULL;
  cJSON_Delete(j);
  if (!text) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  snprintf(path, sizeof path, "%s/adapter_config.json", dir);
  const void *chunks[1] = {text};
  size_t sizes[1] = {strlen(text)};
  st = vkp_file_write_atomic(path, chunks, sizes, 1, err);
  free(text);
  return st;
}

static vkp_param *find_key(vkp_model *m, const vkp_adapter *a, const char *key) {
  char want[600];
  for (int i = 0; i < a->nslots; i++)
    for (int k = 0; k < a->slots[i]->np; k++)
      for (int alias = 0; alias < 2; alias++) {
        slot_key(a->slots[i], k, alias, want, sizeof want);
        if (!strcmp(want, key)) return a->slots[i]->p[k];
      }
  for (int i = 0; i < a->nsaved; i++)
    for (int alias = 0; alias < 2 && ln_tuning_param(a, a->saved[i]); alias++) {
      ln_tuning_key(a->saved[i], alias, want, sizeof want);
      if (!strcmp(want, key)) return a->saved[i];
    }
  if (!strcmp(key, "base_model.vera_A")) return a->vera_A;
  if (!strcmp(key, "base_model.vera_B")) return a->vera_B;
  if (!strncmp(key, PREFIX, strlen(PREFIX))) {
    const char *name = key + strlen(PREFIX);
    for (int i = 0; i < a->nsaved; i++)
      if (!strcmp(a->saved[i]->name, name)) return a->saved[i];
    // A module_to_save written in the other spelling: match through the module alias.
    for (int i = 0; i < a->nsaved; i++) {
      const vkp_param *p = a->saved[i];
      if (!saved_is_module_to_save(a, p) || !p->module->alias) continue;
      const char *leaf = strrchr(p->name, '.');
      snprintf(want, sizeof want, "%s%s", p->module->alias, leaf ? leaf : "");
      if (!strcmp(want, name)) return a->saved[i];
    }
  }
  (void)m;
  return NULL;
}

vkp_status vkp_peft_load(vkp_model *m, const char *dir, vkp_adapter **out) {
  vkp_error *err = vkp_ctx_err(m->ctx);
  *out = NULL;
  char path[1024], st_path[1024];
  snprintf(path, sizeof path, "%s/adapter_config.json", dir);
  snprintf(st_path, sizeof st_path, "%s/adapter_model.safetensors", dir);
  char *text = NULL;
  size_t len = 0;
  VKP_TRY(vkp_file_read_all(path, 1 << 20, &text, &len, err));
  cJSON *json = cJSON_ParseWithLength(text, len);
  free(text);
  if (!json) return vkp_error_set(err, VKP_ERR_FORMAT, "%s: not valid JSON", path);
  vkp_peft_config cfg;
  vkp_status st = vkp_peft_config_from_json(json, path, &cfg, err);
  cJSON_Delete(json);
  if (st) return st;
  vkp_safetensors *sf = NULL;
  st = vkp_safetensors_open(st_path, &sf, err);
  vkp_adapter *a = NULL;
  if (!st) st = vkp_peft_attach(m, &cfg, 0, &a);
  if (st && a == NULL && sf) {
    char msg[VKP_ERROR_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", err->msg);
    vkp_error_set(err, st, "%s: %s", dir, msg);
  }
  vkp_peft_config_clear(&cfg);
  // Pass 1: every tensor must belong to the adapter, fit its parameter, and appear once; every
  // adapter parameter must be present. Nothing is written before all of it holds, and a failed
  // load removes the adapter again, so the model is left as it was.
  size_t count = sf && !st ? vkp_safetensors_count(sf) : 0;
  vkp_param **dst = calloc(count + 1, sizeof *dst);
  if (!dst && !st) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (size_t i = 0; !st && i < count; i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(sf, i);
    vkp_param *p = find_key(m, a, t->name);
    if (!p) {
      st = vkp_error_set(err, VKP_ERR_SHAPE, "%s: tensor '%s' does not belong to any module of the model this adapter targets", st_path, t->name);
      break;
    }
    bool same = t->ndim == p->ndim || vkp_st_tensor_numel(t) == (size_t)vkp_param_numel(p);
    for (int d = 0; same && d < p->ndim && t->ndim == p->ndim; d++) same = t->shape[d] == p->shape[d];
    if (!same || vkp_st_tensor_numel(t) != (size_t)vkp_param_numel(p)) {
      st = vkp_error_set(err, VKP_ERR_SHAPE, "%s: tensor '%s' has %zu elements, the model's '%s' needs %lld", st_path,
                         t->name, vkp_st_tensor_numel(t), p->name, (long long)vkp_param_numel(p));
      break;
    }
    for (size_t k = 0; k < i; k++)
      if (dst[k] == p) {
        st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensors '%s' and '%s' are the same parameter (both spellings)",
                           st_path, vkp_safetensors_at(sf, k)->name, t->name);
        break;
      }
    if (!st && p->dtype == VKP_DTYPE_I32) {   // indices into the module's weight: must be in range
      if (t->dtype != VKP_DTYPE_I32) {
        st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s' must be I32, not %s", st_path, t->name, vkp_dtype_name(t->dtype));
        break;
      }
      int64_t lim = p->module && p->module->weight ? vkp_param_numel(p->module->weight) : 0;
      for (size_t k = 0; k < vkp_st_tensor_numel(t) && !st; k++) {
        int32_t ix;
        memcpy(&ix, (const char *)t->data + 4 * k, 4);
        if (ix < 0 || ix >= lim)
          st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s': index %d at [%zu] is outside the weight (%lld elements)",
                             st_path, t->name, (int)ix, k, (long long)lim);
      }
    }
    dst[i] = p;
  }
  int expected = a ? (a->vera_A ? 2 : 0) + a->nsaved : 0;
  for (int i = 0; a && i < a->nslots; i++) expected += a->slots[i]->np;
  if (!st && count != (size_t)expected)
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: %zu of the adapter's %d tensors are present", st_path, count, expected);
  // Pass 2: write.
  for (size_t i = 0; !st && i < count; i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(sf, i);
    vkp_param *p = dst[i];
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
  vkp_safetensors_free(sf);
  if (st) {
    if (a) vkp_peft_discard(m, a);
    return st;
  }
  *out = a;
  return VKP_OK;
}
