// ldm_checkpoint.c — a single-file Stable Diffusion checkpoint: recognise it, build the UNet, VAE
// and text tower its shapes describe, write the file's tensors into them under the converted
// names, report what is unused or missing, and make a pipeline of it (vkp_ldm.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ldm_internal.h"
#include "vkp_clip_tokenizer.h"
#include "vkp_ldm.h"
#include "vkp_text_encoder.h"

#define NAMES_SHOWN 3   // names listed in an unused / missing report

// Names seen of one kind: a count and the first few, for one-line reports.
typedef struct name_list {
  int n;
  char first[NAMES_SHOWN][VKP_LDM_NAME_MAX];
} name_list;

static void name_add(name_list *l, const char *name) {
  if (l->n < NAMES_SHOWN) snprintf(l->first[l->n], VKP_LDM_NAME_MAX, "%s", name);
  l->n++;
}

// "'a', 'b', 'c'" (into out).
static const char *name_join(const name_list *l, char *out, size_t cap) {
  size_t o = 0;
  out[0] = '\0';
  for (int i = 0; i < l->n && i < NAMES_SHOWN && o < cap; i++) o += (size_t)snprintf(out + o, cap - o, "%s'%s'", i ? ", " : "", l->first[i]);
  return out;
}

static bool starts(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

// ---- weights ------------------------------------------------------------------------------------

typedef struct ldm_part {
  const char *what;        // "UNet", ... (messages)
  const char *prefix;      // its keys' prefix in the file
  vkp_ldm_map_fn map;
  const void *cfg;
  vkp_model *m;
} ldm_part;

// One tensor (or a third of its rows) into a parameter: element counts must match (LDM's 1x1
// convolutions fill Linear weights), 16-bit matrices stay 16-bit when keep_dtype.
static vkp_status write_param(vkp_model *m, vkp_param *p, const vkp_st_tensor *t, int part, int parts, bool keep_dtype,
                              float *tmp, const char *path, vkp_error *err) {
  size_t n = (size_t)vkp_param_numel(p);
  if (vkp_st_tensor_numel(t) != n * (size_t)parts || (parts == 1 && t->ndim == p->ndim && memcmp(t->shape, p->shape, sizeof(int64_t) * (size_t)p->ndim))) {
    char ts[96] = "", ps[96] = "";
    for (int d = 0, o = 0; d < t->ndim; d++) o += snprintf(ts + o, sizeof ts - (size_t)o, d ? ",%lld" : "%lld", (long long)t->shape[d]);
    for (int d = 0, o = 0; d < p->ndim; d++) o += snprintf(ps + o, sizeof ps - (size_t)o, d ? ",%lld" : "%lld", (long long)p->shape[d]);
    return vkp_error_set(err, VKP_ERR_SHAPE, "%s: tensor '%s' has shape [%s], the model expects [%s]%s for '%s'", path, t->name, ts, ps,
                         parts > 1 ? " x 3" : "", p->name);
  }
  if (t->dtype != VKP_DTYPE_F32 && t->dtype != VKP_DTYPE_F16 && t->dtype != VKP_DTYPE_BF16)
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s' has dtype %s; weights must be F32, F16 or BF16", path, t->name,
                         vkp_dtype_name(t->dtype));
  vkp_status st = VKP_OK;
  if (keep_dtype && p->ndim >= 2 && t->dtype != VKP_DTYPE_F32 && p->dtype != t->dtype) st = vkp_param_set_dtype(m, p, t->dtype);
  vkp_convert_to_f32(t->dtype, (const char *)t->data + (size_t)part * n * vkp_dtype_size(t->dtype), tmp, n);
  if (!st) st = vkp_param_write_f32(m, p, tmp);
  return st ? vkp_error_set(err, st, "%s: %s", path, vkp_ctx_error(m->ctx)) : VKP_OK;
}

