// format_peft.c — the HF PEFT adapter format: a folder with adapter_config.json +
// adapter_model.safetensors.
//
// Keys follow peft's saved layout: "base_model.model.<module>.<suffix>" with the module in the
// model's alias spelling when it has one (transformers 5 / current peft), e.g.
// "base_model.model.vit.layers.0.attention.q_proj.lora_A.weight"; adapter-wide parameters as
// "base_model.<name>" (VeRA: "base_model.vera_A"); trained base parameters as the method names
// them (LN tuning: "base_model.model.<norm module>.ln_tuning_layers.weight"), else
// "base_model.model.<parameter name>" (modules_to_save, BitFit, full). Loading accepts every
// spelling of every module.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "peft_internal.h"
#include "vkp_fileio.h"
#include "vkp_json.h"

#define PREFIX "base_model.model."

static const char *spelling(const vkp_module *mod, int k) {
  if (mod->names && mod->n_names) return k < mod->n_names ? mod->names[k] : NULL;
  return k == 0 ? mod->name : k == 1 ? mod->alias : NULL;
}

// Candidate key i of tensor t (false past the last). Key 0 is what files are written with: the
// module's file spelling (its alias when it has one) for slots and keys a method names itself, the
// parameter's checkpoint name otherwise. Reading accepts every candidate: every spelling of the
// module.
static bool tensor_key(const vkp_adapter *a, const vkp_adapter_tensor *t, int i, char *out, size_t cap) {
  const vkp_module *mod = t->module;
  if (t->kind == VKP_ADAPTER_TENSOR_SHARED) {
    if (i > 0) return false;
    snprintf(out, cap, "base_model.%s", t->suffix);
    return true;
  }
  if (t->kind == VKP_ADAPTER_TENSOR_SLOT) {
    const char *name = i == 0 ? vkp_module_file_name(mod) : spelling(mod, i - 1);
    if (!name) return false;
    snprintf(out, cap, PREFIX "%s.%s", name, t->suffix);
    return true;
  }
  // SAVED: [0] the method's own key or the checkpoint name; then the method's key in every
  // spelling; the checkpoint name; the parameter's leaf after every spelling of its module.
  char key[512];
  bool own = mod && a->def->saved_key;
  if (i == 0) {
    if (own && a->def->saved_key(a, t->param, vkp_module_file_name(mod), NULL, key, sizeof key))
      snprintf(out, cap, PREFIX "%s", key);
    else
      snprintf(out, cap, PREFIX "%s", t->param->name);
    return true;
  }
  int n = 0;
  while (mod && spelling(mod, n)) n++;
  i--;
  if (i < n) {
    if (!own || !a->def->saved_key(a, t->param, spelling(mod, i), NULL, key, sizeof key)) snprintf(key, sizeof key, "%s", t->param->name);
    snprintf(out, cap, PREFIX "%s", key);
    return true;
  }
  i -= n;
  if (i == 0) {
    snprintf(out, cap, PREFIX "%s", t->param->name);
    return true;
  }
  i--;
  if (i >= n) return false;
  const char *leaf = strrchr(t->param->name, '.');
  snprintf(out, cap, PREFIX "%s%s", spelling(mod, i), leaf ? leaf : "");
  return true;
}

