// peft_internal.h — adapter state shared by the PEFT layer's files: the generic code (peft.c,
// peft_config.c, peft_forward.c, peft_merge.c, adapter_format.c, format_peft.c) and the method
// files (method_*.c), which reach the state through these structs and helpers.
#ifndef VKP_PEFT_INTERNAL_H
#define VKP_PEFT_INTERNAL_H

#include "vkp_adapter_format.h"
#include "vkp_peft.h"
#include "vkp_peft_method.h"

#define VKP_SLOT_MAX_PARAMS 6
// A vkp_json_field flag of the PEFT layer: read, never written (another spelling of a key).
// vkp_json_read_fields looks only at its own flag bits.
#define VKP_PEFT_FIELD_READ_ONLY (1u << 31)
#define VKP_ADAPTER_MAX_SHARED 4

// One adapter on one module (one site of it, for block adapters).
struct vkp_adapter_slot {
  vkp_adapter_slot *next;          // next slot on the same module
  vkp_adapter *adapter;
  vkp_module *module;
  vkp_param *p[VKP_SLOT_MAX_PARAMS];   // method parameters, in the order of the method's suffixes
  int np;
  float scaling;                   // method scaling (alpha / r, alpha / sqrt(r), ...)
  int site;                        // block level: the VKP_NN_AFTER_* site it sits at; else 0
  bool lowrank;                    // LoKr: w2 = lokr_w2_a @ lokr_w2_b (peft: when r < max(w2 dims) / 2)
  int64_t geom[4];                 // method geometry (OFT: block size, blocks applied, parameter blocks)
  vkp_buffer *consts;              // method constants on the device (OFT: skew-matrix indices) (owned)
  float *dora_norm;                // DoRA: the row factor folded in at merge time (owned):
                                   // f = u·m/||W + s·BA|| + 1 - u, u the user scale then
};

struct vkp_adapter {
  vkp_peft_config cfg;
  const vkp_peft_method_def *def;
  float scale;                     // user scale (multiplies the adapter's contribution)
  bool enabled;
  bool merged;
  float merged_scale;              // user scale the adapter was merged with (unmerge uses it)
  vkp_param *shared[VKP_ADAPTER_MAX_SHARED];   // adapter-wide parameters (VeRA's frozen A, B), named by def->shared_keys
  int nshared;
  vkp_adapter_slot **slots;
  int nslots, slots_cap;
  vkp_param **saved;               // modules_to_save / BitFit / LN-tuning parameters (trainable base params)
  int nsaved, saved_cap;
  void *target_re;                 // the compiled target_regex (pcre2_code *, owned), or NULL
  vkp_module *const *only;         // during vkp_adapter_attach_modules: exactly these modules
  int n_only;
};

struct vkp_peft {
  vkp_adapter **adapters;
  int n, cap;
};

// ---- the forward and merge state of the hooks (vkp_peft_method_def) ------------------------------

// One linear / conv2d call on a module with adapters. The driver (peft_forward.c) runs
//   weight_pre of each active slot   (may change x, W; set defer_bias)
//   y = base(x, W, defer_bias ? none : b)
//   weight_post of each active slot  (adds to y; may set out_scale)
//   deferred bias: y = y * out_scale + b
//   weight_final of each active slot (scales y)
struct vkp_peft_weight_call {
  vkp_model *m;
  vkp_graph *g;
  vkp_module *mod;
  bool conv;
  int stride, padding;
  vkp_tensor *x;                   // the input, after input-side changes ((IA)^3 feed-forward)
  vkp_tensor *W;                   // the weight used, after weight changes (LoHa, LoKr, OFT, masked)
  vkp_tensor *b;                   // the bias (may be NULL)
  bool defer_bias;                 // the bias is added after out_scale (DoRA)
  vkp_tensor *y;                   // the output
  vkp_tensor *out_scale;           // per-output-channel factor applied before the deferred bias
};

// One attention call: prefix keys/values are prepended; n_prefix counts them (always visible).
struct vkp_peft_attn_call {
  vkp_model *m;
  vkp_graph *g;
  vkp_module *attn;
  vkp_tensor *k, *v;               // (B, H, Tk, D), prefixes in front
  int64_t n_prefix;
};

// A merge / unmerge of one slot into its module's weight, on host float64 copies (written back
// as f32 by the driver).
struct vkp_peft_merge_call {
  vkp_module *mod;
  double *w;                       // (out, cols) row-major
  double *b;                       // (out) or NULL (no bias)
  int64_t out, cols;
  int64_t k;                       // kh * kw (conv), else 1: input channel j of column c is c / k
};

// ---- helpers for method files -----------------------------------------------------------------

