// vkp_family.h — model families: how the generic subcommands (`forward`, `info`, `eval`,
// `export`, `predict`) recognise, load, describe, save and run a package's models without
// knowing them. A domain package (vision/, vlm/, diffusion/) defines one `vkp_model_family`
// per model kind in a file named `family_<name>.c` holding `const vkp_model_family
// vkp_family_<name>`; the build collects those into the program's table (see
// docs/ARCHITECTURE.md, "How to add a model family"). core itself knows no family.
#ifndef VKP_FAMILY_H
#define VKP_FAMILY_H

#include <stdbool.h>
#include <stddef.h>

#include "vkp_model.h"
#include "vkp_safetensors.h"
#include "vkp_vec.h"

typedef struct vkp_model_family vkp_model_family;

// A loaded model of some family.
typedef struct vkp_loaded_model {
  const vkp_model_family *family;
  void *impl;             // the family's own object (vkp_vit *, vkp_clip *, ...) (owned)
  vkp_model *model;       // its parameters and modules: PEFT adapters attach here (owned by impl)
} vkp_loaded_model;

// What a family's forward builder hands back: input tensors with their host data (uploaded after
// compile), named outputs (written by `vkpeft forward` in this order) and the loss (with_loss).
typedef struct vkp_forward_input {
  vkp_tensor *t;
  void *data;             // host copy, vkp_tensor_nbytes(t) bytes (owned)
} vkp_forward_input;
typedef struct vkp_forward_output {
  char name[128];
  vkp_tensor *t;
} vkp_forward_output;
typedef struct vkp_forward_io {
  VKP_VEC(vkp_forward_input) inputs;
  VKP_VEC(vkp_forward_output) outputs;
  vkp_tensor *loss;
} vkp_forward_io;

// Reads tensor `name` of `in` (file `where`) as an input of g: converted to f32 (dtype F32) or to
// int32 (dtype I32: values must be integers; the file may store them as floats). `ndim` must match;
// shape entries >= 0 must match, -1 accepts any size. Errors name the file, tensor and shapes.
vkp_status vkp_forward_io_input(vkp_forward_io *io, vkp_graph *g, const vkp_safetensors *in, const char *where,
                                const char *name, vkp_dtype dtype, int ndim, const int64_t *shape, vkp_tensor **out,
                                vkp_error *err);
// True if `in` has a tensor `name` (optional inputs).
bool vkp_forward_io_has(const vkp_safetensors *in, const char *name);
vkp_status vkp_forward_io_output(vkp_forward_io *io, const char *name, vkp_tensor *t);
void vkp_forward_io_free(vkp_forward_io *io);

// Evaluation request of `vkpeft eval` (what each family does with it is its own: classification
// accuracy for image classifiers, zero-shot accuracy and retrieval recall for CLIP).
typedef struct vkp_eval_request {
  const char *data;       // data spec (a named set, a folder, a list file)
  int batch;
  bool json;              // one JSON object on stdout instead of a table
  const char *model_dir;  // the checkpoint folder (auxiliary files: tokenizer, preprocessing)
  const char *aux_dir;    // the first adapter's folder, whose auxiliary files override (may be NULL)
  // CLIP (other families ignore these; zero = off / default):
  const char *templates;  // zero-shot prompt templates file, one per line with "{}"
  bool probe;             // linear-probe accuracy on frozen image embeddings
  const char *probe_data; // the probe's training set (NULL: the other side of data's split)
  bool wise;              // WiSE-FT: evaluate the weights (1-a)·zero-shot + a·tuned, a = interpolate
  float interpolate;
  const char *tuned;      // the tuned checkpoint (the loaded model is the zero-shot one); NULL: the
                          // loaded model with its adapters merged is the tuned one, model_dir the zero-shot
  const char *gallery;    // write the retrieval gallery PNG here
} vkp_eval_request;

struct vkp_model_family {
  const char *name;                      // "vit", "clip", ...
  const char *description;               // "ViTForImageClassification"
  // config.json `model_type` values and diffusers `_class_name` values it loads (NULL-terminated).
  const char *const *config_types;
  // Loads the checkpoint folder `dir`. `aux_dir` (may be NULL) is a folder whose auxiliary files
  // (preprocessing) override the model's, e.g. the first adapter's.
  vkp_status (*load)(vkp_ctx *ctx, const char *dir, const char *aux_dir, vkp_loaded_model *out, vkp_error *err);
  void (*free)(vkp_loaded_model *lm);
  // One line describing the architecture (for `info`).
  void (*describe)(const vkp_loaded_model *lm, char *out, size_t cap);
  // Writes a standalone checkpoint folder (config, weights with adapters as merged, auxiliary files).
  vkp_status (*save)(const vkp_loaded_model *lm, const char *dir, vkp_error *err);
  // Builds the forward pass on the named tensors of `in` (and the family's loss when with_loss).
  vkp_status (*forward)(const vkp_loaded_model *lm, vkp_graph *g, const vkp_safetensors *in, const char *where,
                        bool with_loss, vkp_forward_io *io, vkp_error *err);
  // Evaluates on a data set and prints the result; NULL if the family has no evaluation.
  vkp_status (*eval)(const vkp_loaded_model *lm, const vkp_eval_request *req, vkp_error *err);
};

// The model type of a checkpoint folder: config.json's `model_type` (else `_class_name`), or
// model_index.json's `_class_name` for a diffusers pipeline folder. Written to out (cap bytes).
vkp_status vkp_family_model_type(const char *dir, char *out, size_t cap, vkp_error *err);
// The family in `families` (NULL-terminated) that loads `dir`; "unsupported model: <type>" otherwise.
vkp_status vkp_family_find(const vkp_model_family *const *families, const char *dir, const vkp_model_family **out,
                           vkp_error *err);
// Finds the family and loads the model.
vkp_status vkp_family_load(const vkp_model_family *const *families, vkp_ctx *ctx, const char *dir, const char *aux_dir,
                           vkp_loaded_model *out, vkp_error *err);
void vkp_loaded_model_free(vkp_loaded_model *lm);   // NULL or empty: no-op

#endif
