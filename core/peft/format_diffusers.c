// format_diffusers.c — the diffusers / PEFT single-file LoRA layout (`pytorch_lora_weights.safetensors`,
// what diffusers' save_lora_weights writes and load_lora_weights reads).
//
// Keys: <component>.<module>.<suffix>, component `unet.`, `text_encoder.`, `text_encoder_2.`, the
// module its diffusers / transformers name with the dots:
//   lora_A.weight (r, in[, kh, kw]), lora_B.weight (out, r[, 1, 1]), lora_magnitude_vector (DoRA);
//   older layouts: .lora.down.weight / .lora.up.weight, .lora_linear_layer.down.weight / .up.weight,
//   and attention processors `...attn1.processor.to_q_lora.down.weight` (to_k_lora, to_v_lora,
//   to_out_lora -> to_out.0);
//   `.alpha` tensors (kohya files converted by diffusers) when present.
// alpha: a `.alpha` tensor, else __metadata__ `lora_adapter_metadata` (diffusers >= 0.34: a JSON
// object of LoraConfig keys prefixed by the component, "unet.lora_alpha", "unet.alpha_pattern"),
// else vkp_adapter_io.alpha, else r (scale 1, which is how diffusers loads a file without alpha).
// Writing: LoRA and DoRA, with `lora_adapter_metadata` (r, lora_alpha, use_dora, alpha_pattern
// when the modules' scales differ), so diffusers and vkpeft load it at the trained scale.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "peft_internal.h"

static const char *const comps[] = {"unet.", "text_encoder.", "text_encoder_2.", NULL};

static bool ends_with(const char *s, const char *sfx) {
  size_t n = strlen(s), k = strlen(sfx);
  return n > k && !strcmp(s + n - k, sfx);
}

static bool diffusers_split(const char *key, char *stem, size_t cap, int *role, bool *peft_dora) {
  static const struct {
    const char *sfx;
    int role;
  } sfx[] = {{".lora_A.weight", VKP_LR_DOWN},
             {".lora_B.weight", VKP_LR_UP},
             {".lora.down.weight", VKP_LR_DOWN},
             {".lora.up.weight", VKP_LR_UP},
             {".lora_linear_layer.down.weight", VKP_LR_DOWN},
             {".lora_linear_layer.up.weight", VKP_LR_UP},
             {".lora_magnitude_vector.weight", VKP_LR_DORA},
             {".lora_magnitude_vector", VKP_LR_DORA},
             {".alpha", VKP_LR_ALPHA}};
  const char *proc = strstr(key, ".processor.");
  if (proc) {   // <attn>.processor.to_q_lora.down.weight -> <attn>.to_q
    static const char *const from[][2] = {{"to_q_lora", "to_q"}, {"to_k_lora", "to_k"}, {"to_v_lora", "to_v"}, {"to_out_lora", "to_out.0"}};
    const char *rest = proc + strlen(".processor.");
    for (size_t i = 0; i < sizeof from / sizeof *from; i++) {
      size_t n = strlen(from[i][0]);
      if (strncmp(rest, from[i][0], n)) continue;
      if (!strcmp(rest + n, ".down.weight")) *role = VKP_LR_DOWN;
      else if (!strcmp(rest + n, ".up.weight")) *role = VKP_LR_UP;
      else if (!strcmp(rest + n, ".alpha")) *role = VKP_LR_ALPHA;
      else return false;
      snprintf(stem, cap, "%.*s.%s", (int)(proc - key), key, from[i][1]);
      return true;
    }
    return false;
  }
  for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++)
    if (ends_with(key, sfx[i].sfx)) {
      snprintf(stem, cap, "%.*s", (int)(strlen(key) - strlen(sfx[i].sfx)), key);
      *role = sfx[i].role;
      *peft_dora = sfx[i].role == VKP_LR_DORA;
      return true;
    }
  return false;
}

