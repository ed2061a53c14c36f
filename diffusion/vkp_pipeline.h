// vkp_pipeline.h — text-to-image and image-to-image sampling on a Stable-Diffusion pipeline
// (`vkpeft generate`).
//
// A diffusers pipeline folder holds model_index.json, unet/, vae/, scheduler/scheduler_config.json
// and, for prompts, text_encoder/ + tokenizer/ (a CLIP text tower from vlm/, vkp_text_encoder.h).
// The UNet graph is compiled at the first sample for 2·batch rows (the batch is the sampler's,
// vkp_sampler_opts.batch): rows [uncond × batch, cond × batch] as diffusers' torch.cat([latents]*2),
// each evaluation uploads c_in·x twice and t, runs the UNet and combines the halves per image with
// vkp_cfg_combine. The graph is rebuilt when the batch or the LoRAs change. The VAE graphs (decode,
// and encode for img2img) are batch 1. Decoding: latents / scaling_factor (+ shift_factor), VAE
// decode, image = clamp(x/2 + 0.5, 0, 1).
//
// Randomness: every `rng` below is an array of `batch` generators (vkp_sampler.h), image k drawing
// only from rng[k]: seeds seed, seed+1, ... make image k of a batch the image a batch-1 run with
// seed+k makes (A1111's batches; diffusers with a list of generators).
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

// Drops the UNet graph (and the text encoder's), to be rebuilt at the next use with the adapters
// as they are now: for callers that attach, detach or toggle adapters on the pipeline's models
// themselves (a trainer's sample grids).
void vkp_pipeline_invalidate(vkp_pipeline *p);

// Attaches a LoRA file with a scale; merged into the weights when `merge`. A kohya/A1111/LyCORIS
// or diffusers .safetensors file may hold two parts: `lora_unet_*` / `unet.*` keys go to the UNet,
// `lora_te_*` / `lora_te1_*` / `text_encoder.*` keys to the CLIP text tower (noted on stderr and
// skipped when no text encoder is loaded); an HF PEFT folder goes to the UNet. Errors name the file:
// VKP_ERR_IO (missing), VKP_ERR_FORMAT (corrupt, or keys of a part that name no module of its model),
// VKP_ERR_SHAPE (no key of either part). The UNet and text graphs are rebuilt at their next use, so
// text states encoded before must be encoded again.
vkp_status vkp_pipeline_add_lora(vkp_pipeline *p, const char *path, float scale, bool merge, vkp_error *err);
int vkp_pipeline_lora_count(const vkp_pipeline *p);
// Which models LoRA i (in the order added) was applied to.
void vkp_pipeline_lora_parts(const vkp_pipeline *p, int i, bool *unet, bool *te);
// Changes LoRA i's scale (a merged one is unmerged and merged again); graphs rebuilt as above.
vkp_status vkp_pipeline_set_lora_scale(vkp_pipeline *p, int i, float scale, vkp_error *err);

// Runs the sampler from `latents` (batch·c·h·w floats: the initial latents, already scaled by
// init_noise_sigma, or img2img's noised ones) with guidance `cfg` on text states cond / uncond
// (tokens·dim each, the same for every image; uncond NULL: zeros); the final latents replace them.
// The run starts at the sampler's begin (vkp_sampler_set_begin). progress: called after each
// evaluation with (done, total) of this run (may be NULL).
typedef void (*vkp_pipeline_progress_fn)(void *user, int i, int n);
vkp_status vkp_pipeline_sample(vkp_pipeline *p, vkp_sampler *s, float *latents, const float *cond,
                               const float *uncond, float cfg, vkp_rng *rng, vkp_pipeline_progress_fn progress,
                               void *user, vkp_error *err);
// The same with one text state per image: conds holds batch·tokens·dim floats, image k's at
// k·tokens·dim (several prompts in one UNet batch; image k is what vkp_pipeline_sample gives with
// conds' k-th state and rng[k]).
vkp_status vkp_pipeline_sample_each(vkp_pipeline *p, vkp_sampler *s, float *latents, const float *conds,
                                    const float *uncond, float cfg, vkp_rng *rng, vkp_pipeline_progress_fn progress,
                                    void *user, vkp_error *err);
// VAE encode of one image (pixels: 3·H·W floats in [-1, 1], the pipeline's image size): the
// posterior's mean and logvar (c·h·w floats each; logvar clamped to [-30, 20]).
vkp_status vkp_pipeline_encode_image(vkp_pipeline *p, const float *pixels, float *mean, float *logvar,
                                     vkp_error *err);
// img2img's starting point as diffusers' StableDiffusionImg2ImgPipeline: encodes `pixels` (one
// image, used for every image of the batch), samples the posterior per image
// (mean + exp(logvar/2)·randn from rng[k]), scales it ((x − shift_factor)·scaling_factor), draws
// the noise (randn from rng[k]), trims the schedule as get_timesteps (init = min(⌊steps·strength⌋,
// steps), t_start = steps − init; the run begins at evaluation t_start·order, vkp_sampler_set_begin)
// and noises with the scheduler's add_noise at that evaluation (Euler family: x0 + σ·noise; DDIM,
// DPM++: α·x0 + σ_t·noise) into latents (batch·c·h·w). Errors: VKP_ERR_INVALID for a strength
// outside [0, 1] or one that leaves no step (⌊steps·strength⌋ = 0).
vkp_status vkp_pipeline_img2img_latents(vkp_pipeline *p, vkp_sampler *s, const float *pixels, double strength,
                                        vkp_rng *rng, float *latents, vkp_error *err);
// VAE decode of final latents, scaled by 1/scaling_factor (+ shift_factor) first unless `unscaled`
// (the fixtures' `decoded` is vae.decode(final_latents) as is): decoded (3·H·W floats, the VAE's
// output in [-1, 1] nominally); rgb (H·W·3 bytes, may be NULL): clamp(x/2+0.5)·255 rounded.
vkp_status vkp_pipeline_decode(vkp_pipeline *p, const float *latents, bool unscaled, float *decoded, uint8_t *rgb,
                               vkp_error *err);

#endif
