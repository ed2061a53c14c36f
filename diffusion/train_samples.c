// train_samples.c — sample grids while a diffusion run trains: samples/step-NNNNNN.png every
// samples.every steps (and at the end), one column per prompt of samples.prompts (seed
// samples.seed + column), the first row with the adapters off (the frozen base: drawn once), the
// second with the adapters as trained so far, a third with their EMA (train.ema_decay). Sampling goes through a vkp_pipeline made from the
// trainer's own parts (vkp_pipeline_from_parts; the pipeline owns them from then on) and draws
// from its own generators, so the training run's numbers do not change.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"
#include "vkp_config.h"
#include "vkp_fileio.h"
#include "vkp_plot.h"
#include "vkp_png.h"

// The pipeline over the trainer's parts, made at the first grid.
static vkp_status make_pipeline(vkp_dtrainer *t, vkp_error *err) {
  char path[1200];
  snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", vkp_config_string(t->cfg, "model.pretrained"));
  vkp_scheduler_config sc;
  VKP_TRY(vkp_scheduler_config_load(path, &sc, err));
  if (t->v_prediction) sc.prediction_type = VKP_PRED_V;
  sc.rescale_betas_zero_snr = t->sched->cfg.rescale_betas_zero_snr;
  vkp_pipeline_opts po = {.latent_height = t->latent_h, .latent_width = t->latent_w};
  vkp_status st = vkp_pipeline_from_parts(t->ctx, vkp_config_string(t->cfg, "model.pretrained"), t->unet, t->vae, &sc, t->te,
                                          &po, &t->pipe, err);
  t->parts_in_pipeline = true;   // taken over, also on failure
  if (st) t->unet = NULL, t->vae = NULL, t->te = NULL;
  return st;
}

static void set_adapters(vkp_dtrainer *t, bool on) {
  vkp_model *m = t->unet->model;
  for (int i = 0; i < vkp_peft_count(m); i++) vkp_adapter_set_enabled(vkp_peft_get(m, i), on);
  vkp_dtrain_te_enable(t, on);   // peft_text_encoder's adapters too
  vkp_pipeline_invalidate(t->pipe);
}

// One row: prompt k with seed + k, into rgb + k·3·R² (H·W·3 bytes each).
static vkp_status sample_row(vkp_dtrainer *t, const cJSON *prompts, uint8_t *rgb, vkp_error *err) {
  const cJSON *c = t->cfg;
  long steps, seed;
  double cfg;
  VKP_TRY(vkp_config_int(c, "samples.steps", 1, 1000, &steps, err));
  VKP_TRY(vkp_config_int(c, "samples.seed", 0, 1l << 40, &seed, err));
  VKP_TRY(vkp_config_real(c, "samples.cfg", 0, 100, &cfg, err));
  vkp_sampler_kind kind = VKP_SAMPLER_DDIM;
  int karras = VKP_SAMPLER_FROM_CONFIG;
  size_t n = (size_t)t->latent_c * t->latent_h * t->latent_w, S = (size_t)t->tokens * t->text_dim, R2 = (size_t)t->resolution * t->resolution;
  float *lat = malloc(n * sizeof *lat), *cond = malloc(S * sizeof *cond), *uncond = malloc(S * sizeof *uncond);
  float *decoded = malloc(3 * R2 * sizeof *decoded);
  vkp_status st = lat && cond && uncond && decoded ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  if (!st) st = vkp_sampler_parse_name(vkp_config_string(c, "samples.sampler"), &kind, &karras, err);
  vkp_sampler_opts so = vkp_sampler_opts_default(kind, (int)steps);
  so.karras = karras;   // 1 for a "... karras" name, else the config's
  const char *neg = vkp_config_string(c, "samples.negative_prompt");
  if (!st) st = vkp_pipeline_encode_prompt(t->pipe, neg ? neg : "", uncond, err);
  int k = 0;
  const cJSON *p;
  cJSON_ArrayForEach(p, prompts) {
    if (st) break;
    vkp_sampler *s = NULL;
    vkp_rng rng = vkp_rng_new((uint64_t)seed + (uint64_t)k);
    st = vkp_pipeline_encode_prompt(t->pipe, p->valuestring, cond, err);
    if (!st) st = vkp_sampler_new(vkp_pipeline_scheduler_config(t->pipe), &so, n, &s, err);
    if (!st) vkp_sampler_init_latents(s, &rng, lat);
    if (!st) st = vkp_pipeline_sample(t->pipe, s, lat, cond, uncond, (float)cfg, &rng, NULL, NULL, err);
    if (!st) st = vkp_pipeline_decode(t->pipe, lat, false, decoded, rgb + (size_t)k * 3 * R2, err);
    vkp_sampler_free(s);
    k++;
  }
  free(lat), free(cond), free(uncond), free(decoded);
  return st;
}

