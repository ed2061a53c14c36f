// vkp_pipeline.h — text-to-image sampling on a diffusers pipeline folder (`vkpeft generate`).
//
// A pipeline folder holds model_index.json, unet/, vae/, scheduler/scheduler_config.json and,
// for prompts, text_encoder/ + tokenizer/ (a CLIP text tower from vlm/, vkp_text_encoder.h). The pipeline compiles one UNet graph for batch 2 (unconditional +
// conditional, for classifier-free guidance) at the latent size and one VAE decode graph. Sampling: any sampler of
// vkp_sampler.h; each evaluation uploads [c_in·x, c_in·x] and t, runs the UNet, combines the two
// halves with vkp_cfg_combine (diffusers' order: uncond first). Decoding: latents / scaling_factor
// (+ shift_factor), VAE decode, image = clamp(x/2 + 0.5, 0, 1).
#ifndef VKP_PIPELINE_H
#define VKP_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "vkp_sampler.h"
#include "vkp_status.h"
#include "vkp_text_encoder.h"
#include "vkp_unet.h"
#include "vkp_vae.h"

typedef struct vkp_pipeline vkp_pipeline;

typedef struct vkp_pipeline_opts {
  int width, height;       // image size (pixels); 0: the UNet's sample_size × the VAE factor
  int latent_height, latent_width;   // > 0: the latent size directly (overrides width/height)
  int text_tokens;         // tokens of the text states; 0: the text encoder's context, else 77 (CLIP)
  int text_encoder;        // VKP_PIPELINE_TEXT_*: load DIR/text_encoder + DIR/tokenizer
  int clip_skip;           // for the text encoder (A1111's count; 0 = 1)
} vkp_pipeline_opts;

enum {
  VKP_PIPELINE_TEXT_NONE = 0,       // states come from the caller (vkp_pipeline_sample's cond/uncond)
  VKP_PIPELINE_TEXT_IF_PRESENT = 1, // load it when the folder has one
  VKP_PIPELINE_TEXT_REQUIRED = 2,   // a missing text encoder is an error
};

// Loads the folder and compiles the graphs. Errors name the file (VKP_ERR_IO, VKP_ERR_FORMAT,
// VKP_ERR_INVALID, VKP_ERR_UNSUPPORTED).
vkp_status vkp_pipeline_load(vkp_ctx *ctx, const char *dir, const vkp_pipeline_opts *opts, vkp_pipeline **out,
                             vkp_error *err);
// The same from parts built elsewhere (a single-file checkpoint, a trainer): takes ownership of
// unet, vae and te (may be NULL), also on failure; *sched is moved in (its trained_betas freed
// with the pipeline). `name` names the pipeline in messages and in PNG metadata.
vkp_status vkp_pipeline_from_parts(vkp_ctx *ctx, const char *name, vkp_unet *unet, vkp_vae *vae,
                                   const vkp_scheduler_config *sched, vkp_text_encoder *te,
                                   const vkp_pipeline_opts *opts, vkp_pipeline **out, vkp_error *err);
void vkp_pipeline_free(vkp_pipeline *p);

vkp_unet *vkp_pipeline_unet(vkp_pipeline *p);
vkp_vae *vkp_pipeline_vae(vkp_pipeline *p);
vkp_text_encoder *vkp_pipeline_text_encoder(vkp_pipeline *p);   // NULL when not loaded
// Encodes a prompt with the pipeline's text encoder into states (tokens·dim floats, see
// vkp_pipeline_text_shape). VKP_ERR_NOT_FOUND without a text encoder.
vkp_status vkp_pipeline_encode_prompt(vkp_pipeline *p, const char *prompt, float *states, vkp_error *err);
const vkp_scheduler_config *vkp_pipeline_scheduler_config(const vkp_pipeline *p);
// Latent shape (channels, h, w), the text states' (tokens, dim), and the image size.
void vkp_pipeline_latent_shape(const vkp_pipeline *p, int *c, int *h, int *w);
void vkp_pipeline_text_shape(const vkp_pipeline *p, int *tokens, int *dim);
void vkp_pipeline_image_size(const vkp_pipeline *p, int *width, int *height);

// Attaches a LoRA file (kohya / diffusers / PEFT folder) to the UNet with a scale; merged into
// the weights when `merge`. Graphs are built at the first sample, so call this before that.
vkp_status vkp_pipeline_add_lora(vkp_pipeline *p, const char *path, float scale, bool merge, vkp_error *err);

// Runs the sampler from `latents` (initial latents, already scaled by init_noise_sigma) with
// guidance `cfg` on text states cond / uncond (tokens·dim each); the final latents replace them.
// progress: called after each evaluation (may be NULL).
typedef void (*vkp_pipeline_progress_fn)(void *user, int i, int n);
vkp_status vkp_pipeline_sample(vkp_pipeline *p, vkp_sampler *s, float *latents, const float *cond,
                               const float *uncond, float cfg, vkp_rng *rng, vkp_pipeline_progress_fn progress,
                               void *user, vkp_error *err);
// VAE decode of final latents, scaled by 1/scaling_factor (+ shift_factor) first unless `unscaled`
// (the fixtures' `decoded` is vae.decode(final_latents) as is): decoded (3·H·W floats, the VAE's
// output in [-1, 1] nominally); rgb (H·W·3 bytes, may be NULL): clamp(x/2+0.5)·255 rounded.
vkp_status vkp_pipeline_decode(vkp_pipeline *p, const float *latents, bool unscaled, float *decoded, uint8_t *rgb,
                               vkp_error *err);

#endif
