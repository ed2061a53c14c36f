// unet.c — UNet2DConditionModel: its modules under the diffusers checkpoint names (the one place
// that spells them), loading and saving diffusers folders, and the forward pass.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_fileio.h"
#include "vkp_peft.h"
#include "vkp_safetensors.h"
#include "vkp_unet.h"

int vkp_unet_time_embed_dim(const vkp_unet_config *c) {
  return c->time_embed_dim ? c->time_embed_dim : 4 * c->block_out_channels[0];
}

// ---- modules ------------------------------------------------------------------------------------

#define NAME(...) (snprintf(n, sizeof n, __VA_ARGS__), n)

static vkp_status add_down(vkp_unet *u, int i, int in) {
  const vkp_unet_config *c = &u->cfg;
  vkp_model *m = u->model;
  vkp_unet_down *d = &u->down[i];
  char n[256];
  int C = c->block_out_channels[i];
  d->n_resnets = c->layers_per_block[i];
  if (c->down_cross[i] && !(d->attentions = calloc((size_t)d->n_resnets, sizeof *d->attentions))) return VKP_ERR_OOM;
  for (int l = 0; l < d->n_resnets; l++) {
    VKP_TRY(vkp_sd_resnet_add(m, NAME("down_blocks.%d.resnets.%d", i, l), l ? C : in, C, vkp_unet_time_embed_dim(c), &d->resnets[l]));
    if (d->attentions)
      VKP_TRY(vkp_sd_transformer_add(m, NAME("down_blocks.%d.attentions.%d", i, l), C, c->heads[i], c->transformer_layers[i],
                                     c->cross_attention_dim[i], c->use_linear_projection, &d->attentions[l]));
  }
  if (i < c->n_blocks - 1 && !(d->downsampler = vkp_sd_conv_add(m, NAME("down_blocks.%d.downsamplers.0.conv", i), C, C, 3)))
    return VKP_ERR_OOM;
  return VKP_OK;
}

static vkp_status add_mid(vkp_unet *u) {
  const vkp_unet_config *c = &u->cfg;
  vkp_model *m = u->model;
  int last = c->n_blocks - 1, C = c->block_out_channels[last];
  if (!(u->mid_attention = calloc(1, sizeof *u->mid_attention))) return VKP_ERR_OOM;
  VKP_TRY(vkp_sd_resnet_add(m, "mid_block.resnets.0", C, C, vkp_unet_time_embed_dim(c), &u->mid_resnets[0]));
  VKP_TRY(vkp_sd_transformer_add(m, "mid_block.attentions.0", C, c->heads[last], c->transformer_layers[last],
                                 c->cross_attention_dim[last], c->use_linear_projection, u->mid_attention));
  return vkp_sd_resnet_add(m, "mid_block.resnets.1", C, C, vkp_unet_time_embed_dim(c), &u->mid_resnets[1]);
}

// Up block i works on the down blocks in reverse (r = n-1-i); its resnets take the previous output
// concatenated with a skip connection (diffusers' channel arithmetic, checked by the config).
static vkp_status add_up(vkp_unet *u, int i) {
  const vkp_unet_config *c = &u->cfg;
  vkp_model *m = u->model;
  vkp_unet_up *up = &u->up[i];
  char n[256];
  int nb = c->n_blocks, r = nb - 1 - i;
  int out = c->block_out_channels[r], in = c->block_out_channels[r > 0 ? r - 1 : 0];
  int prev = c->block_out_channels[i ? r + 1 : r];
  up->n_resnets = c->layers_per_block[r] + 1;
  if (c->up_cross[i] && !(up->attentions = calloc((size_t)up->n_resnets, sizeof *up->attentions))) return VKP_ERR_OOM;
  for (int l = 0; l < up->n_resnets; l++) {
    int skip = l == up->n_resnets - 1 ? in : out;
    VKP_TRY(vkp_sd_resnet_add(m, NAME("up_blocks.%d.resnets.%d", i, l), (l ? out : prev) + skip, out, vkp_unet_time_embed_dim(c),
                              &up->resnets[l]));
    if (up->attentions)
      VKP_TRY(vkp_sd_transformer_add(m, NAME("up_blocks.%d.attentions.%d", i, l), out, c->heads[r], c->transformer_layers[r],
                                     c->cross_attention_dim[r], c->use_linear_projection, &up->attentions[l]));
  }
  if (i < nb - 1 && !(up->upsampler = vkp_sd_conv_add(m, NAME("up_blocks.%d.upsamplers.0.conv", i), out, out, 3)))
    return VKP_ERR_OOM;
  return VKP_OK;
}

