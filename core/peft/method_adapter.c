// method_adapter.c — block-level adapters at the sites a block offers (vkp_nn_block_adapter):
//   bottleneck   h += s · up(gelu(down(h))) (Houlsby et al.): Houlsby places one after the MLP and
//                one after each attention (self, cross) of a transformer block; Pfeiffer after the
//                MLP only; on a ResNet-style block (site VKP_NN_AFTER_BLOCK) one on the block's
//                branch output, over its channels.
//   adaptformer  mlp_out += s · up(relu(down(mlp_in))) (Chen et al.): parallel to the MLP.
// down (bn, C) + bias, up (C, bn) + bias, C = the block's width; up starts at zero (identity).
// Files: <block>.adapter_{down,up}.{weight,bias}, attn_adapter_* (after self-attention),
// cross_attn_adapter_* (after cross-attention).
#include <math.h>
#include <stddef.h>

#include "peft_internal.h"

static const vkp_peft_suffix mlp_suffixes[] = {{"adapter_down.weight", "adapter_down.%s.weight"},
                                               {"adapter_down.bias", "adapter_down.%s.bias"},
                                               {"adapter_up.weight", "adapter_up.%s.weight"},
                                               {"adapter_up.bias", "adapter_up.%s.bias"}};
static const vkp_peft_suffix attn_suffixes[] = {{"attn_adapter_down.weight", "attn_adapter_down.%s.weight"},
                                                {"attn_adapter_down.bias", "attn_adapter_down.%s.bias"},
                                                {"attn_adapter_up.weight", "attn_adapter_up.%s.weight"},
                                                {"attn_adapter_up.bias", "attn_adapter_up.%s.bias"}};
static const vkp_peft_suffix cross_suffixes[] = {{"cross_attn_adapter_down.weight", "cross_attn_adapter_down.%s.weight"},
                                                 {"cross_attn_adapter_down.bias", "cross_attn_adapter_down.%s.bias"},
                                                 {"cross_attn_adapter_up.weight", "cross_attn_adapter_up.%s.weight"},
                                                 {"cross_attn_adapter_up.bias", "cross_attn_adapter_up.%s.bias"}};

static const vkp_peft_suffix *adapter_suffixes(const vkp_adapter_slot *s, int *n) {
  *n = 4;
  return s->site == VKP_NN_AFTER_ATTN ? attn_suffixes : s->site == VKP_NN_AFTER_CROSS_ATTN ? cross_suffixes : mlp_suffixes;
}

static const vkp_json_choice placements[] = {{"houlsby", 0}, {"pfeiffer", 1}, {NULL, 0}};

static const vkp_json_field bottleneck_fields[] = {
    {"bottleneck", VKP_JSON_INT, offsetof(vkp_peft_config, bottleneck), .lo = 1, .hi = 65536, .def = 64, .flags = VKP_JSON_KEEP},
    {"adapter_scale", VKP_JSON_FLOAT, offsetof(vkp_peft_config, adapter_scale), .def = 1, .flags = VKP_JSON_KEEP},
    {"placement", VKP_JSON_ENUM, offsetof(vkp_peft_config, pfeiffer), .size = 1, .choices = placements, .flags = VKP_JSON_KEEP},
    {"init_weights", VKP_JSON_BOOL, offsetof(vkp_peft_config, init_weights), .def = 1, .flags = VKP_JSON_KEEP},
};
static const vkp_json_field adaptformer_fields[] = {
    {"bottleneck", VKP_JSON_INT, offsetof(vkp_peft_config, bottleneck), .lo = 1, .hi = 65536, .def = 64, .flags = VKP_JSON_KEEP},
    {"adapter_scale", VKP_JSON_FLOAT, offsetof(vkp_peft_config, adapter_scale), .def = 0.1, .flags = VKP_JSON_KEEP},
    {"init_weights", VKP_JSON_BOOL, offsetof(vkp_peft_config, init_weights), .def = 1, .flags = VKP_JSON_KEEP},
};

// Bottleneck slots, in creation order: after the MLP first (or the block), then the attentions.
static int bottleneck_sites(const vkp_peft_config *c, const vkp_module *mod, int sites[4]) {
  unsigned bs = vkp_nn_block_sites(mod);
  int n = 0;
  if (bs & VKP_NN_AFTER_MLP) sites[n++] = VKP_NN_AFTER_MLP;
  else if (bs & VKP_NN_AFTER_BLOCK) sites[n++] = VKP_NN_AFTER_BLOCK;
  if (!c->pfeiffer && (bs & VKP_NN_AFTER_ATTN)) sites[n++] = VKP_NN_AFTER_ATTN;
  if (!c->pfeiffer && (bs & VKP_NN_AFTER_CROSS_ATTN)) sites[n++] = VKP_NN_AFTER_CROSS_ATTN;
  return n;
}

static int adaptformer_sites(const vkp_peft_config *c, const vkp_module *mod, int sites[4]) {
  (void)c, (void)mod;
  sites[0] = VKP_NN_AFTER_MLP;
  return 1;
}

static bool bottleneck_fits(const vkp_peft_config *c, const vkp_module *mod) {
  int sites[4];
  return mod->kind == VKP_MODULE_BLOCK && bottleneck_sites(c, mod, sites) > 0;
}

