// vae_train_loop.c — the VAE trainer's life: setup (config or resume), steps, the validation
// reconstruction loss, metrics, checkpoints, the run. The step loop's cadence, log window and
// progress bar are core/train's vkp_trainer_loop; this file supplies its callbacks.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vae_train_internal.h"
#include "vkp_config.h"

static vkp_status alloc_host(vkp_vtrainer *t, vkp_error *err) {
  size_t B = (size_t)(t->k.batch > t->k.eval_batch ? t->k.batch : t->k.eval_batch);
  size_t pi = vkp_vtrain_pixels_item(t), li = vkp_vtrain_latent_item(t);
  t->x = calloc(B * pi, sizeof(float)), t->recon = calloc(B * pi, sizeof(float));
  t->noise = calloc(B * li, sizeof(float)), t->mean = calloc(B * li, sizeof(float)), t->logvar = calloc(B * li, sizeof(float));
  if (!t->x || !t->recon || !t->noise || !t->mean || !t->logvar) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  return VKP_OK;
}

static vkp_status setup(vkp_vtrainer *t, const cJSON *cfg_in, const char *resume_dir, vkp_error *err) {
  VKP_TRY(vkp_trainer_open_run(cfg_in, resume_dir, vkp_vae_train_config, t->quiet, &t->run, err));
  t->cfg = t->run.cfg, t->dir = t->run.dir, t->resumed = resume_dir != NULL;
  VKP_TRY(vkp_vtrain_read_keys(t, err));
  VKP_TRY(vkp_vtrain_load_model(t, err));
  VKP_TRY(alloc_host(t, err));
  VKP_TRY(vkp_vtrain_load_data(t, err));
  VKP_TRY(vkp_trainer_optim_new(t->ctx, t->cfg, &t->k, t->vae->model, vkp_loader_steps_per_epoch(t->loader), t->n_train, "images",
                                &t->o, err));
  if (t->run.ck) {
    t->step = t->run.ck->state.step, t->micro = t->run.ck->state.micro_step;
    VKP_TRY(vkp_checkpoint_load_optimizer(t->run.ck, t->ctx, t->o.opt, err));
  }
  VKP_TRY(vkp_trainer_write_config(&t->run, err));
  VKP_TRY(vkp_vtrain_build_graph(t, &t->tg, (int)t->k.batch, true, err));
  char path[1500];
  snprintf(path, sizeof path, "%s/metrics.jsonl", t->dir);
  return vkp_metrics_open(path, resume_dir ? t->step : VKP_METRICS_NEW_RUN, &t->mw, err);
}

vkp_status vkp_vae_trainer_new(vkp_ctx *ctx, const cJSON *cfg, const char *resume_dir, bool quiet, vkp_vae_trainer **out,
                               vkp_error *err) {
  *out = NULL;
  vkp_vtrainer *t = calloc(1, sizeof *t);
  if (!t) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  t->ctx = ctx, t->quiet = quiet, t->last_val = t->last_loss = t->last_rec = t->last_kl = NAN;
  vkp_status st = setup(t, cfg, resume_dir, err);
  if (st) vkp_vae_trainer_free(t), t = NULL;
  *out = t;
  return st;
}

void vkp_vae_trainer_free(vkp_vae_trainer *t) {
  if (!t) return;
  if (t->mw) vkp_metrics_close(t->mw, NULL);
  vkp_graph_free(t->tg.g);
  vkp_graph_free(t->eg.g);
  vkp_trainer_optim_free(&t->o);
  vkp_loader_free(t->loader);
  vkp_pairs_free(t->train);
  vkp_pairs_free(t->val);
  vkp_vae_free(t->vae);
  float *f[] = {t->px_train, t->px_val, t->x, t->noise, t->mean, t->logvar, t->recon};
  for (size_t i = 0; i < sizeof f / sizeof *f; i++) free(f[i]);
  free(t->train_idx), free(t->val_idx);
  vkp_trainer_run_clear(&t->run);
  free(t);
}

