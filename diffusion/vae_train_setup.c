// vae_train_setup.c — the VAE trainer's config (defaults, checks), its model (random init from
// model.init or a pretrained vae/ folder, with the `peft` list attached) and its data (every image
// preprocessed once, the validation split, the loader).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_pixels.h"
#include "vae_train_internal.h"
#include "vkp_clip_train.h"
#include "vkp_config.h"

const char vkp_vae_train_defaults[] =
    "{"
    "\"task\": \"vae\","
    "\"output_dir\": \"runs/vae\","
    "\"model\": {\"pretrained\": null, \"init\": {}, \"base_dtype\": \"f32\"},"
    "\"data\": {\"train\": null, \"val\": null, \"val_fraction\": 0.0, \"split_seed\": 0, \"resolution\": 32,"
    "  \"hflip\": 0.0, \"alpha\": \"white\", \"workers\": 0},"
    "\"peft\": [{\"method\": \"full\"}],"
    "\"train\": {\"optimizer\": \"adamw\", \"lr\": 0.0005, \"weight_decay\": 0.0, \"beta1\": 0.9, \"beta2\": 0.999,"
    "  \"momentum\": 0.9, \"max_grad_norm\": 1.0, \"schedule\": \"constant\", \"warmup_steps\": 0, \"warmup_ratio\": 0.0,"
    "  \"batch_size\": 8, \"grad_accum\": 1, \"epochs\": 1, \"max_steps\": 0, \"recon_loss\": \"l1\", \"kl_weight\": 1e-6,"
    "  \"sample_posterior\": true,"
    "  \"eval_every\": 0, \"eval_batch\": 8, \"val_limit\": 8, \"log_every\": 10, \"checkpoint_every\": 0,"
    "  \"keep_last\": 2, \"seed\": 0, \"stop_after\": 0}"
    "}";

vkp_status vkp_vae_train_config(const char *path, const char *const *sets, int nsets, cJSON **out, vkp_error *err) {
  VKP_TRY(vkp_config_resolve(vkp_vae_train_defaults, path, sets, nsets, out, err));
  const char *task = vkp_config_string(*out, "task");
  vkp_status st = VKP_OK;
  if (!task || strcmp(task, "vae")) st = vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'task' must be \"vae\" here", path ? path : "config");
  else if (!cJSON_IsArray(vkp_config_get(*out, "peft")))
    st = vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'peft' must be a list of adapters", path ? path : "config");
  if (st) cJSON_Delete(*out), *out = NULL;
  return st;
}

vkp_status vkp_vtrain_read_keys(vkp_vtrainer *t, vkp_error *err) {
  const cJSON *c = t->cfg;
  long res;
  VKP_TRY(vkp_train_keys_read(c, 1, &t->k, err));
  VKP_TRY(vkp_config_int(c, "data.resolution", 8, 8192, &res, err));
  VKP_TRY(vkp_config_real(c, "data.hflip", 0, 1, &t->hflip, err));
  VKP_TRY(vkp_config_real(c, "train.kl_weight", 0, 1e6, &t->kl_weight, err));
  const char *rl = vkp_config_string(c, "train.recon_loss"), *al = vkp_config_string(c, "data.alpha");
  if (!rl || (strcmp(rl, "l1") && strcmp(rl, "mse")))
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'train.recon_loss' must be \"l1\" or \"mse\"");
  if (!al || (strcmp(al, "white") && strcmp(al, "black") && strcmp(al, "drop")))
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.alpha' must be one of \"white\", \"black\", \"drop\"");
  if (!vkp_config_string(c, "data.train")) return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.train' must name image data");
  t->resolution = (int)res;
  t->l1 = !strcmp(rl, "l1");
  t->sample_posterior = vkp_config_bool(c, "train.sample_posterior");
  t->alpha = !strcmp(al, "white") ? VKP_ALPHA_WHITE : !strcmp(al, "black") ? VKP_ALPHA_BLACK : VKP_ALPHA_DROP;
  return VKP_OK;
}

