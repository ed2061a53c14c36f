// train_loop.c — the diffusion trainer's life: setup (config or resume), steps of grad_accum
// micro-batches through the recorded training graph, the validation loss at fixed (image,
// timestep, noise) triples, metrics, checkpoints, the final files. The step loop's cadence, log
// window and progress bar are core/train's vkp_trainer_loop; this file supplies its callbacks.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"
#include "vkp_config.h"
#include "vkp_rng.h"

enum { STREAM_VAL = 0x7a1 };

static size_t latent_item(const vkp_dtrainer *t) { return (size_t)t->latent_c * t->latent_h * t->latent_w; }

static vkp_status alloc_host(vkp_dtrainer *t, vkp_error *err) {
  size_t B = (size_t)(t->k.batch > t->k.eval_batch ? t->k.batch : t->k.eval_batch), item = latent_item(t);
  size_t mi = (size_t)t->latent_h * t->latent_w, R2 = (size_t)t->resolution * t->resolution;
  float **f[] = {&t->x0, &t->noise, &t->noisy, &t->target, &t->weight, &t->pred};
  for (size_t i = 0; i < sizeof f / sizeof *f; i++) *f[i] = calloc(B * item, sizeof(float));
  t->states = calloc(B * (size_t)t->tokens * t->text_dim, sizeof(float));
  t->mask = calloc(B * mi, sizeof(float));
  t->snr_w = calloc(B, sizeof(float));
  t->tsteps = calloc(B, sizeof(int));
  t->images = calloc(B, sizeof(size_t));
  t->enc_cap = (size_t)t->k.batch > VKP_DTRAIN_ENCODE_BATCH ? (size_t)t->k.batch : VKP_DTRAIN_ENCODE_BATCH;
  t->pix = calloc(t->enc_cap * 4 * R2, sizeof(float));
  t->scratch = calloc(t->enc_cap * (2 * item + mi), sizeof(float));
  for (size_t i = 0; i < sizeof f / sizeof *f; i++)
    if (!*f[i]) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  if (!t->states || !t->mask || !t->snr_w || !t->tsteps || !t->images || !t->pix || !t->scratch) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  return VKP_OK;
}

static vkp_status setup(vkp_dtrainer *t, const cJSON *cfg_in, const char *resume_dir, vkp_error *err) {
  char path[1500];
  VKP_TRY(vkp_trainer_open_run(cfg_in, resume_dir, vkp_diffusion_train_config, t->quiet, &t->run, err));
  t->cfg = t->run.cfg, t->dir = t->run.dir, t->ck = t->run.ck, t->resumed = resume_dir != NULL;
  VKP_TRY(vkp_dtrain_read_keys(t, err));
  VKP_TRY(vkp_dtrain_ema_keys(t, err));
  VKP_TRY(vkp_dtrain_load_models(t, err));
  VKP_TRY(vkp_dtrain_data_keys(t, err));   // data.buckets, train.prior_loss_weight (train_buckets.c)
  vkp_model *m = t->unet->model;
  if (resume_dir) VKP_TRY(vkp_trainer_load_adapters(m, t->ck->dir, cJSON_GetArraySize(vkp_config_get(t->cfg, "peft")), err));
  else VKP_TRY(vkp_trainer_attach(m, vkp_config_get(t->cfg, "peft"), t->k.seed, NULL, NULL, err));
  VKP_TRY(vkp_dtrain_te_attach(t, err));   // peft_text_encoder (train_text_encoder.c)
  VKP_TRY(vkp_trainer_memory_options(m, t->cfg, err));
  VKP_TRY(alloc_host(t, err));
  VKP_TRY(vkp_dtrain_load_data(t, err));
  int variants = !t->random_crop && t->hflip > 0 ? 2 : 1;
  if (t->dx.buckets) VKP_TRY(vkp_dtrain_buckets_latents(t, variants, err));   // per bucket; then data.resolution²
  else VKP_TRY(vkp_dtrain_latents(t, t->train, NULL, vkp_pairs_count(t->train), variants, &t->train_lat, err));
  if (t->val || t->dx.buckets) VKP_TRY(vkp_dtrain_latents(t, t->val ? t->val : t->train, t->val_idx, t->n_val, 1, &t->val_lat, err));
  if (!t->random_crop) {   // the encoder is not needed any more
    vkp_graph_free(t->enc_g);
    t->enc_g = NULL;
    free(t->enc_in), free(t->enc_mu), free(t->enc_lv);
    t->enc_in = t->enc_mu = t->enc_lv = NULL;
  }
  VKP_TRY(vkp_trainer_optim_new(t->ctx, t->cfg, &t->k, m, vkp_dtrain_steps_per_epoch(t), t->n_train, "images", &t->o, err));
  if (resume_dir) {
    t->step = t->ck->state.step, t->micro = t->ck->state.micro_step;
    VKP_TRY(vkp_checkpoint_load_optimizer(t->ck, t->ctx, t->o.opt, err));
  }
  VKP_TRY(vkp_dtrain_te_optim(t, err));   // learning rates per group, the text encoder's optimizer
  VKP_TRY(vkp_dtrain_ema_start(t, err));
  VKP_TRY(vkp_trainer_write_config(&t->run, err));
  VKP_TRY(vkp_dtrain_write_bucket_info(t, err));   // buckets.json (data.buckets)
  if (!t->dx.buckets) VKP_TRY(vkp_dtrain_build_graph(t, &t->tg, (int)t->k.batch, true, err));   // buckets: built when first drawn
  snprintf(path, sizeof path, "%s/metrics.jsonl", t->dir);
  return vkp_metrics_open(path, resume_dir ? t->step : VKP_METRICS_NEW_RUN, &t->mw, err);
}