#undef NAME

// Registers every module (zero-filled parameters).
static vkp_status build(vkp_ctx *ctx, const vkp_unet_config *cfg, vkp_unet **out, vkp_error *err) {
  *out = NULL;
  VKP_TRY(vkp_unet_config_check(cfg, "unet config", err));
  vkp_unet *u = calloc(1, sizeof *u);
  if (!u) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  u->cfg = *cfg;
  vkp_status st = vkp_model_new(ctx, &u->model);
  if (st) {
    free(u);
    return vkp_error_set(err, st, "%s", vkp_ctx_error(ctx));
  }
  vkp_model *m = u->model;
  const vkp_unet_config *c = &u->cfg;
  int C0 = c->block_out_channels[0], T = vkp_unet_time_embed_dim(c);
  u->conv_in = vkp_sd_conv_add(m, "conv_in", C0, c->in_channels, c->conv_in_kernel);
  u->time_linear_1 = vkp_sd_linear_add(m, "time_embedding.linear_1", T, C0, true);
  u->time_linear_2 = vkp_sd_linear_add(m, "time_embedding.linear_2", T, T, true);
  if (!u->conv_in || !u->time_linear_1 || !u->time_linear_2) st = VKP_ERR_OOM;
  for (int i = 0; !st && i < c->n_blocks; i++) st = add_down(u, i, i ? c->block_out_channels[i - 1] : C0);
  if (!st && c->mid_block) st = add_mid(u);
  for (int i = 0; !st && i < c->n_blocks; i++) st = add_up(u, i);
  if (!st) {
    u->conv_norm_out = vkp_sd_group_norm_add(m, "conv_norm_out", C0);
    u->conv_out = vkp_sd_conv_add(m, "conv_out", c->out_channels, C0, c->conv_out_kernel);
    if (!u->conv_norm_out || !u->conv_out) st = VKP_ERR_OOM;
  }
  if (st) {
    vkp_error_set(err, st, "unet: %s", vkp_ctx_error(ctx)[0] ? vkp_ctx_error(ctx) : vkp_status_name(st));
    vkp_unet_free(u);
    return st;
  }
  *out = u;
  return VKP_OK;
}

vkp_status vkp_unet_new(vkp_ctx *ctx, const vkp_unet_config *cfg, uint64_t seed, vkp_unet **out, vkp_error *err) {
  VKP_TRY(build(ctx, cfg, out, err));
  vkp_status st = vkp_sd_init_default((*out)->model, seed);
  if (st) {
    vkp_error_set(err, st, "unet: %s", vkp_ctx_error(ctx));
    vkp_unet_free(*out);
    *out = NULL;
  }
  return st;
}

vkp_status vkp_unet_new_empty(vkp_ctx *ctx, const vkp_unet_config *cfg, vkp_unet **out, vkp_error *err) {
  return build(ctx, cfg, out, err);
}

void vkp_unet_free(vkp_unet *u) {
  if (!u) return;
  for (int i = 0; i < VKP_UNET_MAX_BLOCKS; i++) free(u->down[i].attentions), free(u->up[i].attentions);
  free(u->mid_attention);
  vkp_model_free(u->model);
  free(u);
}

