// vae.c — AutoencoderKL: its modules under the diffusers checkpoint names (the one place that
// spells them, with the pre-0.14 attention names mapped on load), loading and saving, encode,
// posterior sampling and decode.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_fileio.h"
#include "vkp_safetensors.h"
#include "vkp_vae.h"

#define EPS 1e-6f   // every GroupNorm of the VAE (resnet_eps, conv_norm_out, the attention's)

// ---- modules ------------------------------------------------------------------------------------

#define NAME(...) (snprintf(n, sizeof n, __VA_ARGS__), n)

// "<prefix>.mid_block": resnet, attention, resnet over C channels.
static vkp_status add_mid(vkp_model *m, const char *prefix, int C, bool attention, vkp_vae_mid *mid) {
  char n[256];
  VKP_TRY(vkp_sd_resnet_add(m, NAME("%s.mid_block.resnets.0", prefix), C, C, 0, &mid->resnets[0]));
  if (attention) VKP_TRY(vkp_sd_spatial_attention_add(m, NAME("%s.mid_block.attentions.0", prefix), C, &mid->attention));
  return vkp_sd_resnet_add(m, NAME("%s.mid_block.resnets.1", prefix), C, C, 0, &mid->resnets[1]);
}

static vkp_status add_encoder(vkp_vae *v) {
  const vkp_vae_config *c = &v->cfg;
  vkp_model *m = v->model;
  char n[256];
  int nb = c->n_blocks, C0 = c->block_out_channels[0], Cl = c->block_out_channels[nb - 1];
  if (!(v->enc_conv_in = vkp_sd_conv_add(m, "encoder.conv_in", C0, c->in_channels, 3))) return VKP_ERR_OOM;
  for (int i = 0; i < nb; i++) {
    vkp_vae_down *d = &v->down[i];
    int C = c->block_out_channels[i], in = i ? c->block_out_channels[i - 1] : C0;
    d->n_resnets = c->layers_per_block;
    for (int l = 0; l < d->n_resnets; l++)
      VKP_TRY(vkp_sd_resnet_add(m, NAME("encoder.down_blocks.%d.resnets.%d", i, l), l ? C : in, C, 0, &d->resnets[l]));
    if (i < nb - 1 && !(d->downsampler = vkp_sd_conv_add(m, NAME("encoder.down_blocks.%d.downsamplers.0.conv", i), C, C, 3)))
      return VKP_ERR_OOM;
  }
  VKP_TRY(add_mid(m, "encoder", Cl, c->mid_block_add_attention, &v->enc_mid));
  v->enc_norm_out = vkp_sd_group_norm_add(m, "encoder.conv_norm_out", Cl);
  v->enc_conv_out = vkp_sd_conv_add(m, "encoder.conv_out", 2 * c->latent_channels, Cl, 3);   // double_z
  return v->enc_norm_out && v->enc_conv_out ? VKP_OK : VKP_ERR_OOM;
}

static vkp_status add_decoder(vkp_vae *v) {
  const vkp_vae_config *c = &v->cfg;
  vkp_model *m = v->model;
  char n[256];
  int nb = c->n_blocks, C0 = c->block_out_channels[0], Cl = c->block_out_channels[nb - 1];
  if (!(v->dec_conv_in = vkp_sd_conv_add(m, "decoder.conv_in", Cl, c->latent_channels, 3))) return VKP_ERR_OOM;
  VKP_TRY(add_mid(m, "decoder", Cl, c->mid_block_add_attention, &v->dec_mid));
  for (int i = 0; i < nb; i++) {
    vkp_vae_up *up = &v->up[i];
    int out = c->block_out_channels[nb - 1 - i], prev = c->block_out_channels[i ? nb - i : nb - 1];
    up->n_resnets = c->layers_per_block + 1;
    for (int l = 0; l < up->n_resnets; l++)
      VKP_TRY(vkp_sd_resnet_add(m, NAME("decoder.up_blocks.%d.resnets.%d", i, l), l ? out : prev, out, 0, &up->resnets[l]));
    if (i < nb - 1 && !(up->upsampler = vkp_sd_conv_add(m, NAME("decoder.up_blocks.%d.upsamplers.0.conv", i), out, out, 3)))
      return VKP_ERR_OOM;
  }
  v->dec_norm_out = vkp_sd_group_norm_add(m, "decoder.conv_norm_out", C0);
  v->dec_conv_out = vkp_sd_conv_add(m, "decoder.conv_out", c->out_channels, C0, 3);
  return v->dec_norm_out && v->dec_conv_out ? VKP_OK : VKP_ERR_OOM;
}

