// vkp_unet.h — diffusers' UNet2DConditionModel (Stable Diffusion 1.x / 2.x shapes) on the vkpeft
// layer API.
//
// Modules are registered under the diffusers checkpoint names (`conv_in`, `time_embedding.linear_1`,
// `down_blocks.0.resnets.0.conv1`, `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`,
// `mid_block.attentions.0.proj_in`, `up_blocks.1.upsamplers.0.conv`, ...), so diffusers/PEFT LoRAs
// target them as they are: weight-level methods on every Linear and Conv2d (LoRA on to_q/to_k/
// to_v/to_out.0 and on the ResNet conv1/conv2 included), block-level adapters on the
// `...transformer_blocks.N` blocks (after attn1, attn2 and the feed-forward) and on the
// `...resnets.N` blocks (after the residual branch), prefix tuning on `...attn1` / `...attn2`.
// All name construction lives in unet.c (registration); checkpoints in another layout load
// through a key map (vkp_unet_load_weights).
#ifndef VKP_UNET_H
#define VKP_UNET_H

#include "unet_blocks.h"
#include "vkp_model.h"

#define VKP_UNET_MAX_BLOCKS 8   // down (= up) blocks
#define VKP_UNET_MAX_LAYERS 8   // layers_per_block (an up block has one resnet more)

typedef struct vkp_unet_config {
  int in_channels, out_channels;
  int sample_size;                            // informational (latent size the model was trained at)
  int n_blocks;                               // len(down_block_types) = len(up_block_types) = len(block_out_channels)
  int block_out_channels[VKP_UNET_MAX_BLOCKS];
  bool down_cross[VKP_UNET_MAX_BLOCKS];       // down block i: CrossAttnDownBlock2D (else DownBlock2D)
  bool up_cross[VKP_UNET_MAX_BLOCKS];         // up block i: CrossAttnUpBlock2D (else UpBlock2D)
  bool mid_block;                             // UNetMidBlock2DCrossAttn (false: mid_block_type null)
  // Per down block i (lists or an int broadcast); up block i uses entry n_blocks-1-i, the mid block the last.
  int layers_per_block[VKP_UNET_MAX_BLOCKS];
  int heads[VKP_UNET_MAX_BLOCKS];             // attention heads: num_attention_heads, else attention_head_dim
                                              // (diffusers' naming quirk: the latter is read as the head count)
  int cross_attention_dim[VKP_UNET_MAX_BLOCKS];
  int transformer_layers[VKP_UNET_MAX_BLOCKS];   // transformer_layers_per_block
  bool center_input_sample, flip_sin_to_cos;
  float freq_shift;
  int downsample_padding;
  float mid_block_scale_factor;
  int norm_num_groups;
  float norm_eps;
  bool use_linear_projection;
  bool upcast_attention;                      // accepted: attention always accumulates in f32
  int time_embed_dim;                         // time_embedding_dim; 0: 4 * block_out_channels[0] (diffusers' default)
  int conv_in_kernel, conv_out_kernel;
} vkp_unet_config;

// The width of the time embedding (time_embedding.linear_1's output).
int vkp_unet_time_embed_dim(const vkp_unet_config *c);
// The defaults of diffusers' UNet2DConditionModel (the SD 1.x architecture).
void vkp_unet_config_default(vkp_unet_config *c);
// Reads a diffusers config.json (`_class_name` UNet2DConditionModel). Keys that select features
// vkpeft does not implement (other block types, class / addition embeddings, a non-default
// attention_type, resnet_time_scale_shift or time_embedding_type, ...) are VKP_ERR_UNSUPPORTED;
// wrong types and impossible values VKP_ERR_INVALID; each message names the file and the key.
vkp_status vkp_unet_config_load(const char *path, vkp_unet_config *c, vkp_error *err);
// Checks a config built in code (the same rules; `where` names it in messages).
// The same from a JSON object (config.json's keys; absent ones keep diffusers' defaults); `where`
// names it in messages.
vkp_status vkp_unet_config_from_json(const cJSON *j, const char *where, vkp_unet_config *c, vkp_error *err);
vkp_status vkp_unet_config_check(const vkp_unet_config *c, const char *where, vkp_error *err);
// Writes a config.json diffusers reads back as this architecture.
vkp_status vkp_unet_config_save(const vkp_unet_config *c, const char *path, vkp_error *err);

