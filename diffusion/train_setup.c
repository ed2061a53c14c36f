// train_setup.c — the diffusion trainer's config (defaults, checks) and the pipeline's parts:
// UNet (trainable through its adapters; model.init.unet: from random weights), VAE (model.vae or
// the pipeline's), text encoder (model.text_encoder + model.tokenizer or the pipeline's) and the
// training noise schedule (the pipeline's scheduler/).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"
#include "vkp_clip_eval.h"
#include "vkp_config.h"

const char vkp_diffusion_train_defaults[] =
    "{"
    "\"task\": \"diffusion\","
    "\"output_dir\": \"runs/diffusion\","
    "\"model\": {\"pretrained\": null, \"init\": {}, \"vae\": null, \"text_encoder\": null, \"tokenizer\": null, \"clip_skip\": 1, \"base_model_version\": \"sd_v1\", \"base_dtype\": \"f32\"},"
    "\"data\": {\"train\": null, \"val\": null, \"val_fraction\": 0.0, \"split_seed\": 0, \"resolution\": 64,"
    "  \"crop\": \"center\", \"crop_scale\": 0.8, \"hflip\": 0.0, \"alpha\": \"white\", \"trigger\": \"\","
    "  \"caption_dropout\": 0.0, \"shuffle_captions\": false, \"keep_tokens\": 0, \"first_caption\": true,"
    "  \"cache_latents\": true, \"cache_dir\": null, \"workers\": 0, \"buckets\": false, \"min_bucket_reso\": 0,"
    "  \"max_bucket_reso\": 0, \"bucket_reso_steps\": 0, \"reg\": null},"
    "\"peft\": [{\"method\": \"lora\", \"r\": 4, \"lora_alpha\": 4, \"target_modules\": [\"to_q\", \"to_k\", \"to_v\", \"to_out.0\"]}],"
    "\"peft_text_encoder\": [],"
    "\"train\": {\"optimizer\": \"adamw\", \"gradient_checkpointing\": false, \"lr\": 0.0001, \"unet_lr\": -1, \"text_encoder_lr\": -1, \"weight_decay\": 0.01, \"beta1\": 0.9, \"beta2\": 0.999,"
    "  \"momentum\": 0.9, \"max_grad_norm\": 1.0, \"schedule\": \"constant\", \"warmup_steps\": 0, \"warmup_ratio\": 0.0,"
    "  \"batch_size\": 1, \"grad_accum\": 1, \"epochs\": 1, \"max_steps\": 0,"
    "  \"prediction_type\": null, \"min_snr_gamma\": 0.0, \"noise_offset\": 0.0, \"zero_terminal_snr\": false,"
    "  \"min_timestep\": 0, \"max_timestep\": 0, \"masked_loss\": false, \"prior_loss_weight\": 1.0,"
    "  \"eval_every\": 0, \"eval_batch\": 4, \"val_limit\": 8, \"log_every\": 10, \"checkpoint_every\": 0,"
    "  \"keep_last\": 2, \"seed\": 0, \"stop_after\": 0, \"ema_decay\": 0.0, \"ema_warmup\": true},"
    "\"save\": {\"name\": \"lora\", \"formats\": [\"kohya\", \"diffusers\", \"peft\"]},"
    "\"samples\": {\"every\": 0, \"prompts\": [], \"negative_prompt\": \"\", \"seed\": 0, \"steps\": 20, \"cfg\": 5.0,"
    "  \"sampler\": \"ddim\"}"
    "}";