// Writes every tensor of the part into its model; used[i] marks the file's tensors it took.
// A parameter no tensor filled is an error naming the first few.
static vkp_status load_part(const vkp_safetensors *sf, const ldm_part *part, bool keep_dtype, bool *used, vkp_error *err) {
  const char *path = vkp_safetensors_path(sf);
  vkp_model *m = part->m;
  size_t plen = strlen(part->prefix), cap = 1;
  for (int k = 0; k < m->nparams; k++) cap = (size_t)vkp_param_numel(m->params[k]) > cap ? (size_t)vkp_param_numel(m->params[k]) : cap;
  float *tmp = malloc(cap * sizeof *tmp);
  bool *loaded = calloc((size_t)m->nparams + 1, 1);
  vkp_status st = tmp && loaded ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (size_t i = 0; !st && i < vkp_safetensors_count(sf); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(sf, i);
    char names[3][VKP_LDM_NAME_MAX];
    int n = starts(t->name, part->prefix) ? part->map(part->cfg, t->name + plen, names) : 0;
    for (int k = 0; !st && k < n; k++) {
      vkp_param *p = vkp_model_find_param(m, names[k]);
      if (!p) continue;
      used[i] = true;
      st = write_param(m, p, t, k, n, keep_dtype, tmp, path, err);
      for (int j = 0; j < m->nparams; j++) loaded[j] = loaded[j] || m->params[j] == p;
    }
  }
  name_list missing = {0};
  for (int j = 0; !st && j < m->nparams; j++)
    if (!loaded[j]) name_add(&missing, m->params[j]->name);
  char list[1024];
  if (!st && missing.n)
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: %d %s parameters are missing from the checkpoint (the first: %s; expected under '%s')",
                       path, missing.n, part->what, name_join(&missing, list, sizeof list), part->prefix);
  free(tmp);
  free(loaded);
  return st;
}

// Tensors every such file may hold that no model here uses: EMA copies, the training schedule's
// buffers (top-level names), `position_ids`, and what SD 2.x's conversion drops (OpenCLIP's last
// block, projection, logit scale); the text tower's when it is not loaded.
static bool expected_unused(const char *name, bool text_skipped) {
  size_t n = strlen(name);
  if (!strchr(name, '.') || starts(name, "model_ema.") || (n > 13 && !strcmp(name + n - 13, ".position_ids"))) return true;
  if (starts(name, "cond_stage_model.")) return text_skipped || starts(name, VKP_LDM_OPENCLIP_PREFIX);
  return false;
}

// ---- the checkpoint -----------------------------------------------------------------------------

static const vkp_st_tensor *find_unet_context(const vkp_safetensors *sf) {
  for (size_t i = 0; i < vkp_safetensors_count(sf); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(sf, i);
    size_t n = strlen(t->name);
    if (starts(t->name, VKP_LDM_UNET_PREFIX) && n > 17 && !strcmp(t->name + n - 17, "attn2.to_k.weight") && t->ndim == 2) return t;
  }
  return NULL;
}

// SD's schedule as diffusers' single-file loader sets it (DDIMScheduler, no clipping, alpha_T
// not forced to one); each sampler takes its own defaults for the keys not given.
static vkp_status sd_scheduler(const char *path, int prediction, vkp_scheduler_config *out, vkp_error *err) {
  static const char *const json = "{\"_class_name\": \"DDIMScheduler\", \"num_train_timesteps\": 1000, \"beta_start\": 0.00085,"
                                  " \"beta_end\": 0.012, \"beta_schedule\": \"scaled_linear\", \"steps_offset\": 1,"
                                  " \"clip_sample\": false, \"set_alpha_to_one\": false}";
  cJSON *j = cJSON_Parse(json);
  if (!j) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  vkp_status st = vkp_scheduler_config_parse(j, path, out, err);
  cJSON_Delete(j);
  if (!st) out->prediction_type = (vkp_prediction)prediction;
  return st;
}

