// peft_internal.h — adapter state shared by the PEFT layer's files (peft.c, nn.c, peft_io.c,
// peft_merge.c).
#ifndef VKP_PEFT_INTERNAL_H
#define VKP_PEFT_INTERNAL_H

#include "vkp_peft.h"

#define VKP_SLOT_MAX_PARAMS 6

// Where a block-level adapter sits.
enum { VKP_SITE_NONE = 0, VKP_SITE_ATTN = 1, VKP_SITE_MLP = 2 };

// One adapter on one module.
struct vkp_adapter_slot {
  vkp_adapter_slot *next;          // next slot on the same module
  vkp_adapter *adapter;
  vkp_module *module;
  vkp_param *p[VKP_SLOT_MAX_PARAMS];   // method parameters, in the order of the method's suffix table
  int np;
  float scaling;                   // method scaling (alpha / r, alpha / sqrt(r), ...)
  int site;                        // block-level: VKP_SITE_*
  bool lowrank;                    // LoKr: w2 = lokr_w2_a @ lokr_w2_b (peft: when r < max(w2 dims) / 2)
  float *dora_norm;                // DoRA: the row factor folded in at merge time (owned):
                                   // f = u·m/||W + s·BA|| + 1 - u, u the user scale then
};

struct vkp_adapter {
  vkp_peft_config cfg;
  float scale;                     // user scale (multiplies the adapter's contribution)
  bool enabled;
  bool merged;
  float merged_scale;              // user scale the adapter was merged with (unmerge uses it)
  vkp_param *vera_A, *vera_B;      // VeRA shared projections (frozen)
  vkp_adapter_slot **slots;
  int nslots, slots_cap;
  vkp_param **saved;               // modules_to_save / BitFit / LN-tuning parameters (trainable base params)
  int nsaved, saved_cap;
};

struct vkp_peft {
  vkp_adapter **adapters;
  int n, cap;
};

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
// Removes an adapter from the model: unlinks its slots, frees the parameters it created,
// re-freezes the base parameters it unfroze (unless another adapter trains them) and frees it.
void vkp_peft_discard(vkp_model *m, vkp_adapter *a);

// Frees the PEFT state of a model (installed as vkp_model.peft_free).
void vkp_peft_free_all(vkp_model *m);

#endif
