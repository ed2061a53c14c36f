// vkp_trainer.h — the plumbing every trainer shares (vision/classify_train.c, vlm/clip_train.c,
// diffusion/train*.c): the common `train.*` keys, the optimizer and LR schedule over a model's
// trainable parameters, attaching a config's `peft` list, the adapter folders of a run and of its
// checkpoints, checkpoint saving and finding the checkpoint to resume from. A trainer keeps its own
// model, data, graph and loop; these functions hold what would otherwise be copied between them.
//
// vkp_trainer_loop (trainer_loop.c) is the step loop they share: the cadence of logging,
// evaluation, samples, checkpoints and stop_after, the metrics log window and the progress bar,
// around the task's callbacks.
//
// Layering: core/train sees core/peft (adapters), core/model and core/io, and core/report (the
// loop's metrics records and progress bar); a task's checkpoint callback syncs its metrics file.
#ifndef VKP_TRAINER_H
#define VKP_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "vkp_checkpoint.h"
#include "vkp_metrics.h"
#include "vkp_model.h"
#include "vkp_optim.h"
#include "vkp_peft.h"
#include "vkp_progress.h"

// The common keys of a training config, checked (each error names the key) before any data loads.
typedef struct vkp_train_keys {
  long batch;                 // train.batch_size (>= min_batch)
  long accum;                 // train.grad_accum: micro-batches per optimizer step
  long log_every;             // train.log_every: steps per metrics line
  long eval_every;            // train.eval_every (0: at the end only)
  long ckpt_every;            // train.checkpoint_every (0: at the end only)
  long keep_last;             // train.keep_last: checkpoints kept besides the best
  long eval_batch;            // train.eval_batch
  long val_limit;             // train.val_limit (0: the whole validation set)
  long stop_after;            // train.stop_after: stop (with a checkpoint) after this step (0: run to the end)
  uint64_t seed;              // train.seed
  double lr, weight_decay, momentum, max_grad_norm, beta1, beta2;   // train.* optimizer values
} vkp_train_keys;

// Reads the keys above from cfg; train.batch_size must be at least min_batch.
vkp_status vkp_train_keys_read(const cJSON *cfg, long min_batch, vkp_train_keys *out, vkp_error *err);

// The optimizer of a run: every trainable parameter of a model in one set, the optimizer
// (train.optimizer "adamw" | "sgd" with the keys above and train.max_grad_norm) and the LR
// schedule (train.schedule constant | linear | cosine, train.warmup_steps or train.warmup_ratio)
// over total_steps = train.max_steps, else train.epochs × updates per epoch.
typedef struct vkp_trainer_optim {
  vkp_param_set *ps;          // owned
  vkp_param **tp;             // (nt) the trainable parameters (vkp_model_trainable), owned array
  int nt;
  vkp_optimizer *opt;         // owned
  vkp_lr_schedule sched;
  int64_t total_steps;        // optimizer updates of the whole run
} vkp_trainer_optim;

// micro_per_epoch: micro-batches per epoch (updates per epoch = micro_per_epoch / accum);
// n_items and unit ("images", "training pairs") describe the data in the "no training steps"
// error. Errors: VKP_ERR_INVALID naming the key (or "nothing to train"), VKP_ERR_OOM.
vkp_status vkp_trainer_optim_new(vkp_ctx *ctx, const cJSON *cfg, const vkp_train_keys *k, vkp_model *m,
                                 int64_t micro_per_epoch, size_t n_items, const char *unit, vkp_trainer_optim *out,
                                 vkp_error *err);
// Frees what _new made (the graphs using the optimizer must be freed first); the struct may be reused.
void vkp_trainer_optim_free(vkp_trainer_optim *o);

// Attaches the adapters of a `peft` list (HF PEFT keys per entry, vkp_peft_config_from_entry) to m:
// entry i gets seed + 7919 i and, without an adapter_name, the name "adapter<i>" (i > 0).
// `adjust` (may be NULL) changes entry i's config before it is attached (a trainer's extra
// modules_to_save, a CoOp phrase); `where` is "config peft[i]". Errors name the entry.
typedef vkp_status (*vkp_trainer_adjust_fn)(void *user, int index, vkp_peft_config *pc, const char *where,
                                            vkp_error *err);
