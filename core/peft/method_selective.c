// method_selective.c — methods that train existing parameters (nothing is added, nothing to
// merge); they are saved under the parameters' own names:
//   bitfit        the biases of the targeted modules (all modules without targets);
//   ln_tuning     LayerNorm / GroupNorm weights and biases (peft's LN tuning: saved as
//                 <norm>.ln_tuning_layers.weight / .bias);
//   full          every base parameter;
//   linear_probe  nothing but modules_to_save (e.g. the classifier head).
#include <stdio.h>
#include <string.h>

#include "peft_internal.h"

static vkp_status bitfit_select(vkp_model *m, vkp_adapter *a) {
  vkp_status st = VKP_OK;
  for (int i = 0; i < m->nmodules && !st; i++) {
    vkp_module *mod = m->modules[i];
    if (vkp_peft_name_targeted(a, mod) && vkp_peft_layer_selected(&a->cfg, mod)) st = vkp_peft_train_param(a, mod->bias);
  }
  return st;
}

static bool is_norm(const vkp_module *mod) {
  return mod->kind == VKP_MODULE_LAYER_NORM || mod->kind == VKP_MODULE_GROUP_NORM;
}

static vkp_status ln_select(vkp_model *m, vkp_adapter *a) {
  vkp_status st = VKP_OK;
  for (int i = 0; i < m->nmodules && !st; i++) {
    vkp_module *mod = m->modules[i];
    if (!is_norm(mod) || !vkp_peft_name_targeted(a, mod) || !vkp_peft_layer_selected(&a->cfg, mod)) continue;
    st = vkp_peft_train_param(a, mod->weight);
    if (!st) st = vkp_peft_train_param(a, mod->bias);
  }
  return st;
}

// peft wraps a tuned norm: "<norm>.ln_tuning_layers.<weight|bias>" in files, with ".<adapter>"
// before the leaf in memory.
static bool ln_saved_key(const vkp_adapter *a, const vkp_param *p, const char *module_name, const char *adapter, char *out,
                         size_t cap) {
  (void)a;
  if (!p->module || !is_norm(p->module)) return false;
  const char *leaf = strrchr(p->name, '.');
  if (adapter) snprintf(out, cap, "%s.ln_tuning_layers.%s%s", module_name, adapter, leaf ? leaf : "");
  else snprintf(out, cap, "%s.ln_tuning_layers%s", module_name, leaf ? leaf : "");
  return true;
}

static vkp_status full_select(vkp_model *m, vkp_adapter *a) {
  vkp_status st = VKP_OK;
  for (int k = 0; k < m->nparams && !st; k++)
    if (!m->params[k]->adapter) st = vkp_peft_train_param(a, m->params[k]);
  return st;
}

static const vkp_peft_preset bitfit_presets[] = {{"bitfit", "{\"method\":\"bitfit\",\"modules_to_save\":[\"@head\"]}", false}};
static const vkp_peft_preset ln_presets[] = {{"ln_tuning", "{\"method\":\"ln_tuning\",\"modules_to_save\":[\"@head\"]}", false}};
static const vkp_peft_preset full_presets[] = {{"full", "{\"method\":\"full\"}", false}};
static const vkp_peft_preset probe_presets[] = {
    {"linear_probe", "{\"method\":\"linear_probe\",\"modules_to_save\":[\"@head\"]}", false}};
static const vkp_peft_alias ln_aliases[] = {{"layernorm", NULL}};
static const vkp_peft_alias probe_aliases[] = {{"linear", NULL}};

const vkp_peft_method_def vkp_method_bitfit = {
    .id = VKP_PEFT_BITFIT,
    .name = "bitfit",
    .peft_type = "VKPEFT_BITFIT",
    .level = VKP_PEFT_LEVEL_SELECTIVE,
    .summary = "the biases of the targeted modules",
    .select = bitfit_select,
    .presets = bitfit_presets,
    .n_presets = 1,
};

const vkp_peft_method_def vkp_method_ln_tuning = {
    .id = VKP_PEFT_LN_TUNING,
    .name = "ln_tuning",
    .peft_type = "LN_TUNING",
    .level = VKP_PEFT_LEVEL_SELECTIVE,
    .summary = "LayerNorm / GroupNorm weights and biases",
    .aliases = ln_aliases,
    .n_aliases = 1,
    .select = ln_select,
    .saved_key = ln_saved_key,
    .presets = ln_presets,
    .n_presets = 1,
};

const vkp_peft_method_def vkp_method_full = {
    .id = VKP_PEFT_FULL,
    .name = "full",
    .peft_type = "VKPEFT_FULL",
    .level = VKP_PEFT_LEVEL_SELECTIVE,
    .summary = "every base parameter (full fine-tuning)",
    .select = full_select,
    .presets = full_presets,
    .n_presets = 1,
};

const vkp_peft_method_def vkp_method_linear_probe = {
    .id = VKP_PEFT_LINEAR_PROBE,
    .name = "linear_probe",
    .peft_type = "VKPEFT_LINEAR_PROBE",
    .level = VKP_PEFT_LEVEL_SELECTIVE,
    .summary = "nothing but modules_to_save (a new head on a frozen model)",
    .aliases = probe_aliases,
    .n_aliases = 1,
    .presets = probe_presets,
    .n_presets = 1,
};
