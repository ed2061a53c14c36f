// train_objective.c — the diffusion objective: a micro-batch's posterior samples, noise (with the
// noise offset), timesteps, noisy latents and targets (vkp_scheduler's forward process), min-SNR-γ
// weights and the loss mask on the host; the UNet and the weighted MSE in one recorded graph.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"
#include "vkp_ops.h"
#include "vkp_rng.h"

enum { STREAM_SAMPLE = 0x5a17, STREAM_CAPTION = 0xca97 };

// ---- text states, cached per distinct caption when captions are not shuffled -------------------------

struct text_cache {
  size_t cap, n, bytes;
  char **keys;
  float **states;
};

#define TEXT_CACHE_MAX_BYTES ((size_t)256 << 20)

static uint64_t str_hash(const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h;
}

static float *cache_find(const text_cache *c, const char *key, size_t *slot) {
  size_t i = (size_t)str_hash(key) & (c->cap - 1);
  while (c->keys[i] && strcmp(c->keys[i], key)) i = (i + 1) & (c->cap - 1);
  *slot = i;
  return c->keys[i] ? c->states[i] : NULL;
}

static void cache_insert(text_cache *c, const char *key, const float *states, size_t n) {
  if (c->bytes + n * sizeof(float) > TEXT_CACHE_MAX_BYTES || (c->n + 1) * 2 > c->cap) return;   // full: encode each time
  size_t slot;
  if (cache_find(c, key, &slot)) return;
  char *k = strdup(key);
  float *v = malloc(n * sizeof *v);
  if (!k || !v) {
    free(k), free(v);
    return;
  }
  memcpy(v, states, n * sizeof *v);
  c->keys[slot] = k, c->states[slot] = v, c->n++, c->bytes += n * sizeof(float);
}

void vkp_dtrain_text_cache_free(text_cache *c) {
  if (!c) return;
  for (size_t i = 0; i < c->cap; i++) free(c->keys[i]), free(c->states[i]);
  free(c->keys), free(c->states), free(c);
}

vkp_status vkp_dtrain_text_states(vkp_dtrainer *t, const char *caption, float *out, vkp_error *err) {
  size_t n = (size_t)t->tokens * (size_t)t->text_dim, slot;
  if (!t->shuffle_captions && !t->tcache && (t->tcache = calloc(1, sizeof *t->tcache))) {
    t->tcache->cap = 4096;
    t->tcache->keys = calloc(t->tcache->cap, sizeof(char *));
    t->tcache->states = calloc(t->tcache->cap, sizeof(float *));
    if (!t->tcache->keys || !t->tcache->states) vkp_dtrain_text_cache_free(t->tcache), t->tcache = NULL;
  }
  const float *hit = t->tcache ? cache_find(t->tcache, caption, &slot) : NULL;
  if (hit) {
    memcpy(out, hit, n * sizeof *out);
    return VKP_OK;
  }
  VKP_TRY(vkp_text_encoder_encode(t->te, caption, out, err));
  if (t->tcache) cache_insert(t->tcache, caption, out, n);
  return VKP_OK;
}

// ---- the graph ----------------------------------------------------------------------------------------

vkp_status vkp_dtrain_build_graph(vkp_dtrainer *t, vkp_loss_graph *lg, int batch, bool training, vkp_error *err) {
  const int64_t B = batch, C = t->latent_c, h = t->latent_h, w = t->latent_w;
  lg->batch = batch;
  VKP_TRY(vkp_graph_new(t->ctx, &lg->g));
  vkp_graph *g = lg->g;
  lg->noisy = vkp_tensor_input(g, "noisy_latents", VKP_DTYPE_F32, 4, (int64_t[]){B, C, h, w});
  lg->timestep = vkp_tensor_input(g, "timestep", VKP_DTYPE_F32, 1, (int64_t[]){B});
  lg->states = vkp_dtrain_states_tensor(t, lg, training);   // an input, or the text encoder with adapters
  lg->target = vkp_tensor_input(g, "target", VKP_DTYPE_F32, 4, (int64_t[]){B, C, h, w});
  lg->weight = vkp_tensor_input(g, "weight", VKP_DTYPE_F32, 4, (int64_t[]){B, C, h, w});
  t->unet->model->training = training;
  vkp_status st = vkp_unet_forward(t->unet, g, lg->noisy, lg->timestep, lg->states, &lg->pred);
  if (!st) {
    // Σ weight · (pred − target)², the weights carrying 1/(B·C·h·w), min-SNR and the mask.
    vkp_tensor *d = vkp_sub(g, lg->pred, lg->target);
    lg->loss = vkp_sum(g, vkp_mul(g, vkp_mul(g, d, d), lg->weight));
    lg->mse = vkp_mse(g, lg->pred, lg->target);
    vkp_graph_output(g, lg->loss);   // every forward output before the optimizer's nodes
    vkp_graph_output(g, lg->mse);
    vkp_graph_output(g, lg->pred);
    st = vkp_graph_status(g);
  }
  if (!st && training) {
    int nt = t->o.nt, ne = vkp_dtrain_te_param_count(t);   // the UNet's, then the text encoder's
    vkp_tensor **p = calloc((size_t)(nt + ne), sizeof *p), **grads = calloc((size_t)(nt + ne), sizeof *grads);
    if (!p || !grads) st = VKP_ERR_OOM;
    for (int i = 0; i < nt && !st; i++) p[i] = vkp_param_tensor(t->unet->model, t->o.tp[i]);
    if (!st) vkp_dtrain_te_param_tensors(t, p + nt);
    if (!st) st = vkp_graph_backward(g, lg->loss, p, nt + ne, grads);
    if (!st) vkp_dtrain_te_accumulate(t, g, grads + nt);
    if (!st) lg->gnorm = vkp_optimizer_append(t->o.opt, g, grads);
    free(p), free(grads);
  }
  if (!st) st = vkp_graph_compile(g);
  if (st) return vkp_error_set(err, st, "building the %s graph: %s", training ? "training" : "validation",
                               vkp_graph_status(g) ? vkp_graph_error(g) : vkp_ctx_error(t->ctx));
  return VKP_OK;
}

