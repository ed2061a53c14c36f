// ldm_config.c — the architecture of a single-file Stable Diffusion checkpoint, read from its
// tensor shapes (the file carries no config): block channels, layers per block, which blocks
// cross-attend, transformer depth, text width and layers. What shapes cannot tell follows the
// original configs (v1-inference.yaml, v2-inference(-v).yaml): GroupNorm of 32 groups, SD 1.x's 8
// heads per block, SD 2.x's heads of 64 channels (num_head_channels: 64) with linear projections,
// CLIP text heads of 64 channels, the VAE's scaling factor 0.18215.
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ldm_internal.h"

// The tensor named by a printf format, or NULL.
static const vkp_st_tensor *tensor(const vkp_safetensors *sf, const char *fmt, ...) {
  char name[VKP_LDM_NAME_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  return vkp_safetensors_find(sf, name);
}

// dim d of a required tensor (*out), or an error naming the file and the key.
static vkp_status dim_of(const vkp_safetensors *sf, const char *name, int ndim_min, int d, int *out, vkp_error *err) {
  const vkp_st_tensor *t = vkp_safetensors_find(sf, name);
  if (!t) return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s' is missing", vkp_safetensors_path(sf), name);
  if (t->ndim < ndim_min || d >= t->ndim || t->shape[d] < 1 || t->shape[d] > (1 << 20))
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s' has an unexpected shape", vkp_safetensors_path(sf), name);
  *out = (int)t->shape[d];
  return VKP_OK;
}

// Number of consecutive indices i from 0 for which the formatted key exists.
static int count_indexed(const vkp_safetensors *sf, const char *fmt_with_i) {
  int n = 0;
  while (n < 4096 && tensor(sf, fmt_with_i, n)) n++;
  return n;
}

#define U VKP_LDM_UNET_PREFIX

// A SpatialTransformer at `block` (e.g. "input_blocks.1.1"): depth, context width, projection kind.
static vkp_status unet_transformer(const vkp_safetensors *sf, const char *block, int *depth, int *ctx_dim, bool *linear,
                                   vkp_error *err) {
  char fmt[VKP_LDM_NAME_MAX], name[VKP_LDM_NAME_MAX];
  snprintf(fmt, sizeof fmt, U "%s.transformer_blocks.%%d.attn2.to_k.weight", block);
  *depth = count_indexed(sf, fmt);
  if (*depth < 1 || *depth > VKP_SD_MAX_TLAYERS)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: %s: %d transformer blocks (1 to %d are supported)", vkp_safetensors_path(sf),
                         block, *depth, VKP_SD_MAX_TLAYERS);
  snprintf(name, sizeof name, U "%s.transformer_blocks.0.attn2.to_k.weight", block);
  VKP_TRY(dim_of(sf, name, 2, 1, ctx_dim, err));
  snprintf(name, sizeof name, U "%s.proj_in.weight", block);
  const vkp_st_tensor *proj_in = vkp_safetensors_find(sf, name);
  if (!proj_in) return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s' is missing", vkp_safetensors_path(sf), name);
  *linear = proj_in->ndim == 2;
  return VKP_OK;
}

