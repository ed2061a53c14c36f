// clip_forward.c — CLIP's forward pass (both towers, projections, similarity logits, contrastive
// loss) and the host side of its inputs (the pooling one-hot).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_clip.h"
#include "vkp_peft.h"

static vkp_tensor *P(vkp_model *m, vkp_param *p) { return vkp_param_tensor(m, p); }

static vkp_tensor *activation(vkp_graph *g, vkp_clip_act a, vkp_tensor *x) {
  switch (a) {
    case VKP_CLIP_ACT_GELU: return vkp_gelu(g, x);
    case VKP_CLIP_ACT_GELU_TANH: return vkp_gelu_tanh(g, x);
    case VKP_CLIP_ACT_RELU: return vkp_relu(g, x);
    case VKP_CLIP_ACT_QUICK_GELU:
    default: return vkp_mul(g, x, vkp_sigmoid(g, vkp_scale(g, x, 1.702f)));   // x * sigmoid(1.702 x)
  }
}

// CLIPEncoderLayer on x (B, T, C): pre-LN self-attention and MLP with residuals, and the PEFT
// sites (prefix keys/values in the attention, block adapters after attention and after the MLP).
static vkp_tensor *encoder_layer(vkp_model *m, const vkp_clip_layer *L, vkp_tensor *x, vkp_tensor *mask, bool causal,
                                 int64_t H, float eps, vkp_clip_act act) {
  vkp_graph *g = m->graph;
  if (!x) return NULL;
  int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2], D = C / H;
  const int heads[4] = {0, 2, 1, 3};
  vkp_tensor *h = vkp_nn_layer_norm(m, L->ln1, x, eps);
  vkp_tensor *q = vkp_permute(g, vkp_reshape(g, vkp_nn_linear(m, L->q, h), 4, (int64_t[]){B, T, H, D}), heads);
  vkp_tensor *k = vkp_permute(g, vkp_reshape(g, vkp_nn_linear(m, L->k, h), 4, (int64_t[]){B, T, H, D}), heads);
  vkp_tensor *v = vkp_permute(g, vkp_reshape(g, vkp_nn_linear(m, L->v, h), 4, (int64_t[]){B, T, H, D}), heads);
  vkp_tensor *a = vkp_nn_attention(m, L->attention, q, k, v, mask, causal);
  a = vkp_reshape(g, vkp_permute(g, a, heads), 3, (int64_t[]){B, T, C});
  a = vkp_nn_block_adapter(m, L->block, VKP_NN_AFTER_ATTN, vkp_nn_linear(m, L->out, a), NULL);
  x = vkp_add(g, x, a);
  h = vkp_nn_layer_norm(m, L->ln2, x, eps);
  vkp_tensor *f = vkp_nn_linear(m, L->fc2, activation(g, act, vkp_nn_linear(m, L->fc1, h)));
  f = vkp_nn_block_adapter(m, L->block, VKP_NN_AFTER_MLP, f, h);
  return vkp_add(g, x, f);
}

// t with n zeros inserted at index 1 of dim (a per-position input following the prompt tokens
// that vkp_nn_prompts put after the first token).
static vkp_tensor *insert_after_first(vkp_graph *g, vkp_tensor *t, int dim, int64_t n) {
  if (!t) return NULL;
  int64_t shape[VKP_MAX_DIMS], len = t->shape[dim];
  memcpy(shape, t->shape, sizeof shape);
  shape[dim] = n;
  vkp_tensor *head = vkp_contiguous(g, vkp_slice(g, t, dim, 0, 1));
  vkp_tensor *tail = vkp_contiguous(g, vkp_slice(g, t, dim, 1, len - 1));
  return vkp_concat(g, vkp_concat(g, head, vkp_fill(g, VKP_DTYPE_F32, t->ndim, shape, 0.0f), dim), tail, dim);
}

