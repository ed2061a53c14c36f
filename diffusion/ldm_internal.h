// ldm_internal.h — single-file Stable Diffusion checkpoints (package-private): the key conversion
// of ldm_keys.c (original LDM / A1111 names -> diffusers and transformers names) and the
// architecture inference of ldm_config.c, used by ldm_checkpoint.c (vkp_ldm.h).
#ifndef VKP_LDM_INTERNAL_H
#define VKP_LDM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "vkp_clip.h"
#include "vkp_safetensors.h"
#include "vkp_unet.h"
#include "vkp_vae.h"

// Key prefixes of the parts in a single file.
#define VKP_LDM_UNET_PREFIX "model.diffusion_model."
#define VKP_LDM_VAE_PREFIX "first_stage_model."
#define VKP_LDM_CLIP_PREFIX "cond_stage_model.transformer."   // SD 1.x: transformers' CLIPTextModel keys
#define VKP_LDM_OPENCLIP_PREFIX "cond_stage_model.model."     // SD 2.x: OpenCLIP ViT-H/14's text tower

#define VKP_LDM_NAME_MAX 256

// Converts one key of a part (its prefix stripped) to the names of the parameters it holds:
// returns how many (0: the key is no parameter of this part; 1; 3: the tensor's rows are q, k, v in
// thirds, OpenCLIP's fused in_proj), names in out[0..n).
typedef int (*vkp_ldm_map_fn)(const void *cfg, const char *key, char out[3][VKP_LDM_NAME_MAX]);

// The part maps. cfg: the part's config (vkp_unet_config, vkp_vae_config, vkp_clip_text_config).
int vkp_ldm_unet_name(const void *cfg, const char *key, char out[3][VKP_LDM_NAME_MAX]);
int vkp_ldm_vae_name(const void *cfg, const char *key, char out[3][VKP_LDM_NAME_MAX]);
int vkp_ldm_clip_name(const void *cfg, const char *key, char out[3][VKP_LDM_NAME_MAX]);
// OpenCLIP: resblocks past the config's num_hidden_layers (SD 2.x uses the penultimate layer, as
// diffusers converts it: the last block is dropped) and text_projection map to nothing.
int vkp_ldm_openclip_name(const void *cfg, const char *key, char out[3][VKP_LDM_NAME_MAX]);

// ---- architecture from tensor shapes (ldm_config.c); errors name the file and the key ----------
// `v2`: SD 2.x rules (attention heads of 64 channels; else 8 heads per block, SD 1.x).
vkp_status vkp_ldm_unet_config(const vkp_safetensors *sf, bool v2, vkp_unet_config *c, vkp_error *err);
vkp_status vkp_ldm_vae_config(const vkp_safetensors *sf, vkp_vae_config *c, vkp_error *err);
// The text tower (CLIPTextModel, no projection); openclip: the SD 2.x layout.
vkp_status vkp_ldm_text_config(const vkp_safetensors *sf, bool openclip, vkp_clip_config *c, vkp_error *err);

#endif
