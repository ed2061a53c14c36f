// method_prompt.c — sequence-level methods:
//   vpt     visual prompt tuning (Jia et al.): n learned tokens inserted after the leading special
//           tokens at the input of the first block (shallow), or of every block, each replacing the
//           previous block's prompts (deep). File: <block>.prompt_embeddings (n, C).
//   prefix  prefix tuning (Li & Liang): n learned keys and values per attention (self-attention by
//           default; a cross-attention when targeted), in front of the model's own, visible to every
//           query under any mask or causal rule. Files: <attention>.prefix_keys, .prefix_values (n, C).
#include <math.h>
#include <stddef.h>

#include "peft_internal.h"

static const vkp_peft_suffix vpt_suffixes[] = {{"prompt_embeddings", "prompt_embeddings.%s"}};
static const vkp_peft_suffix prefix_suffixes[] = {{"prefix_keys", "prefix_keys.%s"}, {"prefix_values", "prefix_values.%s"}};

static const vkp_peft_suffix *vpt_suffix(const vkp_adapter_slot *s, int *n) {
  (void)s;
  *n = 1;
  return vpt_suffixes;
}

static const vkp_peft_suffix *prefix_suffix(const vkp_adapter_slot *s, int *n) {
  (void)s;
  *n = 2;
  return prefix_suffixes;
}

static const vkp_json_field vpt_fields[] = {
    {"num_tokens", VKP_JSON_INT, offsetof(vkp_peft_config, n_tokens), .lo = 1, .hi = 4096, .def = 10, .flags = VKP_JSON_KEEP},
    {"num_virtual_tokens", VKP_JSON_INT, offsetof(vkp_peft_config, n_tokens), .lo = 1, .hi = 4096, .def = 10,
     .flags = VKP_JSON_KEEP | VKP_PEFT_FIELD_READ_ONLY},
    {"deep", VKP_JSON_BOOL, offsetof(vkp_peft_config, deep), .flags = VKP_JSON_KEEP},
};
static const vkp_json_field prefix_fields[] = {
    {"num_virtual_tokens", VKP_JSON_INT, offsetof(vkp_peft_config, n_tokens), .lo = 1, .hi = 4096, .def = 10,
     .flags = VKP_JSON_KEEP},
    {"num_tokens", VKP_JSON_INT, offsetof(vkp_peft_config, n_tokens), .lo = 1, .hi = 4096, .def = 10,
     .flags = VKP_JSON_KEEP | VKP_PEFT_FIELD_READ_ONLY},
};

// ---- VPT ------------------------------------------------------------------------------------

static bool vpt_fits(const vkp_peft_config *c, const vkp_module *mod) {
  (void)c;   // a block that runs on a token sequence (has an attention site)
  return mod->kind == VKP_MODULE_BLOCK && (vkp_nn_block_sites(mod) & (VKP_NN_AFTER_ATTN | VKP_NN_AFTER_CROSS_ATTN));
}

static bool any(const vkp_peft_config *c, const vkp_module *mod) {
  (void)c, (void)mod;
  return true;
}

static int vpt_max_modules(const vkp_peft_config *c) { return c->deep ? 0 : 1; }   // shallow: the first block

static vkp_status vpt_create(vkp_model *m, vkp_adapter_slot *s, uint64_t seed) {
  const vkp_peft_config *c = &s->adapter->cfg;
  s->scaling = 1.0f;
  int64_t shape[2] = {c->n_tokens, s->module->in};
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 2, shape));
  return vkp_peft_init_uniform(m, s->p[0], sqrtf(6.0f / (float)(s->module->in + c->n_tokens)), seed);
}

static vkp_tensor *vpt_prompts(vkp_model *m, vkp_adapter_slot *s, vkp_tensor *x, int n_special) {
  vkp_graph *g = m->graph;
  vkp_tensor *p = vkp_param_tensor(m, s->p[0]);
  if (!p) return NULL;
  int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2], n = p->shape[0];
  vkp_tensor *prompts = vkp_add(g, vkp_fill(g, VKP_DTYPE_F32, 3, (int64_t[]){B, n, C}, 0.0f), p);
  if (s->adapter->scale != 1.0f) prompts = vkp_scale(g, prompts, s->adapter->scale);
  bool first = s->adapter->slots[0] == s;
  vkp_tensor *head = vkp_contiguous(g, vkp_slice(g, x, 1, 0, n_special));
  int64_t skip = first ? 0 : n;   // later blocks replace the previous prompts
  vkp_tensor *tail = vkp_contiguous(g, vkp_slice(g, x, 1, n_special + skip, T - n_special - skip));
  return vkp_concat(g, vkp_concat(g, head, prompts, 1), tail, 1);
}