#undef NAME

static vkp_status build(vkp_ctx *ctx, const vkp_vae_config *cfg, vkp_vae **out, vkp_error *err) {
  *out = NULL;
  VKP_TRY(vkp_vae_config_check(cfg, "vae config", err));
  vkp_vae *v = calloc(1, sizeof *v);
  if (!v) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  v->cfg = *cfg;
  vkp_status st = vkp_model_new(ctx, &v->model);
  if (st) {
    free(v);
    return vkp_error_set(err, st, "%s", vkp_ctx_error(ctx));
  }
  int L = cfg->latent_channels;
  st = add_encoder(v);
  if (!st && cfg->use_quant_conv && !(v->quant_conv = vkp_sd_conv_add(v->model, "quant_conv", 2 * L, 2 * L, 1))) st = VKP_ERR_OOM;
  if (!st && cfg->use_post_quant_conv && !(v->post_quant_conv = vkp_sd_conv_add(v->model, "post_quant_conv", L, L, 1)))
    st = VKP_ERR_OOM;
  if (!st) st = add_decoder(v);
  if (st) {
    vkp_error_set(err, st, "vae: %s", vkp_ctx_error(ctx)[0] ? vkp_ctx_error(ctx) : vkp_status_name(st));
    vkp_vae_free(v);
    return st;
  }
  *out = v;
  return VKP_OK;
}

vkp_status vkp_vae_new(vkp_ctx *ctx, const vkp_vae_config *cfg, uint64_t seed, vkp_vae **out, vkp_error *err) {
  VKP_TRY(build(ctx, cfg, out, err));
  vkp_status st = vkp_sd_init_default((*out)->model, seed);
  if (st) {
    vkp_error_set(err, st, "vae: %s", vkp_ctx_error(ctx));
    vkp_vae_free(*out);
    *out = NULL;
  }
  return st;
}

vkp_status vkp_vae_new_empty(vkp_ctx *ctx, const vkp_vae_config *cfg, vkp_vae **out, vkp_error *err) {
  return build(ctx, cfg, out, err);
}

void vkp_vae_free(vkp_vae *v) {
  if (!v) return;
  vkp_model_free(v->model);
  free(v);
}

// ---- loading and saving -------------------------------------------------------------------------

typedef struct key_map {
  vkp_key_map_fn inner;   // the caller's map, applied first (may be NULL)
  void *user;
} key_map;

// diffusers < 0.14 saved the mid-block attention as `query`, `key`, `value`, `proj_attn` (what
// its _convert_deprecated_attention_blocks renames on load).
static bool map_key(void *user, const char *file_key, char *out, size_t cap) {
  const key_map *km = user;
  char tmp[1024];
  if (km->inner) {
    if (!km->inner(km->user, file_key, tmp, sizeof tmp)) return false;
    file_key = tmp;
  }
  static const char *const renames[][2] = {{".attentions.0.query.", ".attentions.0.to_q."},
                                           {".attentions.0.key.", ".attentions.0.to_k."},
                                           {".attentions.0.value.", ".attentions.0.to_v."},
                                           {".attentions.0.proj_attn.", ".attentions.0.to_out.0."}};
  for (size_t i = 0; i < sizeof renames / sizeof *renames; i++) {
    const char *at = strstr(file_key, renames[i][0]);
    if (at && strstr(file_key, "mid_block.")) {
      snprintf(out, cap, "%.*s%s%s", (int)(at - file_key), file_key, renames[i][1], at + strlen(renames[i][0]));
      return true;
    }
  }
  snprintf(out, cap, "%s", file_key);
  return true;
}

vkp_status vkp_vae_load_weights(vkp_vae *v, const char *path, const char *prefix, vkp_key_map_fn map, void *map_user,
                                bool keep_dtype, vkp_error *err) {
  key_map km = {map, map_user};
  vkp_load_options o = {.prefix = prefix, .map = map_key, .map_user = &km, .keep_dtype = keep_dtype};
  return vkp_sd_load_weights(v->model, path, &o, "AutoencoderKL", err);
}

