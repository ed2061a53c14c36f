// family_vae.c — diffusers' AutoencoderKL as a model family: `vkpeft forward`, `info` and
// `export` on a diffusers `vae/` folder (see vkp_family.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_family.h"
#include "vkp_ops.h"
#include "vkp_vae.h"

static vkp_status vae_load(vkp_ctx *ctx, const char *dir, const char *aux_dir, vkp_loaded_model *out, vkp_error *err) {
  (void)aux_dir;
  vkp_vae *v = NULL;
  VKP_TRY(vkp_vae_load(ctx, dir, false, &v, err));
  out->impl = v;
  out->model = v->model;
  return VKP_OK;
}

static void vae_free(vkp_loaded_model *lm) { vkp_vae_free(lm->impl); }

static void vae_describe(const vkp_loaded_model *lm, char *out, size_t cap) {
  const vkp_vae *v = lm->impl;
  const vkp_vae_config *c = &v->cfg;
  size_t n = (size_t)snprintf(out, cap, "AutoencoderKL, %d -> %d latent channels (x%d downsampling), blocks", c->in_channels,
                              c->latent_channels, 1 << (c->n_blocks - 1));
  for (int i = 0; i < c->n_blocks && n < cap; i++) n += (size_t)snprintf(out + n, cap - n, "%s%d", i ? " / " : " ", c->block_out_channels[i]);
  if (n < cap)
    n += (size_t)snprintf(out + n, cap - n, ", %d layers per block, scaling factor %g", c->layers_per_block, (double)c->scaling_factor);
  if (c->has_shift_factor && n < cap) n += (size_t)snprintf(out + n, cap - n, ", shift factor %g", (double)c->shift_factor);
  if (n < cap) snprintf(out + n, cap - n, ", weights %s", vkp_dtype_name(v->enc_conv_in->weight->dtype));
}

static vkp_status vae_save(const vkp_loaded_model *lm, const char *dir, vkp_error *err) {
  return vkp_vae_save(lm->impl, dir, err);
}

// Inputs (either or both): vae_in (B, in_channels, H, W) -> vae_mean, vae_logvar (and vae_sample
// = mean + std * vae_noise when `vae_noise` is given); sample (B, latent_channels, h, w) ->
// vae_decoded. Loss: MSE of the decoded image against `target` (needs `sample`).
static vkp_status vae_forward(const vkp_loaded_model *lm, vkp_graph *g, const vkp_safetensors *in, const char *where,
                              bool with_loss, vkp_forward_io *io, vkp_error *err) {
  vkp_vae *v = lm->impl;
  const vkp_vae_config *c = &v->cfg;
  bool enc = vkp_forward_io_has(in, "vae_in"), dec = vkp_forward_io_has(in, "sample");
  if (!enc && !dec) return vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: no tensor 'vae_in' or 'sample'", where);
  vkp_status st = VKP_OK;
  if (enc) {
    vkp_tensor *x, *mean, *logvar, *noise = NULL;
    VKP_TRY(vkp_forward_io_input(io, g, in, where, "vae_in", VKP_DTYPE_F32, 4, (int64_t[]){-1, c->in_channels, -1, -1}, &x, err));
    if ((st = vkp_vae_encode(v, g, x, &mean, &logvar))) return vkp_error_set(err, st, "%s: %s", where, vkp_graph_error(g));
    if (vkp_forward_io_has(in, "vae_noise"))
      VKP_TRY(vkp_forward_io_input(io, g, in, where, "vae_noise", VKP_DTYPE_F32, 4, mean->shape, &noise, err));
    st = vkp_forward_io_output(io, "vae_mean", mean);
    if (!st) st = vkp_forward_io_output(io, "vae_logvar", logvar);
    if (!st && noise) st = vkp_forward_io_output(io, "vae_sample", vkp_vae_sample(g, mean, logvar, noise));
  }
  if (!st && dec) {
    vkp_tensor *z, *image, *target;
    VKP_TRY(vkp_forward_io_input(io, g, in, where, "sample", VKP_DTYPE_F32, 4, (int64_t[]){-1, c->latent_channels, -1, -1}, &z, err));
    if ((st = vkp_vae_decode(v, g, z, &image))) return vkp_error_set(err, st, "%s: %s", where, vkp_graph_error(g));
    if (with_loss) {
      VKP_TRY(vkp_forward_io_input(io, g, in, where, "target", VKP_DTYPE_F32, 4, image->shape, &target, err));
      io->loss = vkp_mse(g, image, target);
    }
    st = vkp_forward_io_output(io, "vae_decoded", image);
  }
  if (st) return vkp_error_set(err, st, "out of host memory");
  if (with_loss && !io->loss) return vkp_error_set(err, VKP_ERR_INVALID, "%s: --loss on a VAE needs 'sample' and 'target'", where);
  return VKP_OK;
}

static const char *const vae_types[] = {"AutoencoderKL", NULL};

const vkp_model_family vkp_family_vae = {
    .name = "vae",
    .description = "diffusers AutoencoderKL",
    .config_types = vae_types,
    .load = vae_load,
    .free = vae_free,
    .describe = vae_describe,
    .save = vae_save,
    .forward = vae_forward,
    .eval = NULL,
};
