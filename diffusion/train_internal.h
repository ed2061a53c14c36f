// train_internal.h — the diffusion trainer's state, shared by its files (one job each):
//   train_setup.c      defaults, config checks, the pipeline's parts, adapters, optimizer
//   train_data.c       pair data, split, captions (trigger, dropout, shuffle), preprocessing
//   train_cache.c      VAE encoding and the latent cache folder
//   train_objective.c  noise, timesteps, targets, min-SNR weights, the loss graph, a micro-batch
//   train_loop.c       steps, validation, logging, checkpoints, resume, the run
//   train_save.c       adapter files (kohya with ss_* metadata, diffusers, HF PEFT)
//   train_samples.c    sample grids (adapters off / on / EMA) through a pipeline of the trainer's parts
//   train_ema.c        the EMA of the adapter weights (train.ema_decay)
//   train_text_encoder.c  text-encoder adapters: in-graph text states, their optimizer and files
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
  vkp_clip_inputs te_in;    // with text-encoder adapters: the tower's inputs (token ids), states its output
} vkp_loss_graph;

typedef struct vkp_dtrain_te vkp_dtrain_te;   // text-encoder adapters and their optimizer (train_text_encoder.c)

typedef struct text_cache text_cache;

// An aspect-ratio bucket (data.buckets, train_buckets.c): its images, their latents, batches and graphs.
typedef struct vkp_dtrain_bucket {
  int width, height;          // pixels, multiples of data.bucket_reso_steps
  size_t *images;             // (n_images) indices into t->train of the images in this bucket
  size_t n_images;
  int64_t samples, batches;   // images with repeats per epoch; ceil(samples / batch)
  vkp_latent_store lat;       // slot j: images[j] (cached latents, center crop)
  vkp_loader *loader;         // the bucket's batches (shuffled per epoch; the last one may be short)
  vkp_loss_graph tg;          // its training graph while another bucket's is in t->tg
  vkp_graph *enc_g;           // its VAE encoder while another bucket's is in t->enc_g
  vkp_tensor *enc_x, *enc_mean, *enc_logvar;
} vkp_dtrain_bucket;

