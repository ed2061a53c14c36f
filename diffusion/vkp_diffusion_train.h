// vkp_diffusion_train.h — LoRA (and any other core PEFT method) training of a Stable-Diffusion-shaped
// pipeline's UNet: `vkpeft train CONFIG.json` with `"task": "diffusion"`.
//
// model.pretrained is a diffusers pipeline folder (unet/, vae/, text_encoder/ + tokenizer/,
// scheduler/scheduler_config.json). Everything is frozen except the adapters of the `peft` list,
// which target the UNet's diffusers module names (attention to_q/to_k/to_v/to_out.0, proj_in,
// ff.net.*, ResNet conv1/conv2, ...), and those of the `peft_text_encoder` list (default []), which
// target the CLIP text tower's modules (q_proj, k_proj, v_proj, out_proj, fc1, fc2): its states are
// then computed in the training graph, with its own learning rate train.text_encoder_lr (and
// train.unet_lr for the UNet; -1: train.lr), and its adapters are saved with the UNet's
// (train_text_encoder.c).
// A pipeline from parts (train_setup.c): model.init.unet (a UNet config.json's keys: random weights,
// seed train.seed) instead of unet/, model.vae (a vae/ folder, e.g. from `"task": "vae"`) instead of
// vae/, model.text_encoder (a CLIP folder: its text tower) + model.tokenizer (a folder with
// vocab.json + merges.txt; null: the text encoder folder's, else the built-in BPE) instead of
// text_encoder/ + tokenizer/; model.pretrained then needs only scheduler/. With any of these or a
// `full` method the run ends with pipeline/ (model_index.json, unet/, vae/, text_encoder/,
// tokenizer/, scheduler/: train_pipeline.c) for `vkpeft generate`; the tokenizer must then come
// from a folder.
//
// Data (data.train, data.val: vkp_pairs specs as the CLIP trainer takes them: a kohya caption
// folder with N_name repeat folders, a CSV/JSONL list, emoji-noto / emoji-emojione, several joined
// with '+'): every image resized (shorter side) to data.resolution and center-cropped
// (data.crop "center") or randomly cropped (data.crop "random": RandomResizedCrop with scale
// [data.crop_scale, 1], ratio 1); flipped with probability data.hflip; RGBA composited onto
// data.alpha ("white", "black", "drop") for the VAE, the alpha kept as the loss mask
// (train.masked_loss). Captions: the first line (data.first_caption) or a random one, shuffled
// as comma-separated tags after the first data.keep_tokens (data.shuffle_captions), data.trigger
// prepended ("trigger, caption"), dropped to "" with probability data.caption_dropout.
//
// Aspect-ratio buckets (data.buckets, kohya's enable_bucket; train_buckets.c): the bucket sizes of
// kohya's make_bucket_resolutions for an area of data.resolution² — the square, and for every
// width w from data.min_bucket_reso to data.max_bucket_reso in steps of data.bucket_reso_steps
// the height ⌊R²/w / steps⌋·steps (at most max), with its transpose, when it is at least min (0:
// automatic, R/2, 2R and the UNet's multiple; kohya's 256 / 1024 / 64 at 512²). Each training
// image goes to the bucket of the closest aspect ratio (its own size when that is a bucket; ties
// to the first in (w, h) order), resized to cover it (kohya's rounding) and center-cropped (or,
// with data.crop "random", RandomResizedCrop at the bucket's aspect ratio). Every micro-batch is
// drawn from one bucket: each bucket's samples (repeats included) shuffled per epoch and cut into
// batches, the last one short (padded with samples of weight 0; the loss is the mean over the
// images), the epoch's batches in an order shuffled by (seed, epoch), so --resume continues bit for
// bit. Each bucket has its own latent-cache folder, training graph and (random crops) VAE
// encoder. Validation and sample grids stay at data.resolution². The histogram is printed, written
// to buckets.json and to kohya's ss_bucket_info.
//
// Regularisation images (data.reg, same specs as data.train; DreamBooth prior preservation, kohya's
// reg_data_dir; train_reg.c): joined to the training set with kohya's repeats — taken in order with
// their folders' repeats until an epoch holds as many regularisation samples as training samples
// (images past that point unused), then each image's repeats grow by one in turn until it does.
// Their captions get no data.trigger; their per-sample loss is multiplied by
// train.prior_loss_weight (default 1) before the batch mean. metrics.jsonl adds reg_share (their
// share of the window's samples) and loss_reg (their plain MSE).
//
// Latent cache (data.cache_latents, center crop): every image is encoded once by the frozen VAE
// (posterior mean and std, and the flipped image's when data.hflip > 0: one cache entry per
// variant; a fresh posterior sample per step) into data.cache_dir (default
// $XDG_CACHE_HOME/vkpeft/latents or ~/.cache/vkpeft/latents), one folder per hash of the VAE
// (weights file path, size, mtime; config), resolution, crop and alpha mode (and a bucket's size), one file per hash
// of an image's path, size and mtime; later runs reuse the files. data.crop "random" encodes each
// batch in the step instead (a random crop has no finite set of variants to cache); validation
// latents are still cached. Text states: encoded per step by the frozen text encoder, cached per
// distinct caption string when captions are not shuffled (with peft_text_encoder: computed in the training
// graph from token ids, never cached).
//
// Objective (diffusers' train_text_to_image_lora.py / kohya's train_network.py): latents =
// (sample − shift) · scaling_factor; noise ε ~ N(0, I) (+ train.noise_offset · N(0, 1) per sample
// and channel); t uniform in [train.min_timestep, train.max_timestep) (max 0: T); noisy =
// √ᾱ_t latents + √(1 − ᾱ_t) ε from the pipeline's scheduler_config.json (train.zero_terminal_snr
// rescales the betas; train.prediction_type overrides the file's); target ε (epsilon) or
// √ᾱ_t ε − √(1 − ᾱ_t) latents (v_prediction); loss = mean over the batch of
// w_i · mean over (C, h, w) of mask · (pred − target)², w_i the min-SNR-γ weight
// (train.min_snr_gamma > 0) else 1, mask the alpha channel area-downsampled to the latent size
// (train.masked_loss) else 1.
//
// A run directory as the other trainers': config.json, metrics.jsonl ({"loss": plain MSE,
// "loss_weighted": the objective, "lr", "grad_norm", "images_per_s", ...} every log_every steps,
// {"val_loss"} at each evaluation: plain MSE at fixed (image, timestep, noise) triples of the
// validation images, or of the first train.val_limit training images without a validation set),
// checkpoints/step-N/ (the adapter files below, optimizer, trainer state; `--resume` continues bit
// for bit), and at the end adapter/ (HF PEFT folder), <save.name>.safetensors (kohya, with kohya's
// ss_* training metadata) and pytorch_lora_weights.safetensors (diffusers layout) — each where the
// method has a place in the format (kohya: LoRA, DoRA, LoHa, LoKr; diffusers: LoRA, DoRA).
// samples/step-NNNNNN.png every samples.every steps and at the end when samples.prompts is given:
// a grid with one column per prompt (seed samples.seed + column; samples.steps, .cfg, .sampler,
// .negative_prompt as in `vkpeft generate`), the adapters off in the first row, on in the second,
// their EMA in a third (train.ema_decay). plots/loss.png, plots/lr.png and report.html (run rows,
// plots, the sample timeline, links to the adapter files), rewritten at every checkpoint and at
// the end.
//
// EMA (train.ema_decay > 0, as diffusers' EMAModel): after optimizer update k the average becomes
// ema − (1 − d_k)(ema − weights) in f32, d_1 = 0 (a copy), then d_k = min(ema_decay, k/(9 + k))
// with train.ema_warmup ((1 + s)/(10 + s), s = k − 1), else ema_decay. Saved beside the raw adapter
// in every format as adapter_ema/, <save.name>_ema.safetensors, pytorch_lora_weights_ema.safetensors
// (final and in checkpoints), and in checkpoints as ema.safetensors (parameter names, update count):
// `--resume` continues the average bit for bit.
#ifndef VKP_DIFFUSION_TRAIN_H
#define VKP_DIFFUSION_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "vkp_device.h"
#include "vkp_status.h"

