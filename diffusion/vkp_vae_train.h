// vkp_vae_train.h — training an AutoencoderKL (the latent space of a diffusion pipeline):
// `vkpeft train CONFIG.json` with `"task": "vae"`.
//
// Model: model.pretrained (a diffusers vae/ folder) or, when null, model.init (a vkp_vae_config as
// diffusers' config.json keys: block_out_channels, layers_per_block, latent_channels,
// norm_num_groups, ...) from random weights (diffusers' initialisation, seed train.seed). The
// `peft` list (default [{"method": "full"}]: full fine-tuning) selects what trains.
//
// Data: data.train (and data.val, or data.val_fraction of data.train's keys, vkp_pairs_split):
// vkp_pairs specs as the other trainers take them (emoji-noto, a caption folder, a CSV list, ...);
// captions are ignored. Every image resized (shorter side) to data.resolution, center-cropped,
// RGBA composited onto data.alpha, scaled to [-1, 1] (the diffusion trainer's preprocessing,
// train_pixels.h), flipped with probability data.hflip.
//
// Objective (diffusers' examples/research_projects/autoencoderkl/train_autoencoderkl.py without
// its LPIPS and GAN terms): z = μ + σ·ε sampled from the posterior (train.sample_posterior false:
// z = μ, a plain autoencoder with the KL term as a regulariser), x̂ = decode(z);
//   loss = rec + train.kl_weight · kl,
//   rec  = mean over (B, C, H, W) of |x − x̂| (train.recon_loss "l1") or (x − x̂)² ("mse"),
//   kl   = mean over B of Σ_(c,h,w) ½ (μ² + σ² − 1 − log σ²)   (DiagonalGaussianDistribution.kl()).
//
// A run directory as the other trainers': config.json, metrics.jsonl ({"loss", "rec", "kl", "lr",
// "grad_norm", "images_per_s"} every log_every steps; {"val_rec"}: rec of the posterior mean at each
// evaluation), checkpoints/step-N/ (`--resume` continues bit for bit) and at the end vae/ (a
// diffusers folder whose scaling_factor is 1 / std of the posterior samples of the training
// images (the first 512), as SD's 0.18215 was derived; the base weights: with methods other than
// `full` the trained part is in adapter/, an HF PEFT folder) and reconstructions.png (first row:
// validation images, or the first training ones; second row: their reconstructions from the
// posterior mean).
#ifndef VKP_VAE_TRAIN_H
#define VKP_VAE_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "vkp_device.h"
#include "vkp_status.h"
#include "vkp_vae.h"

extern const char vkp_vae_train_defaults[];   // the defaults document (JSON), "task": "vae"

// Resolves a config: defaults <- file (may be NULL) <- `key=value` overrides.
vkp_status vkp_vae_train_config(const char *path, const char *const *sets, int nsets, cJSON **out, vkp_error *err);

typedef struct vkp_vae_train_summary {
  int64_t steps;
  double final_loss, final_rec, final_kl;   // means over the last log window
  double val_rec;                           // last validation reconstruction loss (NaN: none)
  double scaling_factor;                    // the saved VAE's (0: the run did not finish)
  double images_per_s, seconds;
  int64_t trainable_params, total_params;
  char run_dir[1024];
} vkp_vae_train_summary;

typedef struct vkp_vae_trainer vkp_vae_trainer;

vkp_status vkp_vae_train(vkp_ctx *ctx, const cJSON *cfg, const char *resume_dir, bool quiet, vkp_vae_train_summary *summary,
                         vkp_error *err);

// The trainer underneath, for tests that step it by hand.
vkp_status vkp_vae_trainer_new(vkp_ctx *ctx, const cJSON *cfg, const char *resume_dir, bool quiet, vkp_vae_trainer **out,
                               vkp_error *err);
void vkp_vae_trainer_free(vkp_vae_trainer *t);
// One optimizer step (grad_accum micro-batches); *loss: their mean objective.
vkp_status vkp_vae_trainer_step(vkp_vae_trainer *t, double *loss, vkp_error *err);
vkp_status vkp_vae_trainer_run(vkp_vae_trainer *t, vkp_vae_train_summary *summary, vkp_error *err);
// The reconstruction loss of the posterior means of the validation images now.
vkp_status vkp_vae_trainer_val_rec(vkp_vae_trainer *t, double *rec, vkp_error *err);
vkp_vae *vkp_vae_trainer_model(vkp_vae_trainer *t);

// ---- test hooks ------------------------------------------------------------------------------
// The last micro-batch on the host (recording on); valid until the next step or _free.
typedef struct vkp_vae_batch_record {
  int n, channels, height, width;        // images (n, 3, H, W)
  int latent_c, latent_h, latent_w;
  const float *pixels;                   // (n, 3, H, W) the input in [-1, 1]
  const float *noise;                    // (n, c, h, w) ε
  const float *mean, *logvar;            // (n, c, h, w) the posterior (logvar clamped)
  const float *recon;                    // (n, 3, H, W) x̂
  float loss, rec, kl;                   // as the graph computed them
  bool l1;
  double kl_weight;
} vkp_vae_batch_record;
void vkp_vae_trainer_record(vkp_vae_trainer *t, bool on);
const vkp_vae_batch_record *vkp_vae_trainer_last_batch(const vkp_vae_trainer *t);

#endif
