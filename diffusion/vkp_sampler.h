// vkp_sampler.h — diffusion samplers with diffusers' exact semantics: DDIM, Euler, Euler ancestral,
// Heun and DPM++ 2M, with the default and the Karras (ρ = 7) sigma schedules, diffusers' timestep
// spacings, epsilon / v / sample prediction, and classifier-free guidance.
//
// The sampler does not know the model. One sampling run is a sequence of model evaluations
// i = 0 .. n_evals-1 (Heun: 2·steps − 1 of them, diffusers' doubled timesteps):
//
//   vkp_sampler_init_latents(s, rng, x);                 // randn · init_noise_sigma (diffusers'
//                                                        // prepare_latents), or the caller's latents
//   for (int i = 0; i < vkp_sampler_evals(s); i++) {
//     vkp_sampler_scale_input(s, i, x, x_in);            // c_in·x = x/√(σ²+1), or x (DDIM, DPM++)
//     model(x_in, vkp_sampler_timestep(s, i), out);      // upload, run the UNet (twice with CFG:
//                                                        // vkp_cfg_combine), read back
//     vkp_sampler_step(s, i, out, x, rng, err);          // x ← the next latents, in place
//   }
//
// or vkp_sampler_run(s, x, denoise, user, rng, err) with a callback doing the model part. Latents
// are host float arrays of n elements (batch · channels · height · width, the caller's layout: every
// update is elementwise). Ancestral noise (Euler a, DDIM with eta > 0) is torch.randn of all n
// elements per step from `rng` (vkp_rng.h, torch's CPU generator; with vkp_sampler_opts.batch, of
// each image's elements from its own generator): with the generator diffusers'
// pipeline was given (one torch.Generator, seeded; the same one that drew the initial latents) the
// noise is the same numbers.
//
// Exactness: timesteps and sigmas are diffusers' values (their float32 rounding included) for every
// spacing and schedule: the numpy/torch expressions of each scheduler's `set_timesteps`
// (sampler_schedule.c) are reproduced operation by operation. Updates are computed per element in
// double from float32 latents, model outputs and sigmas, and stored as float32 as diffusers stores
// them; diffusers computes them in float32, so the two agree to float32 rounding (~1e-7 relative
// per step), not bit for bit.
#ifndef VKP_SAMPLER_H
#define VKP_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>

#include "vkp_rng.h"
#include "vkp_scheduler.h"
#include "vkp_status.h"

typedef enum vkp_sampler_kind {
  VKP_SAMPLER_DDIM,       // DDIMScheduler                                   A1111 "DDIM"
  VKP_SAMPLER_EULER,      // EulerDiscreteScheduler                          "Euler"
  VKP_SAMPLER_EULER_A,    // EulerAncestralDiscreteScheduler                 "Euler a"
  VKP_SAMPLER_HEUN,       // HeunDiscreteScheduler                           "Heun"
  VKP_SAMPLER_DPMPP_2M,   // DPMSolverMultistepScheduler (dpmsolver++, order 2) "DPM++ 2M"
  VKP_SAMPLER_COUNT,
} vkp_sampler_kind;

#define VKP_SAMPLER_FROM_CONFIG (-1)

typedef struct vkp_sampler_opts {
  vkp_sampler_kind kind;
  int steps;        // inference steps, 1 .. num_train_timesteps
  int karras;       // VKP_SAMPLER_FROM_CONFIG: the config's use_karras_sigmas (Euler, Heun, DPM++;
                    // Euler a and DDIM have no such key in diffusers); 0 off; 1 on (not for DDIM)
  int spacing;      // VKP_SAMPLER_FROM_CONFIG: the config's timestep_spacing, else this sampler's
                    // diffusers default (DDIM leading, the others linspace); or a vkp_spacing
  double eta;       // DDIM only: 0 deterministic (diffusers' pipeline default), 1 DDPM-like
  int batch;        // images in the latents (0 means 1): every `rng` argument below is then an
                    // array of `batch` generators, image k (elements [k·n/batch, (k+1)·n/batch))
                    // drawing its noise from rng[k] only, as diffusers with a list of generators
                    // and A1111's per-image seeds: image k of a batch is the image a batch-1 run
                    // with generator rng[k] makes
} vkp_sampler_opts;

// {kind, steps, karras and spacing from the config, eta = 0, batch 1}.
vkp_sampler_opts vkp_sampler_opts_default(vkp_sampler_kind kind, int steps);