vkp_status vkp_diffusion_trainer_new(vkp_ctx *ctx, const cJSON *cfg, const char *resume_dir, bool quiet,
                                     vkp_diffusion_trainer **out, vkp_error *err) {
  *out = NULL;
  vkp_dtrainer *t = calloc(1, sizeof *t);
  if (!t) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  t->ctx = ctx, t->quiet = quiet, t->last_val = NAN, t->last_loss = NAN, t->last_wloss = NAN;
  vkp_status st = setup(t, cfg, resume_dir, err);
  if (st) vkp_diffusion_trainer_free(t), t = NULL;   // nothing half-built is handed out
  *out = t;
  return st;
}

void vkp_diffusion_trainer_free(vkp_diffusion_trainer *t) {
  if (!t) return;
  if (t->mw) vkp_metrics_close(t->mw, NULL);
  vkp_graph_free(t->tg.g);
  vkp_graph_free(t->vg.g);
  vkp_graph_free(t->enc_g);
  vkp_dtrain_data_extra_free(t);   // the buckets' graphs and loaders
  vkp_dtrain_te_free(t->tet);   // its update graph before the text encoder
  vkp_trainer_optim_free(&t->o);
  vkp_dtrain_ema_free(&t->ema);
  vkp_loader_free(t->loader);
  vkp_latent_store_free(&t->train_lat);
  vkp_latent_store_free(&t->val_lat);
  vkp_dtrain_text_cache_free(t->tcache);
  vkp_pairs_free(t->train);
  vkp_pairs_free(t->val);
  free(t->train_idx), free(t->val_idx);
  if (t->parts_in_pipeline) vkp_pipeline_free(t->pipe);
  else vkp_text_encoder_free(t->te), vkp_vae_free(t->vae), vkp_unet_free(t->unet);
  free(t->base_rgb);
  vkp_scheduler_free(t->sched);
  float *f[] = {t->x0, t->noise, t->noisy, t->target, t->weight, t->pred, t->states, t->mask, t->snr_w, t->pix, t->scratch, t->forced_noise, t->enc_in, t->enc_mu, t->enc_lv};
  for (size_t i = 0; i < sizeof f / sizeof *f; i++) free(f[i]);
  free(t->tsteps), free(t->images), free(t->forced_t);
  vkp_trainer_run_clear(&t->run);
  free(t);
}