static bool diffusers_detect(const char *path) {
  struct stat sb;
  if (stat(path, &sb) || !S_ISREG(sb.st_mode)) return false;
  vkp_error err = {0};
  vkp_safetensors *sf = NULL;
  if (vkp_safetensors_open(path, &sf, &err)) return false;
  bool yes = false;
  for (size_t i = 0; !yes && i < vkp_safetensors_count(sf); i++) {
    const char *k = vkp_safetensors_at(sf, i)->name;
    char stem[400];
    int role;
    bool d;
    for (int c = 0; !yes && comps[c]; c++)
      yes = !strncmp(k, comps[c], strlen(comps[c])) && diffusers_split(k, stem, sizeof stem, &role, &d) && role != VKP_LR_ALPHA;
  }
  vkp_safetensors_free(sf);
  return yes;
}

// alpha of module `name` of component `comp` ("unet.") from lora_adapter_metadata: the component's
// alpha_pattern entry whose key ends the module name, else its lora_alpha.
static bool metadata_alpha(const cJSON *meta, const char *comp, const char *name, float *alpha) {
  if (!meta) return false;
  char key[128];
  snprintf(key, sizeof key, "%salpha_pattern", comp);
  const cJSON *pat = cJSON_GetObjectItemCaseSensitive(meta, key);
  if (!pat) pat = cJSON_GetObjectItemCaseSensitive(meta, "alpha_pattern");
  const cJSON *it;
  cJSON_ArrayForEach(it, pat) {
    if (!cJSON_IsNumber(it) || !it->string) continue;   // an array's items have no key
    size_t n = strlen(name), k = strlen(it->string);
    if (n >= k && !strcmp(name + n - k, it->string) && (n == k || name[n - k - 1] == '.')) {
      *alpha = (float)it->valuedouble;
      return true;
    }
  }
  snprintf(key, sizeof key, "%slora_alpha", comp);
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(meta, key);
  if (!a) a = cJSON_GetObjectItemCaseSensitive(meta, "lora_alpha");
  if (!cJSON_IsNumber(a)) return false;
  *alpha = (float)a->valuedouble;
  return true;
}

static vkp_status diffusers_read(vkp_model *m, const char *path, const vkp_adapter_io *io, vkp_adapter **out) {
  vkp_error *err = vkp_ctx_err(m->ctx);
  *out = NULL;
  vkp_safetensors *sf = NULL;
  VKP_TRY(vkp_safetensors_open(path, &sf, err));
  const char *one[2] = {io->key_prefix, NULL};
  const char *const *prefixes = io->key_prefix ? one : comps;
  vkp_lowrank_entry *e = NULL;
  int n = 0;
  vkp_status st = vkp_lowrank_group(m, path, sf, io, comps, false, diffusers_split, &e, &n);
  const char *ms = vkp_safetensors_metadata(sf, "lora_adapter_metadata");
  cJSON *meta = ms ? cJSON_Parse(ms) : NULL;
  if (!st && ms && !cJSON_IsObject(meta))
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: __metadata__ 'lora_adapter_metadata' is not a JSON object", path);
  for (int i = 0; !st && i < n; i++) {
    if (e[i].t[VKP_LR_ALPHA]) continue;
    const char *comp = NULL;
    for (int c = 0; !comp && prefixes[c]; c++)
      if (!strncmp(e[i].stem, prefixes[c], strlen(prefixes[c]))) comp = prefixes[c];
    float alpha;
    if (metadata_alpha(meta, comp, e[i].stem + strlen(comp), &alpha)) e[i].has_alpha = true, e[i].alpha = alpha;
    else if (io->alpha > 0) e[i].has_alpha = true, e[i].alpha = io->alpha;
  }
  cJSON_Delete(meta);
  if (!st) st = vkp_lowrank_build(m, path, e, n, io, out);
  free(e);
  vkp_safetensors_free(sf);
  return st;
}