vkp_status vkp_ldm_unet_config(const vkp_safetensors *sf, bool v2, vkp_unet_config *c, vkp_error *err) {
  const char *path = vkp_safetensors_path(sf);
  vkp_unet_config_default(c);
  int C0, T, k = 1, nb = 0, layers = 0, depth[VKP_UNET_MAX_BLOCKS] = {0}, ctx = 0;
  bool linear = false;
  VKP_TRY(dim_of(sf, U "input_blocks.0.0.weight", 4, 0, &C0, err));
  VKP_TRY(dim_of(sf, U "input_blocks.0.0.weight", 4, 1, &c->in_channels, err));
  VKP_TRY(dim_of(sf, U "input_blocks.0.0.weight", 4, 2, &c->conv_in_kernel, err));
  VKP_TRY(dim_of(sf, U "out.2.weight", 4, 0, &c->out_channels, err));
  VKP_TRY(dim_of(sf, U "out.2.weight", 4, 2, &c->conv_out_kernel, err));
  VKP_TRY(dim_of(sf, U "time_embed.0.weight", 2, 0, &T, err));
  c->time_embed_dim = T == 4 * C0 ? 0 : T;
  // Down blocks: ResBlocks (+ transformers) until a downsampler closes the block.
  for (;; k++) {
    if (tensor(sf, U "input_blocks.%d.0.op.weight", k)) {
      c->layers_per_block[nb++] = layers;
      layers = 0;
      if (nb >= VKP_UNET_MAX_BLOCKS) break;
      continue;
    }
    const vkp_st_tensor *t = tensor(sf, U "input_blocks.%d.0.out_layers.3.weight", k);
    if (!t) break;
    if (layers >= VKP_UNET_MAX_LAYERS)
      return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: down block %d has more than %d layers", path, nb, VKP_UNET_MAX_LAYERS);
    c->block_out_channels[nb] = (int)t->shape[0];
    char block[64];
    snprintf(block, sizeof block, "input_blocks.%d.1", k);
    c->down_cross[nb] = tensor(sf, U "%s.proj_in.weight", block) != NULL;
    if (c->down_cross[nb] && layers == 0) VKP_TRY(unet_transformer(sf, block, &depth[nb], &ctx, &linear, err));
    layers++;
  }
  if (layers == 0 || nb >= VKP_UNET_MAX_BLOCKS)
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: cannot read the UNet's down blocks (input_blocks.%d)", path, k);
  c->layers_per_block[nb++] = layers;
  c->n_blocks = nb;
  // Up blocks mirror the down blocks; whether each cross-attends is read from its first layer.
  for (int i = 0, j = 0; i < nb; j += c->layers_per_block[nb - 1 - i] + 1, i++)
    c->up_cross[i] = tensor(sf, U "output_blocks.%d.1.proj_in.weight", j) != NULL;
  c->mid_block = tensor(sf, U "middle_block.0.in_layers.0.weight") != NULL;
  int mid_depth = 0, mid_ctx = 0;
  bool mid_linear = false;
  if (c->mid_block) VKP_TRY(unet_transformer(sf, "middle_block.1", &mid_depth, &mid_ctx, &mid_linear, err));
  if (!ctx) ctx = mid_ctx, linear = mid_linear;
  if (!ctx) return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: the UNet has no cross-attention", path);
  for (int i = 0; i < nb; i++) {
    int C = c->block_out_channels[i];
    c->cross_attention_dim[i] = ctx;
    c->transformer_layers[i] = depth[i] ? depth[i] : 1;
    c->heads[i] = v2 ? C / 64 : 8;
    if (v2 && (C % 64 || C < 64))
      return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: SD 2.x UNet block %d has %d channels (not a multiple of 64 heads' width)",
                           path, i, C);
  }
  if (c->mid_block) c->transformer_layers[nb - 1] = mid_depth;   // the mid block takes the last entry
  if (c->mid_block && depth[nb - 1] && depth[nb - 1] != mid_depth)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: the last down block and the mid block have different transformer depths", path);
  c->use_linear_projection = linear;
  c->sample_size = 64;
  return vkp_unet_config_check(c, path, err);
}

#undef U
#define V VKP_LDM_VAE_PREFIX

vkp_status vkp_ldm_vae_config(const vkp_safetensors *sf, vkp_vae_config *c, vkp_error *err) {
  const char *path = vkp_safetensors_path(sf);
  vkp_vae_config_default(c);
  c->n_blocks = count_indexed(sf, V "encoder.down.%d.block.0.conv1.weight");
  if (c->n_blocks < 1 || c->n_blocks > VKP_VAE_MAX_BLOCKS)
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: cannot read the VAE's blocks (" V "encoder.down.N)", path);
  for (int i = 0; i < c->n_blocks; i++) {
    char name[VKP_LDM_NAME_MAX];
    snprintf(name, sizeof name, V "encoder.down.%d.block.0.conv1.weight", i);
    VKP_TRY(dim_of(sf, name, 4, 0, &c->block_out_channels[i], err));
  }
  c->layers_per_block = count_indexed(sf, V "encoder.down.0.block.%d.conv1.weight");
  VKP_TRY(dim_of(sf, V "encoder.conv_in.weight", 4, 1, &c->in_channels, err));
  VKP_TRY(dim_of(sf, V "decoder.conv_out.weight", 4, 0, &c->out_channels, err));
  VKP_TRY(dim_of(sf, V "decoder.conv_in.weight", 4, 1, &c->latent_channels, err));
  c->use_quant_conv = tensor(sf, V "quant_conv.weight") != NULL;
  c->use_post_quant_conv = tensor(sf, V "post_quant_conv.weight") != NULL;
  c->mid_block_add_attention = tensor(sf, V "encoder.mid.attn_1.q.weight") != NULL;
  c->sample_size = 512;
  return vkp_vae_config_check(c, path, err);
}

