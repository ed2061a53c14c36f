// vae_train_graph.c — the VAE trainer's loss graph (encode, posterior sample, decode, the
// reconstruction and KL terms, backward and optimizer when training) and one micro-batch.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vae_train_internal.h"
#include "vkp_ops.h"
#include "vkp_rng.h"

enum { STREAM_BATCH = 0x7ae };

vkp_status vkp_vtrain_build_graph(vkp_vtrainer *t, vkp_vae_graph *vg, int batch, bool training, vkp_error *err) {
  const int64_t B = batch, R = t->resolution;
  vg->batch = batch;
  VKP_TRY(vkp_graph_new(t->ctx, &vg->g));
  vkp_graph *g = vg->g;
  vg->x = vkp_tensor_input(g, "pixels", VKP_DTYPE_F32, 4, (int64_t[]){B, 3, R, R});
  vg->noise = vkp_tensor_input(g, "noise", VKP_DTYPE_F32, 4, (int64_t[]){B, t->latent_c, t->latent_h, t->latent_w});
  t->vae->model->training = training;
  vkp_model *m = t->vae->model;
  vkp_tensor **enc = calloc((size_t)m->nparams + 1, sizeof *enc);
  vkp_status st = enc ? vkp_vae_encode(t->vae, g, vg->x, &vg->mean, &vg->logvar) : VKP_ERR_OOM;
  // encode and decode each begin the graph anew (vkp_model_begin_graph forgets every parameter's
  // tensor): the encoder's tensors are kept across decode, or backward would reach new, unused
  // ones and the encoder would get no gradient.
  for (int i = 0; !st && i < m->nparams; i++) enc[i] = m->params[i]->t;
  if (!st) st = vkp_vae_decode(t->vae, g, vkp_vae_sample(g, vg->mean, vg->logvar, vg->noise), &vg->recon);
  for (int i = 0; !st && i < m->nparams; i++)
    if (!m->params[i]->t) m->params[i]->t = enc[i];
  free(enc);
  if (!st) {
    vkp_tensor *d = vkp_sub(g, vg->recon, vg->x);
    // |d| = relu(d) + relu(−d): exact, with torch's zero subgradient at 0.
    vg->rec = t->l1 ? vkp_mean(g, vkp_add(g, vkp_relu(g, d), vkp_relu(g, vkp_scale(g, d, -1)))) : vkp_mean(g, vkp_sqr(g, d));
    // ½ Σ (μ² + σ² − 1 − log σ²) / B = (½/B) Σ (μ² + e^lv − lv) − ½ c·h·w
    vkp_tensor *s = vkp_sum(g, vkp_sub(g, vkp_add(g, vkp_sqr(g, vg->mean), vkp_exp(g, vg->logvar)), vg->logvar));
    vg->kl = vkp_affine(g, s, 0.5f / (float)B, -0.5f * (float)vkp_vtrain_latent_item(t));
    vg->loss = vkp_add(g, vg->rec, vkp_scale(g, vg->kl, (float)t->kl_weight));
    vkp_tensor *outs[] = {vg->loss, vg->rec, vg->kl, vg->mean, vg->logvar, vg->recon};
    for (size_t i = 0; i < sizeof outs / sizeof *outs; i++) vkp_graph_output(g, outs[i]);
    st = vkp_graph_status(g);
  }
  if (!st && training) {
    int nt = t->o.nt;
    vkp_tensor **p = calloc((size_t)nt, sizeof *p), **grads = calloc((size_t)nt, sizeof *grads);
    if (!p || !grads) st = VKP_ERR_OOM;
    for (int i = 0; i < nt && !st; i++) p[i] = vkp_param_tensor(t->vae->model, t->o.tp[i]);
    if (!st) st = vkp_graph_backward(g, vg->loss, p, nt, grads);
    if (!st) vg->gnorm = vkp_optimizer_append(t->o.opt, g, grads);
    free(p), free(grads);
  }
  if (!st) st = vkp_graph_compile(g);
  if (st) return vkp_error_set(err, st, "building the VAE %s graph: %s", training ? "training" : "evaluation",
                               vkp_graph_status(g) ? vkp_graph_error(g) : vkp_ctx_error(t->ctx));
  return VKP_OK;
}