void vkp_diffusion_trainer_record(vkp_diffusion_trainer *t, bool on) { t->recording = on; }
const vkp_diffusion_batch_record *vkp_diffusion_trainer_last_batch(const vkp_diffusion_trainer *t) { return &t->rec; }

void vkp_diffusion_trainer_force(vkp_diffusion_trainer *t, const float *noise, const int *timesteps) {
  size_t n = (size_t)t->k.batch, item = latent_item(t);
  free(t->forced_noise), free(t->forced_t);
  t->forced_noise = noise ? malloc(n * item * sizeof(float)) : NULL;
  t->forced_t = timesteps ? malloc(n * sizeof(int)) : NULL;
  if (t->forced_noise) memcpy(t->forced_noise, noise, n * item * sizeof(float));
  if (t->forced_t) memcpy(t->forced_t, timesteps, n * sizeof(int));
}

void vkp_diffusion_trainer_cache_counts(const vkp_diffusion_trainer *t, int64_t *encoded, int64_t *reused) {
  *encoded = t->latents_encoded, *reused = t->latents_reused;
}

// ---- a step -------------------------------------------------------------------------------------

vkp_status vkp_diffusion_trainer_step(vkp_diffusion_trainer *t, double *loss, vkp_error *err) {
  double wl = 0, ml = 0;
  float lr = 0;
  t->step_images = t->k.batch * t->k.accum;   // less the padding of bucket batches (train_objective.c)
  for (long k = 0; k < t->k.accum; k++) {
    double l, m;
    VKP_TRY(vkp_dtrain_micro_step(t, k + 1 == t->k.accum, &lr, &l, &m, err));
    wl += l / (double)t->k.accum, ml += m / (double)t->k.accum;
  }
  VKP_TRY(vkp_dtrain_te_step(t, err));   // the text encoder's group, with its learning rate
  t->step++;
  VKP_TRY(vkp_dtrain_ema_update(t, err));
  t->last_loss = ml, t->last_wloss = wl;
  *loss = wl;
  return VKP_OK;
}

// ---- validation -----------------------------------------------------------------------------------

// Validation sample j into slot s of the host arrays: posterior mean (no sampling), fixed noise,
// timesteps spread evenly over [min, max), the first caption with the trigger.
static vkp_status val_sample(vkp_dtrainer *t, size_t j, int s, vkp_error *err) {
  const vkp_pairs *p = t->val ? t->val : t->train;
  bool own = t->val || t->dx.buckets;   // validation latents of their own (buckets: data.resolution² ones)
  const vkp_latent_store *ls = own ? &t->val_lat : &t->train_lat;
  size_t img = t->val_idx[j], slot = own ? j : img, item = latent_item(t);
  const float *mean = ls->mean + slot * (size_t)ls->variants * ls->item;
  const vkp_vae_config *vc = &t->vae->cfg;
  float shift = vc->has_shift_factor ? vc->shift_factor : 0;
  for (size_t i = 0; i < item; i++) t->x0[s * item + i] = (mean[i] - shift) * vc->scaling_factor;
  vkp_rng r = vkp_rng_new(vkp_rng_key(t->k.seed ^ STREAM_VAL, (uint64_t)j, 0));
  vkp_rng_randn(&r, t->noise + s * item, item);
  t->tsteps[s] = (int)(t->t_min + (int64_t)((2 * j + 1) * (size_t)(t->t_max - t->t_min)) / (int64_t)(2 * t->n_val));
  char *text = vkp_dtrain_caption(t, vkp_pairs_caption(p, img, 0), 0, false, err);
  if (!text) return VKP_ERR_OOM;
  vkp_status st = vkp_dtrain_text_slot(t, text, s, err);
  free(text);
  return st;
}