vkp_status vkp_vtrain_load_model(vkp_vtrainer *t, vkp_error *err) {
  const char *pre = vkp_config_string(t->cfg, "model.pretrained");
  if (pre) {
    VKP_TRY(vkp_vae_load(t->ctx, pre, true, &t->vae, err));
  } else {
    vkp_vae_config vc;
    VKP_TRY(vkp_vae_config_from_json(vkp_config_get(t->cfg, "model.init"), "config model.init", &vc, err));
    VKP_TRY(vkp_vae_new(t->ctx, &vc, t->k.seed, &t->vae, err));
  }
  const vkp_vae_config *vc = &t->vae->cfg;
  int f = 1 << (vc->n_blocks - 1);
  if (t->resolution % f)
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.resolution' (%d) must be a multiple of the VAE's downsampling factor %d",
                         t->resolution, f);
  if (vc->in_channels != 3 || vc->out_channels != 3)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "config: model: the VAE must have 3 input and output channels (RGB images)");
  t->latent_c = vc->latent_channels, t->latent_h = t->latent_w = t->resolution / f;
  vkp_model *m = t->vae->model;
  const cJSON *peft = vkp_config_get(t->cfg, "peft");
  if (t->run.ck) VKP_TRY(vkp_trainer_load_adapters(m, t->run.ck->dir, cJSON_GetArraySize(peft), err));
  else VKP_TRY(vkp_trainer_attach(m, peft, t->k.seed, NULL, NULL, err));
  return vkp_trainer_memory_options(m, t->cfg, err);
}

// Every image of p (RGB, [-1, 1]) into a new (count, 3, R, R) array.
static vkp_status preprocess(const vkp_vtrainer *t, const vkp_pairs *p, float **out, vkp_error *err) {
  size_t n = vkp_pairs_count(p), item = vkp_vtrain_pixels_item(t), R2 = item / 3;
  float *px = malloc(n * item * sizeof *px), *tmp = malloc(4 * R2 * sizeof *tmp);
  vkp_status st = px && tmp ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (size_t i = 0; i < n && !st; i++) {
    st = vkp_diffusion_pixels(p, i, t->resolution, t->alpha, tmp, err);
    if (!st) memcpy(px + i * item, tmp, item * sizeof *px);
  }
  free(tmp);
  if (st) free(px), px = NULL;
  *out = px;
  return st;
}

static vkp_status identity(size_t n, size_t **out, vkp_error *err) {
  if (!(*out = malloc((n ? n : 1) * sizeof **out))) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (size_t i = 0; i < n; i++) (*out)[i] = i;
  return VKP_OK;
}

vkp_status vkp_vtrain_load_data(vkp_vtrainer *t, vkp_error *err) {
  const cJSON *c = t->cfg;
  double frac;
  long split_seed, workers;
  VKP_TRY(vkp_config_real(c, "data.val_fraction", 0, 0.9, &frac, err));
  VKP_TRY(vkp_config_int(c, "data.split_seed", 0, 1l << 40, &split_seed, err));
  VKP_TRY(vkp_config_int(c, "data.workers", 0, 64, &workers, err));
  VKP_TRY(vkp_clip_load_pairs(vkp_config_string(c, "data.train"), "data.train", 4, t->alpha, &t->train, err));
  size_t n = vkp_pairs_count(t->train);
  if (vkp_config_string(c, "data.val")) {
    VKP_TRY(vkp_clip_load_pairs(vkp_config_string(c, "data.val"), "data.val", 4, t->alpha, &t->val, err));
    t->n_val = vkp_pairs_count(t->val);
    VKP_TRY(preprocess(t, t->val, &t->px_val, err));
  } else if (frac > 0) {
    VKP_TRY(vkp_pairs_split(t->train, frac, (uint64_t)split_seed, &t->train_idx, &t->n_train, &t->val_idx, &t->n_val, err));
  } else {
    t->n_val = n;   // the first val_limit training images
  }
  if (!t->train_idx) VKP_TRY(identity(t->n_train = n, &t->train_idx, err));
  if (!t->val_idx) VKP_TRY(identity(t->n_val, &t->val_idx, err));
  if (t->k.val_limit > 0 && t->n_val > (size_t)t->k.val_limit) t->n_val = (size_t)t->k.val_limit;
  if (t->n_train == 0) return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.train': no training images (data.val_fraction %g)", frac);
  VKP_TRY(preprocess(t, t->train, &t->px_train, err));
  vkp_data_transform tf = {.out_w = 1, .out_h = 1, .out_channels = 4};   // order only: the pixels are above
  vkp_loader_opts lo = {.batch_size = (int)t->k.batch, .shuffle = true, .drop_last = true, .seed = t->k.seed,
                        .n_workers = (int)workers, .indices = t->train_idx, .n_indices = t->n_train};
  if (t->run.ck) lo.start_epoch = t->run.ck->state.loader_epoch, lo.start_step = t->run.ck->state.loader_step;
  VKP_TRY(vkp_pairs_loader_new(t->train, &tf, &lo, &t->loader, err));
  if ((size_t)t->k.batch > vkp_loader_epoch_samples(t->loader))
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'train.batch_size' (%ld) is larger than an epoch of the training set (%zu images)",
                         t->k.batch, vkp_loader_epoch_samples(t->loader));
  return VKP_OK;
}
