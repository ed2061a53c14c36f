// train_internal.h — the diffusion trainer's state, shared by its files (one job each):
//   train_setup.c      defaults, config checks, the pipeline's parts, adapters, optimizer
//   train_data.c       pair data, split, captions (trigger, dropout, shuffle), preprocessing
//   train_cache.c      VAE encoding and the latent cache folder
//   train_objective.c  noise, timesteps, targets, min-SNR weights, the loss graph, a micro-batch
//   train_loop.c       steps, validation, logging, checkpoints, resume, the run
//   train_save.c       adapter files (kohya with ss_* metadata, diffusers, HF PEFT)
//   train_samples.c    sample grids (adapters off / on / EMA) through a pipeline of the trainer's parts
//   train_ema.c        the EMA of the adapter weights (train.ema_decay)
//   train_report.c     plots/ and report.html (loss, lr, run rows, sample timeline, adapter files)
#ifndef VKP_DIFFUSION_TRAIN_INTERNAL_H
#define VKP_DIFFUSION_TRAIN_INTERNAL_H

#include "vkp_checkpoint.h"
#include "vkp_diffusion_train.h"
#include "vkp_metrics.h"
#include "vkp_pipeline.h"
#include "vkp_pairs.h"
#include "vkp_progress.h"
#include "vkp_scheduler.h"
#include "vkp_text_encoder.h"
#include "vkp_trainer.h"
#include "vkp_unet.h"
#include "vkp_vae.h"

// The latents of a set of images: posterior mean and std per variant (0: as is, 1: flipped),
// and the loss mask (alpha, area-downsampled).
typedef struct vkp_latent_store {
  size_t n;                 // images
  int variants;             // 1, or 2 with flips
  size_t item, mask_item;   // C·h·w, h·w
  float *mean, *std;        // (n, variants, item)
  float *mask;              // (n, variants, mask_item)
} vkp_latent_store;

// One loss graph (training: with backward and optimizer; validation: forward only).
typedef struct vkp_loss_graph {
  vkp_graph *g;
  int batch;
  vkp_tensor *noisy, *timestep, *states, *target, *weight;   // inputs
  vkp_tensor *pred, *loss, *mse;                              // outputs
  vkp_tensor *gnorm;        // training graph: the gradient norm
} vkp_loss_graph;

typedef struct text_cache text_cache;

// The EMA of the trainable parameters (train_ema.c); off when decay is 0.
typedef struct vkp_dtrain_ema {
  double decay;               // train.ema_decay
  bool warmup;                // train.ema_warmup: min(decay, (1 + s) / (10 + s))
  int64_t updates;            // optimizer updates averaged (the step once training started)
  size_t total;               // weights over every trainable parameter
  size_t *offset;             // (nt + 1) where trainable parameter i starts in the arrays below
  float *shadow;              // (total) the average
  float *raw;                 // (total) the trained values while the average is swapped in; scratch
  bool swapped;               // the parameters' device buffers hold the average
} vkp_dtrain_ema;

