// nn.c — layer calls with the PEFT hooks.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "peft_internal.h"
#include "vkp_nn.h"

static vkp_tensor *P(vkp_model *m, vkp_param *p) { return vkp_param_tensor(m, p); }

static vkp_tensor *maybe_dropout(vkp_model *m, vkp_tensor *x, float p, uint32_t salt) {
  return m->training && p > 0 ? vkp_dropout(m->graph, x, p, salt) : x;
}

static uint32_t salt_of(const vkp_adapter_slot *s) {
  uint32_t h = 2166136261u;
  for (const char *c = s->module->name; *c; c++) h = (h ^ (uint8_t)*c) * 16777619u;
  return h;
}

// Delta weight of a weight-level slot, shaped like the module's weight (already scaled), or NULL
// for methods applied on activations.
vkp_tensor *vkp_slot_delta_weight(vkp_model *m, vkp_adapter_slot *s);
vkp_tensor *vkp_slot_delta_weight(vkp_model *m, vkp_adapter_slot *s) {
  vkp_graph *g = m->graph;
  vkp_module *mod = s->module;
  vkp_tensor *W = P(m, mod->weight), *d = NULL;
  if (!W) return NULL;
  switch (s->adapter->cfg.method) {
    case VKP_PEFT_LOHA: {
      vkp_tensor *w1 = vkp_matmul(g, P(m, s->p[0]), P(m, s->p[1]), false, false);
      vkp_tensor *w2 = vkp_matmul(g, P(m, s->p[2]), P(m, s->p[3]), false, false);
      d = vkp_mul(g, w1, w2);
      break;
    }
    case VKP_PEFT_LOKR: {
      vkp_tensor *w1 = P(m, s->p[0]), *w2 = s->lowrank ? vkp_matmul(g, P(m, s->p[1]), P(m, s->p[2]), false, false)
                                                       : P(m, s->p[1]);   // conv: (c, in_n*kh*kw)
      if (!w1 || !w2) return NULL;
      int64_t a = w1->shape[0], b = w1->shape[1], c = w2->shape[0], e = vkp_tensor_numel(w2) / c;
      vkp_tensor *k = vkp_mul(g, vkp_reshape(g, w1, 4, (int64_t[]){a, 1, b, 1}), vkp_reshape(g, w2, 4, (int64_t[]){1, c, 1, e}));
      d = vkp_reshape(g, k, 2, (int64_t[]){a * c, b * e});
      break;
    }
    case VKP_PEFT_LORA:   // merged form (used by DoRA's norm): B @ A
      d = vkp_matmul(g, vkp_reshape(g, P(m, s->p[1]), 2, (int64_t[]){mod->out, s->adapter->cfg.r}),
                     vkp_reshape(g, P(m, s->p[0]), 2, (int64_t[]){s->adapter->cfg.r, -1}), false, false);
      break;
    default:
      return NULL;
  }
  d = vkp_scale(g, d, vkp_slot_scale(s));
  return vkp_reshape(g, d, W->ndim, W->shape);
}

vkp_tensor *vkp_sparse_delta_apply(vkp_model *m, vkp_adapter_slot *s, vkp_tensor *W);   // peft_masked.c

static bool is_weight_delta(vkp_peft_method meth) {
  return meth == VKP_PEFT_LOHA || meth == VKP_PEFT_LOKR || meth == VKP_PEFT_MASKED;
}

// Shared body of linear and conv2d: `base` applies the (possibly adapted) weight to an input.
typedef vkp_tensor *(*apply_fn)(vkp_model *m, vkp_module *mod, vkp_tensor *x, vkp_tensor *W, vkp_tensor *b, int stride,
                                int padding);

static vkp_tensor *apply_linear(vkp_model *m, vkp_module *mod, vkp_tensor *x, vkp_tensor *W, vkp_tensor *b, int stride,
                                int padding) {
  (void)mod, (void)stride, (void)padding;
  return vkp_linear(m->graph, x, W, b);
}

static vkp_tensor *apply_conv(vkp_model *m, vkp_module *mod, vkp_tensor *x, vkp_tensor *W, vkp_tensor *b, int stride,
                              int padding) {
  (void)mod;
  return vkp_conv2d(m->graph, x, W, b, stride, padding);
}

// Broadcast shape of a per-channel vector for an activation: (C) on the last dim for linear,
// (1, C, 1, 1) for conv.
static vkp_tensor *channel_vector(vkp_model *m, vkp_tensor *v, bool conv) {
  int64_t n = vkp_tensor_numel(v);
  return conv ? vkp_reshape(m->graph, v, 4, (int64_t[]){1, n, 1, 1}) : vkp_reshape(m->graph, v, 1, &n);
}

