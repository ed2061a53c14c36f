// vae_train_final.c — the final files of a VAE run: vae/ (a diffusers folder) with the
// scaling_factor derived from the training latents, reconstructions.png, and adapter/ (HF PEFT)
// when a method other than `full` trained.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vae_train_internal.h"
#include "vkp_config.h"
#include "vkp_png.h"
#include "vkp_rng.h"

enum { STREAM_SCALE = 0x5ca1e, GRID_MAX = 8, SCALE_IMAGES = 512 };

// 1 / std of posterior samples z = μ + σ·ε over the training images (the first SCALE_IMAGES of the
// split; SD's 0.18215 is this for its VAE, from one batch): the scaling that gives the diffusion
// model unit-variance latents.
static vkp_status scaling_factor(vkp_vtrainer *t, double *out, vkp_error *err) {
  const int eb = (int)t->k.eval_batch;
  const size_t pi = vkp_vtrain_pixels_item(t), li = vkp_vtrain_latent_item(t);
  if (!t->eg.g) VKP_TRY(vkp_vtrain_build_graph(t, &t->eg, eb, false, err));
  memset(t->noise, 0, (size_t)eb * li * sizeof(float));
  vkp_rng r = vkp_rng_new(vkp_rng_key(t->k.seed ^ STREAM_SCALE, 0, 0));
  float *eps = malloc(li * sizeof *eps);
  if (!eps) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  double sum = 0, sq = 0, n = 0;
  vkp_status st = VKP_OK;
  size_t total = t->n_train < SCALE_IMAGES ? t->n_train : SCALE_IMAGES;
  for (size_t j0 = 0; j0 < total && !st; j0 += (size_t)eb) {
    size_t m = total - j0 < (size_t)eb ? total - j0 : (size_t)eb;
    for (size_t s = 0; s < m; s++) memcpy(t->x + s * pi, t->px_train + t->train_idx[j0 + s] * pi, pi * sizeof(float));
    double l, rc, kl;
    st = vkp_vtrain_run_graph(t, &t->eg, true, &l, &rc, &kl, err);
    for (size_t s = 0; s < m && !st; s++) {
      vkp_rng_randn(&r, eps, li);
      for (size_t i = 0; i < li; i++) {
        double z = t->mean[s * li + i] + exp(0.5 * t->logvar[s * li + i]) * eps[i];
        sum += z, sq += z * z, n += 1;
      }
    }
  }
  free(eps);
  if (st) return st;
  double var = n > 1 ? (sq - sum * sum / n) / (n - 1) : 0;
  *out = var > 0 ? 1 / sqrt(var) : 1;
  return VKP_OK;
}

static uint8_t to_byte(float v) {
  double x = (v * 0.5 + 0.5) * 255.0;
  return (uint8_t)(x < 0 ? 0 : x > 255 ? 255 : lround(x));
}

// Row 0: up to GRID_MAX validation images; row 1: their reconstructions from the posterior mean.
static vkp_status recon_grid(vkp_vtrainer *t, const char *path, vkp_error *err) {
  const int eb = (int)t->k.eval_batch, R = t->resolution;
  const size_t pi = vkp_vtrain_pixels_item(t), R2 = (size_t)R * R;
  size_t n = t->n_val < GRID_MAX ? t->n_val : GRID_MAX;
  if (n == 0) return VKP_OK;
  vkp_image *img;
  VKP_TRY(vkp_image_new((int)n * R, 2 * R, 3, &img, err));
  memset(t->noise, 0, (size_t)eb * vkp_vtrain_latent_item(t) * sizeof(float));
  vkp_status st = VKP_OK;
  for (size_t j0 = 0; j0 < n && !st; j0 += (size_t)eb) {
    size_t m = n - j0 < (size_t)eb ? n - j0 : (size_t)eb;
    for (size_t s = 0; s < m; s++) memcpy(t->x + s * pi, vkp_vtrain_val_pixels(t, j0 + s), pi * sizeof(float));
    double l, rc, kl;
    st = vkp_vtrain_run_graph(t, &t->eg, true, &l, &rc, &kl, err);
    for (size_t s = 0; s < m && !st; s++)
      for (int row = 0; row < 2; row++) {
        const float *src = (row ? t->recon : t->x) + s * pi;
        for (size_t i = 0; i < R2; i++)
          for (int c = 0; c < 3; c++) {
            size_t y = (size_t)row * R + i / R, x = (j0 + s) * R + i % R;
            img->data[y * vkp_image_stride(img) + x * 3 + c] = to_byte(src[c * R2 + i]);
          }
      }
  }
  if (!st) st = vkp_png_write(path, img, NULL, 0, err);
  vkp_image_free(img);
  return st;
}

// True when some `peft` entry is not "full": vae/ then holds the base, adapter/ the trained part.
static bool has_adapters(const vkp_vtrainer *t) {
  const cJSON *item;
  cJSON_ArrayForEach(item, vkp_config_get(t->cfg, "peft")) {
    const char *m = vkp_config_string(item, "method");
    if (!m || strcmp(m, "full")) return true;
  }
  return false;
}

vkp_status vkp_vtrain_finish(vkp_vtrainer *t, vkp_error *err) {
  char path[1500];
  if (has_adapters(t)) VKP_TRY(vkp_trainer_save_adapters(t->vae->model, t->dir, NULL, NULL, err));
  VKP_TRY(scaling_factor(t, &t->scaling, err));
  t->vae->cfg.scaling_factor = (float)t->scaling;
  snprintf(path, sizeof path, "%s/vae", t->dir);
  VKP_TRY(vkp_vae_save(t->vae, path, err));
  snprintf(path, sizeof path, "%s/reconstructions.png", t->dir);
  VKP_TRY(recon_grid(t, path, err));
  vkp_metric m[1] = {{"scaling_factor", t->scaling}};
  VKP_TRY(vkp_metrics_write(t->mw, t->step, m, 1, err));
  if (!t->quiet) printf("vkpeft train: VAE saved in %s/vae (scaling_factor %.5f), reconstructions in %s/reconstructions.png\n", t->dir,
                        t->scaling, t->dir);
  return VKP_OK;
}