// The tensors whose shapes follow from config.json (the encoder's and decoder's convolutions in and
// out, the first resnet of every encoder block, the last of the encoder's last and the decoder's
// first block, the quant convolutions), checked against the checkpoint's header before anything is
// allocated.
static vkp_status check_checkpoint_shapes(const char *path, const char *config, const vkp_vae_config *c, vkp_error *err) {
  vkp_st_expect w[8 + VKP_VAE_MAX_BLOCKS];
  int n = 0, nb = c->n_blocks, C0 = c->block_out_channels[0], Cl = c->block_out_channels[nb - 1], L = c->latent_channels;
  int lpb = c->layers_per_block;
  char keys[192];
  snprintf(keys, sizeof keys, "block_out_channels[0] %d, in_channels %d", C0, c->in_channels);
  vkp_st_expect_set(&w[n++], keys, 4, (int64_t[]){C0, c->in_channels, 3, 3}, "encoder.conv_in.weight");
  for (int i = 0; i < nb; i++) {
    int C = c->block_out_channels[i], in = i ? c->block_out_channels[i - 1] : C0;
    snprintf(keys, sizeof keys, "block_out_channels[%d] %d, block_out_channels[%d] %d", i, C, i ? i - 1 : 0, in);
    vkp_st_expect_set(&w[n++], keys, 4, (int64_t[]){C, in, 3, 3}, "encoder.down_blocks.%d.resnets.0.conv1.weight", i);
  }
  snprintf(keys, sizeof keys, "layers_per_block %d, block_out_channels[%d] %d", lpb, nb - 1, Cl);
  vkp_st_expect_set(&w[n++], keys, 4, (int64_t[]){Cl, Cl, 3, 3}, "decoder.up_blocks.0.resnets.%d.conv1.weight", lpb);
  snprintf(keys, sizeof keys, "latent_channels %d, block_out_channels[%d] %d", L, nb - 1, Cl);
  vkp_st_expect_set(&w[n++], keys, 4, (int64_t[]){2 * L, Cl, 3, 3}, "encoder.conv_out.weight");
  vkp_st_expect_set(&w[n++], keys, 4, (int64_t[]){Cl, L, 3, 3}, "decoder.conv_in.weight");
  snprintf(keys, sizeof keys, "out_channels %d, block_out_channels[0] %d", c->out_channels, C0);
  vkp_st_expect_set(&w[n++], keys, 4, (int64_t[]){c->out_channels, C0, 3, 3}, "decoder.conv_out.weight");
  snprintf(keys, sizeof keys, "latent_channels %d", L);
  if (c->use_quant_conv) vkp_st_expect_set(&w[n++], keys, 4, (int64_t[]){2 * L, 2 * L, 1, 1}, "quant_conv.weight");
  if (c->use_post_quant_conv) vkp_st_expect_set(&w[n++], keys, 4, (int64_t[]){L, L, 1, 1}, "post_quant_conv.weight");
  vkp_safetensors *sf = NULL;
  VKP_TRY(vkp_safetensors_open(path, &sf, err));
  vkp_status st = vkp_safetensors_expect(sf, path, config, w, n, err);
  vkp_safetensors_free(sf);
  return st;
}

vkp_status vkp_vae_load(vkp_ctx *ctx, const char *dir, bool f32, vkp_vae **out, vkp_error *err) {
  *out = NULL;
  char path[1024], config[1024];
  snprintf(config, sizeof config, "%s/config.json", dir);
  vkp_vae_config cfg;
  VKP_TRY(vkp_vae_config_load(config, &cfg, err));
  VKP_TRY(vkp_sd_weights_path(dir, path, sizeof path, err));
  // The checkpoint must fit the config before the model is allocated.
  VKP_TRY(check_checkpoint_shapes(path, config, &cfg, err));
  vkp_vae *v;
  VKP_TRY(build(ctx, &cfg, &v, err));
  vkp_status st = vkp_vae_load_weights(v, path, NULL, NULL, NULL, !f32, err);
  if (st) {
    vkp_vae_free(v);
    return st;
  }
  *out = v;
  return VKP_OK;
}

vkp_status vkp_vae_save(vkp_vae *v, const char *dir, vkp_error *err) {
  VKP_TRY(vkp_dir_create(dir, err));
  char path[1024];
  snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
  VKP_TRY(vkp_sd_save_weights(v->model, path, err));
  snprintf(path, sizeof path, "%s/config.json", dir);
  return vkp_vae_config_save(&v->cfg, path, err);
}

// ---- forward ------------------------------------------------------------------------------------

static vkp_tensor *mid_forward(vkp_vae *v, const vkp_vae_mid *mid, vkp_tensor *x) {
  vkp_model *m = v->model;
  int G = v->cfg.norm_num_groups;
  x = vkp_sd_resnet_forward(m, &mid->resnets[0], x, NULL, G, EPS, 1.0f);
  if (v->cfg.mid_block_add_attention) x = vkp_sd_spatial_attention_forward(m, &mid->attention, x, G, EPS);
  return vkp_sd_resnet_forward(m, &mid->resnets[1], x, NULL, G, EPS, 1.0f);
}