vkp_status vkp_dtrain_sample_grid(vkp_dtrainer *t, vkp_error *err) {
  const cJSON *prompts = vkp_config_get(t->cfg, "samples.prompts");
  int P = cJSON_GetArraySize(prompts);
  if (P == 0) return VKP_OK;
  size_t R2 = (size_t)t->resolution * t->resolution;
  if (!t->pipe) VKP_TRY(make_pipeline(t, err));
  const int rows = t->ema.decay > 0 ? 3 : 2;
  uint8_t *row = malloc((size_t)(rows - 1) * P * 3 * R2);   // the trained rows (on, EMA)
  if (!row) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  vkp_status st = VKP_OK;
  if (!t->base_rgb) {   // the frozen base: the same at every step, drawn once
    if (!(t->base_rgb = malloc((size_t)P * 3 * R2))) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    if (!st) set_adapters(t, false);
    if (!st) st = sample_row(t, prompts, t->base_rgb, err);
    set_adapters(t, true);   // the pipeline's UNet graph is built with the adapters from here on
  }
  if (!st) st = sample_row(t, prompts, row, err);
  if (!st && rows == 3) {   // the average swapped into the adapters for one row, the trained values back after
    st = vkp_dtrain_ema_swap(t, true, err);
    if (!st) st = sample_row(t, prompts, row + (size_t)P * 3 * R2, err);
    vkp_status back = vkp_dtrain_ema_swap(t, false, st ? NULL : err);
    if (!st) st = back;
  }
  vkp_image *cells = calloc((size_t)rows * P, sizeof *cells);
  const char **caps = calloc((size_t)rows * P, sizeof *caps);
  char step_cap[2][64];
  snprintf(step_cap[0], sizeof step_cap[0], "step %lld", (long long)t->step);
  snprintf(step_cap[1], sizeof step_cap[1], "step %lld EMA", (long long)t->step);
  if (!st && (!cells || !caps)) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  int k = 0;
  const cJSON *p, *list = st ? NULL : prompts;
  cJSON_ArrayForEach(p, list) {
    cells[k] = (vkp_image){.width = t->resolution, .height = t->resolution, .channels = 3, .data = t->base_rgb + (size_t)k * 3 * R2};
    caps[k] = p->valuestring;
    for (int r = 1; r < rows; r++) {
      cells[r * P + k] = (vkp_image){.width = t->resolution, .height = t->resolution, .channels = 3,
                                     .data = row + ((size_t)(r - 1) * P + (size_t)k) * 3 * R2};
      caps[r * P + k] = step_cap[r - 1];
    }
    k++;
  }
  vkp_image *grid = NULL;
  char title[96], dir[1100], path[1200];
  snprintf(title, sizeof title, "step %lld: adapters off (top), on (%s)%s", (long long)t->step, rows == 3 ? "middle" : "bottom",
           rows == 3 ? ", EMA (bottom)" : "");
  vkp_image_grid g = {.title = title, .images = cells, .captions = caps, .n = rows * P, .cols = P};
  if (!st) st = vkp_plot_image_grid(&g, &grid, err);
  snprintf(dir, sizeof dir, "%s/samples", t->dir);
  snprintf(path, sizeof path, "%s/step-%06lld.png", dir, (long long)t->step);
  if (!st) st = vkp_dir_create(dir, err);
  if (!st) st = vkp_png_write(path, grid, NULL, 0, err);
  vkp_image_free(grid);
  free(cells), free(caps), free(row);
  return st;
}
