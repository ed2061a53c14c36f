// vkp_model.h — parameters and the module tree that models are written against.
//
// A vkp_model owns named parameters (persistent device buffers, loaded from / saved to
// safetensors by checkpoint name) and a registry of modules (linear, conv2d, norms, embedding,
// attention, blocks). Model code registers its modules once, then builds graphs through the layer
// calls in vkp_nn.h, which is where the PEFT layer (vkp_peft.h) hooks in. core knows nothing of any
// particular model: vision/vlm/diffusion supply the module names.
#ifndef VKP_MODEL_H
#define VKP_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "vkp_graph.h"

typedef struct vkp_peft vkp_peft;
typedef struct vkp_adapter_slot vkp_adapter_slot;
typedef struct vkp_nn_hooks vkp_nn_hooks;   // vkp_nn.h

typedef enum vkp_module_kind {
  VKP_MODULE_LINEAR = 0,
  VKP_MODULE_CONV2D,
  VKP_MODULE_LAYER_NORM,
  VKP_MODULE_GROUP_NORM,
  VKP_MODULE_EMBEDDING,
  VKP_MODULE_ATTENTION,   // an attention block (prefix tuning target)
  VKP_MODULE_BLOCK,       // a transformer block (bottleneck / parallel adapters, prompts)
  VKP_MODULE_OTHER,
} vkp_module_kind;

typedef struct vkp_param {
  char *name;                    // checkpoint name, e.g. "vit.encoder.layer.0.output.dense.weight" (owned)
  int ndim;
  int64_t shape[VKP_MAX_DIMS];
  vkp_dtype dtype;               // storage dtype: f32, or f16/bf16 for frozen weights
  vkp_buffer *buf;               // device storage (owned)
  bool trainable;
  bool adapter;                  // created by the PEFT layer (saved in adapter files)
  struct vkp_module *module;     // module it belongs to (NULL for free parameters)
  vkp_tensor *t;                 // its tensor in the graph being built (see vkp_model_begin_graph)
} vkp_param;

typedef struct vkp_module {
  char *name;                    // checkpoint name ("vit.encoder.layer.0.attention.attention.query") (owned)
  char *alias;                   // second spelling (transformers 5: "vit.layers.0.attention.q_proj"), or NULL
  char **names;                  // every spelling: names[0] = name, then alias, then vkp_module_add_name's (owned)
  int n_names;
  vkp_module_kind kind;
  int layer;                     // block index (layers_to_transform); -1 if none
  int64_t in, out;               // linear: features; conv: channels; norm/embedding: dims
  int kh, kw;                    // conv kernel
  bool feedforward;              // (IA)^3: scale this module's input, not its output
  unsigned sites;                // BLOCK: adapter sites its forward offers (VKP_NN_AFTER_* of vkp_nn.h; 0: a
                                 // transformer block, after attention and after the MLP)
  bool cross;                    // ATTENTION: cross-attention (keys and values from another sequence)
  vkp_param *weight, *bias;      // may be NULL
  vkp_adapter_slot *slots;       // PEFT adapters attached here (list, owned by the PEFT layer)
} vkp_module;

typedef struct vkp_model {
  vkp_ctx *ctx;
  vkp_param **params;
  int nparams, params_cap;
  vkp_module **modules;
  int nmodules, modules_cap;
  vkp_peft *peft;                // adapters attached to this model (NULL = none)
  void (*peft_free)(struct vkp_model *m);   // set by the PEFT layer: frees `peft` and the slots
  const vkp_nn_hooks *nn_hooks;  // set by the PEFT layer: applies adapters in the layer calls (vkp_nn.h)
  bool training;                 // dropout active
  bool gradient_checkpointing;   // forward code puts each block in an activation-checkpoint segment
  vkp_graph *graph;              // graph being built (vkp_model_begin_graph)
  vkp_error err;
} vkp_model;

vkp_status vkp_model_new(vkp_ctx *ctx, vkp_model **out);
void vkp_model_free(vkp_model *m);

// Creates a zero-filled parameter. Fails on a duplicate name.
vkp_status vkp_model_add_param(vkp_model *m, const char *name, vkp_dtype dtype, int ndim, const int64_t *shape,
                               vkp_param **out);
vkp_param *vkp_model_find_param(const vkp_model *m, const char *name);
vkp_status vkp_param_write_f32(vkp_model *m, vkp_param *p, const float *data);   // converts to p->dtype
vkp_status vkp_param_read_f32(vkp_model *m, const vkp_param *p, float *data);
int64_t vkp_param_numel(const vkp_param *p);

// Registers a module; weight/bias are created as "<name>.weight" / "<name>.bias" with the given
// shapes (bias_len 0 = no bias). Returns the module.
vkp_module *vkp_model_add_module(vkp_model *m, const char *name, const char *alias, vkp_module_kind kind, int layer,
                                 int wdim, const int64_t *wshape, int64_t bias_len);
