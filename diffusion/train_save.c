// train_save.c — the adapter files of a diffusion run (final and in checkpoints): the HF PEFT
// folder (always in checkpoints: resume reads it), a kohya file with the training metadata kohya's
// train_network.py writes (ss_* keys, every value a string), and the diffusers/PEFT layout file,
// each where the method has a place in the format; with train.ema_decay the same files of the EMA
// weights beside them (names ending in _ema) and, in checkpoints, the EMA state (train_ema.c).
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"
#include "train_pipeline.h"
#include "vkp_adapter_format.h"
#include "vkp_config.h"

#define META_MAX 64

typedef struct meta {
  const char *kv[2 * META_MAX + 1];
  char val[META_MAX][160];
  int n;
} meta;

static void put(meta *m, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(meta *m, const char *key, const char *fmt, ...) {
  if (m->n >= META_MAX) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m->val[m->n], sizeof m->val[m->n], fmt, ap);
  va_end(ap);
  m->kv[2 * m->n] = key, m->kv[2 * m->n + 1] = m->val[m->n];
  m->n++;
  m->kv[2 * m->n] = NULL;
}

static const char *py_bool(bool b) { return b ? "True" : "False"; }

// A value held elsewhere (the trainer's JSON strings, longer than val's slots).
static void put_ref(meta *m, const char *key, const char *value) {
  if (m->n >= META_MAX) return;
  m->kv[2 * m->n] = key, m->kv[2 * m->n + 1] = value ? value : "{}";
  m->n++;
  m->kv[2 * m->n] = NULL;
}

// kohya's dataset keys: buckets, regularisation images, folders and tag counts (train_buckets.c, train_reg.c).
static void dataset_metadata(const vkp_dtrainer *t, meta *m) {
  const vkp_dtrain_data_extra *x = &t->dx;
  char f[40];
  put(m, "ss_num_reg_images", "%lld", (long long)x->num_reg_images);
  vkp_dtrain_py_float(x->prior_loss_weight, f, sizeof f);
  put(m, "ss_prior_loss_weight", "%s", f);
  put(m, "ss_enable_bucket", "%s", py_bool(x->buckets));
  put(m, "ss_bucket_no_upscale", "False");
  if (x->buckets) put(m, "ss_min_bucket_reso", "%ld", x->min_reso), put(m, "ss_max_bucket_reso", "%ld", x->max_reso);
  else put(m, "ss_min_bucket_reso", "None"), put(m, "ss_max_bucket_reso", "None");
  put_ref(m, "ss_bucket_info", x->buckets ? x->bucket_info : "null");
  put_ref(m, "ss_dataset_dirs", x->dataset_dirs);
  put_ref(m, "ss_reg_dataset_dirs", x->reg_dataset_dirs);
  put_ref(m, "ss_tag_frequency", x->tag_frequency);
}