// ---- a micro-batch ---------------------------------------------------------------------------------------

// Sample s's clean latents x0 and mask: a posterior sample of the cached (or, with random crops,
// freshly encoded: vkp_dtrain_encode_batch) mean/std, scaled as the pipeline does.
static void sample_latents(vkp_dtrainer *t, const vkp_batch *b, int s, vkp_rng *r, float *x0, float *mask) {
  const size_t item = (size_t)t->latent_c * t->latent_h * t->latent_w, mi = (size_t)t->latent_h * t->latent_w, C = t->enc_cap;
  const float *mean, *std, *msk;
  if (t->random_crop) {
    mean = t->scratch + (size_t)s * item, std = t->scratch + (C + (size_t)s) * item, msk = t->scratch + 2 * C * item + (size_t)s * mi;
  } else {   // data.buckets: the bucket's store, where the image has its slot
    const vkp_latent_store *ls = t->dx.buckets ? &t->dx.b[t->dx.cur].lat : &t->train_lat;
    int v = ls->variants > 1 && vkp_rng_uniform(r) < t->hflip;
    size_t k = (t->dx.buckets ? t->dx.slot_of[b->indices[s]] : b->indices[s]) * (size_t)ls->variants + (size_t)v;
    mean = ls->mean + k * ls->item, std = ls->std + k * ls->item, msk = ls->mask + k * ls->mask_item;
  }
  const vkp_vae_config *vc = &t->vae->cfg;
  float shift = vc->has_shift_factor ? vc->shift_factor : 0;
  vkp_rng_randn(r, x0, item);
  for (size_t i = 0; i < item; i++) x0[i] = (mean[i] + std[i] * x0[i] - shift) * vc->scaling_factor;
  for (size_t i = 0; i < mi; i++) mask[i] = t->masked_loss ? msk[i] : 1.0f;
}

// With random crops: the batch's images (cropped and flipped by the loader) through the VAE.
static vkp_status encode_batch(vkp_dtrainer *t, const vkp_batch *b, vkp_error *err) {
  const size_t R2 = (size_t)t->dx.px_w * t->dx.px_h, item = (size_t)t->latent_c * t->latent_h * t->latent_w, C = t->enc_cap;
  memcpy(t->pix, b->pixels, (size_t)b->n * 4 * R2 * sizeof(float));
  for (int s = 0; s < b->n; s++) vkp_dtrain_finish_pixels(t, t->pix + (size_t)s * 4 * R2);
  return vkp_dtrain_encode(t, t->pix, b->n, t->scratch, t->scratch + C * item, t->scratch + 2 * C * item, err);
}