static bool peft_detect(const char *path) {
  char p[1024];
  struct stat sb;
  snprintf(p, sizeof p, "%s/adapter_config.json", path);
  return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static vkp_status peft_write(vkp_model *m, const vkp_adapter *a, const char *dir, const vkp_adapter_io *io) {
  (void)io;
  vkp_error *err = vkp_ctx_err(m->ctx);
  VKP_TRY(vkp_dir_create(dir, err));
  vkp_safetensors_writer *w = NULL;
  vkp_status st = vkp_safetensors_writer_new(&w, err);
  if (!st) st = vkp_safetensors_writer_set_metadata(w, "format", "pt", err);
  char key[600];
  int n = vkp_adapter_tensor_count(a);
  for (int i = 0; i < n && !st; i++) {
    vkp_adapter_tensor t = vkp_adapter_tensor_at(a, i);
    vkp_param *p = t.param;
    tensor_key(a, &t, 0, key, sizeof key);
    float *v = malloc((size_t)vkp_param_numel(p) * sizeof *v);
    if (!v) {
      st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of host memory writing '%s'", dir, key);
      break;
    }
    if (p->dtype == VKP_DTYPE_I32) {   // indices (masked tuning): stored exactly, as I32
      st = vkp_buffer_read(p->buf, 0, v, (uint64_t)vkp_param_numel(p) * 4);
      if (!st) st = vkp_safetensors_writer_add(w, key, VKP_DTYPE_I32, p->ndim, p->shape, v, err);
    } else {
      st = vkp_param_read_f32(m, p, v);
      if (!st) st = vkp_safetensors_writer_add_f32(w, key, VKP_DTYPE_F32, p->ndim, p->shape, v, err);
    }
    free(v);
  }
  char path[1024];
  snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
  if (!st) st = vkp_safetensors_writer_save(w, path, err);
  vkp_safetensors_writer_free(w);
  if (st) return st;
  cJSON *j = vkp_peft_config_to_json(&a->cfg);
  if (!j) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of host memory", dir);
  snprintf(path, sizeof path, "%s/adapter_config.json", dir);
  st = vkp_json_write_atomic(path, j, err);
  cJSON_Delete(j);
  return st;
}

static vkp_adapter_key_kind bind_key(void *user, const vkp_adapter *a, const char *key, vkp_param **out) {
  (void)user;
  char want[600];
  int n = vkp_adapter_tensor_count(a);
  for (int i = 0; i < n; i++) {
    vkp_adapter_tensor t = vkp_adapter_tensor_at(a, i);
    for (int k = 0; tensor_key(a, &t, k, want, sizeof want); k++)
      if (!strcmp(want, key)) {
        *out = t.param;
        return VKP_ADAPTER_KEY_PARAM;
      }
  }
  return VKP_ADAPTER_KEY_UNKNOWN;
}

static vkp_status peft_read(vkp_model *m, const char *dir, const vkp_adapter_io *io, vkp_adapter **out) {
  vkp_error *err = vkp_ctx_err(m->ctx);
  *out = NULL;
  char path[1024], st_path[1024];
  snprintf(path, sizeof path, "%s/adapter_config.json", dir);
  snprintf(st_path, sizeof st_path, "%s/adapter_model.safetensors", dir);
  cJSON *json = NULL;
  VKP_TRY(vkp_json_load(path, 1 << 20, &json, err));
  vkp_peft_config cfg;
  vkp_status st = vkp_peft_config_from_json(json, path, &cfg, err);
  cJSON_Delete(json);
  if (st) return st;
  if (io->adapter_name) snprintf(cfg.name, sizeof cfg.name, "%s", io->adapter_name);
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
  // A failed load removes the adapter again, so the model is left as it was.
  if (!st) st = vkp_adapter_load_tensors(m, a, sf, st_path, bind_key, NULL);
  vkp_safetensors_free(sf);
  if (st) {
    if (a) vkp_peft_discard(m, a);
    return st;
  }
  *out = a;
  return VKP_OK;
}

const vkp_adapter_format vkp_adapter_format_peft = {
    .name = "peft",
    .description = "HF PEFT folder: adapter_config.json + adapter_model.safetensors",
    .detect = peft_detect,
    .read = peft_read,
    .write = peft_write,
};

vkp_status vkp_peft_save(vkp_model *m, const vkp_adapter *a, const char *dir) {
  return vkp_adapter_write(m, a, dir, "peft", NULL);
}

vkp_status vkp_peft_load(vkp_model *m, const char *dir, vkp_adapter **out) {
  return vkp_adapter_read(m, dir, "peft", NULL, out);
}