vkp_status vkp_trainer_attach(vkp_model *m, const cJSON *peft_list, uint64_t seed, vkp_trainer_adjust_fn adjust,
                              void *user, vkp_error *err);

// The memory options of a run, applied to m after its adapters are attached:
// train.gradient_checkpointing (bool: every block of the model an activation-checkpoint segment,
// vkp_model_block_begin) and model.base_dtype ("f32" | "f16" | "bf16": the frozen base's Linear,
// Conv2d and Embedding weights, vkp_model_set_base_dtype). Absent keys leave m as it is.
vkp_status vkp_trainer_memory_options(vkp_model *m, const cJSON *cfg, vkp_error *err);

// Adapter k of n under base: base/adapter (n == 1) or base/adapter_<k>.
void vkp_trainer_adapter_dir(char *out, size_t cap, const char *base, int k, int n);
// Saves every adapter of m as an HF PEFT folder under base (vkp_trainer_adapter_dir); `after` (may
// be NULL) then writes extra files into each folder (preprocessing, the model config).
typedef vkp_status (*vkp_trainer_dir_fn)(void *user, const char *dir, vkp_error *err);
vkp_status vkp_trainer_save_adapters(vkp_model *m, const char *base, vkp_trainer_dir_fn after, void *user,
                                     vkp_error *err);
// Loads the n adapter folders a checkpoint holds (same modules, trained values) onto m.
vkp_status vkp_trainer_load_adapters(vkp_model *m, const char *ck_dir, int n, vkp_error *err);

// Saves checkpoint s->step of a run (vkp_checkpoint_save) with the optimizer, the parameters
// written by save_params, and trainer_state.json holding {"adapters": <m's adapter count>} and,
// when task is not NULL, {"task": task}.
typedef struct vkp_trainer_ckpt_opts {
  const char *run_dir;
  int keep_last;
  vkp_ctx *ctx;
  vkp_optimizer *opt;
  vkp_model *model;
  const char *task;           // NULL: not recorded
  vkp_trainer_dir_fn save_params;
  void *user;
} vkp_trainer_ckpt_opts;
vkp_status vkp_trainer_checkpoint_save(const vkp_trainer_ckpt_opts *o, const vkp_train_state *s, vkp_error *err);

// Where a run's config and directory come from. Resuming: resume_dir/config.json resolved by `load`
// (the trainer's config function: its defaults under the file) into cfg_owned, dir = resume_dir,
// and the newest intact checkpoint (vkp_trainer_find_checkpoint). A new run: cfg = cfg_in and its
// output_dir. Free with vkp_trainer_run_clear.
typedef vkp_status (*vkp_trainer_config_fn)(const char *path, const char *const *sets, int nsets, cJSON **out, vkp_error *err);
typedef struct vkp_trainer_run {
  cJSON *cfg_owned;           // resuming: the run's config (owned)
  const cJSON *cfg;           // the config in force
  const char *dir;            // the run directory
  vkp_checkpoint *ck;         // resuming: the checkpoint (owned), else NULL
} vkp_trainer_run;
vkp_status vkp_trainer_open_run(const cJSON *cfg_in, const char *resume_dir, vkp_trainer_config_fn load, bool quiet,
                                vkp_trainer_run *out, vkp_error *err);
void vkp_trainer_run_clear(vkp_trainer_run *r);
// Creates the run directory and, for a new run (r->ck NULL), writes the resolved config there as
// config.json (for reproduction and --resume), atomically.
vkp_status vkp_trainer_write_config(const vkp_trainer_run *r, vkp_error *err);

// The newest intact checkpoint of resume_dir into *out (a new vkp_checkpoint: free with
// vkp_checkpoint_clear + free); unless quiet, says how many newer damaged ones it passed over.
vkp_status vkp_trainer_find_checkpoint(const char *resume_dir, bool quiet, vkp_checkpoint **out, vkp_error *err);

