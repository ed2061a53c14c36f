// vkp_peft_method.h — the PEFT method table: one vkp_peft_method_def per method (as vkp_op_def is
// for ops), defined in one file per family (core/peft/method_<family>.c) and listed once in
// vkp_peft_methods[] (core/peft/methods.c), in vkp_peft_method order. The generic code (attach and
// targeting, config files, the nn hooks, merge, adapter formats) reaches a method only through its
// def; `vkpeft compare`, `vkpeft bench peft` and the tests read the same list.
//
// Adding a method: its file (a def with config keys, parameter creation, forward hooks, merge and
// saved-key suffixes), an enum value in vkp_peft.h, a line in methods.c, a test. See docs/PEFT.md.
#ifndef VKP_PEFT_METHOD_H
#define VKP_PEFT_METHOD_H

#include <cjson/cJSON.h>

#include "vkp_json.h"
#include "vkp_nn.h"
#include "vkp_peft.h"

typedef enum vkp_peft_level {
  VKP_PEFT_LEVEL_WEIGHT = 0,   // linear / conv2d: a change of the input, the weight or the output; merges
  VKP_PEFT_LEVEL_BLOCK,        // modules added at block sites (vkp_nn_block_adapter); does not merge
  VKP_PEFT_LEVEL_SEQUENCE,     // tokens / keys and values added to sequences; does not merge
  VKP_PEFT_LEVEL_SELECTIVE,    // trains existing parameters; nothing to merge
} vkp_peft_level;

// Another name of a method in a config's "method" key, with the keys it implies (a JSON object).
typedef struct vkp_peft_alias {
  const char *name;            // "rslora"
  const char *implies;         // "{\"use_rslora\": true}", or NULL
} vkp_peft_alias;

// A config key read and written by the method itself (lists, values of mixed type).
typedef struct vkp_peft_key {
  const char *key;
  vkp_status (*parse)(const cJSON *v, const char *where, vkp_peft_config *c, vkp_error *err);
  void (*write)(cJSON *json, const vkp_peft_config *c);   // NULL: read only (an alias spelling)
} vkp_peft_key;

// Names of a slot's parameters: in adapter files, and in peft's in-memory state dict (%s = the
// adapter name), e.g. {"lora_A.weight", "lora_A.%s.weight"}.
typedef struct vkp_peft_suffix {
  const char *saved;
  const char *peft;
} vkp_peft_suffix;

// A named example configuration, trained by `vkpeft compare` and measured by `vkpeft bench
// peft`: one entry of a training config's `peft` list (JSON object with "method"). Module names
// are given by role and mapped by the model family: "@q", "@k", "@v", "@o" (attention
// projections), "@mlp_in", "@mlp_out", "@head" (the classifier / output head).
typedef struct vkp_peft_preset {
  const char *name;            // "lora", "lora_all", "rslora", ...
  const char *config;
  bool extra;                  // not in `vkpeft bench peft`'s default list
} vkp_peft_preset;

// Forward and merge state handed to the hooks (internal: core/peft/peft_internal.h).
typedef struct vkp_peft_weight_call vkp_peft_weight_call;
typedef struct vkp_peft_attn_call vkp_peft_attn_call;
typedef struct vkp_peft_merge_call vkp_peft_merge_call;