// ---- loading and saving -------------------------------------------------------------------------

vkp_status vkp_unet_load_weights(vkp_unet *u, const char *path, const char *prefix, vkp_key_map_fn map, void *map_user,
                                 bool keep_dtype, vkp_error *err) {
  vkp_load_options o = {.prefix = prefix, .map = map, .map_user = map_user, .keep_dtype = keep_dtype};
  return vkp_sd_load_weights(u->model, path, &o, "UNet2DConditionModel", err);
}

// The tensors whose shapes follow from config.json (conv_in, the time embedding, conv_out, the first
// and last resnet and transformer of every down block, the mid block), checked against the
// checkpoint's header before anything is allocated.
static vkp_status check_checkpoint_shapes(const char *path, const char *config, const vkp_unet_config *c, vkp_error *err) {
  vkp_st_expect w[8 + 4 * VKP_UNET_MAX_BLOCKS];
  int n = 0, nb = c->n_blocks, C0 = c->block_out_channels[0], T = vkp_unet_time_embed_dim(c);
  char keys[192];
  snprintf(keys, sizeof keys, "block_out_channels[0] %d, in_channels %d, conv_in_kernel %d", C0, c->in_channels, c->conv_in_kernel);
  vkp_st_expect_set(&w[n++], keys, 4, (int64_t[]){C0, c->in_channels, c->conv_in_kernel, c->conv_in_kernel}, "conv_in.weight");
  snprintf(keys, sizeof keys, "time_embedding_dim %d, block_out_channels[0] %d", T, C0);
  vkp_st_expect_set(&w[n++], keys, 2, (int64_t[]){T, C0}, "time_embedding.linear_1.weight");
  snprintf(keys, sizeof keys, "out_channels %d, block_out_channels[0] %d, conv_out_kernel %d", c->out_channels, C0, c->conv_out_kernel);
  vkp_st_expect_set(&w[n++], keys, 4, (int64_t[]){c->out_channels, C0, c->conv_out_kernel, c->conv_out_kernel}, "conv_out.weight");
  for (int i = 0; i < nb; i++) {
    int C = c->block_out_channels[i], in = i ? c->block_out_channels[i - 1] : C0, L = c->layers_per_block[i];
    snprintf(keys, sizeof keys, "block_out_channels[%d] %d, block_out_channels[%d] %d", i, C, i ? i - 1 : 0, in);
    vkp_st_expect_set(&w[n++], keys, 4, (int64_t[]){C, in, 3, 3}, "down_blocks.%d.resnets.0.conv1.weight", i);
    snprintf(keys, sizeof keys, "layers_per_block %d (down block %d), block_out_channels[%d] %d", L, i, i, C);
    vkp_st_expect_set(&w[n++], keys, 4, (int64_t[]){C, L > 1 ? C : in, 3, 3}, "down_blocks.%d.resnets.%d.conv1.weight", i, L - 1);
    if (c->down_cross[i]) {
      snprintf(keys, sizeof keys, "cross_attention_dim %d, transformer_layers_per_block %d (down block %d), block_out_channels[%d] %d",
               c->cross_attention_dim[i], c->transformer_layers[i], i, i, C);
      vkp_st_expect_set(&w[n++], keys, 2, (int64_t[]){C, c->cross_attention_dim[i]},
                        "down_blocks.%d.attentions.0.transformer_blocks.%d.attn2.to_k.weight", i, c->transformer_layers[i] - 1);
    }
  }
  if (c->mid_block) {
    int last = nb - 1, C = c->block_out_channels[last];
    snprintf(keys, sizeof keys, "block_out_channels[%d] %d", last, C);
    vkp_st_expect_set(&w[n++], keys, 4, (int64_t[]){C, C, 3, 3}, "mid_block.resnets.0.conv1.weight");
    snprintf(keys, sizeof keys, "cross_attention_dim %d, transformer_layers_per_block %d (mid block), block_out_channels[%d] %d",
             c->cross_attention_dim[last], c->transformer_layers[last], last, C);
    vkp_st_expect_set(&w[n++], keys, 2, (int64_t[]){C, c->cross_attention_dim[last]},
                      "mid_block.attentions.0.transformer_blocks.%d.attn2.to_k.weight", c->transformer_layers[last] - 1);
  }
  vkp_safetensors *sf = NULL;
  VKP_TRY(vkp_safetensors_open(path, &sf, err));
  vkp_status st = vkp_safetensors_expect(sf, path, config, w, n, err);
  vkp_safetensors_free(sf);
  return st;
}