void vkp_ldm_parts_free(vkp_ldm_parts *p) {
  if (!p) return;
  vkp_unet_free(p->unet);
  vkp_vae_free(p->vae);
  vkp_clip_free(p->text);
  vkp_scheduler_config_free(&p->sched);
  memset(p, 0, sizeof *p);
}

// Which model the file is, and its parts' architectures.
static vkp_status read_architecture(const vkp_safetensors *sf, const vkp_ldm_opts *o, vkp_ldm_parts *out, vkp_unet_config *uc,
                                    vkp_vae_config *vc, vkp_clip_config *tc, bool *openclip, vkp_error *err) {
  const char *path = vkp_safetensors_path(sf);
  if (!vkp_safetensors_find(sf, VKP_LDM_UNET_PREFIX "input_blocks.0.0.weight")) {
    for (size_t i = 0; i < vkp_safetensors_count(sf); i++)
      if (starts(vkp_safetensors_at(sf, i)->name, "conditioner.embedders."))
        return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: an SDXL checkpoint (conditioner.embedders.*): not supported", path);
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: not a Stable Diffusion checkpoint (no '" VKP_LDM_UNET_PREFIX "*' UNet tensors)", path);
  }
  if (!vkp_safetensors_find(sf, VKP_LDM_VAE_PREFIX "encoder.conv_in.weight"))
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: no VAE in the file ('" VKP_LDM_VAE_PREFIX "*' tensors): a UNet-only checkpoint", path);
  *openclip = vkp_safetensors_find(sf, VKP_LDM_OPENCLIP_PREFIX "token_embedding.weight") != NULL;
  bool clip = false;
  for (size_t i = 0; !*openclip && !clip && i < vkp_safetensors_count(sf); i++)
    clip = starts(vkp_safetensors_at(sf, i)->name, VKP_LDM_CLIP_PREFIX);
  const vkp_st_tensor *k = find_unet_context(sf);
  out->version = *openclip || (!clip && k && k->shape[1] == 1024) ? 2 : 1;
  VKP_TRY(vkp_ldm_unet_config(sf, out->version == 2, uc, err));
  VKP_TRY(vkp_ldm_vae_config(sf, vc, err));
  if (!o->no_text && (clip || *openclip)) {
    VKP_TRY(vkp_ldm_text_config(sf, *openclip, tc, err));
    if (tc->text.hidden_size != uc->cross_attention_dim[0])
      return vkp_error_set(err, VKP_ERR_SHAPE, "%s: the text encoder is %d wide, the UNet cross-attends to %d", path,
                           tc->text.hidden_size, uc->cross_attention_dim[0]);
  } else {
    tc->has_text = false;
  }
  return VKP_OK;
}

