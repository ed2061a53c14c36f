// family.c — model-family lookup by config type, and the forward-io helpers families share.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_family.h"
#include "vkp_json.h"

#define CONFIG_MAX_BYTES (4u << 20)

// Reads `dir/name` as a JSON object (trailing text is an error).
static vkp_status read_json(const char *dir, const char *name, cJSON **out, char *path, size_t cap, vkp_error *err) {
  snprintf(path, cap, "%s/%s", dir, name);
  return vkp_json_load_object(path, CONFIG_MAX_BYTES, out, err);
}

vkp_status vkp_family_model_type(const char *dir, char *out, size_t cap, vkp_error *err) {
  char path[4096];
  cJSON *cfg = NULL;
  vkp_status st = read_json(dir, "config.json", &cfg, path, sizeof path, err);
  const char *keys[] = {"model_type", "_class_name"};
  if (st == VKP_ERR_NOT_FOUND || st == VKP_ERR_IO) {
    vkp_error e2 = {0};
    if (read_json(dir, "model_index.json", &cfg, path, sizeof path, &e2) == VKP_OK) {
      st = VKP_OK;
      keys[0] = "_class_name";
    } else {
      return vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: no config.json or model_index.json (not a model folder)", dir);
    }
  }
  if (st) return st;
  for (int k = 0; k < 2; k++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, keys[k]);
    if (!v) continue;
    if (!cJSON_IsString(v)) {
      cJSON_Delete(cfg);
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s: key '%s' must be a string", path, keys[k]);
    }
    snprintf(out, cap, "%s", v->valuestring);
    cJSON_Delete(cfg);
    return VKP_OK;
  }
  cJSON_Delete(cfg);
  return vkp_error_set(err, VKP_ERR_FORMAT, "%s: no 'model_type' or '_class_name': cannot tell which model this is", path);
}

vkp_status vkp_family_find(const vkp_model_family *const *families, const char *dir, const vkp_model_family **out,
                           vkp_error *err) {
  *out = NULL;
  char type[128];
  VKP_TRY(vkp_family_model_type(dir, type, sizeof type, err));
  for (int f = 0; families[f]; f++)
    for (int t = 0; families[f]->config_types[t]; t++)
      if (!strcmp(families[f]->config_types[t], type)) {
        *out = families[f];
        return VKP_OK;
      }
  return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: unsupported model: %s", dir, type);
}

vkp_status vkp_family_load(const vkp_model_family *const *families, vkp_ctx *ctx, const char *dir, const char *aux_dir,
                           vkp_loaded_model *out, vkp_error *err) {
  memset(out, 0, sizeof *out);
  const vkp_model_family *f;
  VKP_TRY(vkp_family_find(families, dir, &f, err));
  VKP_TRY(f->load(ctx, dir, aux_dir, out, err));
  out->family = f;
  return VKP_OK;
}

void vkp_loaded_model_free(vkp_loaded_model *lm) {
  if (!lm || !lm->family) return;
  lm->family->free(lm);
  memset(lm, 0, sizeof *lm);
}

bool vkp_forward_io_has(const vkp_safetensors *in, const char *name) { return vkp_safetensors_find(in, name) != NULL; }

vkp_status vkp_forward_io_input(vkp_forward_io *io, vkp_graph *g, const vkp_safetensors *in, const char *where,
                                const char *name, vkp_dtype dtype, int ndim, const int64_t *shape, vkp_tensor **out,
                                vkp_error *err) {
  *out = NULL;
  const vkp_st_tensor *t = vkp_safetensors_find(in, name);
  if (!t) return vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: no tensor '%s'", where, name);
  bool ok = t->ndim == ndim;
  for (int d = 0; ok && d < ndim; d++) ok = shape[d] < 0 || shape[d] == t->shape[d];
  if (!ok) {
    char want[128], got[128];
    vkp_shape_text(ndim, shape, want, sizeof want);
    vkp_shape_text(t->ndim, t->shape, got, sizeof got);
    return vkp_error_set(err, VKP_ERR_SHAPE, "%s: tensor '%s' is %s, needs %s", where, name, got, want);
  }
  size_t n = vkp_st_tensor_numel(t);
  float *f = malloc((n ? n : 1) * sizeof *f);
  if (!f) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  if (t->dtype != VKP_DTYPE_F32 && t->dtype != VKP_DTYPE_F16 && t->dtype != VKP_DTYPE_BF16) {
    free(f);
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s' has dtype %s, needs F32, F16 or BF16", where, name,
                         vkp_dtype_name(t->dtype));
  }
  vkp_convert_to_f32(t->dtype, t->data, f, n);
  void *data = f;
  if (dtype == VKP_DTYPE_I32) {
    int32_t *ids = (int32_t *)f;   // same size: convert in place
    for (size_t i = 0; i < n; i++) {
      float v = f[i];
      if (!(v == floorf(v)) || fabsf(v) > 2147483520.0f) {
        free(f);
        return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s' entry %zu is %g, not an integer", where, name, i,
                             (double)v);
      }
      ids[i] = (int32_t)v;
    }
  }
  vkp_tensor *x = vkp_tensor_input(g, name, dtype, t->ndim, t->shape);
  if (!x || vkp_vec_push(&io->inputs, ((vkp_forward_input){x, data}))) {
    free(data);
    return vkp_error_set(err, x ? VKP_ERR_OOM : vkp_graph_status(g), "%s", x ? "out of host memory" : vkp_graph_error(g));
  }
  *out = x;
  return VKP_OK;
}

vkp_status vkp_forward_io_output(vkp_forward_io *io, const char *name, vkp_tensor *t) {
  vkp_forward_output o = {.t = t};
  snprintf(o.name, sizeof o.name, "%s", name);
  return vkp_vec_push(&io->outputs, o);
}

void vkp_forward_io_free(vkp_forward_io *io) {
  if (!io) return;
  for (int32_t i = 0; i < io->inputs.n; i++) free(io->inputs.v[i].data);
  free(io->inputs.v);
  free(io->outputs.v);
  memset(io, 0, sizeof *io);
}