vkp_status vkp_unet_load(vkp_ctx *ctx, const char *dir, const vkp_unet_load_opts *opts, vkp_unet **out, vkp_error *err) {
  *out = NULL;
  char path[1024], config[1024];
  snprintf(config, sizeof config, "%s/config.json", dir);
  vkp_unet_config cfg;
  VKP_TRY(vkp_unet_config_load(config, &cfg, err));
  VKP_TRY(vkp_sd_weights_path(dir, path, sizeof path, err));
  // The checkpoint must fit the config before the model is allocated (a config.json that claims a
  // huge model must not cost its memory first).
  VKP_TRY(check_checkpoint_shapes(path, config, &cfg, err));
  vkp_unet *u;
  VKP_TRY(build(ctx, &cfg, &u, err));
  vkp_status st = vkp_unet_load_weights(u, path, NULL, NULL, NULL, !(opts && opts->f32), err);
  if (st) {
    vkp_unet_free(u);
    return st;
  }
  *out = u;
  return VKP_OK;
}

vkp_status vkp_unet_save(vkp_unet *u, const char *dir, vkp_error *err) {
  VKP_TRY(vkp_dir_create(dir, err));
  char path[1024];
  snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
  VKP_TRY(vkp_sd_save_weights(u->model, path, err));
  snprintf(path, sizeof path, "%s/config.json", dir);
  return vkp_unet_config_save(&u->cfg, path, err);
}

// ---- forward ------------------------------------------------------------------------------------