vkp_status vkp_ldm_load(vkp_ctx *ctx, const char *path, const vkp_ldm_opts *opts, vkp_ldm_parts *out, vkp_error *err) {
  memset(out, 0, sizeof *out);
  vkp_ldm_opts o = {.prediction_type = VKP_LDM_PRED_AUTO};
  if (opts) o = *opts;
  vkp_safetensors *sf = NULL;
  VKP_TRY(vkp_safetensors_open(path, &sf, err));
  vkp_unet_config uc;
  vkp_vae_config vc;
  vkp_clip_config tc;
  bool openclip = false, *used = NULL;
  vkp_status st = read_architecture(sf, &o, out, &uc, &vc, &tc, &openclip, err);
  if (!st) st = vkp_unet_new_empty(ctx, &uc, &out->unet, err);
  if (!st) st = vkp_vae_new_empty(ctx, &vc, &out->vae, err);
  if (!st && tc.has_text) st = vkp_clip_new_empty(ctx, &tc, &out->text, err);
  if (!st && !(used = calloc(vkp_safetensors_count(sf) + 1, 1))) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  ldm_part parts[3] = {{"UNet", VKP_LDM_UNET_PREFIX, vkp_ldm_unet_name, &uc, out->unet ? out->unet->model : NULL},
                       {"VAE", VKP_LDM_VAE_PREFIX, vkp_ldm_vae_name, &vc, out->vae ? out->vae->model : NULL},
                       {"text encoder", openclip ? VKP_LDM_OPENCLIP_PREFIX : VKP_LDM_CLIP_PREFIX,
                        openclip ? vkp_ldm_openclip_name : vkp_ldm_clip_name, &tc.text, out->text ? out->text->model : NULL}};
  for (int i = 0; !st && i < 3; i++)
    if (parts[i].m) st = load_part(sf, &parts[i], !o.f32, used, err);
  if (!st) {
    name_list unused = {0};
    for (size_t i = 0; i < vkp_safetensors_count(sf); i++)
      if (!used[i] && !expected_unused(vkp_safetensors_at(sf, i)->name, !out->text)) name_add(&unused, vkp_safetensors_at(sf, i)->name);
    char list[1024];
    if (unused.n)
      fprintf(stderr, "vkpeft: %s: %d tensors are not used by the UNet, VAE or text encoder (the first: %s)\n", path, unused.n,
              name_join(&unused, list, sizeof list));
  }
  int pred = o.prediction_type;
  if (pred == VKP_LDM_PRED_AUTO) {
    pred = vkp_safetensors_find(sf, "v_pred") ? VKP_PRED_V : VKP_PRED_EPSILON;
    if (!st && out->version == 2 && pred == VKP_PRED_EPSILON)
      fprintf(stderr, "vkpeft: %s: a Stable Diffusion 2.x file does not say its prediction type; epsilon assumed "
                      "(768-v models need v_prediction)\n", path);
  }
  if (!st && (st = sd_scheduler(path, pred, &out->sched, err))) memset(&out->sched, 0, sizeof out->sched);
  if (!st) {
    out->pad = out->version == 2 ? VKP_CLIP_PAD_OPENAI : VKP_CLIP_PAD_HF;
    if (out->version == 2 && pred == VKP_PRED_V) out->unet->cfg.sample_size = 96;   // 768-v: 768 pixels
  }
  free(used);
  vkp_safetensors_free(sf);
  if (st) vkp_ldm_parts_free(out);
  return st;
}

vkp_status vkp_ldm_pipeline_load(vkp_ctx *ctx, const char *path, const vkp_pipeline_opts *opts, const vkp_ldm_opts *lopts,
                                 vkp_pipeline **out, vkp_error *err) {
  *out = NULL;
  vkp_ldm_opts o = {.prediction_type = VKP_LDM_PRED_AUTO};
  if (lopts) o = *lopts;
  int want_text = opts ? opts->text_encoder : VKP_PIPELINE_TEXT_NONE;
  if (want_text == VKP_PIPELINE_TEXT_NONE) o.no_text = true;
  vkp_ldm_parts parts;
  VKP_TRY(vkp_ldm_load(ctx, path, &o, &parts, err));
  vkp_text_encoder *te = NULL;
  vkp_status st = VKP_OK;
  if (!parts.text && want_text == VKP_PIPELINE_TEXT_REQUIRED)
    st = vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: no text encoder in the file (cond_stage_model.*): a prompt needs one", path);
  if (!st && parts.text) {
    vkp_clip_tokenizer *tok = NULL;
    if (!(st = vkp_clip_tokenizer_load(NULL, &tok, err))) {
      vkp_clip_tokenizer_set_default_pad(tok, parts.pad);
      vkp_text_encoder_opts to = {.clip_skip = opts ? opts->clip_skip : 0};
      st = vkp_text_encoder_from_clip(ctx, parts.text, tok, path, &to, &te, err);   // owns text and tok from here
      parts.text = NULL;
    }
  }
  if (st) {
    vkp_ldm_parts_free(&parts);
    return st;
  }
  return vkp_pipeline_from_parts(ctx, path, parts.unet, parts.vae, &parts.sched, te, opts, out, err);   // owns the rest
}