static bool adaptformer_fits(const vkp_peft_config *c, const vkp_module *mod) {
  (void)c;
  return mod->kind == VKP_MODULE_BLOCK && (vkp_nn_block_sites(mod) & VKP_NN_AFTER_MLP);
}

static bool every_block(const vkp_peft_config *c, const vkp_module *mod) {
  (void)c, (void)mod;
  return true;   // fits() has checked the kind
}

static vkp_status create(vkp_model *m, vkp_adapter_slot *s, uint64_t seed) {
  const vkp_peft_config *c = &s->adapter->cfg;
  s->scaling = c->adapter_scale;
  int64_t h = s->module->in, bn = c->bottleneck, down[2] = {bn, h}, up[2] = {h, bn};
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 2, down));
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 1, &bn));
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 2, up));
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 1, &h));
  VKP_TRY(vkp_peft_init_uniform(m, s->p[0], 1.0f / sqrtf((float)h), seed));
  if (!c->init_weights) VKP_TRY(vkp_peft_init_uniform(m, s->p[2], 1.0f / sqrtf((float)bn), seed + 1));   // else zeros: identity
  return VKP_OK;
}

// down -> activation -> up on the last dim, or on dim 1 of an (N, C, H, W) map.
static vkp_tensor *bottleneck_branch(vkp_model *m, vkp_adapter_slot *s, vkp_tensor *src, bool relu) {
  vkp_graph *g = m->graph;
  bool map = src->ndim == 4 && s->site == VKP_NN_AFTER_BLOCK;
  if (map) src = vkp_contiguous(g, vkp_permute(g, src, (int[]){0, 2, 3, 1}));
  vkp_tensor *z = vkp_linear(g, src, vkp_param_tensor(m, s->p[0]), vkp_param_tensor(m, s->p[1]));
  z = relu ? vkp_relu(g, z) : vkp_gelu(g, z);
  z = vkp_linear(g, z, vkp_param_tensor(m, s->p[2]), vkp_param_tensor(m, s->p[3]));
  return map ? vkp_contiguous(g, vkp_permute(g, z, (int[]){0, 3, 1, 2})) : z;
}

static vkp_tensor *bottleneck_block(vkp_model *m, vkp_adapter_slot *s, int site, vkp_tensor *h, vkp_tensor *in) {
  (void)site, (void)in;
  return vkp_add(m->graph, h, vkp_scale(m->graph, bottleneck_branch(m, s, h, false), vkp_slot_scale(s)));
}

static vkp_tensor *adaptformer_block(vkp_model *m, vkp_adapter_slot *s, int site, vkp_tensor *h, vkp_tensor *in) {
  (void)site;
  if (!in) return h;
  return vkp_add(m->graph, h, vkp_scale(m->graph, bottleneck_branch(m, s, in, true), vkp_slot_scale(s)));
}

static const vkp_peft_alias bottleneck_aliases[] = {
    {"houlsby", "{\"placement\": \"houlsby\"}"}, {"pfeiffer", "{\"placement\": \"pfeiffer\"}"}, {"adapter", NULL}};

static const vkp_peft_preset bottleneck_presets[] = {
    {"houlsby", "{\"method\":\"bottleneck\",\"bottleneck\":16,\"placement\":\"houlsby\",\"modules_to_save\":[\"@head\"]}", false},
    {"pfeiffer", "{\"method\":\"bottleneck\",\"bottleneck\":16,\"placement\":\"pfeiffer\",\"modules_to_save\":[\"@head\"]}", false},
};
static const vkp_peft_preset adaptformer_presets[] = {
    {"adaptformer", "{\"method\":\"adaptformer\",\"bottleneck\":16,\"adapter_scale\":0.1,\"modules_to_save\":[\"@head\"]}", false},
};

const vkp_peft_method_def vkp_method_bottleneck = {
    .id = VKP_PEFT_BOTTLENECK,
    .name = "bottleneck",
    .peft_type = "VKPEFT_BOTTLENECK",
    .level = VKP_PEFT_LEVEL_BLOCK,
    .summary = "bottleneck adapters after the attention(s) and MLP (Houlsby) or the MLP only (Pfeiffer)",
    .aliases = bottleneck_aliases,
    .n_aliases = 3,
    .fields = bottleneck_fields,
    .n_fields = sizeof bottleneck_fields / sizeof *bottleneck_fields,
    .fits = bottleneck_fits,
    .default_target = every_block,
    .sites = bottleneck_sites,
    .create = create,
    .suffixes = adapter_suffixes,
    .block = bottleneck_block,
    .presets = bottleneck_presets,
    .n_presets = 2,
};

const vkp_peft_method_def vkp_method_adaptformer = {
    .id = VKP_PEFT_ADAPTFORMER,
    .name = "adaptformer",
    .peft_type = "VKPEFT_ADAPTFORMER",
    .level = VKP_PEFT_LEVEL_BLOCK,
    .summary = "a scaled bottleneck parallel to each block's MLP",
    .fields = adaptformer_fields,
    .n_fields = sizeof adaptformer_fields / sizeof *adaptformer_fields,
    .fits = adaptformer_fits,
    .default_target = every_block,
    .sites = adaptformer_sites,
    .create = create,
    .suffixes = adapter_suffixes,
    .block = adaptformer_block,
    .presets = adaptformer_presets,
    .n_presets = 1,
};