// Noise, timestep and caption of sample s (b's sample), all from the sample's own random stream.
static vkp_status prepare_sample(vkp_dtrainer *t, const vkp_batch *b, int s, vkp_error *err) {
  const size_t item = (size_t)t->latent_c * t->latent_h * t->latent_w, mi = (size_t)t->latent_h * t->latent_w;
  vkp_rng r = vkp_rng_new(vkp_rng_key(t->k.seed ^ STREAM_SAMPLE, (uint64_t)t->micro, (uint64_t)s));
  sample_latents(t, b, s, &r, t->x0 + s * item, t->mask + s * mi);
  float *eps = t->noise + s * item;
  vkp_rng_randn(&r, eps, item);
  int ts = (int)vkp_rng_int(&r, t->t_min, t->t_max);
  if (t->forced_noise) memcpy(eps, t->forced_noise + s * item, item * sizeof *eps);
  if (t->forced_t) ts = t->forced_t[s];
  if (t->noise_offset > 0) {   // diffusers / kohya: noise += offset · randn(B, C, 1, 1)
    size_t plane = mi;
    for (int c = 0; c < t->latent_c; c++) {
      float o = (float)(t->noise_offset * vkp_rng_normal(&r));
      for (size_t i = 0; i < plane; i++) eps[c * plane + i] += o;
    }
  }
  t->tsteps[s] = ts;
  t->images[s] = b->indices[s];
  bool reg = vkp_dtrain_is_reg(t, b->indices[s]);   // regularisation images: no trigger, loss · prior_loss_weight
  t->dx.sample_w[s] = reg ? (float)t->dx.prior_loss_weight : 1.0f;
  const char *caption = t->train->captions[b->captions[s]];
  char *text = vkp_dtrain_caption_with(t, caption, reg ? NULL : t->trigger,
                                       vkp_rng_key(t->k.seed ^ STREAM_CAPTION, (uint64_t)t->micro, (uint64_t)s), true, err);
  if (!text) return VKP_ERR_OOM;
  vkp_status st = vkp_dtrain_text_slot(t, text, s, err);
  free(text);
  return st;
}

// noisy, target, and the per-element weights of n samples (pad: samples n..batch-1 weigh 0).
void vkp_dtrain_objective(vkp_dtrainer *t, int n, int batch, bool snr, bool mask, const float *factor, double norm) {
  const size_t item = (size_t)t->latent_c * t->latent_h * t->latent_w, mi = (size_t)t->latent_h * t->latent_w;
  vkp_scheduler_add_noise(t->sched, t->x0, t->noise, t->tsteps, n, item, t->noisy);
  vkp_scheduler_target(t->sched, t->x0, t->noise, t->tsteps, n, item, t->target);
  for (int s = 0; s < batch; s++) {
    double w = s >= n ? 0 : snr && t->min_snr_gamma > 0 ? vkp_scheduler_min_snr_weight(t->sched, t->tsteps[s], t->min_snr_gamma) : 1;
    t->snr_w[s] = (float)w;
    if (factor && s < n) w *= factor[s];
    for (int c = 0; c < t->latent_c; c++)
      for (size_t i = 0; i < mi; i++) t->weight[s * item + c * mi + i] = (float)(w * (mask ? t->mask[s * mi + i] : 1) / norm);
  }
}

// Uploads the host arrays into lg and runs it; *loss, *mse read back (pred too when recording).
vkp_status vkp_dtrain_run_graph(vkp_dtrainer *t, vkp_loss_graph *lg, double *loss, double *mse, vkp_error *err) {
  const size_t B = (size_t)lg->batch, item = (size_t)t->latent_c * t->latent_h * t->latent_w;
  float *tf = malloc(B * sizeof *tf);
  if (!tf) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (size_t s = 0; s < B; s++) tf[s] = (float)t->tsteps[s];
  vkp_status st = vkp_graph_set_input(lg->g, lg->noisy, t->noisy, B * item * sizeof(float));
  if (!st) st = vkp_graph_set_input(lg->g, lg->timestep, tf, B * sizeof(float));
  if (!st) st = vkp_dtrain_upload_text(t, lg);
  if (!st) st = vkp_graph_set_input(lg->g, lg->target, t->target, B * item * sizeof(float));
  if (!st) st = vkp_graph_set_input(lg->g, lg->weight, t->weight, B * item * sizeof(float));
  if (!st) st = vkp_graph_run(lg->g);
  float l = 0, m = 0;
  if (!st) st = vkp_graph_read(lg->g, lg->loss, &l, sizeof l);
  if (!st) st = vkp_graph_read(lg->g, lg->mse, &m, sizeof m);
  if (!st && t->recording) st = vkp_graph_read(lg->g, lg->pred, t->pred, B * item * sizeof(float));
  free(tf);
  if (st) return vkp_error_set(err, st, "running the UNet: %s", vkp_ctx_error(t->ctx));
  *loss = l, *mse = m;
  return VKP_OK;
}

