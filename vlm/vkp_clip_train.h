// vkp_clip_train.h — contrastive fine-tuning (and pretraining, and linear probes) of CLIP with any
// PEFT method: `vkpeft train CONFIG.json` with `"task": "clip"`.
//
// A run is driven by a JSON config (vkp_clip_train_defaults, overridden by a file and `--set
// key=value`) and writes one run directory, as the classification workbench does:
//   config.json          the resolved config (what --resume reads)
//   metrics.jsonl        {"step", "epoch", "loss", "lr", "logit_scale", "grad_norm", "train_r1",
//                        "images_per_s", "device_mb", "seconds"} every log_every steps,
//                        {"step", "val_loss", "val_i2t_r1", ...} at each evaluation
//   checkpoints/step-N/  adapter(s) (HF PEFT), optimizer.safetensors, trainer_state.json (atomic,
//                        core/train/vkp_checkpoint.h); `--resume` continues bit for bit
//   adapter/ (adapter_K/) the final adapter(s): HF PEFT folder + preprocessor_config.json
//                        (CLIPImageProcessor) + config.json (the CLIP model's config)
//   model/               the whole model (config.json, model.safetensors, preprocessor_config.json)
//                        when the base was randomly initialised or trained in full
//   plots/               loss.png, lr.png, logit_scale.png, val.png
//   eval.json, report.html
//
// Objectives (train.objective):
//   "contrastive"   CLIP's symmetric InfoNCE over each micro-batch of (image, caption) pairs with the
//                   learnable logit_scale (exp'd), clamped to [0, train.logit_scale_max] (ln 100)
//                   after every optimizer step;
//   "linear_probe"  a linear head `classifier` (n_classes x projection_dim, with bias) on the
//                   image embeddings, trained with cross-entropy on the pairs' name ids. The head is
//                   always trained (added to the first adapter's modules_to_save); with
//                   peft [{"method": "linear_probe"}] nothing else is, which is a linear probe on
//                   frozen embeddings; with LoRA etc. on the vision tower it is supervised tuning.
#ifndef VKP_CLIP_TRAIN_H
#define VKP_CLIP_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "vkp_clip.h"
#include "vkp_clip_eval.h"
#include "vkp_clip_tokenizer.h"
#include "vkp_pairs.h"

extern const char vkp_clip_train_defaults[];   // the defaults document (JSON), "task": "clip"

// Resolves a config: defaults <- file (may be NULL) <- `key=value` overrides, then checks the keys
// that are lists (peft, data.image_mean, data.image_std). Errors name the file and the key.
vkp_status vkp_clip_train_config(const char *path, const char *const *sets, int nsets, cJSON **out, vkp_error *err);

// ---- data -------------------------------------------------------------------------------------

// A pair spec (data.train / val / test / names_from): one source or several joined with '+'
// ("emoji-noto+icons-paper"): a caption folder (kohya layout), a .csv/.jsonl/.ndjson/.json
// list, or a named set (vkp_pairs_known_name: emoji-noto, emoji-emojione, icons-paper, ...). A
// string that names an existing file or folder as a whole is one source even if it holds '+'.
// Images are loaded with `channels` (3: alpha composited per `alpha`) at their own size.
// `key` names the config key in messages. Errors: those of the readers (naming the file).
vkp_status vkp_clip_load_pairs(const char *spec, const char *key, int channels, vkp_alpha_mode alpha, vkp_pairs **out,
                               vkp_error *err);
// A new set holding the images of a and then of b (copies), names merged (ids in strcmp order of
// the union). Both must have the same channel count. (Not in datasets/vkp_pairs.h yet.)
vkp_status vkp_clip_pairs_concat(const vkp_pairs *a, const vkp_pairs *b, vkp_pairs **out, vkp_error *err);