// The schedule of one run.
typedef struct vkp_sampler_schedule {
  int steps;                 // inference steps (diffusers' num_inference_steps; may be below what
                             // was asked only where diffusers' own set_timesteps yields fewer)
  int n_evals;               // model evaluations: steps, Heun 2·steps − 1
  double *timesteps;         // (n_evals) the timestep given to the model at each evaluation, as
                             // diffusers' scheduler.timesteps (float32 values; integers for DDIM,
                             // DPM++ and the non-Karras spacings)
  double *sigmas;            // (n_evals + 1) diffusers' `sigmas` (float32 values): VE noise levels
                             // σ = √((1−ᾱ)/ᾱ) at each evaluation and after the last (Heun: doubled
                             // as diffusers doubles them). DDIM: σ of ᾱ_t, then of the final ᾱ_prev
  double *alphas_prev;       // (n_evals) DDIM: ᾱ of t − T/steps (diffusers' prev_timestep;
                             // final_alpha_cumprod below 0); NULL for the others
  double init_noise_sigma;   // the initial latents' scale: DDIM, DPM++ 1; Euler family max σ, or
                             // √(max σ² + 1) with `leading` spacing
  bool scale_input;          // model input is x/√(σ_i²+1) (Euler, Euler a, Heun); else x (VP)
  bool karras;               // the schedule in use
  vkp_spacing spacing;
} vkp_sampler_schedule;

// Computes the schedule of `kind` on scheduler `sc` (which must have been built for the kind's
// class: vkp_sampler_class). Errors: VKP_ERR_INVALID (steps out of range, a timestep outside
// [0, T) from steps_offset), VKP_ERR_UNSUPPORTED (Karras with DDIM), VKP_ERR_OOM.
// Free with vkp_sampler_schedule_free.
vkp_status vkp_sampler_schedule_build(const vkp_scheduler *sc, vkp_sampler_kind kind, int steps, bool karras,
                                      vkp_spacing spacing, vkp_sampler_schedule *out, vkp_error *err);
void vkp_sampler_schedule_free(vkp_sampler_schedule *sch);

// ---- the sampler ------------------------------------------------------------------------------

typedef struct vkp_sampler vkp_sampler;

// A sampler for latents of n floats, with the noise schedule of `cfg` as the kind's diffusers class
// reads it (vkp_scheduler_config_for_class). Errors, each naming the file and key where one is to
// blame: VKP_ERR_INVALID (steps, eta), VKP_ERR_UNSUPPORTED (a config value this sampler does not
// implement: thresholding, exponential/beta/lu/flow sigmas, DPM-Solver algorithm_type other than
// dpmsolver++ or solver_order 3, learned variance; Karras for DDIM), VKP_ERR_OOM.
vkp_status vkp_sampler_new(const vkp_scheduler_config *cfg, const vkp_sampler_opts *o, size_t n, vkp_sampler **out,
                           vkp_error *err);
void vkp_sampler_free(vkp_sampler *s);

const vkp_sampler_schedule *vkp_sampler_get_schedule(const vkp_sampler *s);
const vkp_scheduler *vkp_sampler_scheduler(const vkp_sampler *s);
vkp_sampler_kind vkp_sampler_get_kind(const vkp_sampler *s);
int vkp_sampler_batch(const vkp_sampler *s);
// torch.randn of the n latent elements from rng (per image from rng[k] with a batch): the noise of
// vkp_sampler_add_noise (img2img), drawn as diffusers' prepare_latents draws it.
void vkp_sampler_randn(const vkp_sampler *s, vkp_rng *rng, float *out);
int vkp_sampler_evals(const vkp_sampler *s);
// The timestep for the model at evaluation i.
double vkp_sampler_timestep(const vkp_sampler *s, int i);
double vkp_sampler_init_noise_sigma(const vkp_sampler *s);
// Initial latents as diffusers' prepare_latents: torch.randn(n) from rng, times init_noise_sigma
// (both float32); with a batch, torch.randn(n/batch) from each rng[k].
void vkp_sampler_init_latents(const vkp_sampler *s, vkp_rng *rng, float *latents);
// The model input at evaluation i: x/√(σ_i²+1) for the Euler family, a copy of x otherwise.
// x_in may equal x.
void vkp_sampler_scale_input(const vkp_sampler *s, int i, const float *x, float *x_in);
// One update: latents (the x that evaluation i saw, before scaling) become the latents for
// evaluation i+1 (after the last, the sample). Evaluations must come in order from the first (0,
// or vkp_sampler_set_begin's). rng: needed by Euler a and by DDIM with eta > 0, else may be NULL.
// Errors: VKP_ERR_INVALID (out of order, rng missing).
vkp_status vkp_sampler_step(vkp_sampler *s, int i, const float *model_output, float *latents, vkp_rng *rng,
                            vkp_error *err);
