// vkp_ldm.h — single-file Stable Diffusion checkpoints as A1111 and ComfyUI users keep them: one
// .safetensors with the original (LDM) keys: `model.diffusion_model.*` (UNet),
// `first_stage_model.*` (VAE) and the text tower, `cond_stage_model.transformer.*` (SD 1.x:
// transformers' CLIPTextModel keys) or `cond_stage_model.model.*` (SD 2.x: OpenCLIP ViT-H/14, its
// fused q/k/v split on load). The file has no config: the architecture is read from the tensor
// shapes (ldm_config.c; SD 2.x when the text tower is OpenCLIP's, or, without one, when the UNet
// cross-attends to 1024-wide states), the names converted in one place (ldm_keys.c), and the
// weights written into freshly built diffusers-named models, so PEFT adapters and LoRA files target
// them exactly as on a diffusers folder. f16/bf16 matrices stay 16-bit on the device. Tensors the
// models do not use are reported on stderr (count and the first names; EMA copies, the training
// schedule's buffers, `position_ids` and the parts SD 2.x drops are expected and not reported);
// missing ones are an error naming them.
//
// The prediction type cannot always be read from the file: SD 2.x 768-v models are v-prediction,
// SD 2.x base and every SD 1.x are epsilon, and the weights do not say which. A `v_pred` key (as
// some tools add) selects v-prediction; otherwise epsilon, with a note on stderr for SD 2.x; pass
// prediction_type to override.
#ifndef VKP_LDM_H
#define VKP_LDM_H

#include <stdbool.h>

#include "vkp_clip.h"
#include "vkp_pipeline.h"
#include "vkp_scheduler.h"
#include "vkp_unet.h"
#include "vkp_vae.h"

typedef struct vkp_ldm_opts {
  int prediction_type;   // VKP_PRED_* to override; VKP_LDM_PRED_AUTO (-1): see above
  bool f32;              // store every weight as f32 (full fine-tuning); default: 16-bit matrices kept
  bool no_text;          // skip the text tower (its tensors are not read)
} vkp_ldm_opts;

#define VKP_LDM_PRED_AUTO (-1)

// The parts of a checkpoint; the caller owns them (vkp_ldm_parts_free frees what is left).
typedef struct vkp_ldm_parts {
  int version;                   // 1 (SD 1.x) or 2 (SD 2.x)
  vkp_unet *unet;
  vkp_vae *vae;
  vkp_clip *text;                // text tower (CLIPTextModel), NULL without one or with no_text
  vkp_clip_pad pad;              // how its prompts are padded: SD 1.x with the end token, SD 2.x with 0
  vkp_scheduler_config sched;    // SD's training schedule (DDIMScheduler settings: scaled_linear
                                 // 0.00085..0.012, 1000 steps, steps_offset 1, no clipping)
} vkp_ldm_parts;

// Loads the file. Errors name the file: VKP_ERR_IO / VKP_ERR_FORMAT (unreadable, truncated, "not a
// Stable Diffusion checkpoint", a part missing, missing tensors, a shape the architecture does not
// explain), VKP_ERR_UNSUPPORTED (SDXL, unsupported shapes). opts may be NULL. On error *out holds
// nothing.
vkp_status vkp_ldm_load(vkp_ctx *ctx, const char *path, const vkp_ldm_opts *opts, vkp_ldm_parts *out, vkp_error *err);
void vkp_ldm_parts_free(vkp_ldm_parts *p);

// A pipeline from a single file (vkp_pipeline_load calls this for a regular file): the parts, the
// text encoder with vlm's built-in CLIP tokenizer (when opts->text_encoder asks for one) and the
// SD scheduler settings. lopts may be NULL.
vkp_status vkp_ldm_pipeline_load(vkp_ctx *ctx, const char *path, const vkp_pipeline_opts *opts, const vkp_ldm_opts *lopts,
                                 vkp_pipeline **out, vkp_error *err);

#endif