// kohya's training metadata (train_network.py's `metadata` dict, as str() of each value).
static void kohya_metadata(const vkp_dtrainer *t, meta *m) {
  const cJSON *c = t->cfg;
  const vkp_train_keys *k = &t->k;
  const char *model = vkp_config_string(c, "model.pretrained"), *slash = strrchr(model, '/');
  const char *version = vkp_config_string(c, "model.base_model_version");
  int64_t per_epoch = vkp_dtrain_steps_per_epoch(t);
  size_t epoch_samples = vkp_dtrain_epoch_samples(t);
  int64_t updates = per_epoch / k->accum;
  const char *opt = vkp_config_string(c, "train.optimizer");
  m->n = 0, m->kv[0] = NULL;
  put(m, "ss_output_name", "%s", vkp_config_string(c, "save.name"));
  put(m, "ss_sd_model_name", "%s", slash && slash[1] ? slash + 1 : model);
  put(m, "ss_learning_rate", "%g", k->lr);
  put(m, "ss_unet_lr", "%g", (double)t->o.sched.base_lr);   // train.unet_lr
  double te_lr = vkp_dtrain_te_base_lr(t);                    // < 0: the text encoder is frozen
  if (te_lr >= 0) put(m, "ss_text_encoder_lr", "%g", te_lr);
  else put(m, "ss_text_encoder_lr", "None");
  put(m, "ss_network_train_unet_only", "%s", py_bool(te_lr < 0));
  put(m, "ss_num_train_images", "%lld", (long long)t->dx.num_train_images);   // repeats included, regularisation images not, as kohya counts
  dataset_metadata(t, m);
  put(m, "ss_num_batches_per_epoch", "%lld", (long long)per_epoch);
  put(m, "ss_num_epochs", "%lld", (long long)(updates > 0 ? (t->o.total_steps + updates - 1) / updates : 1));
  put(m, "ss_epoch", "%lld", (long long)(epoch_samples ? t->micro * k->batch / (int64_t)epoch_samples : 0));
  put(m, "ss_steps", "%lld", (long long)t->step);
  put(m, "ss_batch_size_per_device", "%ld", k->batch);
  put(m, "ss_total_batch_size", "%ld", k->batch * k->accum);
  put(m, "ss_gradient_checkpointing", "%s", py_bool(vkp_config_bool(c, "train.gradient_checkpointing")));
  put(m, "ss_gradient_accumulation_steps", "%ld", k->accum);
  put(m, "ss_max_train_steps", "%lld", (long long)t->o.total_steps);
  put(m, "ss_lr_warmup_steps", "%lld", (long long)t->o.sched.warmup_steps);
  put(m, "ss_lr_scheduler", "%s", vkp_config_string(c, "train.schedule"));
  put(m, "ss_mixed_precision", "no");
  put(m, "ss_full_fp16", "False");
  put(m, "ss_v2", "%s", py_bool(version && !strncmp(version, "sd_v2", 5)));
  put(m, "ss_v_parameterization", "%s", py_bool(t->v_prediction));
  put(m, "ss_resolution", "(%d, %d)", t->resolution, t->resolution);
  put(m, "ss_clip_skip", "%g", vkp_config_number(c, "model.clip_skip"));
  put(m, "ss_max_token_length", "None");
  put(m, "ss_color_aug", "False");
  put(m, "ss_flip_aug", "%s", py_bool(t->hflip > 0));
  put(m, "ss_random_crop", "%s", py_bool(t->random_crop));
  put(m, "ss_shuffle_caption", "%s", py_bool(t->shuffle_captions));
  put(m, "ss_keep_tokens", "%ld", t->keep_tokens);
  put(m, "ss_caption_dropout_rate", "%g", t->caption_dropout);
  put(m, "ss_cache_latents", "%s", py_bool(t->cache_latents && !t->random_crop));
  put(m, "ss_seed", "%llu", (unsigned long long)k->seed);
  put(m, "ss_noise_offset", "%g", t->noise_offset);
  put(m, "ss_min_snr_gamma", "%g", t->min_snr_gamma);
  put(m, "ss_zero_terminal_snr", "%s", py_bool(vkp_config_bool(c, "train.zero_terminal_snr")));
  put(m, "ss_min_timestep", "%ld", t->t_min);
  put(m, "ss_max_timestep", "%ld", t->t_max);
  put(m, "ss_masked_loss", "%s", py_bool(t->masked_loss));
  put(m, "ss_max_grad_norm", "%g", k->max_grad_norm);
  if (opt && !strcmp(opt, "sgd")) put(m, "ss_optimizer", "torch.optim.sgd.SGD(momentum=%g,weight_decay=%g)", k->momentum, k->weight_decay);
  else put(m, "ss_optimizer", "torch.optim.adamw.AdamW(weight_decay=%g,betas=(%g, %g))", k->weight_decay, k->beta1, k->beta2);
  put(m, "ss_training_comment", "trained with vkpeft");
}

static const char *const FORMAT_NAMES[VKP_DTRAIN_FORMATS] = {"peft", "kohya", "diffusers"};

bool vkp_dtrain_wants(const vkp_dtrainer *t, vkp_dtrain_format fmt) {
  const cJSON *f;
  cJSON_ArrayForEach(f, vkp_config_get(t->cfg, "save.formats")) if (cJSON_IsString(f) && !strcmp(f->valuestring, FORMAT_NAMES[fmt])) return true;
  return false;
}