// Back to the state before the first evaluation (same schedule); begin at evaluation 0.
void vkp_sampler_reset(vkp_sampler *s);

// The model callback of vkp_sampler_run: out = the model's output (guided, with CFG) for input
// x_in at timestep t; i is the evaluation index (for progress). Errors propagate.
typedef vkp_status (*vkp_denoise_fn)(void *user, int i, double t, const float *x_in, float *out, vkp_error *err);
// Runs every remaining evaluation: scale_input, fn, step. latents: the initial latents in (already
// scaled by init_noise_sigma), the sample out.
vkp_status vkp_sampler_run(vkp_sampler *s, float *latents, vkp_denoise_fn fn, void *user, vkp_rng *rng, vkp_error *err);

// ---- img2img (diffusers' StableDiffusionImg2ImgPipeline) -------------------------------------
// The first evaluation for a denoising strength in [0, 1]: t_start · order with
// t_start = steps − min(⌊steps·strength⌋, steps) (Heun's order is 2). Returns n_evals when nothing
// is left to denoise (strength 0).
int vkp_sampler_strength_begin(const vkp_sampler *s, double strength);
// The first evaluation of this run (0, or vkp_sampler_set_begin's).
int vkp_sampler_get_begin(const vkp_sampler *s);
// Starts the run at evaluation i (resets the multistep state, as set_begin_index); i may be
// n_evals (nothing left to run).
void vkp_sampler_set_begin(vkp_sampler *s, int i);
// The noised latents to start evaluation i from: x0 + σ_i·noise (Euler family), or
// √ᾱ x0 + √(1−ᾱ) noise at the evaluation's noise level (DDIM, DPM++), as each scheduler's add_noise.
void vkp_sampler_add_noise(const vkp_sampler *s, int i, const float *x0, const float *noise, float *out);

// ---- guidance ---------------------------------------------------------------------------------
// Classifier-free guidance as diffusers' pipelines: out = uncond + scale·(cond − uncond), in float32.
// out may alias either input.
void vkp_cfg_combine(const float *uncond, const float *cond, float scale, size_t n, float *out);
// diffusers' rescale_noise_cfg (Lin et al. 2023, §3.4; `guidance_rescale` φ): per batch item,
// guided ← φ·guided·std(cond)/std(guided) + (1 − φ)·guided, with torch's unbiased std over the item.
void vkp_cfg_rescale(const float *cond, float *guided, int batch, size_t item, double phi);

// ---- names ------------------------------------------------------------------------------------
// Parses a sampler name: "ddim", "euler", "euler_a" ("euler-a", "euler_ancestral", "Euler a"),
// "heun", "dpmpp_2m" ("dpm++_2m", "dpm++2m", "DPM++ 2M"), case-insensitive, with an optional
// " karras"/"_karras" suffix (A1111's "DPM++ 2M Karras") setting *karras to 1 (else
// VKP_SAMPLER_FROM_CONFIG). Errors: VKP_ERR_INVALID naming the known samplers.
vkp_status vkp_sampler_parse_name(const char *name, vkp_sampler_kind *kind, int *karras, vkp_error *err);
// "ddim", "euler", "euler_a", "heun", "dpmpp_2m".
const char *vkp_sampler_name(vkp_sampler_kind kind);
// A1111's names, as its PNG `parameters` write them: "DDIM", "Euler", "Euler a", "Heun",
// "DPM++ 2M"; with karras " Karras" appended ("DPM++ 2M Karras").
const char *vkp_sampler_a1111_name(vkp_sampler_kind kind, bool karras);
// The diffusers class a sampler is (its defaults apply to keys the config lacks).
vkp_scheduler_class vkp_sampler_class(vkp_sampler_kind kind);
// The sampler of a config's own class (a pipeline's default), or -1 for PNDM, DDPM and the other
// classes that have no sampler here (the caller picks one).
int vkp_sampler_for_class(vkp_scheduler_class cls);

#endif