// Prompt tuning across two towers. vkp_nn_prompts inserts an adapter's prompts at the adapter's
// first prompted block and replaces them at every later one; with VPT-deep on both towers the
// other tower's first prompted block is a "later" one and would overwrite real tokens. So there
// the tower first gets placeholder tokens (zeros after the first token) for those prompts to
// replace. Returns the number of placeholders block `l` of `layers` needs.
static int64_t prompt_placeholders(vkp_model *m, const vkp_clip_layer *layers, int l) {
  int64_t n = 0;
  for (int i = 0; i < vkp_peft_count(m); i++) {
    const vkp_adapter *a = vkp_peft_get(m, i);
    if (vkp_adapter_config(a)->method != VKP_PEFT_VPT || vkp_adapter_slot_module(a, 0) == layers[l].block) continue;
    bool here = false, before = false;
    for (int s = 0; vkp_adapter_slot_module(a, s); s++) {
      const vkp_module *mod = vkp_adapter_slot_module(a, s);
      here = here || mod == layers[l].block;
      for (int k = 0; k < l; k++) before = before || mod == layers[k].block;
    }
    if (here && !before) n += vkp_adapter_config(a)->n_tokens;
  }
  return n;
}

// vkp_nn_prompts at block l of a tower (x: (B, T, C) with one leading special token).
static vkp_tensor *prompts(vkp_model *m, const vkp_clip_layer *layers, int l, vkp_tensor *x) {
  int64_t n = x ? prompt_placeholders(m, layers, l) : 0;
  vkp_tensor *xs = n ? insert_after_first(m->graph, x, 1, n) : x;
  vkp_tensor *xp = vkp_nn_prompts(m, layers[l].block, xs, 1);
  return n && xp == xs ? x : xp;   // no prompt active here after all: drop the placeholders
}

// x / ||x|| over the last dim of (B, P).
static vkp_tensor *l2_normalize(vkp_graph *g, vkp_tensor *x) {
  return vkp_div(g, x, vkp_sqrt(g, vkp_sum_axis(g, vkp_sqr(g, x), 1)));
}

static bool is_2d(const vkp_tensor *t, vkp_dtype dt, int64_t B, int64_t T) {
  return t && t->ndim == 2 && t->dtype == dt && t->shape[0] == B && t->shape[1] == T;
}

