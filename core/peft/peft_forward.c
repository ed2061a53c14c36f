// peft_forward.c — the nn hooks (vkp_nn.h) of the PEFT layer: for a module with adapters, run
// each active slot's method hooks around the plain layer (see vkp_peft_weight_call for the order
// at weight level). Several adapters on one module apply in the order of the module's slot list.
#include <stdio.h>

#include "peft_internal.h"

vkp_tensor *vkp_peft_channel_vector(vkp_model *m, vkp_tensor *v, bool conv) {
  if (!v) return NULL;
  int64_t n = vkp_tensor_numel(v);
  return conv ? vkp_reshape(m->graph, v, 4, (int64_t[]){1, n, 1, 1}) : vkp_reshape(m->graph, v, 1, &n);
}

uint32_t vkp_peft_salt(const vkp_adapter_slot *s) {
  uint32_t h = 2166136261u;
  for (const char *c = s->module->name; *c; c++) h = (h ^ (uint8_t)*c) * 16777619u;
  return h;
}

static vkp_tensor *weight_hook(vkp_model *m, vkp_module *mod, vkp_tensor *x, int stride, int padding) {
  vkp_peft_weight_call c = {.m = m, .g = m->graph, .mod = mod, .conv = mod->kind == VKP_MODULE_CONV2D, .stride = stride,
                            .padding = padding, .x = x, .W = vkp_param_tensor(m, mod->weight),
                            .b = mod->bias ? vkp_param_tensor(m, mod->bias) : NULL};
  for (vkp_adapter_slot *s = mod->slots; s; s = s->next)
    if (vkp_slot_active(s) && s->adapter->def->weight_pre) s->adapter->def->weight_pre(&c, s);
  c.y = vkp_nn_weight_base(m, mod, c.x, c.W, c.defer_bias ? NULL : c.b, stride, padding);
  for (vkp_adapter_slot *s = mod->slots; s; s = s->next)
    if (vkp_slot_active(s) && s->adapter->def->weight_post) s->adapter->def->weight_post(&c, s);
  if (c.out_scale) {
    c.y = vkp_mul(c.g, c.y, c.out_scale);
    if (c.b) c.y = vkp_add(c.g, c.y, c.conv ? vkp_peft_channel_vector(m, c.b, true) : c.b);
  }
  for (vkp_adapter_slot *s = mod->slots; s; s = s->next)
    if (vkp_slot_active(s) && s->adapter->def->weight_final) s->adapter->def->weight_final(&c, s);
  return c.y;
}

// Prefix keys/values (n_prefix of them, in front) are visible to every query: the mask gets
// n_prefix zero columns in front; a causal rule (query i sees keys j <= i, top-left aligned as
// vkp_attention) is kept by putting n_prefix dummy queries in front, so query i + n_prefix sees
// keys j' <= i + n_prefix: all prefixes and the model's keys j <= i. Their output rows are dropped.
static vkp_tensor *attention_hook(vkp_model *m, vkp_module *attn, vkp_tensor *q, vkp_tensor *k, vkp_tensor *v,
                                  vkp_tensor *mask, bool causal) {
  vkp_graph *g = m->graph;
  vkp_peft_attn_call c = {.m = m, .g = g, .attn = attn, .k = k, .v = v};
  for (vkp_adapter_slot *s = attn->slots; s && c.k && c.v; s = s->next)
    if (vkp_slot_active(s) && s->adapter->def->attention) s->adapter->def->attention(&c, s);
  int64_t P = c.n_prefix;
  if (P == 0 || !q || !c.k) return vkp_attention(g, q, c.k, c.v, mask, causal, 0.0f);
  int64_t B = q->shape[0], H = q->shape[1], Tq = q->shape[2], D = q->shape[3];
  if (mask) {   // (Bm, 1, Rm, Tk) -> (Bm, 1, Rm, P + Tk), then (Bm, 1, P + Tq, P + Tk) for causal row masks
    mask = vkp_contiguous(g, vkp_cast_f32(g, mask));
    if (!mask) return NULL;
    int64_t Bm = mask->shape[0], Rm = mask->shape[2];
    mask = vkp_concat(g, vkp_fill(g, VKP_DTYPE_F32, 4, (int64_t[]){Bm, 1, Rm, P}, 0.0f), mask, 3);
    if (causal && Rm > 1)
      mask = vkp_concat(g, vkp_fill(g, VKP_DTYPE_F32, 4, (int64_t[]){Bm, 1, P, c.k->shape[2]}, 0.0f), mask, 2);
  }
  if (!causal) return vkp_attention(g, q, c.k, c.v, mask, false, 0.0f);
  q = vkp_concat(g, vkp_fill(g, VKP_DTYPE_F32, 4, (int64_t[]){B, H, P, D}, 0.0f), vkp_contiguous(g, q), 2);
  vkp_tensor *o = vkp_attention(g, q, c.k, c.v, mask, true, 0.0f);
  return vkp_contiguous(g, vkp_slice(g, o, 2, P, Tq));
}

static vkp_tensor *block_hook(vkp_model *m, vkp_module *block, int site, vkp_tensor *h, vkp_tensor *in) {
  for (vkp_adapter_slot *s = block->slots; s; s = s->next)
    if (vkp_slot_active(s) && (s->site & site) && s->adapter->def->block) h = s->adapter->def->block(m, s, site, h, in);
  return h;
}

static vkp_tensor *prompts_hook(vkp_model *m, vkp_module *block, vkp_tensor *x, int n_special) {
  for (vkp_adapter_slot *s = block->slots; s && x; s = s->next)
    if (vkp_slot_active(s) && s->adapter->def->prompts) x = s->adapter->def->prompts(m, s, x, n_special);
  return x;
}

const vkp_nn_hooks vkp_peft_nn_hooks = {
    .weight = weight_hook, .attention = attention_hook, .block = block_hook, .prompts = prompts_hook};
