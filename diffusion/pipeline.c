// pipeline.c — a diffusers pipeline folder: load, compile the UNet (batch 2, CFG), VAE decode and
// text graphs, sample, decode (vkp_pipeline.h).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vkp_peft.h"
#include "vkp_adapter_format.h"
#include "vkp_pipeline.h"

struct vkp_pipeline {
  vkp_ctx *ctx;
  char dir[1024];
  vkp_unet *unet;
  vkp_vae *vae;
  vkp_text_encoder *te;    // NULL: states come from the caller
  vkp_scheduler_config sched;
  bool have_sched;
  int lc, lh, lw;          // latent shape
  int tokens, dim;         // text states
  int factor;              // VAE downsampling
  // UNet graph
  vkp_graph *ug;
  vkp_tensor *u_x, *u_t, *u_ctx, *u_out;
  // VAE graph
  vkp_graph *vg;
  vkp_tensor *v_z, *v_out;
};

static bool is_dir(const char *p) {
  struct stat st;
  return !stat(p, &st) && S_ISDIR(st.st_mode);
}

static bool is_file(const char *p) {
  struct stat st;
  return !stat(p, &st) && S_ISREG(st.st_mode);
}

static vkp_status graph_fail(vkp_pipeline *p, vkp_graph *g, vkp_status st, const char *what, vkp_error *err) {
  const char *m = g ? vkp_graph_error(g) : NULL;
  if (!m || !m[0]) m = vkp_ctx_error(p->ctx);
  return vkp_error_set(err, st ? st : VKP_ERR_INVALID, "%s: %s: %s", p->dir, what, m ? m : "failed");
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

vkp_status vkp_pipeline_add_lora(vkp_pipeline *p, const char *path, float scale, bool merge, vkp_error *err) {
  if (p->ug) return vkp_error_set(err, VKP_ERR_INVALID, "%s: LoRAs must be added before sampling", path);
  vkp_adapter *a = NULL;
  if (vkp_adapter_load(p->unet->model, path, &a))
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: %s", path, vkp_ctx_error(p->ctx));
  vkp_adapter_set_scale(a, scale);
  if (merge && vkp_adapter_merge(p->unet->model, a))
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: merge: %s", path, vkp_ctx_error(p->ctx));
  return VKP_OK;
}

// ---- sampling -----------------------------------------------------------------------------------

static vkp_status unet_graph(vkp_pipeline *p, vkp_error *err) {
  if (p->ug) return VKP_OK;
  vkp_status st;
  if ((st = vkp_graph_new(p->ctx, &p->ug))) return graph_fail(p, NULL, st, "UNet graph", err);
  p->u_x = vkp_tensor_input(p->ug, "sample", VKP_DTYPE_F32, 4, (int64_t[]){2, p->lc, p->lh, p->lw});
  p->u_t = vkp_tensor_input(p->ug, "timestep", VKP_DTYPE_F32, 1, (int64_t[]){2});
  p->u_ctx = vkp_tensor_input(p->ug, "encoder_hidden_states", VKP_DTYPE_F32, 3, (int64_t[]){2, p->tokens, p->dim});
  if ((st = vkp_unet_forward(p->unet, p->ug, p->u_x, p->u_t, p->u_ctx, &p->u_out)))
    return graph_fail(p, p->ug, st, "UNet", err);
  vkp_graph_output(p->ug, p->u_out);
  if ((st = vkp_graph_compile(p->ug))) return graph_fail(p, p->ug, st, "UNet: compile", err);
  return VKP_OK;
}

typedef struct denoise_ctx {
  vkp_pipeline *p;
  float cfg;
  size_t n;
  float *x2, *out2;
  vkp_pipeline_progress_fn progress;
  void *user;
  int n_evals;
} denoise_ctx;

static vkp_status denoise(void *user, int i, double t, const float *x_in, float *out, vkp_error *err) {
  denoise_ctx *d = user;
  vkp_pipeline *p = d->p;
  memcpy(d->x2, x_in, d->n * sizeof(float));
  memcpy(d->x2 + d->n, x_in, d->n * sizeof(float));
  float tt[2] = {(float)t, (float)t};
  vkp_status st = vkp_graph_set_input(p->ug, p->u_x, d->x2, 2 * d->n * sizeof(float));
  if (!st) st = vkp_graph_set_input(p->ug, p->u_t, tt, sizeof tt);
  if (!st) st = vkp_graph_run(p->ug);
  if (!st) st = vkp_graph_read(p->ug, p->u_out, d->out2, 2 * d->n * sizeof(float));
  if (st) return graph_fail(p, p->ug, st, "UNet: run", err);
  vkp_cfg_combine(d->out2, d->out2 + d->n, d->cfg, d->n, out);   // batch item 0: uncond, 1: cond
  if (d->progress) d->progress(d->user, i + 1, d->n_evals);
  return VKP_OK;
}

vkp_status vkp_pipeline_sample(vkp_pipeline *p, vkp_sampler *s, float *latents, const float *cond,
                               const float *uncond, float cfg, vkp_rng *rng, vkp_pipeline_progress_fn progress,
                               void *user, vkp_error *err) {
  vkp_status st = unet_graph(p, err);
  if (st) return st;
  size_t n = (size_t)p->lc * p->lh * p->lw, nt = (size_t)p->tokens * p->dim;
  float *ctx2 = malloc(2 * nt * sizeof(float));
  denoise_ctx d = {.p = p, .cfg = cfg, .n = n, .progress = progress, .user = user, .n_evals = vkp_sampler_evals(s)};
  d.x2 = malloc(2 * n * sizeof(float));
  d.out2 = malloc(2 * n * sizeof(float));
  if (!ctx2 || !d.x2 || !d.out2) {
    st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    goto done;
  }
  if (uncond) memcpy(ctx2, uncond, nt * sizeof(float));
  else memset(ctx2, 0, nt * sizeof(float));
  memcpy(ctx2 + nt, cond, nt * sizeof(float));
  if ((st = vkp_graph_set_input(p->ug, p->u_ctx, ctx2, 2 * nt * sizeof(float)))) {
    st = graph_fail(p, p->ug, st, "UNet: text states", err);
    goto done;
  }
  st = vkp_sampler_run(s, latents, denoise, &d, rng, err);
done:
  free(ctx2), free(d.x2), free(d.out2);
  return st;
}

static vkp_status vae_graph(vkp_pipeline *p, vkp_error *err) {
  if (p->vg) return VKP_OK;
  vkp_status st;
  if ((st = vkp_graph_new(p->ctx, &p->vg))) return graph_fail(p, NULL, st, "VAE graph", err);
  p->v_z = vkp_tensor_input(p->vg, "latents", VKP_DTYPE_F32, 4, (int64_t[]){1, p->lc, p->lh, p->lw});
  if ((st = vkp_vae_decode(p->vae, p->vg, p->v_z, &p->v_out))) return graph_fail(p, p->vg, st, "VAE decode", err);
  vkp_graph_output(p->vg, p->v_out);
  if ((st = vkp_graph_compile(p->vg))) return graph_fail(p, p->vg, st, "VAE decode: compile", err);
  return VKP_OK;
}

vkp_status vkp_pipeline_decode(vkp_pipeline *p, const float *latents, bool unscaled, float *decoded, uint8_t *rgb,
                               vkp_error *err) {
  vkp_status st = vae_graph(p, err);
  if (st) return st;
  size_t n = (size_t)p->lc * p->lh * p->lw;
  int W = p->lw * p->factor, H = p->lh * p->factor;
  float *z = malloc(n * sizeof(float));
  if (!z) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  float sf = p->vae->cfg.scaling_factor, sh = p->vae->cfg.has_shift_factor ? p->vae->cfg.shift_factor : 0.0f;
  if (unscaled) sf = 1, sh = 0;
  for (size_t i = 0; i < n; i++) z[i] = latents[i] / sf + sh;
  st = vkp_graph_set_input(p->vg, p->v_z, z, n * sizeof(float));
  free(z);
  if (!st) st = vkp_graph_run(p->vg);
  if (!st) st = vkp_graph_read(p->vg, p->v_out, decoded, (size_t)3 * W * H * sizeof(float));
  if (st) return graph_fail(p, p->vg, st, "VAE decode: run", err);
  if (rgb) {
    size_t hw = (size_t)W * H;
    for (size_t i = 0; i < hw; i++)
      for (int c = 0; c < 3; c++) {
        float v = decoded[c * hw + i] * 0.5f + 0.5f;
        v = v < 0 ? 0 : v > 1 ? 1 : v;
        rgb[i * 3 + c] = (uint8_t)lrintf(v * 255.0f);
      }
  }
  return VKP_OK;
}