void vkp_vae_trainer_record(vkp_vae_trainer *t, bool on) { t->recording = on; }
const vkp_vae_batch_record *vkp_vae_trainer_last_batch(const vkp_vae_trainer *t) { return &t->rec; }
vkp_vae *vkp_vae_trainer_model(vkp_vae_trainer *t) { return t->vae; }

vkp_status vkp_vae_trainer_step(vkp_vae_trainer *t, double *loss, vkp_error *err) {
  double sum[3] = {0};
  for (long k = 0; k < t->k.accum; k++) {
    double l, r, kl;
    VKP_TRY(vkp_vtrain_micro_step(t, k + 1 == t->k.accum, &l, &r, &kl, err));
    sum[0] += l / (double)t->k.accum, sum[1] += r / (double)t->k.accum, sum[2] += kl / (double)t->k.accum;
  }
  t->step++;
  t->last_loss = sum[0], t->last_rec = sum[1], t->last_kl = sum[2];
  *loss = sum[0];
  return VKP_OK;
}

vkp_status vkp_vae_trainer_val_rec(vkp_vae_trainer *t, double *out, vkp_error *err) {
  *out = NAN;
  if (t->n_val == 0) return VKP_OK;
  int eb = (int)t->k.eval_batch;
  if (!t->eg.g) VKP_TRY(vkp_vtrain_build_graph(t, &t->eg, eb, false, err));
  const size_t pi = vkp_vtrain_pixels_item(t);
  memset(t->noise, 0, (size_t)eb * vkp_vtrain_latent_item(t) * sizeof(float));   // z = μ
  double sum = 0;
  for (size_t j0 = 0; j0 < t->n_val; j0 += (size_t)eb) {
    size_t n = t->n_val - j0 < (size_t)eb ? t->n_val - j0 : (size_t)eb;
    memset(t->x, 0, (size_t)eb * pi * sizeof(float));
    for (size_t s = 0; s < n; s++) memcpy(t->x + s * pi, vkp_vtrain_val_pixels(t, j0 + s), pi * sizeof(float));
    double l, r, kl;
    VKP_TRY(vkp_vtrain_run_graph(t, &t->eg, true, &l, &r, &kl, err));
    for (size_t i = 0; i < n * pi; i++) {   // the real images' share only (a short last batch is padded)
      double d = (double)t->recon[i] - (double)t->x[i];
      sum += t->l1 ? fabs(d) : d * d;
    }
  }
  *out = sum / ((double)t->n_val * (double)pi);
  return VKP_OK;
}

// ---- the step loop's callbacks (vkp_trainer_loop) ------------------------------------------------

static vkp_status loop_step(void *user, vkp_trainer_step_out *o, vkp_error *err) {
  vkp_vtrainer *t = user;
  VKP_TRY(vkp_vae_trainer_step(t, &o->loss, err));
  o->window[0] = t->last_loss, o->window[1] = t->last_rec, o->window[2] = t->last_kl;
  return VKP_OK;
}

static vkp_status evaluate(void *user, vkp_error *err) {
  vkp_vtrainer *t = user;
  double v;
  VKP_TRY(vkp_vae_trainer_val_rec(t, &v, err));
  if (isnan(v)) return VKP_OK;
  t->last_val = v;
  vkp_metric m[1] = {{"val_rec", v}};
  VKP_TRY(vkp_metrics_write(t->mw, t->step, m, 1, err));
  vkp_progress_print(t->loop.bar, "step %lld: validation reconstruction loss %.5f (%zu images)", (long long)t->step, v, t->n_val);
  return VKP_OK;
}

static int log_fields(void *user, const vkp_trainer_window *w, vkp_metric *m) {
  vkp_vtrainer *t = user;
  float gn = 0;
  vkp_graph_read(t->tg.g, t->tg.gnorm, &gn, sizeof gn);
  size_t es = vkp_loader_epoch_samples(t->loader);
  const vkp_metric f[] = {{"epoch", (double)t->micro * (double)t->k.batch / (double)(es ? es : 1)},
                          {"loss", w->mean[0]},
                          {"rec", w->mean[1]},
                          {"kl", w->mean[2]},
                          {"lr", vkp_lr_at(&t->o.sched, t->step - 1)},
                          {"grad_norm", gn},
                          {"images_per_s", w->images_per_s},
                          {"seconds", w->seconds}};
  memcpy(m, f, sizeof f);
  return (int)(sizeof f / sizeof *f);
}

