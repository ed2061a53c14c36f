// unet_blocks.h — the building blocks diffusers' UNet2DConditionModel and AutoencoderKL share
// (package-private): ResnetBlock2D, Transformer2DModel with its BasicTransformerBlocks, the
// conv down/upsamplers and the single-head spatial attention of the VAE's mid block. Each block
// registers its modules under the checkpoint names it is given (the callers build the names, so
// the name mapping stays in unet.c / vae.c) and builds its forward pass on vkp_nn.h layer calls,
// so every PEFT method of core applies without code here.
#ifndef VKP_UNET_BLOCKS_H
#define VKP_UNET_BLOCKS_H

#include <cjson/cJSON.h>

#include "vkp_model.h"
#include "vkp_nn.h"

#define VKP_SD_MAX_TLAYERS 16   // BasicTransformerBlocks per Transformer2DModel (SDXL has 10)
#define VKP_SD_ATTN_DMAX 1024   // largest head dim of the fused attention kernel (vkp_attention)

// ResnetBlock2D (time_embedding_norm "default", pre-norm): norm1, act, conv1, + time_emb_proj(act(temb)),
// norm2, act, conv2, + shortcut (conv_shortcut when the channels change), / output_scale_factor.
typedef struct vkp_sd_resnet {
  vkp_module *block;                 // BLOCK (site VKP_NN_AFTER_BLOCK: the branch output, before the residual)
  vkp_module *norm1, *conv1, *time_emb_proj, *norm2, *conv2, *conv_shortcut;   // time_emb_proj / conv_shortcut may be NULL
  int in, out;                       // channels
} vkp_sd_resnet;

// BasicTransformerBlock (layer norms, self-attention attn1, cross-attention attn2, GEGLU feed-forward).
typedef struct vkp_sd_tblock {
  vkp_module *block;                 // BLOCK: sites after attn1, after attn2, after the feed-forward
  vkp_module *attn1, *attn2;         // ATTENTION (attn2: cross, keys/values from the text states)
  vkp_module *norm1, *q1, *k1, *v1, *o1;
  vkp_module *norm2, *q2, *k2, *v2, *o2;
  vkp_module *norm3, *ff_in, *ff_out;  // ff.net.0.proj (C -> 2·4C: hidden, gate), ff.net.2 (4C -> C)
} vkp_sd_tblock;

// Transformer2DModel on continuous inputs: GroupNorm (eps 1e-6), proj_in (1x1 conv or linear),
// the blocks, proj_out, + residual.
typedef struct vkp_sd_transformer {
  vkp_module *norm, *proj_in, *proj_out;
  int channels, heads, n_layers;
  bool linear_projection;            // proj_in/out are nn.Linear (use_linear_projection), else 1x1 Conv2d
  vkp_sd_tblock layers[VKP_SD_MAX_TLAYERS];
} vkp_sd_transformer;

// The VAE mid block's Attention (_from_deprecated_attn_block): GroupNorm, to_q/k/v/out.0 with
// biases over the channels, one head, residual.
typedef struct vkp_sd_spatial_attention {
  vkp_module *group_norm, *q, *k, *v, *o;
  int channels;
} vkp_sd_spatial_attention;

// ---- registration (names are "<prefix>.<diffusers sub-name>"; zero-filled parameters) ----------
// temb_channels 0: no time_emb_proj (the VAE's resnets).
vkp_status vkp_sd_resnet_add(vkp_model *m, const char *prefix, int in, int out, int temb_channels, vkp_sd_resnet *r);
vkp_status vkp_sd_transformer_add(vkp_model *m, const char *prefix, int channels, int heads, int n_layers,
                                  int cross_dim, bool linear_projection, vkp_sd_transformer *t);
