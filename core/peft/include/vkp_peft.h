// vkp_peft.h — the PEFT layer shared by every model package.
//
// Methods hook into the layer calls of vkp_nn.h at three points:
//   weight level (linear, conv2d): LoRA / rsLoRA / DoRA, LoHa, LoKr, (IA)^3, VeRA, OFT, masked
//     (sparse) tuning; BitFit and LayerNorm tuning unfreeze existing parameters;
//   block level (after attention / cross-attention / the MLP / a ResNet block): bottleneck adapters
//     (Houlsby, Pfeiffer) and the AdaptFormer parallel MLP adapter;
//   sequence level: visual prompt tuning (shallow / deep), prefix tuning (keys/values) and CoOp
//     (learned context vectors in a text tower).
// Each method is one entry of the method table (vkp_peft_method.h, one file per family under
// core/peft/method_*.c). An adapter is one method with its options; a hybrid is several adapters
// on one model. Several adapters can be active at once, each with its own scale; each can be
// disabled, merged into the base weights (weight-level methods) and unmerged. Adapter files are
// read and written through the formats of vkp_adapter_format.h (HF PEFT folders today).
#ifndef VKP_PEFT_H
#define VKP_PEFT_H

#include <cjson/cJSON.h>

#include "vkp_model.h"

typedef enum vkp_peft_method {
  VKP_PEFT_LORA = 0,      // includes rsLoRA (use_rslora) and DoRA (use_dora)
  VKP_PEFT_LOHA,
  VKP_PEFT_LOKR,
  VKP_PEFT_IA3,
  VKP_PEFT_VERA,
  VKP_PEFT_BOTTLENECK,    // Houlsby (after attention and MLP) or Pfeiffer (after MLP)
  VKP_PEFT_ADAPTFORMER,   // parallel MLP adapter
  VKP_PEFT_VPT,           // visual prompt tuning (shallow or deep)
  VKP_PEFT_PREFIX,        // prefix tuning: learned keys/values per attention layer
  VKP_PEFT_BITFIT,        // biases only
  VKP_PEFT_LN_TUNING,     // LayerNorm / GroupNorm parameters only
  VKP_PEFT_MASKED,        // sparse masked tuning of chosen weight matrices
  VKP_PEFT_FULL,          // every base parameter trainable
  VKP_PEFT_LINEAR_PROBE,  // nothing but modules_to_save
  VKP_PEFT_OFT,           // orthogonal fine-tuning: block-diagonal Cayley rotations of the weights' inputs
  VKP_PEFT_COOP,          // CoOp: learned context vectors after the start token of a text tower
  VKP_PEFT_METHOD_COUNT
} vkp_peft_method;

#define VKP_PEFT_MAX_TARGETS 32
#define VKP_PEFT_MAX_CTX_IDS 64

typedef enum vkp_lora_init { VKP_LORA_INIT_DEFAULT = 0, VKP_LORA_INIT_GAUSSIAN, VKP_LORA_INIT_NONZERO } vkp_lora_init;
typedef enum vkp_mask_kind { VKP_MASK_RANDOM = 0, VKP_MASK_MAGNITUDE, VKP_MASK_GRADIENT } vkp_mask_kind;

typedef struct vkp_peft_config {
  vkp_peft_method method;
  char name[64];                           // adapter name ("default")
  // targeting (HF PEFT semantics)
  char *target_modules[VKP_PEFT_MAX_TARGETS];   // suffixes of module names (owned strings)
  int n_target_modules;
  char *target_regex;                      // Python-re full-match regex over module names (owned), or NULL
  char *modules_to_save[VKP_PEFT_MAX_TARGETS];
  int n_modules_to_save;
  char *feedforward_modules[VKP_PEFT_MAX_TARGETS];   // (IA)^3
  int n_feedforward_modules;
  int layers_to_transform[64];             // empty = all layers
  int n_layers_to_transform;
  // LoRA family / LoHa / LoKr / VeRA
  int r;
  float alpha;
  float dropout;
  bool use_rslora;                         // scale alpha / sqrt(r)
  bool use_dora;
  vkp_lora_init init;
  bool init_weights;                       // false: non-zero init everywhere (tests)
  int decompose_factor;                    // LoKr factorisation (-1: balanced)
  float vera_d_initial;                    // VeRA
  uint32_t projection_seed;                // VeRA shared A/B
  // additive
  int bottleneck;                          // adapter / AdaptFormer hidden size
  bool pfeiffer;                           // bottleneck placement: MLP only
  float adapter_scale;                     // AdaptFormer / bottleneck output scale
  int n_tokens;                            // VPT prompt tokens / prefix length
  bool deep;                               // VPT-deep
  // selective
  float density;                           // masked tuning: fraction of weights trainable
  vkp_mask_kind mask;
  // OFT (peft OFTConfig; `r` is the number of blocks, exactly one of r and oft_block_size is > 0)
  int oft_block_size;                      // rotation block size (peft default 32)
  float module_dropout;                    // kept and written; peft 0.21 never applies it
  bool coft;                               // constrained OFT: the skew blocks are projected to norm <= eps
  float eps;                               // COFT radius (6e-5)
  bool block_share;                        // one rotation shared by every block
  bool use_cayley_neumann;                 // R from the Neumann series of the Cayley transform (peft default)
  int num_cayley_neumann_terms;            // terms of that series (5)
  // CoOp (method_coop.c): n_ctx context vectors after the leading token(s) of the first text block
  int n_ctx;                               // context length (16; with ctx_init_ids: their count)
  bool csc;                                // class-specific contexts: not supported (only false)
  char ctx_init[128];                      // the phrase the contexts start from (a record; "" = random)
  int ctx_init_ids[VKP_PEFT_MAX_CTX_IDS];  // its token ids (no start/end token), filled by the model
  int n_ctx_init_ids;                      // package's tokenizer; contexts start as those embedding rows
  char token_embedding[128];               // EMBEDDING module read by ctx_init_ids ("" = none)
  char position_embedding[128];            // EMBEDDING module of positions, re-assigned over the grown
                                           // sequence ("" = none: contexts get no positions)
} vkp_peft_config;

