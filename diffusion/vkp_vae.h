// vkp_vae.h — diffusers' AutoencoderKL (the Stable Diffusion VAE) on the vkpeft layer API.
//
// encode: image (B, in_channels, H, W) -> the posterior's mean and logvar (B, latent_channels,
// H/f, W/f), f = 2^(len(block_out_channels)-1); sample: mean + exp(logvar/2) · noise; decode:
// latents -> image. Pipelines scale latents by `scaling_factor` (and shift by `shift_factor`)
// themselves: z = (sample - shift) · scaling on the way in, latents / scaling + shift before decode.
// Modules carry the diffusers names (`encoder.down_blocks.0.resnets.0.conv1`,
// `decoder.mid_block.attentions.0.to_q`, `quant_conv`, ...), so weight-level PEFT methods target them
// as they are. Checkpoints with the pre-0.14 attention names (`query`, `key`, `value`,
// `proj_attn`) load too.
#ifndef VKP_VAE_H
#define VKP_VAE_H

#include "unet_blocks.h"
#include "vkp_model.h"

#define VKP_VAE_MAX_BLOCKS 8
#define VKP_VAE_MAX_LAYERS 8

typedef struct vkp_vae_config {
  int in_channels, out_channels, latent_channels;
  int n_blocks;                               // len(block_out_channels) (= len(down/up_block_types))
  int block_out_channels[VKP_VAE_MAX_BLOCKS];
  int layers_per_block;                       // encoder blocks: this many resnets; decoder blocks: one more
  int norm_num_groups;
  int sample_size;
  float scaling_factor;                       // 0.18215 (SD 1.x / 2.x)
  bool has_shift_factor;
  float shift_factor;                         // when has_shift_factor
  bool use_quant_conv, use_post_quant_conv, mid_block_add_attention;
} vkp_vae_config;

void vkp_vae_config_default(vkp_vae_config *c);
// Reads a diffusers config.json (`_class_name` AutoencoderKL): block types other than
// DownEncoderBlock2D / UpDecoderBlock2D, another act_fn etc. are VKP_ERR_UNSUPPORTED, wrong types
// VKP_ERR_INVALID; messages name the file and the key.
vkp_status vkp_vae_config_load(const char *path, vkp_vae_config *c, vkp_error *err);
// The same from a JSON object (config.json's keys; absent ones keep diffusers' defaults); `where`
// names it in messages.
vkp_status vkp_vae_config_from_json(const cJSON *j, const char *where, vkp_vae_config *c, vkp_error *err);
vkp_status vkp_vae_config_check(const vkp_vae_config *c, const char *where, vkp_error *err);
vkp_status vkp_vae_config_save(const vkp_vae_config *c, const char *path, vkp_error *err);

typedef struct vkp_vae_down {
  int n_resnets;
  vkp_sd_resnet resnets[VKP_VAE_MAX_LAYERS];
  vkp_module *downsampler;                    // NULL in the last block
} vkp_vae_down;

typedef struct vkp_vae_up {
  int n_resnets;
  vkp_sd_resnet resnets[VKP_VAE_MAX_LAYERS + 1];
  vkp_module *upsampler;                      // NULL in the last block
} vkp_vae_up;

typedef struct vkp_vae_mid {
  vkp_sd_resnet resnets[2];
  vkp_sd_spatial_attention attention;         // when mid_block_add_attention
} vkp_vae_mid;

typedef struct vkp_vae {
  vkp_vae_config cfg;
  vkp_model *model;                           // owned
  // encoder
  vkp_module *enc_conv_in, *enc_norm_out, *enc_conv_out;
  vkp_vae_down down[VKP_VAE_MAX_BLOCKS];
  vkp_vae_mid enc_mid;
  vkp_module *quant_conv, *post_quant_conv;   // NULL when not used
  // decoder
  vkp_module *dec_conv_in, *dec_norm_out, *dec_conv_out;
  vkp_vae_mid dec_mid;
  vkp_vae_up up[VKP_VAE_MAX_BLOCKS];
} vkp_vae;

// A model with diffusers' default initialisation (torch's Linear/Conv2d rule, unit norms).
vkp_status vkp_vae_new(vkp_ctx *ctx, const vkp_vae_config *cfg, uint64_t seed, vkp_vae **out, vkp_error *err);
// The same with every parameter zero, for a loader that writes every weight itself (single files).
vkp_status vkp_vae_new_empty(vkp_ctx *ctx, const vkp_vae_config *cfg, vkp_vae **out, vkp_error *err);
void vkp_vae_free(vkp_vae *v);
// Loads a diffusers folder: config.json + diffusion_pytorch_model.safetensors (or .fp16.safetensors);
// frozen matrices/kernels keep the file's f16/bf16 unless f32.
vkp_status vkp_vae_load(vkp_ctx *ctx, const char *dir, bool f32, vkp_vae **out, vkp_error *err);
// The weights of one safetensors file: `prefix` stripped first (may be NULL), then `map` (may be
// NULL) converts another layout's keys; the pre-0.14 attention names are converted after it.
vkp_status vkp_vae_load_weights(vkp_vae *v, const char *path, const char *prefix, vkp_key_map_fn map, void *map_user,
                                bool keep_dtype, vkp_error *err);
vkp_status vkp_vae_save(vkp_vae *v, const char *dir, vkp_error *err);

// Graph building (vkp_model_begin_graph is called by each). Image sides must be multiples of the
// downsampling factor.
// x (B, in_channels, H, W) -> mean, logvar (B, latent_channels, H/f, W/f); logvar clamped to
// [-30, 20] as diffusers' DiagonalGaussianDistribution.
vkp_status vkp_vae_encode(vkp_vae *v, vkp_graph *g, vkp_tensor *x, vkp_tensor **mean, vkp_tensor **logvar);
// mean + exp(0.5 logvar) * noise (noise: same shape, standard normal).
vkp_tensor *vkp_vae_sample(vkp_graph *g, vkp_tensor *mean, vkp_tensor *logvar, vkp_tensor *noise);
// z (B, latent_channels, h, w) -> (B, out_channels, h·f, w·f).
vkp_status vkp_vae_decode(vkp_vae *v, vkp_graph *g, vkp_tensor *z, vkp_tensor **out);

#endif