vkp_status vkp_diffusion_trainer_val_loss(vkp_diffusion_trainer *t, double *loss, vkp_error *err) {
  *loss = NAN;
  if (t->n_val == 0) return VKP_OK;
  if (t->dx.buckets) vkp_dtrain_shape(t, t->resolution, t->resolution, false);
  int eb = (int)(t->n_val < (size_t)t->k.eval_batch ? t->n_val : (size_t)t->k.eval_batch);
  if (!t->vg.g) VKP_TRY(vkp_dtrain_build_graph(t, &t->vg, eb, false, err));
  double sum = 0;
  for (size_t j0 = 0; j0 < t->n_val; j0 += (size_t)eb) {
    int n = (int)(t->n_val - j0 < (size_t)eb ? t->n_val - j0 : (size_t)eb);
    for (int s = 0; s < n; s++) VKP_TRY(val_sample(t, j0 + (size_t)s, s, err));
    vkp_dtrain_objective(t, n, eb, false, false, NULL, (double)t->n_val * (double)latent_item(t));
    double l, m;
    VKP_TRY(vkp_dtrain_run_graph(t, &t->vg, &l, &m, err));
    sum += l;
  }
  *loss = sum;
  return VKP_OK;
}

// ---- the step loop's callbacks (vkp_trainer_loop) ------------------------------------------------

static vkp_status loop_step(void *user, vkp_trainer_step_out *o, vkp_error *err) {
  vkp_dtrainer *t = user;
  VKP_TRY(vkp_diffusion_trainer_step(t, &o->loss, err));
  o->window[0] = t->last_loss, o->window[1] = t->last_wloss;   // loss, loss_weighted
  o->images = t->step_images;
  return VKP_OK;
}

static vkp_status evaluate(void *user, vkp_error *err) {
  vkp_dtrainer *t = user;
  double vl;
  VKP_TRY(vkp_diffusion_trainer_val_loss(t, &vl, err));
  if (isnan(vl)) return VKP_OK;
  t->last_val = vl;
  vkp_metric m[1] = {{"val_loss", vl}};
  VKP_TRY(vkp_metrics_write(t->mw, t->step, m, 1, err));
  vkp_progress_print(t->loop.bar, "step %lld: validation loss %.5f (%zu images at fixed timesteps and noise)", (long long)t->step, vl, t->n_val);
  return VKP_OK;
}

static vkp_status sample(void *user, vkp_error *err) { return vkp_dtrain_sample_grid(user, err); }

static int log_fields(void *user, const vkp_trainer_window *w, vkp_metric *m) {
  vkp_dtrainer *t = user;
  float gn = 0;
  vkp_graph_read(t->tg.g, t->tg.gnorm, &gn, sizeof gn);
  size_t es = vkp_dtrain_epoch_samples(t);
  const vkp_metric f[] = {{"epoch", (double)t->micro * (double)t->k.batch / (double)(es ? es : 1)},
                          {"loss", w->mean[0]},
                          {"loss_weighted", w->mean[1]},
                          {"lr", vkp_lr_at(&t->o.sched, t->step - 1)},
                          {"grad_norm", gn},
                          {"images_per_s", w->images_per_s},
                          {"device_mb", (double)vkp_ctx_memory_in_use(t->ctx) / 1048576.0},
                          {"seconds", w->seconds}};
  int nm = (int)(sizeof f / sizeof *f);
  memcpy(m, f, sizeof f);
  double te_lr, te_gn;
  if (vkp_dtrain_te_lr(t, &te_lr, &te_gn)) m[nm++] = (vkp_metric){"lr_text_encoder", te_lr}, m[nm++] = (vkp_metric){"grad_norm_text_encoder", te_gn};
  return nm + vkp_dtrain_reg_metrics(t, m + nm);   // reg_share, loss_reg (data.reg)
}

static vkp_status save_params(void *user, const char *dir, vkp_error *err) { return vkp_dtrain_save_adapters(user, dir, false, err); }