// clamp(x, lo, hi) from relu: x + relu(lo - x) - relu(x - hi) (exact inside [lo, hi]; gradient 1
// inside, 0 outside, as torch.clamp).
static vkp_tensor *clamp(vkp_graph *g, vkp_tensor *x, float lo, float hi) {
  vkp_tensor *below = vkp_relu(g, vkp_affine(g, x, -1.0f, lo)), *above = vkp_relu(g, vkp_affine(g, x, 1.0f, -hi));
  return vkp_sub(g, vkp_add(g, x, below), above);
}

vkp_status vkp_vae_encode(vkp_vae *v, vkp_graph *g, vkp_tensor *x, vkp_tensor **mean, vkp_tensor **logvar) {
  vkp_model *m = v->model;
  const vkp_vae_config *c = &v->cfg;
  *mean = *logvar = NULL;
  vkp_model_begin_graph(m, g);
  int nb = c->n_blocks, factor = 1 << (nb - 1), G = c->norm_num_groups, L = c->latent_channels;
  if (!x || x->ndim != 4 || x->shape[1] != c->in_channels)
    return vkp_graph_fail(g, VKP_ERR_SHAPE, "vae: the image must be (B, %d, H, W)", c->in_channels);
  if (x->shape[2] % factor || x->shape[3] % factor)
    return vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "vae: the image is %lldx%lld; height and width must be multiples of %d",
                          (long long)x->shape[2], (long long)x->shape[3], factor);
  vkp_tensor *h = vkp_nn_conv2d(m, v->enc_conv_in, x, 1, 1);
  for (int i = 0; i < nb; i++) {
    const vkp_vae_down *d = &v->down[i];
    for (int l = 0; l < d->n_resnets; l++) h = vkp_sd_resnet_forward(m, &d->resnets[l], h, NULL, G, EPS, 1.0f);
    if (d->downsampler) h = vkp_sd_downsample(m, d->downsampler, h, 0);   // Encoder: downsample_padding=0
  }
  h = mid_forward(v, &v->enc_mid, h);
  h = vkp_nn_group_norm_silu(m, v->enc_norm_out, h, G, EPS);
  h = vkp_nn_conv2d(m, v->enc_conv_out, h, 1, 1);
  if (v->quant_conv) h = vkp_nn_conv2d(m, v->quant_conv, h, 1, 0);
  // DiagonalGaussianDistribution: chunk(2, dim=1), logvar clamped to [-30, 20].
  *mean = vkp_contiguous(g, vkp_slice(g, h, 1, 0, L));
  *logvar = clamp(g, vkp_contiguous(g, vkp_slice(g, h, 1, L, L)), -30.0f, 20.0f);
  return vkp_graph_status(g);
}

vkp_tensor *vkp_vae_sample(vkp_graph *g, vkp_tensor *mean, vkp_tensor *logvar, vkp_tensor *noise) {
  return vkp_add(g, mean, vkp_mul(g, vkp_exp(g, vkp_scale(g, logvar, 0.5f)), noise));
}

vkp_status vkp_vae_decode(vkp_vae *v, vkp_graph *g, vkp_tensor *z, vkp_tensor **out) {
  vkp_model *m = v->model;
  const vkp_vae_config *c = &v->cfg;
  *out = NULL;
  vkp_model_begin_graph(m, g);
  if (!z || z->ndim != 4 || z->shape[1] != c->latent_channels)
    return vkp_graph_fail(g, VKP_ERR_SHAPE, "vae: latents must be (B, %d, h, w)", c->latent_channels);
  int G = c->norm_num_groups;
  vkp_tensor *h = v->post_quant_conv ? vkp_nn_conv2d(m, v->post_quant_conv, z, 1, 0) : z;
  h = vkp_nn_conv2d(m, v->dec_conv_in, h, 1, 1);
  h = mid_forward(v, &v->dec_mid, h);
  for (int i = 0; i < c->n_blocks; i++) {
    const vkp_vae_up *up = &v->up[i];
    for (int l = 0; l < up->n_resnets; l++) h = vkp_sd_resnet_forward(m, &up->resnets[l], h, NULL, G, EPS, 1.0f);
    if (up->upsampler) h = vkp_sd_upsample(m, up->upsampler, h);
  }
  h = vkp_nn_group_norm_silu(m, v->dec_norm_out, h, G, EPS);
  *out = vkp_nn_conv2d(m, v->dec_conv_out, h, 1, 1);
  return vkp_graph_status(g);
}
