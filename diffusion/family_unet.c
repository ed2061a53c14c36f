// family_unet.c — diffusers' UNet2DConditionModel as a model family: `vkpeft forward`, `info` and
// `export` on a diffusers `unet/` folder (see vkp_family.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_family.h"
#include "vkp_ops.h"
#include "vkp_unet.h"

static vkp_status unet_load(vkp_ctx *ctx, const char *dir, const char *aux_dir, vkp_loaded_model *out, vkp_error *err) {
  (void)aux_dir;
  vkp_unet *u = NULL;
  VKP_TRY(vkp_unet_load(ctx, dir, NULL, &u, err));
  out->impl = u;
  out->model = u->model;
  return VKP_OK;
}

static void unet_free(vkp_loaded_model *lm) { vkp_unet_free(lm->impl); }

static void unet_describe(const vkp_loaded_model *lm, char *out, size_t cap) {
  const vkp_unet_config *c = &((vkp_unet *)lm->impl)->cfg;
  size_t n = (size_t)snprintf(out, cap, "UNet2DConditionModel, %d -> %d channels, blocks", c->in_channels, c->out_channels);
  for (int i = 0; i < c->n_blocks && n < cap; i++)
    n += (size_t)snprintf(out + n, cap - n, "%s%d%s", i ? " / " : " ", c->block_out_channels[i], c->down_cross[i] ? " (cross-attn)" : "");
  if (n < cap)
    n += (size_t)snprintf(out + n, cap - n, ", %d layers per block, %d heads, cross-attention dim %d, %s mid block, %s projection",
                          c->layers_per_block[0], c->heads[0], c->cross_attention_dim[0], c->mid_block ? "cross-attn" : "no",
                          c->use_linear_projection ? "linear" : "conv");
  vkp_param *w = ((vkp_unet *)lm->impl)->conv_in->weight;
  if (n < cap) snprintf(out + n, cap - n, ", weights %s", vkp_dtype_name(w->dtype));
}

static vkp_status unet_save(const vkp_loaded_model *lm, const char *dir, vkp_error *err) {
  return vkp_unet_save(lm->impl, dir, err);
}

// Inputs: sample (B, C, h, w), timestep (B) or one value for the batch, encoder_hidden_states
// (B, T, cross_attention_dim). Output: noise_pred. Loss: MSE against `target` (the shape of
// noise_pred), as diffusers' LoRA training computes it.
static vkp_status unet_forward(const vkp_loaded_model *lm, vkp_graph *g, const vkp_safetensors *in, const char *where,
                               bool with_loss, vkp_forward_io *io, vkp_error *err) {
  vkp_unet *u = lm->impl;
  const vkp_unet_config *c = &u->cfg;
  vkp_tensor *sample, *t = NULL, *ctx = NULL, *target = NULL;
  VKP_TRY(vkp_forward_io_input(io, g, in, where, "sample", VKP_DTYPE_F32, 4, (int64_t[]){-1, c->in_channels, -1, -1}, &sample, err));
  int64_t B = sample->shape[0];
  const vkp_st_tensor *ts = vkp_safetensors_find(in, "timestep");
  if (!ts) return vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: no tensor 'timestep'", where);
  if (vkp_st_tensor_numel(ts) == 1) {
    // One timestep for the whole batch (diffusers broadcasts a scalar).
    float v, *data = malloc((size_t)B * sizeof *data);
    if (!data) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    vkp_status st = vkp_safetensors_read_f32(in, "timestep", &v, 1, err);
    for (int64_t i = 0; i < B; i++) data[i] = v;
    t = st ? NULL : vkp_tensor_input(g, "timestep", VKP_DTYPE_F32, 1, &B);
    if (!st && (!t || vkp_vec_push(&io->inputs, ((vkp_forward_input){t, data})))) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    if (st) {
      free(data);
      return st;
    }
  } else {
    VKP_TRY(vkp_forward_io_input(io, g, in, where, "timestep", VKP_DTYPE_F32, 1, &B, &t, err));
  }
  bool attends = c->mid_block;
  for (int i = 0; i < c->n_blocks; i++) attends = attends || c->down_cross[i] || c->up_cross[i];
  if (attends)
    VKP_TRY(vkp_forward_io_input(io, g, in, where, "encoder_hidden_states", VKP_DTYPE_F32, 3,
                                 (int64_t[]){B, -1, c->cross_attention_dim[0]}, &ctx, err));
  vkp_tensor *pred;
  vkp_status st = vkp_unet_forward(u, g, sample, t, ctx, &pred);
  if (st) return vkp_error_set(err, st, "%s: %s", where, vkp_graph_error(g));
  if (with_loss) {
    VKP_TRY(vkp_forward_io_input(io, g, in, where, "target", VKP_DTYPE_F32, 4, pred->shape, &target, err));
    io->loss = vkp_mse(g, pred, target);
  }
  st = vkp_forward_io_output(io, "noise_pred", pred);
  return st ? vkp_error_set(err, st, "out of host memory") : VKP_OK;
}

static const char *const unet_types[] = {"UNet2DConditionModel", NULL};

const vkp_model_family vkp_family_unet = {
    .name = "unet",
    .description = "diffusers UNet2DConditionModel",
    .config_types = unet_types,
    .load = unet_load,
    .free = unet_free,
    .describe = unet_describe,
    .save = unet_save,
    .forward = unet_forward,
    .eval = NULL,
};
