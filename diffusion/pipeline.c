// pipeline.c — a diffusers pipeline folder: load, the UNet graph (2·batch rows for classifier-free
// guidance) and sampling (vkp_pipeline.h). VAE graphs and img2img: pipeline_vae.c; LoRA files:
// pipeline_lora.c.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pipeline_internal.h"
#include "vkp_ldm.h"   // single-file checkpoints

static bool is_dir(const char *p) {
  struct stat st;
  return !stat(p, &st) && S_ISDIR(st.st_mode);
}

static bool is_file(const char *p) {
  struct stat st;
  return !stat(p, &st) && S_ISREG(st.st_mode);
}

vkp_status vkp_pipeline_graph_fail(vkp_pipeline *p, vkp_graph *g, vkp_status st, const char *what, vkp_error *err) {
  const char *m = g ? vkp_graph_error(g) : NULL;
  if (!m || !m[0]) m = vkp_ctx_error(p->ctx);
  return vkp_error_set(err, st ? st : VKP_ERR_INVALID, "%s: %s: %s", p->dir, what, m ? m : "failed");
}

void vkp_pipeline_invalidate(vkp_pipeline *p) {
  vkp_graph_free(p->ug);
  p->ug = NULL;
  p->ub = 0;
  if (p->te) vkp_text_encoder_invalidate(p->te);
}

