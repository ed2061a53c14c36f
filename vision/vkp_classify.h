// vkp_classify.h — the image-classification workbench: data, ViT + PEFT training, evaluation.
//
// A run is driven by a JSON config (defaults below, `vkpeft train CONFIG --set key=value`) and
// writes one run directory: config.json (resolved), metrics.jsonl, checkpoints/step-N/
// (adapter folders in HF PEFT format + optimizer.safetensors + trainer_state.json, atomic),
// adapter/ (final adapter), model/ (full model when the run trains every weight), plots/,
// confusion_matrix.png, misclassified.png and report.html.
#ifndef VKP_CLASSIFY_H
#define VKP_CLASSIFY_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "vkp_data.h"
#include "vkp_vit.h"

extern const char vkp_classify_defaults[];   // the defaults document (JSON)

// Resolves a config: defaults <- file (may be NULL) <- `key=value` overrides.
vkp_status vkp_classify_config(const char *path, const char *const *sets, int nsets, cJSON **out, vkp_error *err);

// ---- data -----------------------------------------------------------------------------------
// A data source is a known name with an optional split ("fashion-mnist", "mnist:test",
// "digits"), an image folder (one sub-folder per class) or a .csv/.jsonl list of path,label.
vkp_status vkp_classify_load_source(const char *spec, int channels, int size, const char *const *class_names,
                                    int n_class_names, vkp_dataset **out, vkp_error *err);

typedef struct vkp_classify_data {
  vkp_dataset *train, *val, *test;      // owned; val may alias train (then val_idx selects)
  size_t *train_idx, *val_idx;          // owned; selections in train (val_idx in val when separate)
  size_t n_train, n_val;
  bool val_in_train;
  vkp_data_transform train_tf, eval_tf;
} vkp_classify_data;

vkp_status vkp_classify_data_load(const cJSON *cfg, int image_size, int channels, vkp_classify_data *d, vkp_error *err);
void vkp_classify_data_free(vkp_classify_data *d);

// ---- evaluation -----------------------------------------------------------------------------
typedef struct vkp_eval_result {
  int n_classes;
  int64_t count;
  double accuracy, top5, loss;
  int64_t *confusion;            // (n_classes, n_classes): [true][predicted] (owned)
  double *precision, *recall;    // (n_classes) (owned)
  size_t *wrong;                 // up to 64 misclassified dataset indices (owned)
  int32_t *wrong_pred;
  int n_wrong;
} vkp_eval_result;

// Runs the model over ds[idx[0..n)] (idx NULL = all) in batches of `batch`.
vkp_status vkp_classify_evaluate(vkp_vit *v, const vkp_dataset *ds, const size_t *idx, size_t n,
                                 const vkp_data_transform *tf, int batch, vkp_eval_result *out, vkp_error *err);
void vkp_eval_result_free(vkp_eval_result *r);
// Prints `res` as a table (with the confusion matrix), or as one JSON line when `json`.
void vkp_classify_print_eval(const vkp_eval_result *res, const char *const *class_names, const char *data, bool json,
                             FILE *f);

// Top-k predictions for images already preprocessed (n, C, H, W).
vkp_status vkp_classify_predict(vkp_vit *v, const float *pixels, int n, int k, int32_t *classes, float *probs,
                                vkp_error *err);

// ---- training -------------------------------------------------------------------------------
typedef struct vkp_train_summary {
  int64_t steps;
  double final_loss, best_val_acc, test_acc, test_top5;
  double images_per_s, seconds;
  int64_t trainable_params, total_params;
  uint64_t peak_device_bytes, arena_bytes;
  char run_dir[1024];
} vkp_train_summary;

// Trains per `cfg` into cfg.output_dir, or continues the run in resume_dir (its config.json and
// latest checkpoint). `quiet` suppresses progress output.
vkp_status vkp_classify_train(vkp_ctx *ctx, const cJSON *cfg, const char *resume_dir, bool quiet,
                              vkp_train_summary *summary, vkp_error *err);

// Builds the model a config describes: the pretrained HF folder (with a new classifier when
// the label count differs) or a random ViT, with the config's adapters attached.
vkp_status vkp_classify_model(vkp_ctx *ctx, const cJSON *cfg, int n_classes, const char *const *class_names,
                              vkp_vit **out, vkp_error *err);
vkp_status vkp_classify_attach(vkp_vit *v, const cJSON *peft_list, uint64_t seed, vkp_error *err);

#endif