#undef V

vkp_status vkp_ldm_text_config(const vkp_safetensors *sf, bool openclip, vkp_clip_config *c, vkp_error *err) {
  const char *path = vkp_safetensors_path(sf);
  vkp_clip_config_default(c);
  c->has_vision = c->has_visual_projection = c->has_logit_scale = c->has_text_projection = false;
  vkp_clip_text_config *t = &c->text;
  if (openclip) {
    const char *P = VKP_LDM_OPENCLIP_PREFIX;
    char name[VKP_LDM_NAME_MAX];
    snprintf(name, sizeof name, "%stoken_embedding.weight", P);
    VKP_TRY(dim_of(sf, name, 2, 0, &t->vocab_size, err));
    VKP_TRY(dim_of(sf, name, 2, 1, &t->hidden_size, err));
    snprintf(name, sizeof name, "%spositional_embedding", P);
    VKP_TRY(dim_of(sf, name, 2, 0, &t->max_position_embeddings, err));
    snprintf(name, sizeof name, "%stransformer.resblocks.0.mlp.c_fc.weight", P);
    VKP_TRY(dim_of(sf, name, 2, 0, &t->intermediate_size, err));
    // SD 2.x conditions on the penultimate block's output (then ln_final), as diffusers converts
    // it: a tower of one layer less.
    t->num_hidden_layers = count_indexed(sf, VKP_LDM_OPENCLIP_PREFIX "transformer.resblocks.%d.ln_1.weight") - 1;
    t->hidden_act = VKP_CLIP_ACT_GELU;
  } else {
    const char *P = VKP_LDM_CLIP_PREFIX;
    bool wrapped = tensor(sf, "%stext_model.embeddings.token_embedding.weight", P) != NULL;
    const char *tm = wrapped ? "text_model." : "";
    char name[VKP_LDM_NAME_MAX], fmt[VKP_LDM_NAME_MAX];
    snprintf(name, sizeof name, "%s%sembeddings.token_embedding.weight", P, tm);
    VKP_TRY(dim_of(sf, name, 2, 0, &t->vocab_size, err));
    VKP_TRY(dim_of(sf, name, 2, 1, &t->hidden_size, err));
    snprintf(name, sizeof name, "%s%sembeddings.position_embedding.weight", P, tm);
    VKP_TRY(dim_of(sf, name, 2, 0, &t->max_position_embeddings, err));
    snprintf(name, sizeof name, "%s%sencoder.layers.0.mlp.fc1.weight", P, tm);
    VKP_TRY(dim_of(sf, name, 2, 0, &t->intermediate_size, err));
    snprintf(fmt, sizeof fmt, "%s%sencoder.layers.%%d.layer_norm1.weight", P, tm);
    t->num_hidden_layers = count_indexed(sf, fmt);
    t->hidden_act = VKP_CLIP_ACT_QUICK_GELU;
  }
  if (t->num_hidden_layers < 1)
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: cannot read the text encoder's layers", path);
  // CLIP's text heads are 64 wide (ViT-L/14: 12 heads of 768, ViT-H/14: 16 of 1024).
  t->num_attention_heads = t->hidden_size >= 64 && t->hidden_size % 64 == 0 ? t->hidden_size / 64 : 1;
  t->layer_norm_eps = 1e-5f;
  t->bos_token_id = 0, t->eos_token_id = 2, t->pad_token_id = 1;   // the hub configs' legacy ids: pooling at argmax
  return vkp_clip_config_check(c, path, err);
}
