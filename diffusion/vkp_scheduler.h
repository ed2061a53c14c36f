// vkp_scheduler.h — the DDPM noise schedule of a diffusers `scheduler_config.json`, and the forward
// process that training needs (noising, targets, SNR weighting).
//
// A pipeline's scheduler config names one diffusers scheduler class (`_class_name`), but every one
// of them defines the same training schedule: betas from `beta_schedule` (or `trained_betas`),
// optionally rescaled to zero terminal SNR, and ᾱ_t = Π_{s<=t} (1 − β_s). What differs between the
// classes is their defaults for the keys a file leaves out (HeunDiscreteScheduler's beta range,
// DDIMScheduler's `clip_sample` and `set_alpha_to_one`, each class's `timestep_spacing`). diffusers'
// `OtherScheduler.from_config(config)` takes the keys present in the file and the *other* class's
// defaults for the rest; vkp_scheduler_new(cfg, cls) does the same, so a PNDM config (SD 1.5) used
// with the Euler sampler gets Euler's `linspace` spacing, exactly as in diffusers.
//
// Exactness: diffusers builds the schedule in float32 torch ops (torch.linspace with its fused
// multiply-add, `** 2`, `1 - betas`) and torch's CPU cumprod accumulates those float32 alphas in
// double. vkp_scheduler_new reproduces those float32 rounding points, so `betas` and
// `alphas_cumprod` here are diffusers' float32 values exactly (stored as doubles); everything derived
// from them (σ, √ᾱ, SNR, sampler updates) is computed in double. Measured on the fixture
// (SD's scaled_linear 0.00085..0.012): ᾱ equal bit for bit.
#ifndef VKP_SCHEDULER_H
#define VKP_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "vkp_status.h"

// The diffusers class a config names. OTHER: another diffusers scheduler of the same DDPM family
// (LMS, UniPC, DEIS, KDPM2, DPM single-step, LCM, TCD, ...): its training schedule is read, it has
// no sampler here. NONE: no `_class_name` key.
typedef enum vkp_scheduler_class {
  VKP_SCHED_DDIM,
  VKP_SCHED_EULER,        // EulerDiscreteScheduler
  VKP_SCHED_EULER_A,      // EulerAncestralDiscreteScheduler
  VKP_SCHED_HEUN,         // HeunDiscreteScheduler
  VKP_SCHED_DPMSOLVER,    // DPMSolverMultistepScheduler
  VKP_SCHED_PNDM,
  VKP_SCHED_DDPM,
  VKP_SCHED_OTHER,
  VKP_SCHED_NONE,
  VKP_SCHED_FILE = -1,    // vkp_scheduler_new: the class the config names
} vkp_scheduler_class;

typedef enum vkp_beta_schedule { VKP_BETA_LINEAR, VKP_BETA_SCALED_LINEAR, VKP_BETA_SQUAREDCOS_CAP_V2 } vkp_beta_schedule;
typedef enum vkp_prediction { VKP_PRED_EPSILON, VKP_PRED_V, VKP_PRED_SAMPLE } vkp_prediction;
typedef enum vkp_spacing { VKP_SPACING_LEADING, VKP_SPACING_TRAILING, VKP_SPACING_LINSPACE } vkp_spacing;
typedef enum vkp_timestep_type { VKP_TIMESTEP_DISCRETE, VKP_TIMESTEP_CONTINUOUS } vkp_timestep_type;
typedef enum vkp_interpolation { VKP_INTERP_LINEAR, VKP_INTERP_LOG_LINEAR } vkp_interpolation;
typedef enum vkp_final_sigmas { VKP_FINAL_SIGMA_ZERO, VKP_FINAL_SIGMA_MIN } vkp_final_sigmas;
// DPMSolverMultistepScheduler's algorithm_type ("deis" is stored as dpmsolver++, as diffusers does).
typedef enum vkp_dpm_algorithm { VKP_DPM_PLUSPLUS, VKP_DPM_DPMSOLVER, VKP_DPM_SDE_PLUSPLUS, VKP_DPM_SDE } vkp_dpm_algorithm;
typedef enum vkp_dpm_solver_type { VKP_DPM_MIDPOINT, VKP_DPM_HEUN } vkp_dpm_solver_type;