static vkp_status save_params(void *user, const char *dir, vkp_error *err) {
  vkp_vtrainer *t = user;
  return vkp_trainer_save_adapters(t->vae->model, dir, NULL, NULL, err);
}

static vkp_status checkpoint(void *user, vkp_error *err) {
  vkp_vtrainer *t = user;
  vkp_train_state s = {.step = t->step, .micro_step = t->micro, .best_metric = -1, .best_step = -1};
  vkp_loader_tell(t->loader, &s.loader_epoch, &s.loader_step);
  vkp_trainer_ckpt_opts o = {.run_dir = t->dir, .keep_last = (int)t->k.keep_last, .ctx = t->ctx, .opt = t->o.opt,
                             .model = t->vae->model, .task = "vae", .save_params = save_params, .user = t};
  VKP_TRY(vkp_trainer_checkpoint_save(&o, &s, err));
  return vkp_metrics_sync(t->mw, err);
}

vkp_status vkp_vae_trainer_run(vkp_vae_trainer *t, vkp_vae_train_summary *s, vkp_error *err) {
  *s = (vkp_vae_train_summary){.final_loss = NAN, .final_rec = NAN, .final_kl = NAN, .val_rec = NAN};
  vkp_peft_report rep = vkp_peft_get_report(t->vae->model);
  if (!t->quiet) {
    printf("vkpeft train: %s, vae, %zu training images at %dx%d (latents %dx%dx%d), %zu validation; %lld trainable of %lld "
           "parameters; %lld steps%s\n",
           vkp_ctx_info(t->ctx)->name, t->n_train, t->resolution, t->resolution, t->latent_c, t->latent_h, t->latent_w, t->n_val,
           (long long)rep.trainable_params, (long long)rep.total_params, (long long)t->o.total_steps, t->resumed ? " (resumed)" : "");
  }
  t->loop = (vkp_trainer_loop){.ops = {.user = t, .step = loop_step, .log_fields = log_fields, .evaluate = evaluate,
                                       .checkpoint = checkpoint},
                               .k = &t->k, .step = &t->step, .total_steps = t->o.total_steps, .quiet = t->quiet, .mw = t->mw};
  vkp_status st = vkp_trainer_loop_run(&t->loop, err);
  double secs, ips;
  vkp_trainer_loop_rate(&t->loop, &secs, &ips);
  if (!st && t->step >= t->o.total_steps) st = vkp_vtrain_finish(t, err);
  *s = (vkp_vae_train_summary){.steps = t->step, .final_loss = t->last_loss, .final_rec = t->last_rec, .final_kl = t->last_kl,
                               .val_rec = t->last_val, .scaling_factor = t->scaling, .seconds = secs, .images_per_s = ips,
                               .trainable_params = rep.trainable_params, .total_params = rep.total_params};
  snprintf(s->run_dir, sizeof s->run_dir, "%s", t->dir);
  vkp_status cst = vkp_metrics_close(t->mw, st ? NULL : err);
  t->mw = NULL;
  return st ? st : cst;
}

vkp_status vkp_vae_train(vkp_ctx *ctx, const cJSON *cfg, const char *resume_dir, bool quiet, vkp_vae_train_summary *summary,
                         vkp_error *err) {
  memset(summary, 0, sizeof *summary);
  vkp_vae_trainer *t = NULL;
  VKP_TRY(vkp_vae_trainer_new(ctx, cfg, resume_dir, quiet, &t, err));
  vkp_status st = vkp_vae_trainer_run(t, summary, err);
  vkp_vae_trainer_free(t);
  return st;
}