static vkp_tensor *weight_layer(vkp_model *m, vkp_module *mod, vkp_tensor *x, int stride, int padding, apply_fn apply) {
  vkp_graph *g = m->graph;
  bool conv = mod->kind == VKP_MODULE_CONV2D;
  vkp_tensor *W = P(m, mod->weight), *b = mod->bias ? P(m, mod->bias) : NULL;
  vkp_tensor *xin = x;
  bool dora = false;
  // (IA)^3 on the input side, weight deltas folded into W.
  for (vkp_adapter_slot *s = mod->slots; s; s = s->next) {
    if (!vkp_slot_active(s)) continue;
    vkp_peft_method meth = s->adapter->cfg.method;
    if (meth == VKP_PEFT_IA3 && mod->feedforward) {
      vkp_tensor *l = channel_vector(m, P(m, s->p[0]), conv);
      if (s->adapter->scale != 1.0f) l = vkp_affine(g, l, s->adapter->scale, 1.0f - s->adapter->scale);
      xin = vkp_mul(g, xin, l);
    } else if (meth == VKP_PEFT_MASKED) {
      W = vkp_sparse_delta_apply(m, s, W);
    } else if (is_weight_delta(meth)) {
      W = vkp_add(g, W, vkp_slot_delta_weight(m, s));
    } else if (meth == VKP_PEFT_LORA && s->adapter->cfg.use_dora) {
      dora = true;
    }
  }
  vkp_tensor *y = apply(m, mod, xin, W, dora ? NULL : b, stride, padding);
  vkp_tensor *dora_scale = NULL;
  for (vkp_adapter_slot *s = mod->slots; s; s = s->next) {
    if (!vkp_slot_active(s)) continue;
    const vkp_peft_config *c = &s->adapter->cfg;
    if (c->method == VKP_PEFT_LORA) {
      vkp_tensor *xd = maybe_dropout(m, xin, c->dropout, salt_of(s));
      vkp_tensor *A = P(m, s->p[0]), *B = P(m, s->p[1]);
      vkp_tensor *h = conv ? vkp_conv2d(g, vkp_conv2d(g, xd, A, NULL, stride, padding), B, NULL, 1, 0)
                           : vkp_linear(g, vkp_linear(g, xd, A, NULL), B, NULL);
      h = vkp_scale(g, h, vkp_slot_scale(s));
      if (c->use_dora) {
        // DoRA (peft): y = m / ||W + s·BA||_row ⊙ (W x + s·B A x) + b, the norm detached.
        vkp_tensor *Wm = vkp_add(g, P(m, mod->weight), vkp_slot_delta_weight(m, s));
        vkp_tensor *W2 = vkp_reshape(g, Wm, 2, (int64_t[]){mod->out, -1});
        vkp_tensor *norm = vkp_detach(g, vkp_sqrt(g, vkp_sum_axis(g, vkp_sqr(g, W2), 1)));
        vkp_tensor *mag = vkp_reshape(g, P(m, s->p[2]), 2, (int64_t[]){mod->out, 1});
        vkp_tensor *sc = vkp_div(g, mag, norm);   // (out, 1)
        if (s->adapter->scale != 1.0f) sc = vkp_affine(g, sc, s->adapter->scale, 1.0f - s->adapter->scale);
        dora_scale = channel_vector(m, sc, conv);
      }
      y = vkp_add(g, y, h);
    } else if (c->method == VKP_PEFT_VERA) {
      vkp_adapter *a = s->adapter;
      int64_t r = c->r;
      vkp_tensor *A = vkp_contiguous(g, vkp_slice(g, P(m, a->vera_A), 1, 0, mod->in));
      vkp_tensor *B = vkp_contiguous(g, vkp_slice(g, P(m, a->vera_B), 0, 0, mod->out));
      vkp_tensor *xd = maybe_dropout(m, xin, c->dropout, salt_of(s));
      vkp_tensor *h = vkp_mul(g, vkp_linear(g, xd, A, NULL), vkp_reshape(g, P(m, s->p[0]), 1, &r));
      h = vkp_mul(g, vkp_linear(g, h, B, NULL), P(m, s->p[1]));
      y = vkp_add(g, y, vkp_scale(g, h, vkp_slot_scale(s)));
    }
  }
  if (dora_scale) {
    y = vkp_mul(g, y, dora_scale);
    if (b) y = vkp_add(g, y, conv ? channel_vector(m, b, true) : b);
  }
  for (vkp_adapter_slot *s = mod->slots; s; s = s->next) {   // (IA)^3 on the output side (bias included)
    if (!vkp_slot_active(s) || s->adapter->cfg.method != VKP_PEFT_IA3 || mod->feedforward) continue;
    vkp_tensor *l = channel_vector(m, P(m, s->p[0]), conv);
    if (s->adapter->scale != 1.0f) l = vkp_affine(g, l, s->adapter->scale, 1.0f - s->adapter->scale);
    y = vkp_mul(g, y, l);
  }
  return y;
}

vkp_tensor *vkp_nn_linear(vkp_model *m, vkp_module *mod, vkp_tensor *x) {
  if (!mod) {
    vkp_graph_fail(m->graph, VKP_ERR_INVALID, "linear: module is NULL");
    return NULL;
  }
  return weight_layer(m, mod, x, 1, 0, apply_linear);
}

vkp_tensor *vkp_nn_conv2d(vkp_model *m, vkp_module *mod, vkp_tensor *x, int stride, int padding) {
  if (!mod) {
    vkp_graph_fail(m->graph, VKP_ERR_INVALID, "conv2d: module is NULL");
    return NULL;
  }
  return weight_layer(m, mod, x, stride, padding, apply_conv);
}