// Everything a run reads: the pair sets, the split, transforms and the tokenised captions.
typedef struct vkp_clip_data {
  vkp_pairs *train, *val, *test;   // owned; val == NULL with n_val > 0: held out of train
  size_t *train_idx, *val_idx;     // (n_train), (n_val): images of train (val_idx into train
  size_t n_train, n_val;           // when val is NULL, else into val)
  vkp_data_transform train_tf, eval_tf;
  int seq_len;                     // T: tokens per caption (start, text, end, padding)
  int32_t *train_ids;              // (captions of train, T): every caption, template applied
  char **val_texts, **test_texts;  // (images of val (or train), test): each image's first caption,
                                   // template applied
  int n_classes;                   // linear_probe: names of train (class_names of train->images)
} vkp_clip_data;

// Loads the config's data for a model of `image_size` px and `channels` channels, tokenising with
// tok into sequences of seq_len tokens. Errors name the config key and the file.
vkp_status vkp_clip_data_load(const cJSON *cfg, const vkp_clip_tokenizer *tok, int image_size, int channels,
                              int seq_len, bool need_names, vkp_clip_data *d, vkp_error *err);
void vkp_clip_data_free(vkp_clip_data *d);
// `caption` put into the template's "{}" (data.template); a new string (free()), NULL when out of memory.
char *vkp_clip_apply_template(const char *tmpl, const char *caption);

// ---- model ------------------------------------------------------------------------------------

// The model a config describes: model.pretrained (an HF CLIP folder) or a random CLIP from
// model.init (vocabulary = the tokenizer's), and the tokenizer (model.tokenizer, else
// vkp_clip_tokenizer_for_model: the folder's vocab.json/merges.txt, else the built-in one). *seq_len: data.max_length, or the
// text tower's positions (at most 77).
vkp_status vkp_clip_train_model(vkp_ctx *ctx, const cJSON *cfg, vkp_clip **model, vkp_clip_tokenizer **tok,
                                int *seq_len, vkp_error *err);
// Attaches the config's `peft` list (HF PEFT keys per entry; entry i gets seed + 7919 i).
// extra_save (may be NULL) is added to the first adapter's modules_to_save.
// Text positions the `peft` list's CoOp adapters will take (sum of n_ctx, a ctx_init phrase
// counted in tokens); captions are tokenized to at most the positions minus this many.
vkp_status vkp_clip_coop_reserve(const cJSON *peft_list, const vkp_clip_tokenizer *tok, int *tokens, vkp_error *err);
// `tok` (may be NULL) resolves CoOp's ctx_init phrase.
vkp_status vkp_clip_train_attach(vkp_clip *c, const cJSON *peft_list, const vkp_clip_tokenizer *tok, uint64_t seed,
                                 const char *extra_save, vkp_error *err);
// Writes dir/preprocessor_config.json (CLIPImageProcessor) for the eval transform t.
vkp_status vkp_clip_preprocess_save(const vkp_data_transform *t, int channels, const char *dir, vkp_error *err);

// ---- training ---------------------------------------------------------------------------------

typedef struct vkp_clip_train_summary {
  int64_t steps;
  double final_loss;                        // mean training loss of the last log window
  double val_loss, val_i2t_r1, val_t2i_r1;  // last evaluation (NaN: none / not measured)
  double val_accuracy;                      // linear_probe
  double test_loss, test_i2t_r1, test_t2i_r1, test_accuracy;
  double best_metric;                       // what picks the best checkpoint (-1: none)
  double logit_scale;                       // at the end
  double images_per_s, seconds;
  int64_t trainable_params, total_params;
  uint64_t peak_device_bytes, arena_bytes;
  char run_dir[1024];
} vkp_clip_train_summary;

// Trains per `cfg` into cfg.output_dir, or continues the run in resume_dir (its config.json and
// newest intact checkpoint). `quiet` suppresses progress output.
vkp_status vkp_clip_train(vkp_ctx *ctx, const cJSON *cfg, const char *resume_dir, bool quiet,
                          vkp_clip_train_summary *summary, vkp_error *err);

// The trainer underneath vkp_clip_train, for tests and tools that step it by hand.
typedef struct vkp_clip_trainer vkp_clip_trainer;

// Sets everything up (data, model, adapters, optimizer, the recorded training graph, loader,
// run directory, metrics file) without training.
vkp_status vkp_clip_trainer_new(vkp_ctx *ctx, const cJSON *cfg, const char *resume_dir, bool quiet,
                                vkp_clip_trainer **out, vkp_error *err);
