// vae_train_internal.h — the VAE trainer's state, shared by its files (one job each):
//   vae_train_setup.c   defaults, config keys, the model (random or pretrained), the data
//   vae_train_graph.c   the loss graphs (training, evaluation) and a micro-batch
//   vae_train_loop.c    steps, validation, metrics, checkpoints, resume, the run
//   vae_train_final.c   the final files: vae/ with its scaling_factor, reconstructions.png
#ifndef VKP_VAE_TRAIN_INTERNAL_H
#define VKP_VAE_TRAIN_INTERNAL_H

#include "vkp_metrics.h"
#include "vkp_pairs.h"
#include "vkp_progress.h"
#include "vkp_trainer.h"
#include "vkp_vae_train.h"

// A loss graph: training (backward + optimizer) or evaluation (forward only).
typedef struct vkp_vae_graph {
  vkp_graph *g;
  int batch;
  vkp_tensor *x, *noise;                   // inputs (B, 3, R, R), (B, c, h, w)
  vkp_tensor *mean, *logvar, *recon;       // outputs
  vkp_tensor *loss, *rec, *kl, *gnorm;     // [1] each; gnorm: training only
} vkp_vae_graph;

struct vkp_vae_trainer {
  vkp_ctx *ctx;
  vkp_trainer_run run;
  const cJSON *cfg;
  const char *dir;
  bool quiet, resumed;
  vkp_vae *vae;                             // owned
  vkp_train_keys k;
  int resolution, latent_c, latent_h, latent_w;
  bool l1, sample_posterior;   // train.recon_loss "l1"; train.sample_posterior (false: z = μ)
  double kl_weight, hflip;
  vkp_alpha_mode alpha;
  // data: every image of the set preprocessed once
  vkp_pairs *train, *val;                   // owned; val NULL: validation images from train
  size_t *train_idx, *val_idx, n_train, n_val;
  float *px_train, *px_val;                 // (images of the set, 3, R, R); px_val NULL: px_train
  vkp_loader *loader;
  // optimisation
  vkp_trainer_optim o;
  vkp_vae_graph tg, eg;                     // training (batch), evaluation (eval_batch)
  int64_t step, micro;
  float *x, *noise, *mean, *logvar, *recon; // host buffers of max(batch, eval_batch) images
  bool recording;
  vkp_vae_batch_record rec;
  // run outputs
  vkp_metrics_writer *mw;
  vkp_trainer_loop loop;                    // the step loop (vkp_trainer.h): cadence, log window, progress bar, clock
  double last_val, scaling;
  double last_loss, last_rec, last_kl;
};

typedef struct vkp_vae_trainer vkp_vtrainer;

static inline size_t vkp_vtrain_pixels_item(const vkp_vtrainer *t) { return 3 * (size_t)t->resolution * (size_t)t->resolution; }
static inline size_t vkp_vtrain_latent_item(const vkp_vtrainer *t) { return (size_t)t->latent_c * (size_t)t->latent_h * (size_t)t->latent_w; }

// vae_train_setup.c
vkp_status vkp_vtrain_read_keys(vkp_vtrainer *t, vkp_error *err);
vkp_status vkp_vtrain_load_model(vkp_vtrainer *t, vkp_error *err);
vkp_status vkp_vtrain_load_data(vkp_vtrainer *t, vkp_error *err);
// vae_train_graph.c
vkp_status vkp_vtrain_build_graph(vkp_vtrainer *t, vkp_vae_graph *vg, int batch, bool training, vkp_error *err);
// Runs vg on t->x, t->noise (batch images); reads loss, rec, kl, and mean/logvar/recon when `outputs`.
vkp_status vkp_vtrain_run_graph(vkp_vtrainer *t, vkp_vae_graph *vg, bool outputs, double *loss, double *rec, double *kl,
                                vkp_error *err);
vkp_status vkp_vtrain_micro_step(vkp_vtrainer *t, bool apply, double *loss, double *rec, double *kl, vkp_error *err);
// Pixels of validation image j (of n_val) / the set it is in.
const float *vkp_vtrain_val_pixels(const vkp_vtrainer *t, size_t j);
// vae_train_final.c
vkp_status vkp_vtrain_finish(vkp_vtrainer *t, vkp_error *err);

#endif