static vkp_status text_forward(vkp_clip *c, vkp_graph *g, const vkp_clip_inputs *in, vkp_clip_outputs *out) {
  vkp_model *m = c->model;
  const vkp_clip_text_config *tc = &c->cfg.text;
  vkp_tensor *ids = in->input_ids;
  if (!c->cfg.has_text) return vkp_graph_fail(g, VKP_ERR_INVALID, "clip: input_ids given, but the model has no text tower");
  if (ids->ndim != 2 || ids->dtype != VKP_DTYPE_I32)
    return vkp_graph_fail(g, VKP_ERR_SHAPE, "clip: input_ids must be (B, T) int32");
  int64_t B = ids->shape[0], T = ids->shape[1], C = tc->hidden_size;
  if (T < 1 || T > tc->max_position_embeddings)
    return vkp_graph_fail(g, VKP_ERR_SHAPE, "clip: sequence length %lld is outside [1, max_position_embeddings %d]",
                          (long long)T, tc->max_position_embeddings);
  if (!is_2d(in->pool_onehot, VKP_DTYPE_F32, B, T))
    return vkp_graph_fail(g, VKP_ERR_SHAPE, "clip: pool_onehot must be (%lld, %lld) f32", (long long)B, (long long)T);
  if (in->attention_mask && !is_2d(in->attention_mask, VKP_DTYPE_F32, B, T))
    return vkp_graph_fail(g, VKP_ERR_SHAPE, "clip: attention_mask must be (%lld, %lld) f32", (long long)B, (long long)T);
  // Embeddings: tokens + positions 0..T-1.
  vkp_tensor *x = vkp_nn_embedding(m, c->text.token_embedding, ids);
  x = vkp_add(g, x, vkp_slice(g, P(m, c->text.position_embedding->weight), 0, 0, T));
  out->text_hidden[0] = x;
  // Padding mask, additive: log(1) = 0 keeps a token, log(0) = -inf drops it; with the causal mask
  // of the attention kernel, as transformers' create_causal_mask combines them.
  vkp_tensor *mask = in->attention_mask ? vkp_reshape(g, vkp_log(g, in->attention_mask), 4, (int64_t[]){B, 1, 1, T}) : NULL;
  vkp_tensor *pool = vkp_reshape(g, in->pool_onehot, 3, (int64_t[]){B, 1, T});
  for (int l = 0; l < tc->num_hidden_layers; l++) {
    const vkp_clip_layer *L = &c->text.layers[l];
    x = prompts(m, c->text.layers, l, x);   // prompt tokens (if any) follow the start token
    if (x && x->shape[1] != T) {             // the sequence grew: masks and pooling follow it
      int64_t n = x->shape[1] - T;
      mask = insert_after_first(g, mask, 3, n);
      pool = insert_after_first(g, pool, 2, n);
      T = x->shape[1];
    }
    vkp_model_block_begin(m);   // an activation-checkpoint segment when the model asks for it
    x = encoder_layer(m, L, x, mask, true, tc->num_attention_heads, tc->layer_norm_eps, tc->hidden_act);
    vkp_model_block_end(m);
    out->text_hidden[l + 1] = x;
  }
  x = vkp_nn_layer_norm(m, c->text.final_ln, x, tc->layer_norm_eps);
  out->text_last_hidden = x;
  // Pooling as a product with the one-hot: (B, 1, T) . (B, T, C) -> (B, C), differentiable.
  out->text_pooled = vkp_reshape(g, vkp_matmul(g, pool, x, false, false), 2, (int64_t[]){B, C});
  if (c->text_projection) {
    out->text_features = vkp_nn_linear(m, c->text_projection, out->text_pooled);
    out->text_embeds = l2_normalize(g, out->text_features);
  }
  return vkp_graph_status(g);
}

static vkp_status vision_forward(vkp_clip *c, vkp_graph *g, vkp_tensor *px, vkp_clip_outputs *out) {
  vkp_model *m = c->model;
  const vkp_clip_vision_config *vc = &c->cfg.vision;
  if (!c->cfg.has_vision)
    return vkp_graph_fail(g, VKP_ERR_INVALID, "clip: pixel_values given, but the model has no vision tower");
  if (px->ndim != 4 || px->shape[1] != vc->num_channels || px->shape[2] != vc->image_size || px->shape[3] != vc->image_size)
    return vkp_graph_fail(g, VKP_ERR_SHAPE, "clip: pixel_values must be (B, %d, %d, %d)", vc->num_channels, vc->image_size,
                          vc->image_size);
  int64_t B = px->shape[0], C = vc->hidden_size, grid = vc->image_size / vc->patch_size, N = grid * grid;
  // Patches (B, C, g, g) -> (B, N, C), the class embedding in front, plus positions.
  vkp_tensor *x = vkp_nn_conv2d(m, c->vision.patch, px, vc->patch_size, 0);
  x = vkp_transpose(g, vkp_reshape(g, x, 3, (int64_t[]){B, C, N}), 1, 2);
  vkp_tensor *cls = vkp_add(g, vkp_fill(g, VKP_DTYPE_F32, 3, (int64_t[]){B, 1, C}, 0.0f), P(m, c->vision.class_embedding));
  x = vkp_concat(g, cls, vkp_contiguous(g, x), 1);
  x = vkp_add(g, x, P(m, c->vision.position_embedding->weight));
  x = vkp_nn_layer_norm(m, c->vision.pre_ln, x, vc->layer_norm_eps);
  out->vision_hidden[0] = x;
  for (int l = 0; l < vc->num_hidden_layers; l++) {
    const vkp_clip_layer *L = &c->vision.layers[l];
    x = prompts(m, c->vision.layers, l, x);   // after the class token
    vkp_model_block_begin(m);
    x = encoder_layer(m, L, x, NULL, false, vc->num_attention_heads, vc->layer_norm_eps, vc->hidden_act);
    vkp_model_block_end(m);
    out->vision_hidden[l + 1] = x;
  }
  out->vision_last_hidden = x;
  vkp_tensor *first = x ? vkp_reshape(g, vkp_contiguous(g, vkp_slice(g, x, 1, 0, 1)), 2, (int64_t[]){B, C}) : NULL;
  out->vision_pooled = vkp_nn_layer_norm(m, c->vision.post_ln, first, vc->layer_norm_eps);
  if (c->visual_projection) {
    out->image_features = vkp_nn_linear(m, c->visual_projection, out->vision_pooled);
    out->image_embeds = l2_normalize(g, out->image_features);
  }
  return vkp_graph_status(g);
}

