// method_ia3.c — (IA)^3 (peft IA3Config): a learned vector l per targeted module scales its
// output, y = (W x + b) ⊙ l, or for feedforward_modules its input, y = W (x ⊙ l) + b.
// l (out, 1) / (1, in) on a linear, (1, C, 1, 1) on a conv; starts at ones. A user scale u uses
// l' = u·l + 1 - u (u = 0: the base layer). File: ia3_l.
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "peft_internal.h"

static const vkp_peft_suffix suffixes[] = {{"ia3_l", "ia3_l.%s"}};

static const vkp_peft_suffix *ia3_suffixes(const vkp_adapter_slot *s, int *n) {
  (void)s;
  *n = 1;
  return suffixes;
}

static vkp_status parse_ff(const cJSON *v, const char *where, vkp_peft_config *c, vkp_error *err) {
  return vkp_peft_read_strings(v, where, "feedforward_modules", c->feedforward_modules, &c->n_feedforward_modules, err);
}

static void write_ff(cJSON *j, const vkp_peft_config *c) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < c->n_feedforward_modules; i++) cJSON_AddItemToArray(a, cJSON_CreateString(c->feedforward_modules[i]));
  cJSON_AddItemToObject(j, "feedforward_modules", a);
}

static const vkp_json_field fields[] = {
    {"init_ia3_weights", VKP_JSON_BOOL, offsetof(vkp_peft_config, init_weights), .def = 1, .flags = VKP_JSON_KEEP},
};
static const vkp_peft_key keys[] = {{"feedforward_modules", parse_ff, write_ff}};

static bool fits(const vkp_peft_config *c, const vkp_module *mod) {
  (void)c;
  return mod->kind == VKP_MODULE_LINEAR || mod->kind == VKP_MODULE_CONV2D;
}

static vkp_status create(vkp_model *m, vkp_adapter_slot *s, uint64_t seed) {
  const vkp_peft_config *c = &s->adapter->cfg;
  vkp_module *mod = s->module;
  s->scaling = 1.0f;
  mod->feedforward = vkp_peft_names_match(mod, c->feedforward_modules, c->n_feedforward_modules);
  int64_t ff[4] = {1, mod->in, 1, 1}, o[4] = {mod->out, 1, 1, 1};
  if (mod->kind == VKP_MODULE_CONV2D) {
    int64_t cs[4] = {1, mod->feedforward ? mod->in : mod->out, 1, 1};
    VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 4, cs));
  } else {
    VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 2, mod->feedforward ? ff : o));
  }
  if (c->init_weights) return vkp_param_fill(m, s->p[0], 1.0f);
  return vkp_peft_init_uniform(m, s->p[0], 1.0f, seed);
}

// l' = u·l + 1 - u as a per-channel vector.
static vkp_tensor *scaled_l(vkp_peft_weight_call *c, vkp_adapter_slot *s) {
  vkp_tensor *l = vkp_peft_channel_vector(c->m, vkp_param_tensor(c->m, s->p[0]), c->conv);
  if (s->adapter->scale != 1.0f) l = vkp_affine(c->g, l, s->adapter->scale, 1.0f - s->adapter->scale);
  return l;
}

static void weight_pre(vkp_peft_weight_call *c, vkp_adapter_slot *s) {
  if (c->mod->feedforward) c->x = vkp_mul(c->g, c->x, scaled_l(c, s));
}

static void weight_final(vkp_peft_weight_call *c, vkp_adapter_slot *s) {   // the output side (bias included)
  if (!c->mod->feedforward) c->y = vkp_mul(c->g, c->y, scaled_l(c, s));
}

static vkp_status can_merge(vkp_model *m, const vkp_adapter *a) {
  if (a->scale == 1.0f) return VKP_OK;
  return vkp_error_set(vkp_ctx_err(m->ctx), VKP_ERR_UNSUPPORTED, "adapter '%s': merging a scaled (IA)^3 adapter", a->cfg.name);
}

static vkp_status merge(vkp_model *m, vkp_adapter_slot *s, vkp_peft_merge_call *c, bool merge) {
  vkp_module *mod = c->mod;
  float *l = vkp_peft_read_param(m, s->p[0]);
  if (!l) return VKP_ERR_OOM;
  for (int64_t i = 0; i < c->out; i++)
    for (int64_t j = 0; j < c->cols; j++) {
      // feed-forward: scales input channel j (conv: j / (kh*kw)); else output row i
      double f = mod->feedforward ? l[j / c->k] : l[i];
      c->w[i * c->cols + j] = (float)(merge ? c->w[i * c->cols + j] * f : c->w[i * c->cols + j] / f);
    }
  if (c->b && !mod->feedforward)
    for (int64_t i = 0; i < c->out; i++) c->b[i] = (float)(merge ? c->b[i] * (double)l[i] : c->b[i] / (double)l[i]);
  free(l);
  return VKP_OK;
}

static const vkp_peft_preset presets[] = {
    {"ia3", "{\"method\":\"ia3\",\"target_modules\":[\"@k\",\"@v\",\"@mlp_out\"],\"feedforward_modules\":[\"@mlp_out\"],\"modules_to_save\":[\"@head\"]}", false},
};

const vkp_peft_method_def vkp_method_ia3 = {
    .id = VKP_PEFT_IA3,
    .name = "ia3",
    .peft_type = "IA3",
    .level = VKP_PEFT_LEVEL_WEIGHT,
    .summary = "a learned vector scaling each targeted layer's output (feed-forward layers: its input)",
    .fields = fields,
    .n_fields = 1,
    .keys = keys,
    .n_keys = 1,
    .fits = fits,
    .create = create,
    .suffixes = ia3_suffixes,
    .weight_pre = weight_pre,
    .weight_final = weight_final,
    .can_merge = can_merge,
    .merge = merge,
    .presets = presets,
    .n_presets = 1,
};