// Keys whose presence matters (the bit is set when the file has the key with a non-null value).
enum {
  VKP_SCHED_HAS_BETA_START = 1u << 0,
  VKP_SCHED_HAS_BETA_END = 1u << 1,
  VKP_SCHED_HAS_TIMESTEP_SPACING = 1u << 2,
  VKP_SCHED_HAS_SET_ALPHA_TO_ONE = 1u << 3,
  VKP_SCHED_HAS_CLIP_SAMPLE = 1u << 4,
  VKP_SCHED_HAS_LOWER_ORDER_FINAL = 1u << 5,
};

#define VKP_SCHED_FILE_MAX 512

// A scheduler_config.json as read: every supported key, with the generic diffusers default where
// the file has none, and `present` telling which class-dependent keys the file sets.
typedef struct vkp_scheduler_config {
  char file[VKP_SCHED_FILE_MAX];   // where it was read from, for messages
  vkp_scheduler_class cls;         // `_class_name`
  char class_name[64];
  unsigned present;                // VKP_SCHED_HAS_* bits
  // the training schedule
  int num_train_timesteps;         // T (1000)
  double beta_start, beta_end;     // (0.0001, 0.02; HeunDiscrete: 0.00085, 0.012)
  vkp_beta_schedule beta_schedule; // ("linear")
  double *trained_betas;           // (T) or NULL; owned (vkp_scheduler_config_free)
  bool rescale_betas_zero_snr;
  vkp_prediction prediction_type;  // ("epsilon")
  // inference
  int steps_offset;                // (0)
  vkp_spacing timestep_spacing;    // (per class: leading for DDIM/PNDM/DDPM, linspace otherwise)
  bool set_alpha_to_one;           // DDIM (true; PNDM false)
  bool clip_sample;                // DDIM, Heun, DDPM (true; Heun false)
  double clip_sample_range;        // (1.0)
  bool use_karras_sigmas;          // Euler, Heun, DPM-Solver (false)
  vkp_timestep_type timestep_type; // Euler ("discrete")
  vkp_interpolation interpolation_type;  // Euler ("linear")
  vkp_final_sigmas final_sigmas_type;    // Euler, DPM-Solver ("zero")
  double sigma_min, sigma_max;     // Euler's Karras range override; NAN = from the schedule
  // DPMSolverMultistepScheduler
  int solver_order;                // (2)
  vkp_dpm_algorithm algorithm_type;      // ("dpmsolver++")
  vkp_dpm_solver_type solver_type;       // ("midpoint")
  bool lower_order_final;          // (true)
  bool euler_at_final;             // (false)
  double lambda_min_clipped;       // (-inf)
  // values the samplers here do not implement; vkp_sampler_new refuses them, naming the key
  bool thresholding, use_exponential_sigmas, use_beta_sigmas, use_lu_lambdas, use_flow_sigmas;
  bool variance_learned;           // variance_type "learned" / "learned_range"
} vkp_scheduler_config;

// Reads a diffusers scheduler_config.json. Unknown keys are ignored (diffusers ignores them too).
// Errors name the file and the key: VKP_ERR_IO / VKP_ERR_FORMAT (unreadable, not a JSON object),
// VKP_ERR_INVALID (wrong type, out of range, a value no diffusers version accepts),
// VKP_ERR_UNSUPPORTED (a value diffusers has that vkpeft does not: `beta_schedule` "sigmoid"/"exp",
// `prediction_type` "flow_prediction", a flow-matching `_class_name`). On error *out holds no
// allocation. Free with vkp_scheduler_config_free.
vkp_status vkp_scheduler_config_load(const char *path, vkp_scheduler_config *out, vkp_error *err);
// The same from a parsed object; `where` names it in messages.
vkp_status vkp_scheduler_config_parse(const cJSON *obj, const char *where, vkp_scheduler_config *out, vkp_error *err);
// diffusers' defaults of class `cls` for every key (no file): what `Class()` constructs.
void vkp_scheduler_config_default(vkp_scheduler_config *out, vkp_scheduler_class cls);
// Frees trained_betas; the struct itself is the caller's. NULL is a no-op.
void vkp_scheduler_config_free(vkp_scheduler_config *cfg);