vkp_status vkp_diffusion_train_config(const char *path, const char *const *sets, int nsets, cJSON **out, vkp_error *err) {
  VKP_TRY(vkp_config_resolve(vkp_diffusion_train_defaults, path, sets, nsets, out, err));
  const char *where = path ? path : "config";
  const char *task = vkp_config_string(*out, "task");
  vkp_status st = VKP_OK;
  if (!task || strcmp(task, "diffusion")) st = vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'task' must be \"diffusion\" here", where);
  else if (!cJSON_IsArray(vkp_config_get(*out, "peft")))
    st = vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'peft' must be a list of adapters", where);
  else if (!cJSON_IsArray(vkp_config_get(*out, "peft_text_encoder")))
    st = vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'peft_text_encoder' must be a list of adapters ([]: the text encoder is frozen)", where);
  else if (!cJSON_IsArray(vkp_config_get(*out, "save.formats")))
    st = vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'save.formats' must be a list of \"kohya\", \"diffusers\", \"peft\"", where);
  const cJSON *f, *formats = st ? NULL : vkp_config_get(*out, "save.formats");
  cJSON_ArrayForEach(f, formats) {
    if (!cJSON_IsString(f) || (strcmp(f->valuestring, "kohya") && strcmp(f->valuestring, "diffusers") && strcmp(f->valuestring, "peft"))) {
      st = vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'save.formats' must be a list of \"kohya\", \"diffusers\", \"peft\"", where);
      break;
    }
  }
  const cJSON *prompts = st ? NULL : vkp_config_get(*out, "samples.prompts");
  bool strings = cJSON_IsArray(prompts);
  cJSON_ArrayForEach(f, prompts) strings &= cJSON_IsString(f);
  if (!st && !strings) st = vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'samples.prompts' must be a list of prompts", where);
  if (st) cJSON_Delete(*out), *out = NULL;
  return st;
}

// A string key that must be one of `names` (NULL-terminated): its index.
static vkp_status one_of(const cJSON *c, const char *key, const char *const *names, int *out, vkp_error *err) {
  const char *s = vkp_config_string(c, key);
  char list[160] = "";
  for (int i = 0; names[i]; i++) {
    if (s && !strcmp(s, names[i])) return *out = i, VKP_OK;
    size_t l = strlen(list);
    snprintf(list + l, sizeof list - l, "%s\"%s\"", i ? ", " : "", names[i]);
  }
  return vkp_error_set(err, VKP_ERR_INVALID, "config: key '%s' must be one of %s", key, list);
}

vkp_status vkp_dtrain_read_keys(vkp_dtrainer *t, vkp_error *err) {
  const cJSON *c = t->cfg;
  long res;
  int crop, alpha;
  VKP_TRY(vkp_train_keys_read(c, 1, &t->k, err));
  VKP_TRY(vkp_config_int(c, "data.resolution", 8, 8192, &res, err));
  VKP_TRY(one_of(c, "data.crop", (const char *const[]){"center", "random", NULL}, &crop, err));
  VKP_TRY(one_of(c, "data.alpha", (const char *const[]){"white", "black", "drop", NULL}, &alpha, err));
  VKP_TRY(vkp_config_real(c, "data.crop_scale", 0.01, 1, &t->crop_scale, err));
  VKP_TRY(vkp_config_real(c, "data.hflip", 0, 1, &t->hflip, err));
  VKP_TRY(vkp_config_real(c, "data.caption_dropout", 0, 1, &t->caption_dropout, err));
  VKP_TRY(vkp_config_int(c, "data.keep_tokens", 0, 1000, &t->keep_tokens, err));
  VKP_TRY(vkp_config_real(c, "train.min_snr_gamma", 0, 1e6, &t->min_snr_gamma, err));
  VKP_TRY(vkp_config_real(c, "train.noise_offset", 0, 10, &t->noise_offset, err));
  VKP_TRY(vkp_config_int(c, "train.min_timestep", 0, 1 << 20, &t->t_min, err));
  VKP_TRY(vkp_config_int(c, "train.max_timestep", 0, 1 << 20, &t->t_max, err));
  long workers;
  VKP_TRY(vkp_config_int(c, "data.workers", 0, 64, &workers, err));
  VKP_TRY(vkp_config_int(c, "samples.every", 0, 1l << 40, &t->sample_every, err));
  const char *pt = vkp_config_string(c, "train.prediction_type");
  if (pt && strcmp(pt, "epsilon") && strcmp(pt, "v_prediction"))
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'train.prediction_type' must be \"epsilon\", \"v_prediction\" or null (the scheduler's)");
  if (!vkp_config_string(c, "data.train")) return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.train' must name image-caption data");
  if (!vkp_config_string(c, "model.pretrained"))
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'model.pretrained' must name a diffusers pipeline folder (at least its scheduler/)");
  const cJSON *init = vkp_config_get(c, "model.init"), *unet_init = cJSON_GetObjectItemCaseSensitive(init, "unet");
  if (!cJSON_IsObject(init) || (init->child && (!cJSON_IsObject(unet_init) || cJSON_GetArraySize(init) != 1)))
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'model.init' must be {} or {\"unet\": {...}} (a UNet config.json's keys)");
  const char *name = vkp_config_string(c, "save.name");
  if (!name || !*name || strchr(name, '/') || name[0] == '.')
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'save.name' must be a file name (no '/', not starting with '.')");
  t->resolution = (int)res;
  t->random_crop = crop == 1;
  t->alpha = alpha == 0 ? VKP_ALPHA_WHITE : alpha == 1 ? VKP_ALPHA_BLACK : VKP_ALPHA_DROP;
  t->cache_latents = vkp_config_bool(c, "data.cache_latents");
  t->masked_loss = vkp_config_bool(c, "train.masked_loss");
  t->shuffle_captions = vkp_config_bool(c, "data.shuffle_captions");
  t->first_caption = vkp_config_bool(c, "data.first_caption");
  t->trigger = vkp_config_string(c, "data.trigger");
  return VKP_OK;
}