vkp_status vkp_unet_forward(vkp_unet *u, vkp_graph *g, vkp_tensor *sample, vkp_tensor *timestep,
                            vkp_tensor *encoder_hidden_states, vkp_tensor **noise_pred) {
  vkp_model *m = u->model;
  const vkp_unet_config *c = &u->cfg;
  *noise_pred = NULL;
  vkp_model_begin_graph(m, g);
  int nb = c->n_blocks, factor = 1 << (nb - 1);
  if (!sample || sample->ndim != 4 || sample->shape[1] != c->in_channels)
    return vkp_graph_fail(g, VKP_ERR_SHAPE, "unet: sample must be (B, %d, h, w)", c->in_channels);
  int64_t B = sample->shape[0];
  if (sample->shape[2] % factor || sample->shape[3] % factor)
    return vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "unet: sample is %lldx%lld; height and width must be multiples of %d",
                          (long long)sample->shape[2], (long long)sample->shape[3], factor);
  if (!timestep || timestep->ndim != 1 || timestep->shape[0] != B || timestep->dtype != VKP_DTYPE_F32)
    return vkp_graph_fail(g, VKP_ERR_SHAPE, "unet: timestep must be (%lld) f32", (long long)B);
  bool attends = c->mid_block;
  for (int i = 0; i < nb; i++) attends = attends || c->down_cross[i] || c->up_cross[i];
  vkp_tensor *ctx = encoder_hidden_states;
  if (attends && (!ctx || ctx->ndim != 3 || ctx->shape[0] != B))
    return vkp_graph_fail(g, VKP_ERR_SHAPE, "unet: encoder_hidden_states must be (%lld, T, %d)", (long long)B,
                          c->cross_attention_dim[0]);
  // Visual prompt tuning would fit the transformer blocks (they attend), but each Transformer2DModel
  // rebuilds its token sequence from the feature map: prompts have no place to live between them.
  for (int i = 0; i < vkp_peft_count(m); i++)
    if (vkp_adapter_config(vkp_peft_get(m, i))->method == VKP_PEFT_VPT)
      return vkp_graph_fail(g, VKP_ERR_UNSUPPORTED,
                            "unet: visual prompt tuning (adapter '%s') does not apply to the UNet's spatial transformers; "
                            "use prefix tuning or a bottleneck adapter",
                            vkp_adapter_config(vkp_peft_get(m, i))->name);
  int G = c->norm_num_groups;
  float eps = c->norm_eps;
  // Time embedding: sinusoids (Timesteps), linear_1, act, linear_2; every resnet projects act(emb).
  vkp_tensor *emb = vkp_timestep_embedding(g, timestep, c->block_out_channels[0], c->flip_sin_to_cos, c->freq_shift, 10000.0f);
  emb = vkp_nn_linear(m, u->time_linear_2, vkp_silu(g, vkp_nn_linear(m, u->time_linear_1, emb)));
  vkp_tensor *temb = vkp_silu(g, emb);
  vkp_tensor *x = c->center_input_sample ? vkp_affine(g, sample, 2.0f, -1.0f) : sample;
  x = vkp_nn_conv2d(m, u->conv_in, x, 1, (c->conv_in_kernel - 1) / 2);
  // Down: every resnet (+ transformer) output and every downsampler output is a skip connection.
  vkp_tensor *skips[1 + VKP_UNET_MAX_BLOCKS * (VKP_UNET_MAX_LAYERS + 1)];
  int top = 0;
  skips[top++] = x;
  for (int i = 0; i < nb; i++) {
    const vkp_unet_down *d = &u->down[i];
    for (int l = 0; l < d->n_resnets; l++) {   // each resnet (+ transformer) one checkpoint segment
      vkp_model_block_begin(m);
      x = vkp_sd_resnet_forward(m, &d->resnets[l], x, temb, G, eps, 1.0f);
      if (d->attentions) x = vkp_sd_transformer_forward(m, &d->attentions[l], x, ctx, G);
      vkp_model_block_end(m);
      skips[top++] = x;
    }
    if (d->downsampler) {
      x = vkp_sd_downsample(m, d->downsampler, x, c->downsample_padding);
      skips[top++] = x;
    }
  }
  if (c->mid_block) {
    vkp_model_block_begin(m);
    x = vkp_sd_resnet_forward(m, &u->mid_resnets[0], x, temb, G, eps, c->mid_block_scale_factor);
    x = vkp_sd_transformer_forward(m, u->mid_attention, x, ctx, G);
    x = vkp_sd_resnet_forward(m, &u->mid_resnets[1], x, temb, G, eps, c->mid_block_scale_factor);
    vkp_model_block_end(m);
  }
  // Up: each resnet takes cat([x, last skip], channels).
  for (int i = 0; i < nb; i++) {
    const vkp_unet_up *up = &u->up[i];
    for (int l = 0; l < up->n_resnets; l++) {
      vkp_model_block_begin(m);
      x = vkp_concat(g, vkp_contiguous(g, x), vkp_contiguous(g, skips[--top]), 1);
      x = vkp_sd_resnet_forward(m, &up->resnets[l], x, temb, G, eps, 1.0f);
      if (up->attentions) x = vkp_sd_transformer_forward(m, &up->attentions[l], x, ctx, G);
      vkp_model_block_end(m);
    }
    if (up->upsampler) x = vkp_sd_upsample(m, up->upsampler, x);
  }
  x = vkp_nn_group_norm_silu(m, u->conv_norm_out, x, G, eps);
  *noise_pred = vkp_nn_conv2d(m, u->conv_out, x, 1, (c->conv_out_kernel - 1) / 2);
  return vkp_graph_status(g);
}