void vkp_clip_trainer_free(vkp_clip_trainer *t);

typedef struct vkp_clip_step_info {
  int64_t step;          // optimizer steps done after this one
  double loss;           // mean over the step's micro-batches
  double lr;             // the learning rate this step used
  double grad_norm;      // global gradient norm before clipping
  double logit_scale;    // after the update and the clamp
  double train_r1;       // in-batch recall@1 (contrastive: mean of both directions, a hit when the
                         // retrieved caption's tokens equal the query's; probe: accuracy)
} vkp_clip_step_info;

// One optimizer step: grad_accum micro-batches through the recorded graph, the update, the clamp.
vkp_status vkp_clip_trainer_step(vkp_clip_trainer *t, vkp_clip_step_info *info, vkp_error *err);
// Runs the rest of the loop (steps, logging, evaluation, checkpoints) and, when the run reaches
// its end, the final outputs (adapter/, model/, test metrics, plots, report.html).
vkp_status vkp_clip_trainer_run(vkp_clip_trainer *t, vkp_clip_train_summary *summary, vkp_error *err);
vkp_clip *vkp_clip_trainer_model(const vkp_clip_trainer *t);
const vkp_clip_data *vkp_clip_trainer_data(const vkp_clip_trainer *t);

// What the last micro-batch was and gave, kept on the host when recording is on (for tests:
// recompute the loss elsewhere). Pointers stay valid until the next step or _free.
typedef struct vkp_clip_batch_record {
  int n, seq_len, channels, image_size, dim;   // batch, T, C, S, projection dim
  const float *pixels;         // (n, C, S, S) as uploaded
  const int32_t *input_ids;    // (n, T)
  const int32_t *labels;       // (n) name ids (linear_probe), else NULL
  const float *image_embeds;   // (n, dim) contrastive: the normalised embeddings of the forward
  const float *text_embeds;    // (n, dim)
  const float *logits;         // contrastive: logits_per_image (n, n); probe: (n, n_classes)
  float logit_scale;           // the (log) scale the forward used, before the update
  float loss;                  // the graph's loss
} vkp_clip_batch_record;
void vkp_clip_trainer_record(vkp_clip_trainer *t, bool on);
const vkp_clip_batch_record *vkp_clip_trainer_last_batch(const vkp_clip_trainer *t);

// ---- evaluation during training ---------------------------------------------------------------

typedef struct vkp_clip_val_result {
  int64_t count;
  double loss;                 // contrastive: mean symmetric InfoNCE over chunks of about `chunk`
                               // pairs (as in training); probe: cross-entropy
  double i2t_r1, i2t_r5, t2i_r1, t2i_r5;   // retrieval over the whole set, first captions (NaN: probe)
  double accuracy;             // probe (NaN otherwise)
  float *image_embeds, *text_embeds;       // (count, P), owned (vkp_clip_val_result_clear)
} vkp_clip_val_result;

// Evaluates images idx[0..n) of `p` (idx NULL: all) with texts[image] (their first captions,
// template applied) through the embedder e (vkp_clip_eval.h; its transform is the eval one).
// probe: the `classifier` head on the image embeddings against the name ids of p.
vkp_status vkp_clip_evaluate(vkp_clip_embedder *e, const vkp_clip_tokenizer *tok, bool probe, const vkp_pairs *p,
                             const char *const *texts, const size_t *idx, size_t n, int chunk, vkp_clip_val_result *out,
                             vkp_error *err);
void vkp_clip_val_result_clear(vkp_clip_val_result *r);

// plots/, eval.json and report.html of a finished run. gallery: PNG files shown under
// "Retrieval gallery" (the retrieval-gallery images of vkp_clip_eval.h; may be empty).
vkp_status vkp_clip_train_report(const char *run_dir, const cJSON *cfg, const vkp_clip_train_summary *s,
                                 const char *const *gallery, const char *const *gallery_captions, int n_gallery,
                                 vkp_error *err);

#endif