static vkp_status checkpoint(void *user, vkp_error *err) {
  vkp_dtrainer *t = user;
  vkp_train_state s = {.step = t->step, .micro_step = t->micro, .best_metric = -1, .best_step = -1};
  vkp_dtrain_tell(t, &s.loader_epoch, &s.loader_step);
  vkp_trainer_ckpt_opts o = {.run_dir = t->dir, .keep_last = (int)t->k.keep_last, .ctx = t->ctx, .opt = t->o.opt,
                             .model = t->unet->model, .task = "diffusion", .save_params = save_params, .user = t};
  VKP_TRY(vkp_trainer_checkpoint_save(&o, &s, err));
  VKP_TRY(vkp_metrics_sync(t->mw, err));
  return vkp_dtrain_write_report(t, false, err);
}

vkp_status vkp_diffusion_trainer_run(vkp_diffusion_trainer *t, vkp_diffusion_train_summary *s, vkp_error *err) {
  *s = (vkp_diffusion_train_summary){.final_loss = NAN, .final_loss_weighted = NAN, .val_loss = NAN};
  vkp_peft_report rep = vkp_peft_get_report(t->unet->model);
  if (t->tet) {   // the text encoder's parameters count too (all of them: it is part of the model trained)
    vkp_peft_report tr = vkp_peft_get_report(vkp_text_encoder_clip(t->te)->model);
    rep.trainable_params += tr.trainable_params, rep.total_params += tr.total_params;
  }
  if (!t->quiet) {
    printf("vkpeft train: %s, diffusion, %zu training images (%lld latents encoded, %lld from the cache), %zu validation; "
           "%lld trainable of %lld parameters (%.3f%%); %lld steps%s\n",
           vkp_ctx_info(t->ctx)->name, t->n_train, (long long)t->latents_encoded, (long long)t->latents_reused, t->n_val,
           (long long)rep.trainable_params, (long long)rep.total_params,
           100.0 * (double)rep.trainable_params / (double)rep.total_params, (long long)t->o.total_steps, t->resumed ? " (resumed)" : "");
  }
  t->loop = (vkp_trainer_loop){.ops = {.user = t, .step = loop_step, .log_fields = log_fields, .evaluate = evaluate,
                                       .sample = sample, .checkpoint = checkpoint},
                               .k = &t->k, .step = &t->step, .total_steps = t->o.total_steps,
                               .sample_every = t->sample_every, .quiet = t->quiet, .mw = t->mw};
  vkp_status st = vkp_trainer_loop_run(&t->loop, err);
  double secs, ips;
  vkp_trainer_loop_rate(&t->loop, &secs, &ips);
  bool final = !st && t->step >= t->o.total_steps;
  if (final) st = vkp_dtrain_save_adapters(t, t->dir, true, err);
  if (!st) st = vkp_dtrain_write_report(t, final, err);
  *s = (vkp_diffusion_train_summary){.steps = t->step, .final_loss = t->last_loss, .final_loss_weighted = t->last_wloss,
                                     .val_loss = t->last_val, .seconds = secs, .images_per_s = ips,
                                     .latents_encoded = t->latents_encoded, .latents_reused = t->latents_reused,
                                     .trainable_params = rep.trainable_params, .total_params = rep.total_params,
                                     .peak_device_bytes = vkp_ctx_memory_peak(t->ctx),
                                     .arena_bytes = vkp_dtrain_arena_bytes(t)};
  snprintf(s->run_dir, sizeof s->run_dir, "%s", t->dir);
  vkp_status cst = vkp_metrics_close(t->mw, st ? NULL : err);
  t->mw = NULL;
  return st ? st : cst;
}

vkp_status vkp_diffusion_train(vkp_ctx *ctx, const cJSON *cfg, const char *resume_dir, bool quiet,
                               vkp_diffusion_train_summary *summary, vkp_error *err) {
  memset(summary, 0, sizeof *summary);
  vkp_diffusion_trainer *t = NULL;
  VKP_TRY(vkp_diffusion_trainer_new(ctx, cfg, resume_dir, quiet, &t, err));
  vkp_status st = vkp_diffusion_trainer_run(t, summary, err);
  vkp_diffusion_trainer_free(t);
  return st;
}