// The scheduler of the pipeline folder with the config's overrides; DDPM's resolution of the
// file (as diffusers' training scripts load DDPMScheduler.from_pretrained).
static vkp_status load_scheduler(vkp_dtrainer *t, const char *dir, vkp_error *err) {
  char path[1200];
  snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", dir);
  vkp_scheduler_config sc;
  VKP_TRY(vkp_scheduler_config_load(path, &sc, err));
  const char *pt = vkp_config_string(t->cfg, "train.prediction_type");
  if (pt) sc.prediction_type = !strcmp(pt, "v_prediction") ? VKP_PRED_V : VKP_PRED_EPSILON;
  if (vkp_config_bool(t->cfg, "train.zero_terminal_snr")) sc.rescale_betas_zero_snr = true;
  vkp_status st = sc.prediction_type == VKP_PRED_SAMPLE
                      ? vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: key 'prediction_type' \"sample\": training supports epsilon and v_prediction", path)
                      : vkp_scheduler_new(&sc, VKP_SCHED_DDPM, &t->sched, err);
  vkp_scheduler_config_free(&sc);
  if (st) return st;
  t->v_prediction = t->sched->cfg.prediction_type == VKP_PRED_V;
  int T = t->sched->num_train_timesteps;
  if (t->t_max == 0) t->t_max = T;
  if (t->t_max > T) return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'train.max_timestep' (%ld) exceeds the scheduler's %d timesteps", t->t_max, T);
  if (t->t_min >= t->t_max)
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'train.min_timestep' (%ld) must be below train.max_timestep (%ld)", t->t_min, t->t_max);
  return VKP_OK;
}

// The UNet: model.init.unet (a config.json's keys) from random weights (seed train.seed), else
// the pipeline's unet/.
static vkp_status load_unet(vkp_dtrainer *t, const char *dir, vkp_error *err) {
  const cJSON *init = cJSON_GetObjectItemCaseSensitive(vkp_config_get(t->cfg, "model.init"), "unet");
  char path[1200];
  if (!init) {
    snprintf(path, sizeof path, "%s/unet", dir);
    return vkp_unet_load(t->ctx, path, NULL, &t->unet, err);
  }
  vkp_unet_config uc;
  VKP_TRY(vkp_unet_config_from_json(init, "config model.init.unet", &uc, err));
  return vkp_unet_new(t->ctx, &uc, t->k.seed, &t->unet, err);
}