// The (n, n) identity as a constant: the first n*n entries of n rows of (1, 0 x n).
static vkp_tensor *identity(vkp_graph *g, int64_t n) {
  vkp_tensor *rows = vkp_concat(g, vkp_fill(g, VKP_DTYPE_F32, 2, (int64_t[]){n, 1}, 1.0f),
                                vkp_fill(g, VKP_DTYPE_F32, 2, (int64_t[]){n, n}, 0.0f), 1);
  vkp_tensor *flat = vkp_reshape(g, rows, 1, (int64_t[]){n * (n + 1)});
  return vkp_reshape(g, vkp_contiguous(g, vkp_slice(g, flat, 0, 0, n * n)), 2, (int64_t[]){n, n});
}

// CLIP's loss: mean cross-entropy of the rows of logits_per_text and of logits_per_image with the
// diagonal as targets, averaged: -(sum(I . log_softmax(Lt)) + sum(I . log_softmax(Li))) / 2n.
static vkp_tensor *contrastive_loss(vkp_graph *g, vkp_tensor *per_text, vkp_tensor *per_image) {
  int64_t n = per_text->shape[0];
  vkp_tensor *eye = identity(g, n);
  vkp_tensor *lt = vkp_sum(g, vkp_mul(g, vkp_log_softmax(g, per_text), eye));
  vkp_tensor *li = vkp_sum(g, vkp_mul(g, vkp_log_softmax(g, per_image), eye));
  return vkp_scale(g, vkp_add(g, lt, li), -0.5f / (float)n);
}

vkp_status vkp_clip_forward(vkp_clip *c, vkp_graph *g, const vkp_clip_inputs *in, vkp_clip_outputs *out) {
  vkp_model *m = c->model;
  memset(out, 0, sizeof *out);
  vkp_model_begin_graph(m, g);
  if (!in->input_ids && !in->pixel_values) return vkp_graph_fail(g, VKP_ERR_INVALID, "clip: neither input_ids nor pixel_values");
  if (in->input_ids) VKP_TRY(text_forward(c, g, in, out));
  if (in->pixel_values) VKP_TRY(vision_forward(c, g, in->pixel_values, out));
  if (out->text_embeds && out->image_embeds && c->logit_scale) {
    vkp_tensor *scale = vkp_exp(g, P(m, c->logit_scale->weight));   // (1), broadcast
    out->logits_per_text = vkp_mul(g, vkp_matmul(g, out->text_embeds, out->image_embeds, false, true), scale);
    out->logits_per_image = vkp_contiguous(g, vkp_transpose(g, out->logits_per_text, 0, 1));
    if (out->text_embeds->shape[0] == out->image_embeds->shape[0])
      out->loss = contrastive_loss(g, out->logits_per_text, out->logits_per_image);
  }
  return vkp_graph_status(g);
}

vkp_tensor *vkp_clip_text_final_norm(vkp_clip *c, vkp_tensor *hidden) {
  if (!c->cfg.has_text) return NULL;
  return vkp_nn_layer_norm(c->model, c->text.final_ln, hidden, c->cfg.text.layer_norm_eps);
}

// ---- inputs -------------------------------------------------------------------------------------