vkp_status vkp_vtrain_run_graph(vkp_vtrainer *t, vkp_vae_graph *vg, bool outputs, double *loss, double *rec, double *kl,
                                vkp_error *err) {
  const size_t B = (size_t)vg->batch, pi = vkp_vtrain_pixels_item(t), li = vkp_vtrain_latent_item(t);
  vkp_status st = vkp_graph_set_input(vg->g, vg->x, t->x, B * pi * sizeof(float));
  if (!st) st = vkp_graph_set_input(vg->g, vg->noise, t->noise, B * li * sizeof(float));
  if (!st) st = vkp_graph_run(vg->g);
  float v[3] = {0};
  if (!st) st = vkp_graph_read(vg->g, vg->loss, &v[0], sizeof(float));
  if (!st) st = vkp_graph_read(vg->g, vg->rec, &v[1], sizeof(float));
  if (!st) st = vkp_graph_read(vg->g, vg->kl, &v[2], sizeof(float));
  if (!st && outputs) st = vkp_graph_read(vg->g, vg->mean, t->mean, B * li * sizeof(float));
  if (!st && outputs) st = vkp_graph_read(vg->g, vg->logvar, t->logvar, B * li * sizeof(float));
  if (!st && outputs) st = vkp_graph_read(vg->g, vg->recon, t->recon, B * pi * sizeof(float));
  if (st) return vkp_error_set(err, st, "running the VAE: %s", vkp_ctx_error(t->ctx));
  *loss = v[0], *rec = v[1], *kl = v[2];
  return VKP_OK;
}

// Image s of the batch: its pixels (flipped with probability data.hflip) and ε, from its own stream.
static void prepare_sample(vkp_vtrainer *t, const vkp_batch *b, int s) {
  const size_t pi = vkp_vtrain_pixels_item(t), li = vkp_vtrain_latent_item(t), R = (size_t)t->resolution;
  vkp_rng r = vkp_rng_new(vkp_rng_key(t->k.seed ^ STREAM_BATCH, (uint64_t)t->micro, (uint64_t)s));
  const float *src = t->px_train + b->indices[s] * pi;
  float *dst = t->x + (size_t)s * pi;
  bool flip = t->hflip > 0 && vkp_rng_uniform(&r) < t->hflip;
  for (size_t row = 0; row < 3 * R; row++)
    for (size_t col = 0; col < R; col++) dst[row * R + col] = src[row * R + (flip ? R - 1 - col : col)];
  vkp_rng_randn(&r, t->noise + (size_t)s * li, li);
  if (!t->sample_posterior) memset(t->noise + (size_t)s * li, 0, li * sizeof(float));
}

vkp_status vkp_vtrain_micro_step(vkp_vtrainer *t, bool apply, double *loss, double *rec, double *kl, vkp_error *err) {
  vkp_batch b;
  VKP_TRY(vkp_loader_next(t->loader, &b, err));
  for (int s = 0; s < (int)t->k.batch; s++) prepare_sample(t, &b, s);
  vkp_step_scalars sc = {.loss_scale = 1.0f / (float)t->k.accum, .seed = (uint32_t)(t->k.seed * 1000003u + (uint64_t)t->micro)};
  vkp_optimizer_prepare_step(t->o.opt, vkp_lr_at(&t->o.sched, vkp_optimizer_steps(t->o.opt)), apply, &sc);
  if (vkp_graph_set_scalars(t->tg.g, &sc)) return vkp_error_set(err, VKP_ERR_IO, "training step: %s", vkp_ctx_error(t->ctx));
  VKP_TRY(vkp_vtrain_run_graph(t, &t->tg, t->recording, loss, rec, kl, err));
  if (!isfinite(*loss))
    return vkp_error_set(err, VKP_ERR_INVALID, "training diverged at step %lld (loss %g): lower train.lr", (long long)t->step, *loss);
  if (t->recording)
    t->rec = (vkp_vae_batch_record){.n = (int)t->k.batch, .channels = 3, .height = t->resolution, .width = t->resolution,
                                    .latent_c = t->latent_c, .latent_h = t->latent_h, .latent_w = t->latent_w, .pixels = t->x,
                                    .noise = t->noise, .mean = t->mean, .logvar = t->logvar, .recon = t->recon,
                                    .loss = (float)*loss, .rec = (float)*rec, .kl = (float)*kl, .l1 = t->l1, .kl_weight = t->kl_weight};
  t->micro++;
  return VKP_OK;
}

const float *vkp_vtrain_val_pixels(const vkp_vtrainer *t, size_t j) {
  return (t->val ? t->px_val : t->px_train) + t->val_idx[j] * vkp_vtrain_pixels_item(t);
}