// The text encoder: model.text_encoder (a CLIP folder: its text tower) with model.tokenizer (a
// folder with vocab.json + merges.txt; null: the text encoder folder's own, else the built-in
// one), else the pipeline's text_encoder/ + tokenizer/.
static vkp_status load_text_encoder(vkp_dtrainer *t, const char *dir, int clip_skip, vkp_error *err) {
  vkp_text_encoder_opts to = {.clip_skip = clip_skip};
  const char *te = vkp_config_string(t->cfg, "model.text_encoder"), *tp = vkp_config_string(t->cfg, "model.tokenizer");
  if (!te) {
    if (tp) return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'model.tokenizer' needs model.text_encoder");
    return vkp_text_encoder_load(t->ctx, dir, &to, &t->te, err);
  }
  vkp_clip *clip = NULL;
  vkp_clip_tokenizer *tok = NULL;
  vkp_clip_load_opts co = {.towers = VKP_CLIP_TEXT_ONLY};
  vkp_error e = {0};
  if (vkp_clip_load(t->ctx, te, &co, &clip, &e)) return vkp_error_set(err, e.status, "config: model.text_encoder: %s", e.msg);
  if (tp ? vkp_clip_tokenizer_load(tp, &tok, &e) : vkp_clip_tokenizer_for_model(te, &tok, &e)) {
    vkp_clip_free(clip);
    return vkp_error_set(err, e.status, "config: %s: %s", tp ? "model.tokenizer" : "model.text_encoder", e.msg);
  }
  return vkp_text_encoder_from_clip(t->ctx, clip, tok, te, &to, &t->te, err);
}

vkp_status vkp_dtrain_load_models(vkp_dtrainer *t, vkp_error *err) {
  const char *dir = vkp_config_string(t->cfg, "model.pretrained"), *vae = vkp_config_string(t->cfg, "model.vae");
  char path[1200];
  long clip_skip;
  VKP_TRY(vkp_config_int(t->cfg, "model.clip_skip", 1, 64, &clip_skip, err));
  VKP_TRY(load_scheduler(t, dir, err));
  VKP_TRY(load_unet(t, dir, err));
  snprintf(path, sizeof path, "%s/vae", dir);
  VKP_TRY(vkp_vae_load(t->ctx, vae ? vae : path, false, &t->vae, err));
  VKP_TRY(load_text_encoder(t, dir, (int)clip_skip, err));
  vkp_text_encoder_shape(t->te, &t->tokens, &t->text_dim);
  const vkp_unet_config *uc = &t->unet->cfg;
  if (uc->cross_attention_dim[0] != t->text_dim)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s/unet/config.json: key 'cross_attention_dim' (%d) differs from the text encoder's hidden_size (%d)",
                         dir, uc->cross_attention_dim[0], t->text_dim);
  if (t->vae->cfg.latent_channels != uc->in_channels)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s/unet/config.json: key 'in_channels' (%d) differs from the VAE's latent_channels (%d)",
                         dir, uc->in_channels, t->vae->cfg.latent_channels);
  t->factor = 1 << (t->vae->cfg.n_blocks - 1);
  int multiple = t->factor << (uc->n_blocks - 1);
  if (multiple < 8) multiple = 8;
  if (t->resolution % multiple)
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.resolution' (%d) must be a multiple of %d (VAE factor %d x UNet downsampling %d, at least 8)",
                         t->resolution, multiple, t->factor, 1 << (uc->n_blocks - 1));
  t->latent_c = uc->in_channels;
  t->latent_h = t->latent_w = t->resolution / t->factor;
  return VKP_OK;
}
