// pipeline_lora.c — LoRA files on a pipeline (vkp_pipeline.h): a kohya/A1111 or diffusers file's
// UNet part (`lora_unet_*`, `unet.*`) goes to the UNet and its text-encoder part (`lora_te_*`,
// `lora_te1_*`, `text_encoder.*`) to the CLIP text tower; an HF PEFT folder goes to the UNet and its
// text_encoder/ sub-folder, when there is one, to the text tower.
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "pipeline_internal.h"
#include "vkp_adapter_format.h"

static const char *const unet_prefixes[] = {"lora_unet_", "unet.", NULL};
static const char *const te_prefixes[] = {"lora_te_", "lora_te1_", "text_encoder.", NULL};

// The first of `prefixes` that some key of sf starts with (NULL: none).
static const char *part_prefix(const vkp_safetensors *sf, const char *const *prefixes) {
  for (int k = 0; prefixes[k]; k++)
    for (size_t i = 0; i < vkp_safetensors_count(sf); i++)
      if (!strncmp(vkp_safetensors_at(sf, i)->name, prefixes[k], strlen(prefixes[k]))) return prefixes[k];
  return NULL;
}

static vkp_status read_part(vkp_pipeline *p, vkp_model *m, const char *path, const char *prefix, const char *what,
                            vkp_adapter **out, vkp_error *err) {
  vkp_adapter_io io = {.key_prefix = prefix};
  if (vkp_adapter_read(m, path, NULL, &io, out)) {
    const char *msg = vkp_ctx_error(p->ctx);
    // The core messages already start with the file's name.
    if (msg && !strncmp(msg, path, strlen(path))) return vkp_error_set(err, VKP_ERR_FORMAT, "%s (%s)", msg, what);
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: %s: %s", path, what, msg ? msg : "cannot load");
  }
  return VKP_OK;
}

static vkp_status set_one(vkp_pipeline *p, vkp_model *m, vkp_adapter *a, float scale, bool merge, vkp_error *err) {
  if (!a) return VKP_OK;
  if (vkp_adapter_is_merged(a) && vkp_adapter_unmerge(m, a))
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: unmerge: %s", p->dir, vkp_ctx_error(p->ctx));
  vkp_adapter_set_scale(a, scale);
  if (merge && vkp_adapter_merge(m, a))
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: merge: %s", p->dir, vkp_ctx_error(p->ctx));
  return VKP_OK;
}

static vkp_model *te_model(vkp_pipeline *p) { return p->te ? vkp_text_encoder_clip(p->te)->model : NULL; }

// An HF PEFT folder's text-encoder adapter: DIR/text_encoder/ (as vkpeft train and PEFT's
// DreamBooth example save it), loaded onto the text tower; none there: *out NULL.
static vkp_status peft_text_part(vkp_pipeline *p, const char *dir, vkp_adapter **out, vkp_error *err) {
  char sub[1200];
  struct stat sb;
  *out = NULL;
  snprintf(sub, sizeof sub, "%s/text_encoder/adapter_config.json", dir);
  if (stat(sub, &sb)) return VKP_OK;
  snprintf(sub, sizeof sub, "%s/text_encoder", dir);
  if (!p->te) {
    fprintf(stderr, "vkpeft: %s: the text-encoder adapter is not applied: no text encoder is loaded\n", sub);
    return VKP_OK;
  }
  if (vkp_adapter_load(te_model(p), sub, out)) return vkp_error_set(err, VKP_ERR_FORMAT, "%s: %s", sub, vkp_ctx_error(p->ctx));
  return VKP_OK;
}

vkp_status vkp_pipeline_add_lora(vkp_pipeline *p, const char *path, float scale, bool merge, vkp_error *err) {
  if (p->n_lora == VKP_PIPELINE_MAX_LORAS)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: at most %d LoRA files", path, VKP_PIPELINE_MAX_LORAS);
  struct stat sb;
  if (stat(path, &sb)) return vkp_error_set(err, VKP_ERR_IO, "%s: no such LoRA file", path);
  vkp_pipeline_lora l = {.scale = scale, .merged = merge};
  vkp_status st = VKP_OK;
  if (S_ISDIR(sb.st_mode)) {   // an HF PEFT folder: the UNet's, with the text encoder's in text_encoder/
    if (vkp_adapter_load(p->unet->model, path, &l.unet))
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s: %s", path, vkp_ctx_error(p->ctx));
    if ((st = peft_text_part(p, path, &l.te, err))) {
      vkp_adapter_discard(p->unet->model, l.unet);
      return st;
    }
  } else {
    vkp_safetensors *sf = NULL;
    if ((st = vkp_safetensors_open(path, &sf, err))) return st;
    const char *up = part_prefix(sf, unet_prefixes), *tp = part_prefix(sf, te_prefixes);
    size_t count = vkp_safetensors_count(sf);
    char first[256];
    snprintf(first, sizeof first, "%s", count ? vkp_safetensors_at(sf, 0)->name : "none");
    vkp_safetensors_free(sf);
    if (!up && !tp)
      return vkp_error_set(err, VKP_ERR_SHAPE,
                           "%s: no key names a module of the UNet or the text encoder (%zu keys; the first: '%s')", path,
                           count, first);
    if (up && (st = read_part(p, p->unet->model, path, up, "UNet part", &l.unet, err))) return st;
    if (tp && !p->te)
      fprintf(stderr, "vkpeft: %s: the text-encoder part (%s*) is not applied: no text encoder is loaded\n", path, tp);
    else if (tp && (st = read_part(p, te_model(p), path, tp, "text-encoder part", &l.te, err))) {
      if (l.unet) vkp_adapter_discard(p->unet->model, l.unet);
      return st;
    }
  }
  if ((st = set_one(p, p->unet->model, l.unet, scale, merge, err)) || (st = set_one(p, te_model(p), l.te, scale, merge, err)))
    return st;
  p->lora[p->n_lora++] = l;
  vkp_pipeline_invalidate(p);
  return VKP_OK;
}

int vkp_pipeline_lora_count(const vkp_pipeline *p) { return p->n_lora; }

vkp_status vkp_pipeline_set_lora_scale(vkp_pipeline *p, int i, float scale, vkp_error *err) {
  if (i < 0 || i >= p->n_lora) return vkp_error_set(err, VKP_ERR_INVALID, "%s: no LoRA %d", p->dir, i);
  vkp_pipeline_lora *l = &p->lora[i];
  vkp_status st;
  if ((st = set_one(p, p->unet->model, l->unet, scale, l->merged, err)) ||
      (st = set_one(p, te_model(p), l->te, scale, l->merged, err)))
    return st;
  l->scale = scale;
  vkp_pipeline_invalidate(p);
  return VKP_OK;
}

void vkp_pipeline_lora_parts(const vkp_pipeline *p, int i, bool *unet, bool *te) {
  *unet = p->lora[i].unet != NULL;
  *te = p->lora[i].te != NULL;
}