// Buckets, regularisation images and kohya's dataset metadata (train_buckets.c, train_reg.c).
typedef struct vkp_dtrain_data_extra {
  int px_w, px_h;             // pixel size of the images being encoded / trained now (data.resolution²
                              // outside a bucketed micro-batch); latent_w/h follow it
  bool cover;                 // the pixels of px_w x px_h: resized to cover, then cropped (a bucket)
  // data.buckets
  bool buckets;
  long min_reso, max_reso, reso_steps;
  int n;                      // buckets holding images, sorted by (width, height): kohya's ids
  vkp_dtrain_bucket *b;       // (n + 1); b[n]: data.resolution² (validation latents)
  int cur;                    // the bucket whose graphs are in t->tg and t->enc_g
  int *bucket_of;             // (images of t->train) bucket of each image, -1: not trained
  size_t *slot_of;            // (images of t->train) its slot in the bucket's latent store
  int32_t *resized;           // (2 x images of t->train) its size resized to cover its bucket
  double mean_ar_error;       // mean |bucket aspect − image aspect| over the images
  int64_t epoch, pos;         // the next batch: entry pos of epoch's batch order
  int *order;                 // (steps_per_epoch) bucket of each batch of epoch order_epoch
  int64_t order_epoch, steps_per_epoch;
  int last_n;                 // samples (not padding) of the last micro-batch
  // data.reg, train.prior_loss_weight
  size_t n_base;              // images of t->train before the regularisation images
  int64_t num_train_images;   // training images with repeats (kohya's num_train_images)
  int64_t num_reg_images;     // regularisation images with their folders' repeats (kohya's num_reg_images)
  double prior_loss_weight;
  float *sample_w;            // (batch) loss factor of each sample: 1, prior_loss_weight, 0 (padding)
  double win_reg_loss, win_reg_n, win_n;   // this log window: reg samples' MSE sum, reg and all samples
  // kohya metadata values (JSON as kohya's json.dumps writes them; owned)
  char *dataset_dirs, *reg_dataset_dirs, *tag_frequency, *bucket_info;
} vkp_dtrain_data_extra;

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
  vkp_dtrain_te *tet;         // NULL: the text encoder is frozen (no peft_text_encoder)
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
  vkp_loader *loader;         // NULL with data.buckets (each bucket has its own)
  vkp_dtrain_data_extra dx;   // buckets, regularisation images, dataset metadata
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
  vkp_trainer_loop loop;      // the step loop (vkp_trainer.h): cadence, log window, progress bar, clock
  vkp_checkpoint *ck;         // resuming: the checkpoint (run.ck), else NULL
  double last_val;
  int64_t step_images;        // images of the step in progress: batch × grad_accum less bucket padding
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
// The same with another trigger word (NULL or "": none; regularisation images get none).
char *vkp_dtrain_caption_with(const vkp_dtrainer *t, const char *caption, const char *trigger, uint64_t key, bool augment,
                              vkp_error *err);
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
// train_buckets.c: aspect-ratio buckets (data.buckets) and the batch stream of either data path.
// Checks data.buckets' keys (after the models: steps must be a multiple of the UNet's) and
// train.prior_loss_weight; the pixel size starts as data.resolution².
vkp_status vkp_dtrain_data_keys(vkp_dtrainer *t, vkp_error *err);
// kohya's make_bucket_resolutions for data.resolution²: (w, h) pairs sorted, into out (2 x cap); the count.
int vkp_dtrain_bucket_resos(int resolution, int min, int max, int steps, int *out, int cap);
// Each image of t->train_idx into the bucket of the closest aspect ratio, a loader per bucket,
// the histogram (printed unless quiet, dx.bucket_info).
vkp_status vkp_dtrain_buckets_make(vkp_dtrainer *t, vkp_error *err);
// Every bucket's latents (cached as in vkp_dtrain_latents, keyed with the bucket's size).
vkp_status vkp_dtrain_buckets_latents(vkp_dtrainer *t, int variants, vkp_error *err);
// The pixel size being worked on (latent_w/h follow); cover: resized to cover and cropped (a bucket).
void vkp_dtrain_shape(vkp_dtrainer *t, int w, int h, bool cover);
// Bucket b's graphs into t->tg / t->enc_g (the training graph built when missing, once the
// optimizer exists), its shape set; b == dx.n: the square data.resolution.
vkp_status vkp_dtrain_bucket_select(vkp_dtrainer *t, int b, vkp_error *err);
// The next micro-batch's samples (b->n < batch: a bucket's last batch), its bucket selected.
vkp_status vkp_dtrain_next_batch(vkp_dtrainer *t, vkp_batch *b, vkp_error *err);
void vkp_dtrain_tell(const vkp_dtrainer *t, int64_t *epoch, int64_t *step);
int64_t vkp_dtrain_steps_per_epoch(const vkp_dtrainer *t);
size_t vkp_dtrain_epoch_samples(const vkp_dtrainer *t);
vkp_status vkp_dtrain_write_bucket_info(vkp_dtrainer *t, vkp_error *err);   // <run>/buckets.json
// The training graphs' arenas: t->tg's, and with data.buckets every bucket's (0 before any is built).
uint64_t vkp_dtrain_arena_bytes(const vkp_dtrainer *t);
void vkp_dtrain_data_extra_free(vkp_dtrainer *t);
// train_reg.c: regularisation images (data.reg) and kohya's dataset metadata.
// data.reg appended to t->train (after dx.n_base images) with kohya's repeats (as many reg
// samples per epoch as training samples), t->train_idx extended; then the ss_* dataset JSON.
vkp_status vkp_dtrain_add_reg(vkp_dtrainer *t, vkp_pairs *reg, vkp_error *err);   // reg: owned, NULL: none
bool vkp_dtrain_is_reg(const vkp_dtrainer *t, size_t image);
// Per-sample plain MSE of the last micro-batch's n samples into the log window (reg on).
void vkp_dtrain_reg_account(vkp_dtrainer *t, int n);
// loss_reg and reg_share of the log window into m (0 or 2 metrics); the window restarts.
int vkp_dtrain_reg_metrics(vkp_dtrainer *t, vkp_metric *m);
// v as Python's str(float) writes it ("1.0", "0.041666666666666664").
void vkp_dtrain_py_float(double v, char *out, size_t cap);
// train_objective.c
vkp_status vkp_dtrain_build_graph(vkp_dtrainer *t, vkp_loss_graph *lg, int batch, bool training, vkp_error *err);
// noisy latents, targets and per-element loss weights of samples 0..n-1 from t->x0, noise, tsteps,
// mask; samples n..batch-1 weigh 0; snr: min-SNR-γ weights; mask: the loss mask; norm divides all;
// factor: per-sample loss factors (regularisation images: prior_loss_weight), NULL: 1.
void vkp_dtrain_objective(vkp_dtrainer *t, int n, int batch, bool snr, bool mask, const float *factor, double norm);
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
// train_text_encoder.c: text-encoder adapters (peft_text_encoder), their learning rate and files
vkp_status vkp_dtrain_te_attach(vkp_dtrainer *t, vkp_error *err);   // after the UNet's adapters (resume: the checkpoint's)
// After the UNet's optimizer: train.unet_lr into its schedule, the text encoder's optimizer (resume: its state).
vkp_status vkp_dtrain_te_optim(vkp_dtrainer *t, vkp_error *err);
void vkp_dtrain_te_free(vkp_dtrain_te *e);
// A loss graph's (lg->g, lg->batch) text states: an input, or the text tower on token ids (lg->te_in).
vkp_tensor *vkp_dtrain_states_tensor(vkp_dtrainer *t, vkp_loss_graph *lg, bool training);
int vkp_dtrain_te_param_count(const vkp_dtrainer *t);
void vkp_dtrain_te_param_tensors(vkp_dtrainer *t, vkp_tensor **p);   // the current graph's tensors of them
// The text encoder's gradients into its optimizer's buffers; expand before the UNet's optimizer nodes.
void vkp_dtrain_te_accumulate(vkp_dtrainer *t, vkp_graph *g, vkp_tensor *const *grads);
// Caption `text` of slot s of the micro-batch: its states (frozen) or token ids (trained).
vkp_status vkp_dtrain_text_slot(vkp_dtrainer *t, const char *text, int s, vkp_error *err);
vkp_status vkp_dtrain_upload_text(vkp_dtrainer *t, vkp_loss_graph *lg);   // those into lg
vkp_status vkp_dtrain_te_step(vkp_dtrainer *t, vkp_error *err);          // after a step's micro-batches: the update
bool vkp_dtrain_te_lr(const vkp_dtrainer *t, double *lr, double *gnorm); // the last update's lr and norm (false: none)
double vkp_dtrain_te_base_lr(const vkp_dtrainer *t);   // train.text_encoder_lr resolved; < 0: no adapters
// Every trained parameter: the UNet's (t->o.tp), then the text encoder's; *m its model.
int vkp_dtrain_param_count(const vkp_dtrainer *t);
vkp_param *vkp_dtrain_param_at(vkp_dtrainer *t, int i, vkp_model **m);
void vkp_dtrain_te_enable(vkp_dtrainer *t, bool on);
// Test hook: the gradient accumulated for the text encoder's trainable parameter i (t->o.nt + i overall).
vkp_status vkp_dtrain_te_read_grad(vkp_dtrainer *t, int i, float *out);
vkp_status vkp_dtrain_te_zero_grad(vkp_dtrainer *t);
vkp_status vkp_dtrain_te_save_state(vkp_dtrainer *t, const char *dir, vkp_error *err);   // checkpoints: its optimizer
// Text-encoder adapter k into adapter file k at path (format "peft": path/text_encoder/; kohya,
// diffusers: its keys merged into the file; a format without a place for it: the file removed).
vkp_status vkp_dtrain_te_add_part(vkp_dtrainer *t, int k, const char *format, const char *path, bool say, vkp_error *err);
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