// Creates slot parameter s->np (named "<module file name>[.<adapter>].<suffix>", trainable),
// appends it to s->p.
vkp_status vkp_peft_new_param(vkp_model *m, vkp_adapter_slot *s, vkp_dtype dtype, int ndim, const int64_t *shape);
// Adapter-wide parameter a->shared[a->nshared] named "<key>.<adapter>" (frozen).
vkp_status vkp_peft_new_shared(vkp_model *m, vkp_adapter *a, const char *key, int ndim, const int64_t *shape);
// Marks a base parameter trained by the adapter (saved with it); NULL is ignored.
vkp_status vkp_peft_train_param(vkp_adapter *a, vkp_param *p);
// Uniform(-bound, bound) from a stream keyed by (seed, parameter name).
vkp_status vkp_peft_init_uniform(vkp_model *m, vkp_param *p, float bound, uint64_t seed);
// Target tests: the common targeting keys (target_modules / regex / none = every module) and
// layers_to_transform.
bool vkp_peft_name_targeted(const vkp_adapter *a, const vkp_module *mod);
bool vkp_peft_layer_selected(const vkp_peft_config *c, const vkp_module *mod);
// True if any of the module's names ends with one of the suffixes (at a '.' boundary) or equals it.
bool vkp_peft_names_match(const vkp_module *mod, char *const *list, int n);
// Host copy of a parameter as f32 (caller frees), NULL on failure.
float *vkp_peft_read_param(vkp_model *m, const vkp_param *p);
// Merge helper: w += d (merge) or w -= d (unmerge), d (out, cols) a scaled delta weight.
void vkp_peft_merge_add(vkp_peft_merge_call *c, const double *d, bool merge);
// A dropout salt per module (FNV-1a of its name), so adapters on different modules drop differently.
uint32_t vkp_peft_salt(const vkp_adapter_slot *s);

// Saved-file suffix of slot parameter i ("lora_A.weight", "hada_w1_a", ...), and the in-memory
// peft suffix with the adapter name inserted ("lora_A.default.weight").
const char *vkp_slot_suffix(const vkp_adapter_slot *s, int i);
void vkp_slot_peft_suffix(const vkp_adapter_slot *s, int i, char *out, size_t cap);
// Name used in files for a module: its alias (transformers-5 / current peft spelling) if any.
const char *vkp_module_file_name(const vkp_module *mod);
// True if the slot contributes to the forward pass now.
bool vkp_slot_active(const vkp_adapter_slot *s);
// Effective multiplier of a slot's delta: method scaling x user scale.
float vkp_slot_scale(const vkp_adapter_slot *s);
// Per-channel vector v for an activation: (C) on the last dim for linear, (1, C, 1, 1) for conv.
vkp_tensor *vkp_peft_channel_vector(vkp_model *m, vkp_tensor *v, bool conv);
// Removes an adapter from the model: unlinks its slots, frees the parameters it created,
// re-freezes the base parameters it unfroze (unless another adapter trains them) and frees it.
void vkp_peft_discard(vkp_model *m, vkp_adapter *a);
// Frees the PEFT state of a model (installed as vkp_model.peft_free).
void vkp_peft_free_all(vkp_model *m);
// The nn hooks (peft_forward.c), installed on the model by the first attach.
extern const vkp_nn_hooks vkp_peft_nn_hooks;

// ---- the methods (one file per family) ---------------------------------------------------------
extern const vkp_peft_method_def vkp_method_lora;          // method_lora.c (LoRA, rsLoRA, DoRA)
extern const vkp_peft_method_def vkp_method_loha;          // method_loha.c
extern const vkp_peft_method_def vkp_method_lokr;          // method_lokr.c
extern const vkp_peft_method_def vkp_method_ia3;           // method_ia3.c
extern const vkp_peft_method_def vkp_method_vera;          // method_vera.c
extern const vkp_peft_method_def vkp_method_bottleneck;    // method_adapter.c (Houlsby, Pfeiffer)
extern const vkp_peft_method_def vkp_method_adaptformer;   // method_adapter.c
extern const vkp_peft_method_def vkp_method_vpt;           // method_prompt.c
extern const vkp_peft_method_def vkp_method_prefix;        // method_prompt.c
extern const vkp_peft_method_def vkp_method_bitfit;        // method_selective.c
extern const vkp_peft_method_def vkp_method_ln_tuning;     // method_selective.c
extern const vkp_peft_method_def vkp_method_full;          // method_selective.c
extern const vkp_peft_method_def vkp_method_linear_probe;  // method_selective.c
extern const vkp_peft_method_def vkp_method_masked;        // method_masked.c
extern const vkp_peft_method_def vkp_method_oft;           // method_oft.c
extern const vkp_peft_method_def vkp_method_coop;          // method_coop.c

// Shared parse/write of config keys used by several methods (peft_config.c).
vkp_status vkp_peft_key_bias(const cJSON *v, const char *where, vkp_peft_config *c, vkp_error *err);
void vkp_peft_write_bias(cJSON *j, const vkp_peft_config *c);
// A list of strings (a single string: one entry; null: none) into out[0..*n), at most
// VKP_PEFT_MAX_TARGETS (owned copies; the previous entries are freed).
vkp_status vkp_peft_read_strings(const cJSON *v, const char *where, const char *key, char **out, int *n, vkp_error *err);
vkp_status vkp_peft_check_probability(float p, const char *where, const char *key, vkp_error *err);

#endif