typedef struct vkp_peft_method_def {
  vkp_peft_method id;
  const char *name;            // config "method" name ("lora")
  const char *peft_type;       // adapter_config.json peft_type ("LORA"; vkpeft-only methods: "VKPEFT_...")
  vkp_peft_level level;
  const char *summary;         // one line: what it trains and how
  const vkp_peft_alias *aliases;
  int n_aliases;

  // ---- config (adapter_config.json keys; target_modules, modules_to_save, layers_to_transform
  // and adapter_name are common to every method)
  const vkp_json_field *fields;   // typed keys with ranges and defaults (flag VKP_JSON_KEEP)
  int n_fields;
  const vkp_peft_key *keys;       // keys with their own parse/write
  int n_keys;
  // Checks a parsed config (ranges that depend on several keys). May be NULL.
  vkp_status (*validate)(const vkp_peft_config *c, const char *where, vkp_error *err);

  // ---- attach
  // The module kinds (and sites) the method attaches to.
  bool (*fits)(const vkp_peft_config *c, const vkp_module *mod);
  // Without target_modules: does the method take this (fitting) module? NULL: no (targets required).
  bool (*default_target)(const vkp_peft_config *c, const vkp_module *mod);
  // Slots per module, in creation order: sites[i] for slot i (VKP_NN_AFTER_*, or 0); NULL: one.
  int (*sites)(const vkp_peft_config *c, const vkp_module *mod, int sites[4]);
  // At most this many modules get slots (0: no limit). NULL: no limit.
  int (*max_modules)(const vkp_peft_config *c);
  // Adapter-wide parameters, before the slots (max_in / max_out over the targeted modules).
  vkp_status (*prepare)(vkp_model *m, vkp_adapter *a, int64_t max_in, int64_t max_out);
  // Creates and initialises a slot's parameters (vkp_peft_new_param, in suffix order).
  vkp_status (*create)(vkp_model *m, vkp_adapter_slot *s, uint64_t seed);
  // SELECTIVE: marks the base parameters the adapter trains (vkp_peft_train_param).
  vkp_status (*select)(vkp_model *m, vkp_adapter *a);
  // Suffixes of a slot's parameters, in order.
  const vkp_peft_suffix *(*suffixes)(const vkp_adapter_slot *s, int *n);
  // File names of adapter-wide parameters (saved as "base_model.<name>"), NULL-terminated; may be NULL.
  const char *const *shared_keys;
  // Names a trained base parameter its own way (LN tuning: "<norm>.ln_tuning_layers[.<adapter>].weight"):
  // writes "<module spelling>..." into out and returns true, or returns false (default naming).
  // `adapter` is NULL for file keys, the adapter name for peft's in-memory names.
  bool (*saved_key)(const vkp_adapter *a, const vkp_param *p, const char *module_name, const char *adapter, char *out,
                    size_t cap);

  // ---- forward (vkp_nn.h calls; each hook sees one active slot)
  void (*weight_pre)(vkp_peft_weight_call *c, vkp_adapter_slot *s);     // input / weight / bias handling
  void (*weight_post)(vkp_peft_weight_call *c, vkp_adapter_slot *s);    // additions to the output
  void (*weight_final)(vkp_peft_weight_call *c, vkp_adapter_slot *s);   // output scaling (after the bias)
  vkp_tensor *(*block)(vkp_model *m, vkp_adapter_slot *s, int site, vkp_tensor *h, vkp_tensor *in);
  void (*attention)(vkp_peft_attn_call *c, vkp_adapter_slot *s);
  vkp_tensor *(*prompts)(vkp_model *m, vkp_adapter_slot *s, vkp_tensor *x, int n_special);

  // ---- merge (WEIGHT level; on the host in float64)
  vkp_status (*can_merge)(vkp_model *m, const vkp_adapter *a);   // may be NULL
  vkp_status (*merge)(vkp_model *m, vkp_adapter_slot *s, vkp_peft_merge_call *c, bool merge);

  // ---- examples for compare / bench
  const vkp_peft_preset *presets;
  int n_presets;
} vkp_peft_method_def;

// The table, indexed by vkp_peft_method.
extern const vkp_peft_method_def *const vkp_peft_methods[VKP_PEFT_METHOD_COUNT];
const vkp_peft_method_def *vkp_peft_method_get(vkp_peft_method m);   // NULL when out of range
// By config name, peft_type or alias (case-insensitive); `alias` (may be NULL) gets the alias
// matched, NULL for a plain name.
const vkp_peft_method_def *vkp_peft_method_find(const char *name, const vkp_peft_alias **alias);

// Every method's presets, in table order.
int vkp_peft_preset_count(void);
const vkp_peft_preset *vkp_peft_preset_at(int i);
// Index of a preset name (the first len characters of name), or -1.
int vkp_peft_preset_find(const char *name, size_t len);
// The preset's config with every "@role" string replaced by role(user, "q") etc. (NULL from role:
// an error naming the role). *out: a new JSON object (caller frees).
typedef const char *(*vkp_peft_role_fn)(void *user, const char *role);
vkp_status vkp_peft_preset_resolve(const char *config, vkp_peft_role_fn role, void *user, cJSON **out, vkp_error *err);

#endif