extern const char vkp_diffusion_train_defaults[];   // the defaults document (JSON), "task": "diffusion"

// Resolves a config: defaults <- file (may be NULL) <- `key=value` overrides; checks the list keys.
vkp_status vkp_diffusion_train_config(const char *path, const char *const *sets, int nsets, cJSON **out, vkp_error *err);

typedef struct vkp_diffusion_train_summary {
  int64_t steps;
  double final_loss;            // plain MSE of the last log window (NaN: none)
  double final_loss_weighted;   // the objective of the last log window
  double val_loss;              // last validation loss (NaN: none)
  double images_per_s, seconds;
  int64_t latents_encoded;      // images encoded by the VAE into the cache in this run
  int64_t latents_reused;       // images whose latents came from the cache folder
  int64_t trainable_params, total_params;
  uint64_t peak_device_bytes;   // the context's peak device memory
  uint64_t arena_bytes;         // the training graph's arena (intermediates and inputs; data.buckets: all buckets' graphs)
  char run_dir[1024];
} vkp_diffusion_train_summary;

typedef struct vkp_diffusion_trainer vkp_diffusion_trainer;

// Trains per cfg into cfg.output_dir, or continues the run in resume_dir. quiet: no progress.
vkp_status vkp_diffusion_train(vkp_ctx *ctx, const cJSON *cfg, const char *resume_dir, bool quiet,
                               vkp_diffusion_train_summary *summary, vkp_error *err);

