// nn.c — the layer calls (vkp_nn.h): plain layers, or the PEFT hooks for modules with adapters.
#include "vkp_nn.h"

static vkp_tensor *P(vkp_model *m, vkp_param *p) { return p ? vkp_param_tensor(m, p) : NULL; }

static const vkp_nn_hooks *hooks_for(const vkp_model *m, const vkp_module *mod) {
  return mod && mod->slots ? m->nn_hooks : NULL;
}

vkp_tensor *vkp_nn_weight_base(vkp_model *m, vkp_module *mod, vkp_tensor *x, vkp_tensor *W, vkp_tensor *b, int stride,
                               int padding) {
  return mod->kind == VKP_MODULE_CONV2D ? vkp_conv2d(m->graph, x, W, b, stride, padding) : vkp_linear(m->graph, x, W, b);
}

static vkp_tensor *weight_layer(vkp_model *m, vkp_module *mod, vkp_tensor *x, int stride, int padding) {
  const vkp_nn_hooks *h = hooks_for(m, mod);
  if (h && h->weight) return h->weight(m, mod, x, stride, padding);
  return vkp_nn_weight_base(m, mod, x, P(m, mod->weight), P(m, mod->bias), stride, padding);
}

vkp_tensor *vkp_nn_linear(vkp_model *m, vkp_module *mod, vkp_tensor *x) {
  if (!mod) {
    vkp_graph_fail(m->graph, VKP_ERR_INVALID, "linear: module is NULL");
    return NULL;
  }
  return weight_layer(m, mod, x, 1, 0);
}

vkp_tensor *vkp_nn_conv2d(vkp_model *m, vkp_module *mod, vkp_tensor *x, int stride, int padding) {
  if (!mod) {
    vkp_graph_fail(m->graph, VKP_ERR_INVALID, "conv2d: module is NULL");
    return NULL;
  }
  return weight_layer(m, mod, x, stride, padding);
}

vkp_tensor *vkp_nn_layer_norm(vkp_model *m, vkp_module *mod, vkp_tensor *x, float eps) {
  return vkp_layer_norm(m->graph, x, P(m, mod->weight), P(m, mod->bias), eps);
}

vkp_tensor *vkp_nn_group_norm(vkp_model *m, vkp_module *mod, vkp_tensor *x, int groups, float eps) {
  return vkp_group_norm(m->graph, x, groups, P(m, mod->weight), P(m, mod->bias), eps);
}

vkp_tensor *vkp_nn_group_norm_silu(vkp_model *m, vkp_module *mod, vkp_tensor *x, int groups, float eps) {
  return vkp_group_norm_silu(m->graph, x, groups, P(m, mod->weight), P(m, mod->bias), eps);
}

vkp_tensor *vkp_nn_embedding(vkp_model *m, vkp_module *mod, vkp_tensor *ids) {
  return vkp_embedding(m->graph, P(m, mod->weight), ids);
}

vkp_tensor *vkp_nn_attention(vkp_model *m, vkp_module *attn, vkp_tensor *q, vkp_tensor *k, vkp_tensor *v,
                             vkp_tensor *mask, bool causal) {
  const vkp_nn_hooks *h = hooks_for(m, attn);
  if (h && h->attention) return h->attention(m, attn, q, k, v, mask, causal);
  return vkp_attention(m->graph, q, k, v, mask, causal, 0.0f);
}

unsigned vkp_nn_block_sites(const vkp_module *block) {
  return block && block->sites ? block->sites : VKP_NN_TRANSFORMER_SITES;
}

vkp_tensor *vkp_nn_block_adapter(vkp_model *m, vkp_module *block, int site, vkp_tensor *h, vkp_tensor *in) {
  const vkp_nn_hooks *hk = hooks_for(m, block);
  return hk && hk->block ? hk->block(m, block, site, h, in) : h;
}

vkp_tensor *vkp_nn_prompts(vkp_model *m, vkp_module *block, vkp_tensor *x, int n_special) {
  const vkp_nn_hooks *h = hooks_for(m, block);
  return h && h->prompts && x ? h->prompts(m, block, x, n_special) : x;
}