vkp_tensor *vkp_nn_layer_norm(vkp_model *m, vkp_module *mod, vkp_tensor *x, float eps) {
  return vkp_layer_norm(m->graph, x, mod->weight ? P(m, mod->weight) : NULL, mod->bias ? P(m, mod->bias) : NULL, eps);
}

vkp_tensor *vkp_nn_group_norm(vkp_model *m, vkp_module *mod, vkp_tensor *x, int groups, float eps) {
  return vkp_group_norm(m->graph, x, groups, mod->weight ? P(m, mod->weight) : NULL, mod->bias ? P(m, mod->bias) : NULL,
                        eps);
}

vkp_tensor *vkp_nn_embedding(vkp_model *m, vkp_module *mod, vkp_tensor *ids) {
  return vkp_embedding(m->graph, P(m, mod->weight), ids);
}

// (P, C) learned tokens -> (B, H, P, D) broadcast over the batch.
static vkp_tensor *prefix_heads(vkp_model *m, vkp_tensor *p, int64_t B, int64_t H, int64_t D) {
  vkp_graph *g = m->graph;
  int64_t n = p->shape[0];
  vkp_tensor *t = vkp_permute(g, vkp_reshape(g, p, 4, (int64_t[]){1, n, H, D}), (int[]){0, 2, 1, 3});
  vkp_tensor *zeros = vkp_fill(g, VKP_DTYPE_F32, 4, (int64_t[]){B, H, n, D}, 0.0f);
  return vkp_add(g, zeros, t);
}

vkp_tensor *vkp_nn_attention(vkp_model *m, vkp_module *attn, vkp_tensor *q, vkp_tensor *k, vkp_tensor *v,
                             vkp_tensor *mask, bool causal) {
  vkp_graph *g = m->graph;
  for (vkp_adapter_slot *s = attn ? attn->slots : NULL; s && k && v; s = s->next) {
    if (!vkp_slot_active(s) || s->adapter->cfg.method != VKP_PEFT_PREFIX) continue;
    int64_t B = k->shape[0], H = k->shape[1], D = k->shape[3];
    k = vkp_concat(g, prefix_heads(m, P(m, s->p[0]), B, H, D), vkp_contiguous(g, k), 2);
    v = vkp_concat(g, prefix_heads(m, P(m, s->p[1]), B, H, D), vkp_contiguous(g, v), 2);
    if (mask || causal) {
      vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "prefix tuning with attention masks is not supported yet");
      return NULL;
    }
  }
  return vkp_attention(g, q, k, v, mask, causal, 0.0f);
}

vkp_tensor *vkp_nn_block_adapter(vkp_model *m, vkp_module *block, int site, vkp_tensor *h, vkp_tensor *mlp_in) {
  vkp_graph *g = m->graph;
  if (!block) return h;
  for (vkp_adapter_slot *s = block->slots; s; s = s->next) {
    if (!vkp_slot_active(s) || !(s->site & site)) continue;
    vkp_peft_method meth = s->adapter->cfg.method;
    if (meth != VKP_PEFT_BOTTLENECK && meth != VKP_PEFT_ADAPTFORMER) continue;
    vkp_tensor *src = meth == VKP_PEFT_ADAPTFORMER ? mlp_in : h;
    if (!src) continue;
    vkp_tensor *z = vkp_linear(g, src, P(m, s->p[0]), P(m, s->p[1]));
    z = meth == VKP_PEFT_ADAPTFORMER ? vkp_relu(g, z) : vkp_gelu(g, z);
    z = vkp_linear(g, z, P(m, s->p[2]), P(m, s->p[3]));
    h = vkp_add(g, h, vkp_scale(g, z, vkp_slot_scale(s)));
  }
  return h;
}

vkp_tensor *vkp_nn_prompts(vkp_model *m, vkp_module *block, vkp_tensor *x, int n_special) {
  vkp_graph *g = m->graph;
  if (!block || !x) return x;
  for (vkp_adapter_slot *s = block->slots; s; s = s->next) {
    if (!vkp_slot_active(s) || s->adapter->cfg.method != VKP_PEFT_VPT) continue;
    vkp_tensor *p = P(m, s->p[0]);
    int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2], n = p->shape[0];
    vkp_tensor *prompts = vkp_add(g, vkp_fill(g, VKP_DTYPE_F32, 3, (int64_t[]){B, n, C}, 0.0f), p);
    if (s->adapter->scale != 1.0f) prompts = vkp_scale(g, prompts, s->adapter->scale);
    bool first = s->adapter->slots[0] == s;
    vkp_tensor *head = vkp_contiguous(g, vkp_slice(g, x, 1, 0, n_special));
    int64_t skip = first ? 0 : n;   // later blocks replace the previous prompts
    vkp_tensor *tail = vkp_contiguous(g, vkp_slice(g, x, 1, n_special + skip, T - n_special - skip));
    x = vkp_concat(g, vkp_concat(g, head, prompts, 1), tail, 1);
  }
  return x;
}