// ---- the step loop (trainer_loop.c) --------------------------------------------------------------
// vkp_trainer_loop_run takes a run from its current step to its end. The loop owns
//   the cadence, for the step s just taken (end: train.stop_after when 0 < it < total_steps, else
//     total_steps): a metrics record when s % log_every == 0 or s == end; evaluate when
//     s % eval_every == 0 (eval_every > 0) or s == total_steps; sample likewise with sample_every;
//     checkpoint when s % checkpoint_every == 0 (checkpoint_every > 0) or s == end, in that order.
//     A run stopped by stop_after logs and checkpoints its last step; with eval_at_start a run at
//     step 0 evaluates once before its first step (a baseline);
//   the log window: the running means of the task's per-step values over the window's steps, its
//     images per second and the seconds since the run began, handed to log_fields; the loop writes
//     the record (step = s) to mw and starts the next window;
//   the progress bar (none when quiet): updated after every step with the loss and extra text;
//   the run's clock (t0, step0; vkp_trainer_loop_rate).
// A task supplies
//   step        one optimizer step (its grad_accum micro-batches); advances *step and fills out;
//   log_fields  a window's record: fills m (up to VKP_TRAINER_LOG_MAX fields, the task's keys in
//               its order) and returns how many;
//   evaluate    (may be NULL) validation; writes its own records, prints through l->bar;
//   sample      (may be NULL) sample images;
//   checkpoint  a checkpoint of *step (and its metrics sync, its report).
#define VKP_TRAINER_WINDOW_MAX 4      // per-step values a task averages over a log window
#define VKP_TRAINER_LOG_MAX 16        // fields of a log record

typedef struct vkp_trainer_step_out {
  double loss;                            // shown on the progress bar
  double window[VKP_TRAINER_WINDOW_MAX];  // summed over the log window, in the task's order
  int64_t images;                         // images trained on (preset to batch × grad_accum)
  char extra[64];                         // the bar's text after the loss ("" for none)
} vkp_trainer_step_out;

typedef struct vkp_trainer_window {
  int64_t steps;                          // steps in the window (>= 1)
  double mean[VKP_TRAINER_WINDOW_MAX];    // the summed window values / steps
  double images_per_s;                    // the window's images per second of it
  double seconds;                         // since vkp_trainer_loop_run began
} vkp_trainer_window;

typedef struct vkp_trainer_loop_ops {
  void *user;                             // the task's trainer, passed to every callback
  vkp_status (*step)(void *user, vkp_trainer_step_out *out, vkp_error *err);
  int (*log_fields)(void *user, const vkp_trainer_window *w, vkp_metric m[VKP_TRAINER_LOG_MAX]);
  vkp_status (*evaluate)(void *user, vkp_error *err);
  vkp_status (*sample)(void *user, vkp_error *err);
  vkp_status (*checkpoint)(void *user, vkp_error *err);
} vkp_trainer_loop_ops;

typedef struct vkp_trainer_loop {
  // set by the task before vkp_trainer_loop_run:
  vkp_trainer_loop_ops ops;
  const vkp_train_keys *k;                // batch, accum, log_every, eval_every, ckpt_every, stop_after
  const int64_t *step;                    // the task's optimizer-step counter (ops.step advances it)
  int64_t total_steps;
  int64_t sample_every;                   // with ops.sample: every so many steps (0: at total_steps only)
  bool eval_at_start, quiet;
  vkp_metrics_writer *mw;                 // where the window records go (not owned)
  // kept by the loop (the task reads them):
  vkp_progress *bar;                      // during the run: the bar (NULL when quiet); owned
  double t0;                              // vkp_trainer_now() when the run began (0 before)
  int64_t step0, end;                     // the step it began at; the step it stops at
  double t_window, window_sum[VKP_TRAINER_WINDOW_MAX];
  int64_t window_steps, images_window;
} vkp_trainer_loop;

// Runs steps until *step reaches the end (or a callback fails: its status, the bar freed).
vkp_status vkp_trainer_loop_run(vkp_trainer_loop *l, vkp_error *err);
// The seconds since the run began and its images per second (batch × grad_accum per step taken).
void vkp_trainer_loop_rate(const vkp_trainer_loop *l, double *seconds, double *images_per_s);

// Monotonic seconds (throughput and ETA).
double vkp_trainer_now(void);

#endif