struct vkp_diffusion_trainer {
  vkp_ctx *ctx;
  vkp_trainer_run run;        // config (owned when resuming), directory, checkpoint
  const cJSON *cfg;
  const char *dir;
  bool quiet, resumed;
  // the pipeline's parts (owned by `pipe` once the first sample grid made it)
  vkp_pipeline *pipe;
  bool parts_in_pipeline;
  uint8_t *base_rgb;          // (prompts, R, R, 3) the sample grid's adapters-off row
  vkp_unet *unet;
  vkp_vae *vae;
  vkp_text_encoder *te;
  vkp_scheduler *sched;
  int latent_c, latent_h, latent_w, factor;   // latent shape, VAE downsampling factor
  int tokens, text_dim;                       // text states
  // keys
  vkp_train_keys k;
  int resolution;
  bool random_crop, cache_latents, masked_loss, shuffle_captions, first_caption;
  double hflip, crop_scale, caption_dropout, noise_offset, min_snr_gamma;
  long keep_tokens, t_min, t_max, sample_every;
  vkp_alpha_mode alpha;
  const char *trigger;
  bool v_prediction;
  // data
  vkp_pairs *train, *val;     // owned; val NULL: validation from train (val_idx into train)
  size_t *train_idx, *val_idx;
  size_t n_train, n_val;
  vkp_latent_store train_lat, val_lat;   // train_lat empty with random crop
  int64_t latents_encoded, latents_reused;
  vkp_graph *enc_g;           // VAE encode of VKP_DTRAIN_ENCODE_BATCH images (built on first use)
  vkp_tensor *enc_x, *enc_mean, *enc_logvar;
  float *enc_in, *enc_mu, *enc_lv;   // its input (E, 3, R, R) and outputs (E, C, h, w)
  size_t enc_cap;             // images the buffers below hold: max(batch, E)
  text_cache *tcache;
  vkp_loader *loader;
  // optimisation
  vkp_trainer_optim o;
  vkp_loss_graph tg, vg;      // training (batch) and validation (eval_batch) graphs
  int64_t step, micro;
  vkp_dtrain_ema ema;
  // host buffers of a micro-batch (batch items)
  float *x0, *noise, *noisy, *target, *weight, *states, *pred, *mask, *snr_w;
  int *tsteps;
  size_t *images;             // (batch) the samples' image indices (recorded)
  float *pix;                 // (enc_cap, 4, H, W) preprocessed pixels
  float *scratch;             // (enc_cap) means (C·h·w each), then stds, then masks (h·w each) of encoded images
  float *forced_noise;        // test hook (owned), NULL: draw
  int *forced_t;
  bool recording;
  vkp_diffusion_batch_record rec;
  // run outputs
  vkp_metrics_writer *mw;
  vkp_progress *bar;
  vkp_checkpoint *ck;         // resuming: the checkpoint (run.ck), else NULL
  double t0, t_window, loss_sum, wloss_sum, last_val;
  int64_t window_n, images_window, step0;
  double last_loss, last_wloss;
};

typedef struct vkp_diffusion_trainer vkp_dtrainer;

// train_setup.c
vkp_status vkp_dtrain_read_keys(vkp_dtrainer *t, vkp_error *err);
vkp_status vkp_dtrain_load_models(vkp_dtrainer *t, vkp_error *err);
// train_data.c
vkp_status vkp_dtrain_load_data(vkp_dtrainer *t, vkp_error *err);
// A training caption as the model sees it: dropped to "" with data.caption_dropout, its tags
// shuffled after data.keep_tokens (data.shuffle_captions), data.trigger in front; random choices
// from `key`; !augment: trigger only. A new string (free()), NULL when out of memory.
char *vkp_dtrain_caption(const vkp_dtrainer *t, const char *caption, uint64_t key, bool augment, vkp_error *err);
// Image i of p preprocessed for the VAE (center crop): out (4, H, W): RGB in [-1, 1] composited
// per data.alpha, then alpha in [0, 1].
vkp_status vkp_dtrain_pixels(const vkp_dtrainer *t, const vkp_pairs *p, size_t i, float *out, vkp_error *err);
// Composites / rescales a transform's (4, H, W) [0, 1] output in place as above.
void vkp_dtrain_finish_pixels(const vkp_dtrainer *t, float *px);
// train_cache.c
#define VKP_DTRAIN_ENCODE_BATCH 8
// Encodes n images px (n, 4, R, R) (RGB, alpha) in batches: posterior means and stds (n, C, h, w)
// and the alpha, area-averaged to the latent size (n, h, w).
vkp_status vkp_dtrain_encode(vkp_dtrainer *t, const float *px, int n, float *mean, float *std, float *mask, vkp_error *err);
vkp_status vkp_dtrain_latents(vkp_dtrainer *t, const vkp_pairs *p, const size_t *idx, size_t n, int variants,
                              vkp_latent_store *out, vkp_error *err);