vkp_status vkp_sd_spatial_attention_add(vkp_model *m, const char *prefix, int channels, vkp_sd_spatial_attention *a);
// A conv module "<name>" (Cout, Cin, k, k) with bias.
vkp_module *vkp_sd_conv_add(vkp_model *m, const char *name, int cout, int cin, int k);
vkp_module *vkp_sd_linear_add(vkp_model *m, const char *name, int out, int in, bool bias);
vkp_module *vkp_sd_group_norm_add(vkp_model *m, const char *name, int channels);

// torch's default initialisation of every parameter (nn.Linear / nn.Conv2d: uniform(±1/sqrt(fan_in))
// for weights and biases; norms: weight 1, bias 0): what a freshly built diffusers model holds.
vkp_status vkp_sd_init_default(vkp_model *m, uint64_t seed);

// ---- config (shared by the UNet and the VAE configs) -------------------------------------------
// Config key `key`: a list of n block type names, each one of kinds[0..nkinds) (a "UNetRes" prefix
// stripped, as diffusers' get_down_block / get_up_block do); out[i] = the index of entry i's kind.
// A missing key leaves out as it is (the caller's defaults) when `optional`, else is an error.
vkp_status vkp_sd_block_types(const cJSON *j, const char *where, const char *key, int n, const char *const *kinds, int nkinds,
                              bool optional, int *out, vkp_error *err);

// ---- checkpoints (shared by the UNet and the VAE) --------------------------------------------
// The weights file of a diffusers model folder: diffusion_pytorch_model.safetensors, else
// diffusion_pytorch_model.fp16.safetensors (written to path). Sharded checkpoints are refused.
vkp_status vkp_sd_weights_path(const char *dir, char *path, size_t cap, vkp_error *err);
// vkp_model_load_safetensors_opts with opt's prefix/map/keep_dtype: a missing parameter is an error
// naming the first one; unused tensors are reported on stderr (`what` names the model).
vkp_status vkp_sd_load_weights(vkp_model *m, const char *path, const vkp_load_options *opt, const char *what, vkp_error *err);
// Every base parameter (no adapters) in its storage dtype, as a safetensors file (atomic write).
vkp_status vkp_sd_save_weights(vkp_model *m, const char *path, vkp_error *err);

// ---- forward ----------------------------------------------------------------------------------
// x (B, in, H, W); temb_act = act(temb) (B, temb_channels) or NULL -> (B, out, H, W).
vkp_tensor *vkp_sd_resnet_forward(vkp_model *m, const vkp_sd_resnet *r, vkp_tensor *x, vkp_tensor *temb_act, int groups,
                                  float eps, float output_scale_factor);
// x (B, C, H, W), context (B, T, cross_dim) -> (B, C, H, W).
vkp_tensor *vkp_sd_transformer_forward(vkp_model *m, const vkp_sd_transformer *t, vkp_tensor *x, vkp_tensor *context,
                                       int groups);
// x (B, C, H, W) -> (B, C, H, W); groups/eps of its GroupNorm.
vkp_tensor *vkp_sd_spatial_attention_forward(vkp_model *m, const vkp_sd_spatial_attention *a, vkp_tensor *x, int groups,
                                             float eps);
// Downsample2D with a conv: stride 2, `padding` on every side, or padding 0 = pad (0, 1, 0, 1)
// (right and bottom) first, as diffusers does.
vkp_tensor *vkp_sd_downsample(vkp_model *m, vkp_module *conv, vkp_tensor *x, int padding);
// Upsample2D with a conv: nearest 2x, then the 3x3 conv (padding 1).
vkp_tensor *vkp_sd_upsample(vkp_model *m, vkp_module *conv, vkp_tensor *x);
// Multi-head attention over (B, H, T, D) q and (B, H, S, D) k, v with scale 1/sqrt(D): the fused
// kernel (through vkp_nn_attention when `mod` is given), D <= VKP_SD_ATTN_DMAX; no (T, S) matrix
// is stored, also for the VAE's single 512-wide head.
vkp_tensor *vkp_sd_attention(vkp_model *m, vkp_module *mod, vkp_tensor *q, vkp_tensor *k, vkp_tensor *v);

#endif