static const vkp_peft_alias vpt_aliases[] = {{"vpt_deep", "{\"deep\": true}"}, {"vpt_shallow", "{\"deep\": false}"}};
static const vkp_peft_preset vpt_presets[] = {
    {"vpt_shallow", "{\"method\":\"vpt\",\"num_tokens\":10,\"modules_to_save\":[\"@head\"]}", false},
    {"vpt_deep", "{\"method\":\"vpt\",\"num_tokens\":10,\"deep\":true,\"modules_to_save\":[\"@head\"]}", false},
};

const vkp_peft_method_def vkp_method_vpt = {
    .id = VKP_PEFT_VPT,
    .name = "vpt",
    .peft_type = "VKPEFT_VPT",
    .level = VKP_PEFT_LEVEL_SEQUENCE,
    .summary = "learned prompt tokens at the input of the first block (shallow) or of every block (deep)",
    .aliases = vpt_aliases,
    .n_aliases = 2,
    .fields = vpt_fields,
    .n_fields = sizeof vpt_fields / sizeof *vpt_fields,
    .fits = vpt_fits,
    .default_target = any,
    .max_modules = vpt_max_modules,
    .create = vpt_create,
    .suffixes = vpt_suffix,
    .prompts = vpt_prompts,
    .presets = vpt_presets,
    .n_presets = 2,
};

// ---- prefix -----------------------------------------------------------------------------------

static bool prefix_fits(const vkp_peft_config *c, const vkp_module *mod) {
  (void)c;
  return mod->kind == VKP_MODULE_ATTENTION;
}

static bool self_attention(const vkp_peft_config *c, const vkp_module *mod) {
  (void)c;
  return !mod->cross;
}

static vkp_status prefix_create(vkp_model *m, vkp_adapter_slot *s, uint64_t seed) {
  const vkp_peft_config *c = &s->adapter->cfg;
  s->scaling = 1.0f;
  int64_t shape[2] = {c->n_tokens, s->module->in};
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 2, shape));
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 2, shape));
  VKP_TRY(vkp_param_init_normal(m, s->p[0], 0.02f, seed));
  return vkp_param_init_normal(m, s->p[1], 0.02f, seed + 1);
}

// (P, C) learned tokens -> (B, H, P, D) broadcast over the batch.
static vkp_tensor *prefix_heads(vkp_graph *g, vkp_tensor *p, int64_t B, int64_t H, int64_t D) {
  if (!p) return NULL;
  int64_t n = p->shape[0];
  vkp_tensor *t = vkp_permute(g, vkp_reshape(g, p, 4, (int64_t[]){1, n, H, D}), (int[]){0, 2, 1, 3});
  vkp_tensor *zeros = vkp_fill(g, VKP_DTYPE_F32, 4, (int64_t[]){B, H, n, D}, 0.0f);
  return vkp_add(g, zeros, t);
}

static void prefix_attention(vkp_peft_attn_call *c, vkp_adapter_slot *s) {
  vkp_graph *g = c->g;
  int64_t B = c->k->shape[0], H = c->k->shape[1], D = c->k->shape[3];
  c->k = vkp_concat(g, prefix_heads(g, vkp_param_tensor(c->m, s->p[0]), B, H, D), vkp_contiguous(g, c->k), 2);
  c->v = vkp_concat(g, prefix_heads(g, vkp_param_tensor(c->m, s->p[1]), B, H, D), vkp_contiguous(g, c->v), 2);
  c->n_prefix += s->p[0]->shape[0];
}

static const vkp_peft_alias prefix_aliases[] = {{"prefix_tuning", NULL}};
static const vkp_peft_preset prefix_presets[] = {
    {"prefix", "{\"method\":\"prefix\",\"num_virtual_tokens\":10,\"modules_to_save\":[\"@head\"]}", false},
};

const vkp_peft_method_def vkp_method_prefix = {
    .id = VKP_PEFT_PREFIX,
    .name = "prefix",
    .peft_type = "VKPEFT_PREFIX",
    .level = VKP_PEFT_LEVEL_SEQUENCE,
    .summary = "learned keys and values in front of every (self-)attention's own",
    .aliases = prefix_aliases,
    .n_aliases = 1,
    .fields = prefix_fields,
    .n_fields = sizeof prefix_fields / sizeof *prefix_fields,
    .fits = prefix_fits,
    .default_target = self_attention,
    .create = prefix_create,
    .suffixes = prefix_suffix,
    .attention = prefix_attention,
    .presets = prefix_presets,
    .n_presets = 1,
};