void vkp_latent_store_free(vkp_latent_store *s);
// train_objective.c
vkp_status vkp_dtrain_build_graph(vkp_dtrainer *t, vkp_loss_graph *lg, int batch, bool training, vkp_error *err);
// noisy latents, targets and per-element loss weights of samples 0..n-1 from t->x0, noise, tsteps,
// mask; samples n..batch-1 weigh 0; snr: min-SNR-γ weights; mask: the loss mask; norm divides all.
void vkp_dtrain_objective(vkp_dtrainer *t, int n, int batch, bool snr, bool mask, double norm);
// Uploads the host arrays into lg, runs it, reads the loss and the plain MSE (pred when recording).
vkp_status vkp_dtrain_run_graph(vkp_dtrainer *t, vkp_loss_graph *lg, double *loss, double *mse, vkp_error *err);
vkp_status vkp_dtrain_micro_step(vkp_dtrainer *t, bool apply, float *lr, double *loss, double *mse, vkp_error *err);
vkp_status vkp_dtrain_text_states(vkp_dtrainer *t, const char *caption, float *out, vkp_error *err);
void vkp_dtrain_text_cache_free(text_cache *c);
// train_samples.c: samples/step-NNNNNN.png (nothing without samples.prompts)
vkp_status vkp_dtrain_sample_grid(vkp_dtrainer *t, vkp_error *err);
// train_save.c: the adapter files (and in checkpoints the EMA state) into dir; EMA copies beside
// them when train.ema_decay is on.
vkp_status vkp_dtrain_save_adapters(vkp_dtrainer *t, const char *dir, bool final, vkp_error *err);
typedef enum vkp_dtrain_format { VKP_DTRAIN_PEFT, VKP_DTRAIN_KOHYA, VKP_DTRAIN_DIFFUSERS, VKP_DTRAIN_FORMATS } vkp_dtrain_format;
// The name, relative to the run or checkpoint folder, of adapter k's file (the PEFT folder) in
// format f: adapter[_k][_ema]/, <save.name>[_k][_ema].safetensors, pytorch_lora_weights[_k][_ema].safetensors.
void vkp_dtrain_adapter_name(const vkp_dtrainer *t, vkp_dtrain_format f, int k, bool ema, char *out, size_t cap);
// Whether save.formats holds f (the PEFT folder is always in checkpoints).
bool vkp_dtrain_wants(const vkp_dtrainer *t, vkp_dtrain_format f);
// train_ema.c
vkp_status vkp_dtrain_ema_keys(vkp_dtrainer *t, vkp_error *err);        // train.ema_decay, train.ema_warmup
double vkp_dtrain_ema_decay_at(const vkp_dtrain_ema *e, int64_t k);     // the decay of update k (1, 2, ...)
// After the optimizer exists: the average starts as the parameters, or from the checkpoint resumed.
vkp_status vkp_dtrain_ema_start(vkp_dtrainer *t, vkp_error *err);
vkp_status vkp_dtrain_ema_update(vkp_dtrainer *t, vkp_error *err);     // after each optimizer step
// in: the average into the parameters (their trained values kept); !in: the trained values back,
// bit for bit. Every swap in is followed by a swap out, also on failure. No-ops when off.
vkp_status vkp_dtrain_ema_swap(vkp_dtrainer *t, bool in, vkp_error *err);
vkp_status vkp_dtrain_ema_save_state(vkp_dtrainer *t, const char *dir, vkp_error *err);   // ema.safetensors
void vkp_dtrain_ema_free(vkp_dtrain_ema *e);
// train_report.c: plots/loss.png, plots/lr.png and report.html of the run as it is now (atomic);
// final: the final adapter files are written (else the page links the checkpoint of this step).
vkp_status vkp_dtrain_write_report(vkp_dtrainer *t, bool final, vkp_error *err);

#endif