// The config as diffusers' class `cls` holds it after `Class.from_config(config)`: the keys the
// file sets, `cls`'s defaults for the rest (VKP_SCHED_FILE: the file's own class). out borrows
// in->trained_betas: free only `in`.
void vkp_scheduler_config_for_class(const vkp_scheduler_config *in, vkp_scheduler_class cls, vkp_scheduler_config *out);

// "DDIMScheduler", ... ; NULL for OTHER/NONE.
const char *vkp_scheduler_class_name(vkp_scheduler_class cls);

// ---- the schedule ----------------------------------------------------------------------------

// The training schedule of `cfg` as diffusers' class `cls` builds it (vkp_scheduler_config_for_class;
// VKP_SCHED_FILE: the class the file names). diffusers' training scripts load
// `DDPMScheduler.from_pretrained(..., subfolder="scheduler")`: pass VKP_SCHED_DDPM to match them.
typedef struct vkp_scheduler {
  vkp_scheduler_config cfg;        // resolved for cfg.cls: every field holds the value that class
                                   // uses; cfg.trained_betas is NULL (already in `betas`)
  int num_train_timesteps;         // T
  double *betas;                   // (T) diffusers' float32 betas, as doubles
  double *alphas_cumprod;          // (T) ᾱ_t, diffusers' float32 values; ᾱ_{T-1} = 0 exactly after
                                   // rescale_betas_zero_snr
} vkp_scheduler;

// Errors: VKP_ERR_INVALID naming the file and key (`trained_betas` of the wrong length or outside
// (0, 1), `steps_offset` >= T, a schedule that is constant so zero-SNR cannot rescale it),
// VKP_ERR_OOM. Free with vkp_scheduler_free (NULL is a no-op).
vkp_status vkp_scheduler_new(const vkp_scheduler_config *cfg, vkp_scheduler_class cls, vkp_scheduler **out,
                             vkp_error *err);
void vkp_scheduler_free(vkp_scheduler *s);

// diffusers' `rescale_zero_terminal_snr` (Lin et al. 2023, Algorithm 1) on n betas in place, with
// its float32 rounding: shifts and scales √ᾱ so that √ᾱ_{n-1} = 0 and √ᾱ_0 is kept. Exposed for
// tests; vkp_scheduler_new applies it when the config asks.
void vkp_scheduler_rescale_zero_snr(double *betas, int n);

// torch.linspace(start, end, n, dtype=torch.float32) as ATen computes it on the CPU, bit for bit
// (the schedules' betas, Euler's log_linear sigmas).
void vkp_scheduler_linspace_f32(float start, float end, int n, float *out);

// ---- the forward process (training) ----------------------------------------------------------
// Latents are (B, ...) host arrays of B items of `item` floats each; t holds one training timestep
// per item (0 <= t < T). Computed in double from ᾱ_t, stored as float.

// x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε (diffusers' add_noise).
void vkp_scheduler_add_noise(const vkp_scheduler *s, const float *x0, const float *noise, const int *t, int batch,
                             size_t item, float *out);
// v = √ᾱ_t ε − √(1 − ᾱ_t) x0 (diffusers' get_velocity).
void vkp_scheduler_velocity(const vkp_scheduler *s, const float *x0, const float *noise, const int *t, int batch,
                            size_t item, float *out);
// The training target of the config's prediction_type: ε, v, or x0.
void vkp_scheduler_target(const vkp_scheduler *s, const float *x0, const float *noise, const int *t, int batch,
                          size_t item, float *out);
// SNR(t) = ᾱ_t / (1 − ᾱ_t) (0 at a zero-terminal-SNR t = T−1; INFINITY if ᾱ_t = 1).
double vkp_scheduler_snr(const vkp_scheduler *s, int t);
// Min-SNR-γ loss weight (Hang et al. 2023), as diffusers' and kohya's training scripts compute it:
// min(SNR, γ)/SNR for epsilon, min(SNR, γ)/(SNR + 1) for v-prediction, min(SNR, γ) for sample
// prediction. Where SNR = 0 (zero terminal SNR) the epsilon weight is its limit, 1, not 0/0.
double vkp_scheduler_min_snr_weight(const vkp_scheduler *s, int t, double gamma);

#endif