void vkp_peft_config_init(vkp_peft_config *c, vkp_peft_method method);
void vkp_peft_config_clear(vkp_peft_config *c);   // frees owned strings
const char *vkp_peft_method_name(vkp_peft_method m);
bool vkp_peft_method_parse(const char *name, vkp_peft_method *out);
// HF PEFT adapter_config.json <-> config. Unknown keys and wrong types are errors naming the
// file (`where`) and the key.
vkp_status vkp_peft_config_from_json(const cJSON *json, const char *where, vkp_peft_config *out, vkp_error *err);
cJSON *vkp_peft_config_to_json(const vkp_peft_config *c);
// A `peft` list entry of a training config: {"method": <name or alias>, HF keys...}. Aliases
// imply keys ("rslora": use_rslora, "dora": use_dora, "pfeiffer": placement, "vpt_deep": deep, ...).
vkp_status vkp_peft_config_from_entry(const cJSON *entry, const char *where, vkp_peft_config *out, vkp_error *err);

typedef struct vkp_adapter vkp_adapter;

// Attaches a new adapter: creates its parameters for every matched module (initialised by the
// method's rules from `seed`), freezes the base model the first time an adapter is attached, and
// marks adapter parameters and modules_to_save trainable. Fails if nothing matches.
vkp_status vkp_peft_attach(vkp_model *m, const vkp_peft_config *cfg, uint64_t seed, vkp_adapter **out);
int vkp_peft_count(const vkp_model *m);
vkp_adapter *vkp_peft_get(const vkp_model *m, int i);
const vkp_peft_config *vkp_adapter_config(const vkp_adapter *a);
void vkp_adapter_set_scale(vkp_adapter *a, float scale);   // multiplies the adapter's output (1 = as trained)
void vkp_adapter_set_enabled(vkp_adapter *a, bool enabled);
bool vkp_adapter_is_merged(const vkp_adapter *a);
// Folds a weight-level adapter into the base weights / takes it out again.
vkp_status vkp_adapter_merge(vkp_model *m, vkp_adapter *a);
vkp_status vkp_adapter_unmerge(vkp_model *m, vkp_adapter *a);

// Masked tuning with `mask: "gradient"`: the adapter starts with a random mask; the trainer
// scores every entry of slot i's weight (e.g. accumulated |dL/dW| over calibration batches, numel
// of the module's weight) and this keeps the top `density` fraction. vkp_adapter_slot_module
// names the module of slot i (NULL past the end).
vkp_status vkp_masked_set_scores(vkp_model *m, vkp_adapter *a, int slot, const float *scores);
vkp_module *vkp_adapter_slot_module(const vkp_adapter *a, int slot);

// HF PEFT folders: adapter_config.json + adapter_model.safetensors. Names are written in the
// model's alias spelling when it has one (transformers 5 / peft current), and every spelling of a
// module loads. (The HF PEFT format of vkp_adapter_format.h; other formats plug in there.)
vkp_status vkp_peft_save(vkp_model *m, const vkp_adapter *a, const char *dir);
vkp_status vkp_peft_load(vkp_model *m, const char *dir, vkp_adapter **out);

// Parameter accounting.
typedef struct vkp_peft_report {
  int64_t total_params, trainable_params, adapter_params;
  uint64_t adapter_bytes;
} vkp_peft_report;
vkp_peft_report vkp_peft_get_report(const vkp_model *m);

// The name of an adapter parameter as peft names it in memory (with ".<adapter>." inserted),
// used for gradient dumps: "base_model.model.<module>.lora_A.default.weight".
void vkp_peft_param_peft_name(const vkp_model *m, const vkp_param *p, char *out, size_t cap);

#endif