// Takes ownership of every part (also on failure); sched is copied (and freed here).
vkp_status vkp_pipeline_from_parts(vkp_ctx *ctx, const char *name, vkp_unet *unet, vkp_vae *vae,
                                   const vkp_scheduler_config *sched, vkp_text_encoder *te,
                                   const vkp_pipeline_opts *opts, vkp_pipeline **out, vkp_error *err) {
  *out = NULL;
  vkp_pipeline_opts o = {0};
  if (opts) o = *opts;
  vkp_pipeline *p = calloc(1, sizeof *p);
  if (!p) {
    vkp_unet_free(unet);
    vkp_vae_free(vae);
    vkp_text_encoder_free(te);
    if (sched) vkp_scheduler_config_free((vkp_scheduler_config *)sched);
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  p->ctx = ctx;
  snprintf(p->dir, sizeof p->dir, "%s", name);
  p->unet = unet, p->vae = vae, p->te = te;
  p->sched = *sched;
  p->have_sched = true;
  vkp_status st;
  p->factor = 1 << (p->vae->cfg.n_blocks - 1);
  int ufac = 1 << (p->unet->cfg.n_blocks - 1);
  int W = o.latent_width > 0 ? o.latent_width * p->factor : o.width;
  int H = o.latent_height > 0 ? o.latent_height * p->factor : o.height;
  if (W <= 0) W = p->unet->cfg.sample_size * p->factor;
  if (H <= 0) H = p->unet->cfg.sample_size * p->factor;
  if (W % (p->factor * ufac) || H % (p->factor * ufac) || W <= 0 || H <= 0) {
    st = vkp_error_set(err, VKP_ERR_INVALID, "%s: size %dx%d: width and height must be positive multiples of %d", name, W,
                       H, p->factor * ufac);
    goto fail;
  }
  if (p->vae->cfg.latent_channels != p->unet->cfg.in_channels) {
    st = vkp_error_set(err, VKP_ERR_SHAPE, "%s: the VAE has %d latent channels, the UNet takes %d", name,
                       p->vae->cfg.latent_channels, p->unet->cfg.in_channels);
    goto fail;
  }
  p->lc = p->unet->cfg.in_channels;
  p->lh = H / p->factor;
  p->lw = W / p->factor;
  p->dim = p->unet->cfg.cross_attention_dim[0];
  p->tokens = 77;
  if (te) {
    int tt, td;
    vkp_text_encoder_shape(te, &tt, &td);
    if (td != p->dim) {
      st = vkp_error_set(err, VKP_ERR_SHAPE, "%s: the text encoder's hidden_size is %d, the UNet's cross_attention_dim %d",
                         name, td, p->dim);
      goto fail;
    }
    p->tokens = tt;
  }
  if (o.text_tokens > 0) p->tokens = o.text_tokens;
  *out = p;
  return VKP_OK;
fail:
  vkp_pipeline_free(p);
  return st;
}

vkp_status vkp_pipeline_load(vkp_ctx *ctx, const char *dir, const vkp_pipeline_opts *opts, vkp_pipeline **out,
                             vkp_error *err) {
  *out = NULL;
  char path[1200];
  if (is_file(dir)) return vkp_ldm_pipeline_load(ctx, dir, opts, NULL, out, err);   // a single-file checkpoint (vkp_ldm.h)
  if (!is_dir(dir)) return vkp_error_set(err, VKP_ERR_IO, "%s: not a pipeline folder", dir);
  snprintf(path, sizeof path, "%s/model_index.json", dir);
  if (!is_file(path)) return vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: missing (not a diffusers pipeline folder)", path);
  vkp_unet *unet = NULL;
  vkp_vae *vae = NULL;
  vkp_text_encoder *te = NULL;
  vkp_scheduler_config sched;
  vkp_status st;
  snprintf(path, sizeof path, "%s/unet", dir);
  if ((st = vkp_unet_load(ctx, path, NULL, &unet, err))) goto fail;
  snprintf(path, sizeof path, "%s/vae", dir);
  if ((st = vkp_vae_load(ctx, path, false, &vae, err))) goto fail;
  snprintf(path, sizeof path, "%s/text_encoder", dir);
  if (opts && opts->text_encoder && (is_dir(path) || opts->text_encoder == VKP_PIPELINE_TEXT_REQUIRED)) {
    vkp_text_encoder_opts to = {.clip_skip = opts->clip_skip};
    if ((st = vkp_text_encoder_load(ctx, dir, &to, &te, err))) goto fail;
  }
  snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", dir);
  if ((st = vkp_scheduler_config_load(path, &sched, err))) goto fail;
  return vkp_pipeline_from_parts(ctx, dir, unet, vae, &sched, te, opts, out, err);
fail:
  vkp_unet_free(unet);
  vkp_vae_free(vae);
  vkp_text_encoder_free(te);
  return st;
}

void vkp_pipeline_free(vkp_pipeline *p) {
  if (!p) return;
  vkp_graph_free(p->ug);
  vkp_graph_free(p->vg);
  vkp_graph_free(p->eg);
  vkp_unet_free(p->unet);
  vkp_vae_free(p->vae);
  vkp_text_encoder_free(p->te);
  if (p->have_sched) vkp_scheduler_config_free(&p->sched);
  free(p);
}

vkp_unet *vkp_pipeline_unet(vkp_pipeline *p) { return p->unet; }
vkp_vae *vkp_pipeline_vae(vkp_pipeline *p) { return p->vae; }
vkp_text_encoder *vkp_pipeline_text_encoder(vkp_pipeline *p) { return p->te; }

vkp_status vkp_pipeline_encode_prompt(vkp_pipeline *p, const char *prompt, float *states, vkp_error *err) {
  if (!p->te) return vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: no text encoder (a prompt needs one)", p->dir);
  return vkp_text_encoder_encode(p->te, prompt, states, err);
}
const vkp_scheduler_config *vkp_pipeline_scheduler_config(const vkp_pipeline *p) { return &p->sched; }

void vkp_pipeline_latent_shape(const vkp_pipeline *p, int *c, int *h, int *w) {
  *c = p->lc, *h = p->lh, *w = p->lw;
}

void vkp_pipeline_text_shape(const vkp_pipeline *p, int *tokens, int *dim) {
  *tokens = p->tokens, *dim = p->dim;
}

void vkp_pipeline_image_size(const vkp_pipeline *p, int *width, int *height) {
  *width = p->lw * p->factor, *height = p->lh * p->factor;
}

// ---- sampling -----------------------------------------------------------------------------------

static vkp_status unet_graph(vkp_pipeline *p, int batch, vkp_error *err) {
  if (p->ug && p->ub == batch) return VKP_OK;
  vkp_pipeline_invalidate(p);
  vkp_status st;
  int64_t b2 = 2 * (int64_t)batch;
  if ((st = vkp_graph_new(p->ctx, &p->ug))) return vkp_pipeline_graph_fail(p, NULL, st, "UNet graph", err);
  p->u_x = vkp_tensor_input(p->ug, "sample", VKP_DTYPE_F32, 4, (int64_t[]){b2, p->lc, p->lh, p->lw});
  p->u_t = vkp_tensor_input(p->ug, "timestep", VKP_DTYPE_F32, 1, (int64_t[]){b2});
  p->u_ctx = vkp_tensor_input(p->ug, "encoder_hidden_states", VKP_DTYPE_F32, 3, (int64_t[]){b2, p->tokens, p->dim});
  if ((st = vkp_unet_forward(p->unet, p->ug, p->u_x, p->u_t, p->u_ctx, &p->u_out)))
    return vkp_pipeline_graph_fail(p, p->ug, st, "UNet", err);
  vkp_graph_output(p->ug, p->u_out);
  if ((st = vkp_graph_compile(p->ug))) return vkp_pipeline_graph_fail(p, p->ug, st, "UNet: compile", err);
  p->ub = batch;
  return VKP_OK;
}

typedef struct denoise_ctx {
  vkp_pipeline *p;
  float cfg;
  int batch;
  size_t n;            // latent elements of one image
  float *x2, *out2, *t2;
  vkp_pipeline_progress_fn progress;
  void *user;
  int begin, n_evals;   // the evaluations this run makes: begin .. n_evals-1
} denoise_ctx;

// Rows of the UNet batch: [uncond_0 .. uncond_{B-1}, cond_0 .. cond_{B-1}] (diffusers'
// torch.cat([latents] * 2) order), guided per image with vkp_cfg_combine.
static vkp_status denoise(void *user, int i, double t, const float *x_in, float *out, vkp_error *err) {
  denoise_ctx *d = user;
  vkp_pipeline *p = d->p;
  size_t bn = (size_t)d->batch * d->n;
  memcpy(d->x2, x_in, bn * sizeof(float));
  memcpy(d->x2 + bn, x_in, bn * sizeof(float));
  for (int k = 0; k < 2 * d->batch; k++) d->t2[k] = (float)t;
  vkp_status st = vkp_graph_set_input(p->ug, p->u_x, d->x2, 2 * bn * sizeof(float));
  if (!st) st = vkp_graph_set_input(p->ug, p->u_t, d->t2, 2 * (size_t)d->batch * sizeof(float));
  if (!st) st = vkp_graph_run(p->ug);
  if (!st) st = vkp_graph_read(p->ug, p->u_out, d->out2, 2 * bn * sizeof(float));
  if (st) return vkp_pipeline_graph_fail(p, p->ug, st, "UNet: run", err);
  vkp_cfg_combine(d->out2, d->out2 + bn, d->cfg, bn, out);
  if (d->progress) d->progress(d->user, i + 1 - d->begin, d->n_evals - d->begin);
  return VKP_OK;
}

// cond_stride: 0 = one cond for every image, else the floats between image k's and k+1's.
static vkp_status sample_rows(vkp_pipeline *p, vkp_sampler *s, float *latents, const float *cond, size_t cond_stride,
                              const float *uncond, float cfg, vkp_rng *rng, vkp_pipeline_progress_fn progress,
                              void *user, vkp_error *err) {
  int batch = vkp_sampler_batch(s);
  vkp_status st = unet_graph(p, batch, err);
  if (st) return st;
  size_t n = (size_t)p->lc * p->lh * p->lw, nt = (size_t)p->tokens * p->dim, bn = (size_t)batch * n;
  float *ctx2 = malloc(2 * (size_t)batch * nt * sizeof(float));
  denoise_ctx d = {.p = p, .cfg = cfg, .batch = batch, .n = n, .progress = progress, .user = user,
                   .begin = vkp_sampler_get_begin(s), .n_evals = vkp_sampler_evals(s)};
  d.x2 = malloc(2 * bn * sizeof(float));
  d.out2 = malloc(2 * bn * sizeof(float));
  d.t2 = malloc(2 * (size_t)batch * sizeof(float));
  if (!ctx2 || !d.x2 || !d.out2 || !d.t2) {
    st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    goto done;
  }
  for (int k = 0; k < batch; k++) {
    float *u = ctx2 + (size_t)k * nt, *c = ctx2 + (size_t)(batch + k) * nt;
    if (uncond) memcpy(u, uncond, nt * sizeof(float));
    else memset(u, 0, nt * sizeof(float));
    memcpy(c, cond + (size_t)k * cond_stride, nt * sizeof(float));
  }
  if ((st = vkp_graph_set_input(p->ug, p->u_ctx, ctx2, 2 * (size_t)batch * nt * sizeof(float)))) {
    st = vkp_pipeline_graph_fail(p, p->ug, st, "UNet: text states", err);
    goto done;
  }
  st = vkp_sampler_run(s, latents, denoise, &d, rng, err);
done:
  free(ctx2), free(d.x2), free(d.out2), free(d.t2);
  return st;
}

vkp_status vkp_pipeline_sample(vkp_pipeline *p, vkp_sampler *s, float *latents, const float *cond,
                               const float *uncond, float cfg, vkp_rng *rng, vkp_pipeline_progress_fn progress,
                               void *user, vkp_error *err) {
  return sample_rows(p, s, latents, cond, 0, uncond, cfg, rng, progress, user, err);
}

vkp_status vkp_pipeline_sample_each(vkp_pipeline *p, vkp_sampler *s, float *latents, const float *conds,
                                    const float *uncond, float cfg, vkp_rng *rng, vkp_pipeline_progress_fn progress,
                                    void *user, vkp_error *err) {
  return sample_rows(p, s, latents, conds, (size_t)p->tokens * p->dim, uncond, cfg, rng, progress, user, err);
}