// The trainer underneath, for tests that step it by hand.
vkp_status vkp_diffusion_trainer_new(vkp_ctx *ctx, const cJSON *cfg, const char *resume_dir, bool quiet,
                                     vkp_diffusion_trainer **out, vkp_error *err);
void vkp_diffusion_trainer_free(vkp_diffusion_trainer *t);
// One optimizer step (grad_accum micro-batches); *loss: the mean objective over them.
vkp_status vkp_diffusion_trainer_step(vkp_diffusion_trainer *t, double *loss, vkp_error *err);
// The rest of the run (loop, evaluation, checkpoints, final files).
vkp_status vkp_diffusion_trainer_run(vkp_diffusion_trainer *t, vkp_diffusion_train_summary *summary, vkp_error *err);
// The validation loss now (plain MSE at the fixed triples).
vkp_status vkp_diffusion_trainer_val_loss(vkp_diffusion_trainer *t, double *loss, vkp_error *err);

// ---- test hooks ------------------------------------------------------------------------------
// What the last micro-batch was, on the host (recording on). Valid until the next step or _free.
typedef struct vkp_diffusion_batch_record {
  int n, channels, height, width;   // batch, latent shape (data.buckets: the batch's bucket's)
  int n_images;              // samples 0..n_images-1 are images; the rest pad a bucket's last batch
  const float *sample_weight;   // (n) loss factor: 1, train.prior_loss_weight (regularisation images), 0 (padding)
  int num_train_timesteps;
  const size_t *images;      // (n) the training set's image index of each sample
  const float *latents;      // (n, C, h, w) x0: scaled posterior samples
  const float *noise;        // (n, C, h, w) ε (offset included)
  const int *timesteps;      // (n)
  const float *noisy;        // (n, C, h, w) the UNet's input
  const float *target;       // (n, C, h, w)
  const float *snr_weight;   // (n) w_i
  const float *mask;         // (n, h, w) the loss mask (1 without masked_loss)
  const float *pred;         // (n, C, h, w) the UNet's output
  float loss;                // the objective the graph computed
  float mse;                 // plain MSE
  bool v_prediction;
  double min_snr_gamma;
} vkp_diffusion_batch_record;
void vkp_diffusion_trainer_record(vkp_diffusion_trainer *t, bool on);
const vkp_diffusion_batch_record *vkp_diffusion_trainer_last_batch(const vkp_diffusion_trainer *t);
// The next micro-batch uses these noise values ((n, C, h, w), offset not added) and timesteps
// instead of drawing them (copied; NULL: draw).
void vkp_diffusion_trainer_force(vkp_diffusion_trainer *t, const float *noise, const int *timesteps);
// Images whose latents this trainer encoded with the VAE, and those read from the cache folder.
void vkp_diffusion_trainer_cache_counts(const vkp_diffusion_trainer *t, int64_t *encoded, int64_t *reused);

#endif