// Slots n..batch-1 of a short batch (a bucket's last): zero latents and noise, timestep 0, the empty
// caption; their loss weight is 0, and the UNet treats every sample on its own.
static vkp_status pad_samples(vkp_dtrainer *t, int n, vkp_error *err) {
  const size_t item = (size_t)t->latent_c * t->latent_h * t->latent_w, mi = (size_t)t->latent_h * t->latent_w;
  for (int s = n; s < (int)t->k.batch; s++) {
    memset(t->x0 + s * item, 0, item * sizeof(float));
    memset(t->noise + s * item, 0, item * sizeof(float));
    for (size_t i = 0; i < mi; i++) t->mask[s * mi + i] = 1;
    t->tsteps[s] = 0, t->images[s] = 0, t->dx.sample_w[s] = 0;
    VKP_TRY(vkp_dtrain_text_slot(t, "", s, err));
  }
  return VKP_OK;
}

// The plain MSE of the n samples when the batch is padded, and the regularisation images' share
// of it (data.reg): from the prediction read back.
static vkp_status batch_mse(vkp_dtrainer *t, int n, double *mse, vkp_error *err) {
  const size_t B = (size_t)t->k.batch, item = (size_t)t->latent_c * t->latent_h * t->latent_w;
  bool reg = t->dx.n_base < vkp_pairs_count(t->train);
  if ((size_t)n == B && !reg) return VKP_OK;
  if (!t->recording && vkp_graph_read(t->tg.g, t->tg.pred, t->pred, B * item * sizeof(float)))
    return vkp_error_set(err, VKP_ERR_IO, "reading the UNet's prediction: %s", vkp_ctx_error(t->ctx));
  if (reg) vkp_dtrain_reg_account(t, n);
  if ((size_t)n == B) return VKP_OK;
  double se = 0;
  for (size_t i = 0; i < (size_t)n * item; i++) se += ((double)t->pred[i] - t->target[i]) * ((double)t->pred[i] - t->target[i]);
  *mse = se / ((double)n * (double)item);
  return VKP_OK;
}

vkp_status vkp_dtrain_micro_step(vkp_dtrainer *t, bool apply, float *lr, double *loss, double *mse, vkp_error *err) {
  vkp_batch b;
  VKP_TRY(vkp_dtrain_next_batch(t, &b, err));   // with data.buckets: its bucket's shape and graphs now
  const int B = (int)t->k.batch, n = b.n;        // n < B: a bucket's last batch, padded with weight 0
  t->step_images -= B - n;                       // padding is no image (the step counts batch x accum)
  const size_t item = (size_t)t->latent_c * t->latent_h * t->latent_w;
  if (t->random_crop) VKP_TRY(encode_batch(t, &b, err));
  for (int s = 0; s < n; s++) VKP_TRY(prepare_sample(t, &b, s, err));
  VKP_TRY(pad_samples(t, n, err));
  vkp_dtrain_objective(t, n, B, true, true, t->dx.sample_w, (double)n * (double)item);
  memset(t->noisy + (size_t)n * item, 0, (size_t)(B - n) * item * sizeof(float));
  memset(t->target + (size_t)n * item, 0, (size_t)(B - n) * item * sizeof(float));
  vkp_step_scalars sc = {.loss_scale = 1.0f / (float)t->k.accum, .seed = (uint32_t)(t->k.seed * 1000003u + (uint64_t)t->micro)};
  vkp_optimizer_prepare_step(t->o.opt, vkp_lr_at(&t->o.sched, vkp_optimizer_steps(t->o.opt)), apply, &sc);
  *lr = sc.lr;
  if (vkp_graph_set_scalars(t->tg.g, &sc)) return vkp_error_set(err, VKP_ERR_IO, "training step: %s", vkp_ctx_error(t->ctx));
  VKP_TRY(vkp_dtrain_run_graph(t, &t->tg, loss, mse, err));
  if (!isfinite(*loss))
    return vkp_error_set(err, VKP_ERR_INVALID, "training diverged at step %lld (loss %g): lower train.lr", (long long)t->step, *loss);
  VKP_TRY(batch_mse(t, n, mse, err));
  if (t->recording)
    t->rec = (vkp_diffusion_batch_record){.n = B, .n_images = n, .sample_weight = t->dx.sample_w, .channels = t->latent_c, .height = t->latent_h, .width = t->latent_w,
                                          .num_train_timesteps = t->sched->num_train_timesteps, .images = t->images, .latents = t->x0,
                                          .noise = t->noise, .timesteps = t->tsteps, .noisy = t->noisy, .target = t->target,
                                          .snr_weight = t->snr_w, .mask = t->mask, .pred = t->pred, .loss = (float)*loss,
                                          .mse = (float)*mse, .v_prediction = t->v_prediction, .min_snr_gamma = t->min_snr_gamma};
  free(t->forced_noise), free(t->forced_t);
  t->forced_noise = NULL, t->forced_t = NULL;
  t->micro++;
  if (t->dx.buckets) vkp_dtrain_shape(t, t->resolution, t->resolution, false);   // validation and samples: data.resolution²
  return VKP_OK;
}