typedef struct vkp_unet_down {
  int n_resnets;
  vkp_sd_resnet resnets[VKP_UNET_MAX_LAYERS];
  vkp_sd_transformer *attentions;             // n_resnets of them for a cross-attention block, else NULL (owned)
  vkp_module *downsampler;                    // downsamplers.0.conv, NULL in the last block
} vkp_unet_down;

typedef struct vkp_unet_up {
  int n_resnets;                              // layers_per_block + 1
  vkp_sd_resnet resnets[VKP_UNET_MAX_LAYERS + 1];
  vkp_sd_transformer *attentions;             // (owned) or NULL
  vkp_module *upsampler;                      // upsamplers.0.conv, NULL in the last block
} vkp_unet_up;

typedef struct vkp_unet {
  vkp_unet_config cfg;
  vkp_model *model;                           // owned
  vkp_module *conv_in, *time_linear_1, *time_linear_2, *conv_norm_out, *conv_out;
  vkp_unet_down down[VKP_UNET_MAX_BLOCKS];
  vkp_sd_resnet mid_resnets[2];
  vkp_sd_transformer *mid_attention;          // (owned) NULL without a mid block
  vkp_unet_up up[VKP_UNET_MAX_BLOCKS];
} vkp_unet;

// Creates the model with every module registered under its diffusers name, initialised as a
// freshly built diffusers model (torch's default Linear/Conv2d initialisation, unit norms).
vkp_status vkp_unet_new(vkp_ctx *ctx, const vkp_unet_config *cfg, uint64_t seed, vkp_unet **out, vkp_error *err);
// The same with every parameter zero, for a loader that writes every weight itself (single files).
vkp_status vkp_unet_new_empty(vkp_ctx *ctx, const vkp_unet_config *cfg, vkp_unet **out, vkp_error *err);
void vkp_unet_free(vkp_unet *u);

typedef struct vkp_unet_load_opts {
  bool f32;   // store every weight as f32 (full fine-tuning of a 16-bit checkpoint); default: frozen
              // matrices and kernels keep the file's f16/bf16, vectors are f32
} vkp_unet_load_opts;

// Loads a diffusers folder: config.json + diffusion_pytorch_model.safetensors (or
// diffusion_pytorch_model.fp16.safetensors). Missing parameters are an error naming the first;
// unused tensors are reported on stderr. opts may be NULL.
vkp_status vkp_unet_load(vkp_ctx *ctx, const char *dir, const vkp_unet_load_opts *opts, vkp_unet **out, vkp_error *err);
// Loads the weights of one safetensors file into a built model: `prefix` (may be NULL) is stripped
// from the file's keys, then `map` (may be NULL) converts another layout's key to the diffusers
// name (the seam for single-file LDM checkpoints). keep_dtype as vkp_load_options.
vkp_status vkp_unet_load_weights(vkp_unet *u, const char *path, const char *prefix, vkp_key_map_fn map, void *map_user,
                                 bool keep_dtype, vkp_error *err);
// Saves config.json + diffusion_pytorch_model.safetensors (base parameters in their storage dtype).
vkp_status vkp_unet_save(vkp_unet *u, const char *dir, vkp_error *err);

// Builds the forward pass into g (vkp_model_begin_graph is called here):
//   sample (B, in_channels, h, w) f32, h and w multiples of 2^(n_blocks-1);
//   timestep (B) f32 (fractional timesteps are fine);
//   encoder_hidden_states (B, T, cross_attention_dim) f32 (needed when a block cross-attends)
// -> *noise_pred (B, out_channels, h, w).
vkp_status vkp_unet_forward(vkp_unet *u, vkp_graph *g, vkp_tensor *sample, vkp_tensor *timestep,
                            vkp_tensor *encoder_hidden_states, vkp_tensor **noise_pred);

#endif
