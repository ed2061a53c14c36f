// vkp_checkpoint.h — training checkpoints: crash-safe folders, keep-last-N and best, exact resume.
//
// A run directory holds run_dir/checkpoints/step-00000120/, one folder per saved step:
//   <what the trainer writes>   adapters or full weights (a save_params callback), any layout
//   optimizer.safetensors       the optimizer state (vkp_optimizer_save), when there is one
//   trainer_state.json          step, micro step, loader position, best metric and its step, the
//                               host RNG state, trainer-specific keys, and a manifest of every
//                               file above with its size
// The folder is written as step-N.tmp and renamed into place only when complete (each file is
// written atomically, trainer_state.json last), so a crash leaves either the old checkpoints or
// the new one, never a half-written one under a step-N name. A checkpoint is *intact* when its
// trainer_state.json parses, names the folder's step, and every file of its manifest is there with
// its recorded size; resuming takes the newest intact checkpoint and passes over damaged ones
// (a disk that filled up, a file truncated by hand).
//
//   // saving, every N steps:
//   vkp_train_state s = {.step = step, .micro_step = micro, .best_metric = best, .best_step = best_step};
//   vkp_loader_tell(loader, &s.loader_epoch, &s.loader_step);
//   vkp_checkpoint_save_opts o = {.run_dir = dir, .keep_last = 2, .ctx = ctx, .opt = opt,
//                                 .save_params = save_adapters, .user = trainer};
//   vkp_checkpoint_save(&o, &s, err);
//   // resuming:
//   vkp_checkpoint ck;
//   vkp_checkpoint_find_latest(dir, &ck, err);   // ck.dir, ck.state, ck.json
//   ... load the parameters from ck.dir ...
//   vkp_checkpoint_load_optimizer(&ck, ctx, opt, err);
//   vkp_checkpoint_clear(&ck);
#ifndef VKP_CHECKPOINT_H
#define VKP_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "vkp_optim.h"
#include "vkp_rng.h"
#include "vkp_status.h"

#define VKP_CHECKPOINT_STATE_FILE "trainer_state.json"
#define VKP_CHECKPOINT_OPTIMIZER_FILE "optimizer.safetensors"
#define VKP_CHECKPOINT_LOG_FILE "metrics.jsonl"   // the run's log (in the run directory)
#define VKP_CHECKPOINT_PATH_MAX 4096

// The generic trainer state, everything an exact resume needs besides parameters and optimizer.
typedef struct vkp_train_state {
  int64_t step;                        // optimizer updates done
  int64_t micro_step;                  // micro-batches done (gradient accumulation)
  int64_t loader_epoch, loader_step;   // the data loader's next batch (vkp_loader_tell)
  double best_metric;                  // best validation metric so far (higher is better; -1: none)
  int64_t best_step;                   // the step it was measured at (-1: none); never pruned
  bool has_rng;                        // save / restore `rng` (trainers that draw host noise)
  vkp_rng rng;
} vkp_train_state;

typedef struct vkp_checkpoint_save_opts {
  const char *run_dir;   // the run directory (checkpoints go to run_dir/checkpoints)
  int keep_last;         // how many of the newest checkpoints to keep (>= 1), besides the best
  vkp_ctx *ctx;          // where optimizer errors are reported (needed with opt)
  vkp_optimizer *opt;    // saved as optimizer.safetensors; NULL: none
  // Writes the trained parameters into `dir` (the unfinished checkpoint folder); NULL: none.
  vkp_status (*save_params)(void *user, const char *dir, vkp_error *err);
  void *user;
  const cJSON *extra;    // trainer-specific keys copied into trainer_state.json; NULL: none
} vkp_checkpoint_save_opts;

// Saves checkpoint step `s->step` as described above, replacing one of the same step, then
// removes all but the newest o->keep_last checkpoints and the one at s->best_step. Nothing
// existing is touched until the new folder is complete. Errors: VKP_ERR_INVALID (bad options),
// VKP_ERR_IO, VKP_ERR_OOM, and whatever save_params returns.
vkp_status vkp_checkpoint_save(const vkp_checkpoint_save_opts *o, const vkp_train_state *s, vkp_error *err);

// A checkpoint found for resuming.
typedef struct vkp_checkpoint {
  char dir[VKP_CHECKPOINT_PATH_MAX];   // its folder
  vkp_train_state state;
  cJSON *json;   // the whole trainer_state.json (trainer-specific keys); owned, see _clear
  int skipped;   // newer checkpoints passed over because they were damaged
} vkp_checkpoint;

// Before resuming: cleans up what a killed run left in run_dir. A save killed before its rename
// leaves checkpoints/step-N.tmp/ (removed); one killed between moving an older step-N/ aside and
// renaming the new one leaves step-N.old/ alone (renamed back to step-N/), or beside step-N/
// (removed); pruning killed midway leaves a step-N/ without trainer_state.json (removed first when
// pruning, so such a folder is never a checkpoint: removed); killed atomic writes leave
// NAME.tmp.XXXXXXXX files and folders anywhere in the run (removed, see vkp_dir_remove_stale_tmp).
// Errors: VKP_ERR_IO.
vkp_status vkp_checkpoint_recover(const char *run_dir, vkp_error *err);

// Cuts the run's metrics.jsonl back to its length when `ck` was saved (trainer_state.json's
// "log_bytes"), so the records a killed run appended after the checkpoint at its step (a finished
// run's final test records) are not kept twice when the resumed run writes them again. A log
// shorter than that, or one that does not break at that length, is left for the step-based
// truncation of vkp_metrics_open. Errors: VKP_ERR_IO.
vkp_status vkp_checkpoint_trim_log(const vkp_checkpoint *ck, const char *run_dir, vkp_error *err);

// The newest intact checkpoint of run_dir. Errors: VKP_ERR_NOT_FOUND (no checkpoints folder, or no
// intact checkpoint in it: the message says how many were damaged and why the newest was).
vkp_status vkp_checkpoint_find_latest(const char *run_dir, vkp_checkpoint *out, vkp_error *err);
// Reads and verifies one checkpoint folder. Errors: VKP_ERR_FORMAT (not intact: trainer_state.json
// missing or damaged, its step not the folder's, a file of the manifest missing or of another size).
vkp_status vkp_checkpoint_read(const char *dir, vkp_checkpoint *out, vkp_error *err);
// Restores the optimizer saved with the checkpoint (vkp_optimizer_load). Errors: VKP_ERR_FORMAT.
vkp_status vkp_checkpoint_load_optimizer(const vkp_checkpoint *ck, vkp_ctx *ctx, vkp_optimizer *opt, vkp_error *err);
// Frees ck->json; the struct may be reused.
void vkp_checkpoint_clear(vkp_checkpoint *ck);

// The folder of checkpoint `step`: run_dir/checkpoints/step-%08lld.
void vkp_checkpoint_path(const char *run_dir, int64_t step, char *out, size_t cap);

#endif