static vkp_status diffusers_write(vkp_model *m, const vkp_adapter *a, const char *path, const vkp_adapter_io *io) {
  vkp_error *err = vkp_ctx_err(m->ctx);
  if (a->cfg.method != VKP_PEFT_LORA)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: the diffusers format stores LoRA and DoRA, not %s (use kohya or peft)", path,
                         vkp_peft_method_name(a->cfg.method));
  if (a->nsaved || a->nshared)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: the diffusers format has no place for trained base parameters (modules_to_save)", path);
  const char *comp = io->key_prefix;
  if (!comp) comp = a->nslots && !strncmp(a->slots[0]->module->name, "text_model.", 11) ? "text_encoder." : "unet.";
  vkp_safetensors_writer *w = NULL;
  VKP_TRY(vkp_safetensors_writer_new(&w, err));
  vkp_status st = VKP_OK;
  char key[600];
  float alpha0 = a->nslots ? a->slots[0]->scaling * (float)a->cfg.r : (float)a->cfg.r;
  cJSON *pat = cJSON_CreateObject(), *targets = cJSON_CreateArray();
  for (int s = 0; !st && s < a->nslots; s++) {
    vkp_adapter_slot *sl = a->slots[s];
    static const char *const sfx[3] = {"lora_A.weight", "lora_B.weight", "lora_magnitude_vector"};
    for (int i = 0; !st && i < sl->np && i < 3; i++) {
      float *v = vkp_peft_read_param(m, sl->p[i]);
      if (!v) {
        st = vkp_error_set(err, VKP_ERR_OOM, "%s: cannot read '%s'", path, sl->p[i]->name);
        break;
      }
      snprintf(key, sizeof key, "%s%s.%s", comp, sl->module->name, sfx[i]);
      int64_t out = sl->module->out;
      st = i == 2 ? vkp_safetensors_writer_add_f32(w, key, VKP_DTYPE_F32, 1, &out, v, err)
                  : vkp_safetensors_writer_add_f32(w, key, VKP_DTYPE_F32, sl->p[i]->ndim, sl->p[i]->shape, v, err);
      free(v);
    }
    float al = sl->scaling * (float)a->cfg.r;
    if (al != alpha0) cJSON_AddNumberToObject(pat, sl->module->name, al);
    cJSON_AddItemToArray(targets, cJSON_CreateString(sl->module->name));
  }
  cJSON *meta = cJSON_CreateObject();
  char k[64];
  const char *pfx = comp;
#define KEY(x) (snprintf(k, sizeof k, "%s%s", pfx, x), k)
  cJSON_AddNumberToObject(meta, KEY("r"), a->cfg.r);
  cJSON_AddNumberToObject(meta, KEY("lora_alpha"), alpha0);
  cJSON_AddBoolToObject(meta, KEY("use_dora"), a->cfg.use_dora);
  cJSON_AddItemToObject(meta, KEY("target_modules"), targets);
  if (cJSON_GetArraySize(pat)) cJSON_AddItemToObject(meta, KEY("alpha_pattern"), pat);
  else cJSON_Delete(pat);
#undef KEY
  char *js = cJSON_PrintUnformatted(meta);
  cJSON_Delete(meta);
  if (!st && !js) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  if (!st) st = vkp_safetensors_writer_set_metadata(w, "lora_adapter_metadata", js, err);
  if (!st) st = vkp_safetensors_writer_set_metadata(w, "format", "pt", err);
  free(js);
  if (!st) st = vkp_safetensors_writer_save(w, path, err);
  vkp_safetensors_writer_free(w);
  return st;
}

const vkp_adapter_format vkp_adapter_format_diffusers = {
    .name = "diffusers",
    .description = "diffusers / PEFT .safetensors (unet.<module>.lora_A.weight, text_encoder.<module>...)",
    .detect = diffusers_detect,
    .read = diffusers_read,
    .write = diffusers_write,
};