void vkp_dtrain_adapter_name(const vkp_dtrainer *t, vkp_dtrain_format f, int k, bool ema, char *out, size_t cap) {
  char sfx[40] = "";
  if (vkp_peft_count(t->unet->model) > 1) snprintf(sfx, sizeof sfx, "_%d", k);
  if (ema) strcat(sfx, "_ema");
  if (f == VKP_DTRAIN_PEFT) snprintf(out, cap, "adapter%s", sfx);   // vkp_trainer_adapter_dir's names (resume reads them)
  else if (f == VKP_DTRAIN_KOHYA) snprintf(out, cap, "%s%s.safetensors", vkp_config_string(t->cfg, "save.name"), sfx);
  else snprintf(out, cap, "pytorch_lora_weights%s.safetensors", sfx);
}

// One single-file format; a method the format has no place for is skipped (said once, at the end).
static vkp_status write_file(vkp_dtrainer *t, vkp_adapter *a, const char *path, const char *format, const vkp_adapter_io *io,
                             bool say, vkp_error *err) {
  vkp_status st = vkp_adapter_write(t->unet->model, a, path, format, io);
  if (st == VKP_ERR_UNSUPPORTED) {
    if (say && !t->quiet) printf("vkpeft train: not saved as %s: %s\n", format, vkp_ctx_error(t->ctx));
    return VKP_OK;
  }
  return st ? vkp_error_set(err, st, "%s", vkp_ctx_error(t->ctx)) : VKP_OK;
}

// Every adapter in every format wanted, as the parameters hold them now (the trained values, or
// the EMA swapped in: `ema` names the files).
static vkp_status write_set(vkp_dtrainer *t, const char *dir, bool final, bool ema, vkp_error *err) {
  vkp_model *m = t->unet->model;
  meta md;
  kohya_metadata(t, &md);
  vkp_adapter_io io = {.base_model_version = vkp_config_string(t->cfg, "model.base_model_version"), .metadata = md.kv};
  char path[VKP_CHECKPOINT_PATH_MAX + 160], name[160];
  for (int k = 0; k < vkp_peft_count(m); k++) {
    vkp_adapter *a = vkp_peft_get(m, k);
    for (int f = 0; f < VKP_DTRAIN_FORMATS; f++) {
      if (!vkp_dtrain_wants(t, (vkp_dtrain_format)f) && (final || f != VKP_DTRAIN_PEFT)) continue;
      vkp_dtrain_adapter_name(t, (vkp_dtrain_format)f, k, ema, name, sizeof name);
      snprintf(path, sizeof path, "%s/%s", dir, name);
      if (f == VKP_DTRAIN_PEFT) {
        if (vkp_peft_save(m, a, path)) return vkp_error_set(err, VKP_ERR_IO, "%s", vkp_ctx_error(t->ctx));
      } else {
        VKP_TRY(write_file(t, a, path, FORMAT_NAMES[f], f == VKP_DTRAIN_KOHYA ? &io : NULL, final && !ema, err));
      }
      VKP_TRY(vkp_dtrain_te_add_part(t, k, FORMAT_NAMES[f], path, final && !ema, err));   // text-encoder adapter k
    }
  }
  return VKP_OK;
}

vkp_status vkp_dtrain_save_adapters(vkp_dtrainer *t, const char *dir, bool final, vkp_error *err) {
  VKP_TRY(write_set(t, dir, final, false, err));
  if (!final) VKP_TRY(vkp_dtrain_te_save_state(t, dir, err));   // the text encoder's optimizer (train_text_encoder.c)
  if (final && vkp_dtrain_new_pipeline(t)) VKP_TRY(vkp_dtrain_save_pipeline(t, dir, err));   // train_pipeline.c
  if (t->ema.decay <= 0) return VKP_OK;
  if (!final) VKP_TRY(vkp_dtrain_ema_save_state(t, dir, err));
  vkp_status st = vkp_dtrain_ema_swap(t, true, err);
  if (!st) st = write_set(t, dir, final, true, err);
  vkp_status back = vkp_dtrain_ema_swap(t, false, st ? NULL : err);
  return st ? st : back;
}