int64_t vkp_clip_pool_index(const vkp_clip_text_config *t, const int32_t *ids, int64_t T) {
  int64_t best = 0;
  if (t->eos_token_id == 2) {   // legacy configs: the end token has the largest id
    for (int64_t i = 1; i < T; i++)
      if (ids[i] > ids[best]) best = i;
    return best;
  }
  for (int64_t i = 0; i < T; i++)
    if (ids[i] == t->eos_token_id) return i;
  return 0;   // no end token: argmax of an all-false row, as transformers
}

void vkp_clip_pool_onehot(const vkp_clip_text_config *t, const int32_t *ids, int64_t B, int64_t T, float *onehot) {
  memset(onehot, 0, (size_t)(B * T) * sizeof *onehot);
  for (int64_t b = 0; b < B; b++) onehot[b * T + vkp_clip_pool_index(t, ids + b * T, T)] = 1.0f;
}

vkp_status vkp_clip_inputs_new(vkp_clip *c, vkp_graph *g, int64_t image_batch, int64_t text_batch, int64_t seq_len,
                               bool with_attention_mask, vkp_clip_inputs *in) {
  memset(in, 0, sizeof *in);
  vkp_error *err = vkp_ctx_err(c->model->ctx);
  if (image_batch > 0) {
    if (!c->cfg.has_vision) return vkp_error_set(err, VKP_ERR_INVALID, "clip: images given, but the model has no vision tower");
    const vkp_clip_vision_config *v = &c->cfg.vision;
    in->pixel_values = vkp_tensor_input(g, "pixel_values", VKP_DTYPE_F32, 4,
                                        (int64_t[]){image_batch, v->num_channels, v->image_size, v->image_size});
  }
  if (text_batch > 0) {
    if (!c->cfg.has_text) return vkp_error_set(err, VKP_ERR_INVALID, "clip: text given, but the model has no text tower");
    int64_t shape[2] = {text_batch, seq_len};
    in->input_ids = vkp_tensor_input(g, "input_ids", VKP_DTYPE_I32, 2, shape);
    in->pool_onehot = vkp_tensor_input(g, "pool_onehot", VKP_DTYPE_F32, 2, shape);
    if (with_attention_mask) in->attention_mask = vkp_tensor_input(g, "attention_mask", VKP_DTYPE_F32, 2, shape);
  }
  vkp_status st = vkp_graph_status(g);
  return st ? vkp_error_set(err, st, "%s", vkp_graph_error(g)) : VKP_OK;
}

vkp_status vkp_clip_inputs_set(vkp_clip *c, vkp_graph *g, const vkp_clip_inputs *in, const float *pixels,
                               const int32_t *ids, const float *mask) {
  vkp_error *err = vkp_ctx_err(c->model->ctx);
  if ((in->pixel_values && !pixels) || (in->input_ids && !ids) || (in->attention_mask && !mask))
    return vkp_error_set(err, VKP_ERR_INVALID, "clip: the graph has %s inputs, but no data for them was given",
                         in->pixel_values && !pixels ? "pixel_values" : in->input_ids && !ids ? "input_ids" : "attention_mask");
  if (in->pixel_values) VKP_TRY(vkp_graph_set_input(g, in->pixel_values, pixels, vkp_tensor_nbytes(in->pixel_values)));
  if (!in->input_ids) return VKP_OK;
  int64_t B = in->input_ids->shape[0], T = in->input_ids->shape[1];
  VKP_TRY(vkp_graph_set_input(g, in->input_ids, ids, vkp_tensor_nbytes(in->input_ids)));
  if (in->attention_mask) VKP_TRY(vkp_graph_set_input(g, in->attention_mask, mask, vkp_tensor_nbytes(in->attention_mask)));
  float *onehot = malloc((size_t)(B * T) * sizeof *onehot);
  if (!onehot) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  vkp_clip_pool_onehot(&c->cfg.text, ids, B, T, onehot);
  vkp_status st = vkp_graph_set_input(g, in->pool_onehot, onehot, (uint64_t)(B * T) * sizeof *onehot);
  free(onehot);
  return st;
}