vkp_module *vkp_model_find_module(const vkp_model *m, const char *name);   // by any of its names
// Adds another spelling of a module's name (another library version's, a tool's): found by
// vkp_model_find_module, matched by PEFT targeting, accepted in adapter files. A family maps all
// its spellings in one place (its model file), at registration.
vkp_status vkp_module_add_name(vkp_model *m, vkp_module *mod, const char *name);
// True if `name` is one of the module's spellings.
bool vkp_module_has_name(const vkp_module *mod, const char *name);

// Changes a parameter's storage dtype (f32 <-> f16/bf16), converting its values: frozen base
// weights kept in the checkpoint's half precision (arithmetic still accumulates in f32).
vkp_status vkp_param_set_dtype(vkp_model *m, vkp_param *p, vkp_dtype dtype);
// Stores the frozen base weights of every Linear, Conv2d and Embedding module as `dtype` (f16 or
// bf16; f32 converts them back): the memory of a frozen base halves while products still
// accumulate in f32. Call after the adapters are attached (trainable weights, adapter parameters,
// biases and norms stay f32). *bytes_saved (may be NULL) gets the device bytes freed (negative
// when converting back). VKP_ERR_INVALID for another dtype.
vkp_status vkp_model_set_base_dtype(vkp_model *m, vkp_dtype dtype, int64_t *bytes_saved);
// Parses "f32" / "fp32" / "float32", "f16" / "fp16" / "float16", "bf16" / "bfloat16".
vkp_status vkp_base_dtype_parse(const char *name, vkp_dtype *out);

// Random initialisation: normal(0, std) for weights, zeros for biases, ones for norm weights.
vkp_status vkp_param_init_normal(vkp_model *m, vkp_param *p, float std, uint64_t seed);
// Uniform values in [-bound, bound) (torch.nn.init.uniform_), seeded like init_normal.
vkp_status vkp_param_init_uniform(vkp_model *m, vkp_param *p, float bound, uint64_t seed);
vkp_status vkp_param_fill(vkp_model *m, vkp_param *p, float value);

// Loads every tensor of a safetensors file whose name (after stripping `prefix`, may be NULL)
// matches a parameter; checks shapes (a mismatch is an error naming file, tensor and shapes).
// Reports names in the file that matched nothing (unused) and parameters not loaded (missing)
// through the counts and, if non-NULL, a callback.
typedef struct vkp_load_report {
  int loaded, unused, missing;
} vkp_load_report;
typedef void (*vkp_name_fn)(void *user, const char *kind, const char *name);
vkp_status vkp_model_load_safetensors(vkp_model *m, const char *path, const char *prefix, vkp_load_report *report,
                                      vkp_name_fn on_name, void *user);
// Key conversion for checkpoints whose tensor names are another layout's (original-SD keys for a
// diffusers model, ...): writes the model's parameter name for `file_key` into out and returns
// true, or returns false for a key that belongs to no parameter of this model (reported unused).
typedef bool (*vkp_key_map_fn)(void *user, const char *file_key, char *out, size_t cap);
typedef struct vkp_load_options {
  const char *prefix;            // stripped from file keys first (may be NULL)
  vkp_key_map_fn map;            // then converted (may be NULL: names as they are)
  void *map_user;
  vkp_name_fn on_name;           // unused / missing names (may be NULL)
  void *user;
  bool keep_dtype;               // frozen matrices/kernels (ndim >= 2) take the file's float dtype (f16/bf16
                                 // stay half on the device); vectors (biases, norms) stay f32
} vkp_load_options;
vkp_status vkp_model_load_safetensors_opts(vkp_model *m, const char *path, const vkp_load_options *opt,
                                           vkp_load_report *report);
// Saves parameters (all, or those accepted by `filter`) as f32 safetensors (atomic write).
typedef bool (*vkp_param_filter)(const vkp_param *p, void *user);
vkp_status vkp_model_save_safetensors(vkp_model *m, const char *path, vkp_param_filter filter, void *user,
                                      const char *const *metadata_kv, int n_metadata);

// A model's forward code brackets each repeated block (a transformer layer, a ResNet block) with
// these: when m->gradient_checkpointing is set, the block becomes an activation-checkpoint
// segment of the graph being built (vkp_graph_checkpoint_begin/end), recomputed in backward
// instead of kept. No-ops otherwise.
void vkp_model_block_begin(vkp_model *m);
void vkp_model_block_end(vkp_model *m);

// Graph building: resets every parameter's tensor so it is created in `g` on first use.
void vkp_model_begin_graph(vkp_model *m, vkp_graph *g);
// The parameter as a tensor of the current graph (an external tensor over its buffer).
vkp_tensor *vkp_param_tensor(vkp_model *m, vkp_param *p);

// Trainable parameters: counts and list (caller frees the array).
int64_t vkp_model_count_params(const vkp_model *m, bool trainable_only);
int vkp_model_trainable(const vkp_model *m, vkp_param ***out);
// Marks all parameters frozen (PEFT starts from a frozen base), or trainable (full fine-tuning).
void vkp_model_set_trainable(vkp_model *m, bool trainable);

#endif
