// family_clip.c — transformers CLIP (CLIPModel, CLIPTextModel[WithProjection],
// CLIPVisionModel[WithProjection]) as a model family: `vkpeft forward`, `info` and `export` on
// CLIP folders, and `eval` (see vkp_family.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_clip.h"
#include "vkp_clip_eval.h"
#include "vkp_family.h"
#include "vkp_ops.h"

static vkp_status clip_load(vkp_ctx *ctx, const char *dir, const char *aux_dir, vkp_loaded_model *out, vkp_error *err) {
  (void)aux_dir;
  vkp_clip *c = NULL;
  VKP_TRY(vkp_clip_load(ctx, dir, NULL, &c, err));
  out->impl = c;
  out->model = c->model;
  return VKP_OK;
}

static void clip_free(vkp_loaded_model *lm) { vkp_clip_free(lm->impl); }

static void clip_describe(const vkp_loaded_model *lm, char *out, size_t cap) {
  const vkp_clip_config *c = &((vkp_clip *)lm->impl)->cfg;
  size_t n = (size_t)snprintf(out, cap, "%s", c->has_text && c->has_vision ? "CLIPModel" : c->has_text ? "CLIPTextModel" : "CLIPVisionModel");
  if (c->has_text && n < cap)
    n += (size_t)snprintf(out + n, cap - n, ", text: vocab %d, hidden %d, %d layers, %d heads, MLP %d, %d positions",
                          c->text.vocab_size, c->text.hidden_size, c->text.num_hidden_layers, c->text.num_attention_heads,
                          c->text.intermediate_size, c->text.max_position_embeddings);
  if (c->has_vision && n < cap)
    n += (size_t)snprintf(out + n, cap - n, ", vision: image %d, patch %d, hidden %d, %d layers, %d heads, MLP %d",
                          c->vision.image_size, c->vision.patch_size, c->vision.hidden_size, c->vision.num_hidden_layers,
                          c->vision.num_attention_heads, c->vision.intermediate_size);
  bool proj = (c->has_text && c->has_text_projection) || (c->has_vision && c->has_visual_projection);
  if (proj && n < cap) snprintf(out + n, cap - n, ", projection %d", c->projection_dim);
}

static vkp_status clip_save(const vkp_loaded_model *lm, const char *dir, vkp_error *err) {
  return vkp_clip_save(lm->impl, dir, err);
}

static vkp_status add_hidden(vkp_forward_io *io, const char *tower, vkp_tensor *const *hidden, int layers) {
  vkp_status st = VKP_OK;
  for (int i = 0; !st && i <= layers; i++) {
    char name[64];
    snprintf(name, sizeof name, "%s_hidden_states/%d", tower, i);
    st = vkp_forward_io_output(io, name, hidden[i]);
  }
  return st;
}

// Inputs: pixel_values (B, C, S, S) and/or input_ids (B, T) with an optional attention_mask
// (B, T) of 0/1. Outputs: every tower's hidden states, pooled outputs and embeddings;
// logits_per_image / logits_per_text with both towers. Loss: CLIP's symmetric contrastive loss
// (pair i = image i, text i).
static vkp_status clip_forward(const vkp_loaded_model *lm, vkp_graph *g, const vkp_safetensors *in, const char *where,
                               bool with_loss, vkp_forward_io *io, vkp_error *err) {
  vkp_clip *c = lm->impl;
  const vkp_clip_config *cfg = &c->cfg;
  vkp_clip_inputs x = {0};
  bool want_img = vkp_forward_io_has(in, "pixel_values"), want_txt = vkp_forward_io_has(in, "input_ids");
  if (!want_img && !want_txt) return vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: no tensor 'pixel_values' or 'input_ids'", where);
  if (want_img && !cfg->has_vision)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: has 'pixel_values', but the model has no vision tower", where);
  if (want_txt && !cfg->has_text)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: has 'input_ids', but the model has no text tower", where);
  if (want_img) {
    const vkp_clip_vision_config *v = &cfg->vision;
    VKP_TRY(vkp_forward_io_input(io, g, in, where, "pixel_values", VKP_DTYPE_F32, 4,
                                 (int64_t[]){-1, v->num_channels, v->image_size, v->image_size}, &x.pixel_values, err));
  }
  if (want_txt) {
    VKP_TRY(vkp_forward_io_input(io, g, in, where, "input_ids", VKP_DTYPE_I32, 2,
                                 (int64_t[]){-1, -1}, &x.input_ids, err));
    const int32_t *ids = io->inputs.v[io->inputs.n - 1].data;
    int64_t B = x.input_ids->shape[0], T = x.input_ids->shape[1];
    if (T > cfg->text.max_position_embeddings)
      return vkp_error_set(err, VKP_ERR_SHAPE, "%s: input_ids has %lld tokens per row; the model has %d positions", where,
                           (long long)T, cfg->text.max_position_embeddings);
    for (int64_t i = 0; i < B * T; i++)
      if (ids[i] < 0 || ids[i] >= cfg->text.vocab_size)
        return vkp_error_set(err, VKP_ERR_INVALID, "%s: input_ids[%lld][%lld] = %d is outside the vocabulary [0, %d)", where,
                             (long long)(i / T), (long long)(i % T), ids[i], cfg->text.vocab_size);
    float *onehot = malloc((size_t)(B * T) * sizeof *onehot);
    if (!onehot) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    vkp_clip_pool_onehot(&cfg->text, ids, B, T, onehot);
    x.pool_onehot = vkp_tensor_input(g, "pool_onehot", VKP_DTYPE_F32, 2, x.input_ids->shape);
    if (!x.pool_onehot || vkp_vec_push(&io->inputs, ((vkp_forward_input){x.pool_onehot, onehot}))) {
      free(onehot);
      return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    }
    if (vkp_forward_io_has(in, "attention_mask")) {
      VKP_TRY(vkp_forward_io_input(io, g, in, where, "attention_mask", VKP_DTYPE_F32, 2, x.input_ids->shape,
                                   &x.attention_mask, err));
      const float *mask = io->inputs.v[io->inputs.n - 1].data;
      for (int64_t i = 0; i < B * T; i++)
        if (mask[i] != 0.0f && mask[i] != 1.0f)
          return vkp_error_set(err, VKP_ERR_INVALID, "%s: attention_mask[%lld][%lld] = %g; it must be 0 or 1", where,
                               (long long)(i / T), (long long)(i % T), (double)mask[i]);
    }
  }
  vkp_clip_outputs out;
  vkp_status st = vkp_clip_forward(c, g, &x, &out);
  if (st) return vkp_error_set(err, st, "%s", vkp_graph_error(g) && *vkp_graph_error(g) ? vkp_graph_error(g) : vkp_ctx_error(vkp_graph_ctx(g)));
  if (with_loss) {
    if (!out.loss)
      return vkp_error_set(err, VKP_ERR_INVALID,
                           "%s: --loss needs pixel_values and input_ids of the same batch size and a model with both towers", where);
    io->loss = out.loss;
  }
  struct { const char *name; vkp_tensor *t; } named[] = {
      {"text_embeds", out.text_embeds},         {"image_embeds", out.image_embeds},
      {"logits_per_image", out.logits_per_image}, {"logits_per_text", out.logits_per_text},
      {"text_last_hidden_state", out.text_last_hidden}, {"text_pooler_output", out.text_pooled},
      {"vision_last_hidden_state", out.vision_last_hidden}, {"vision_pooler_output", out.vision_pooled},
      {"text_features", out.text_features},     {"image_features", out.image_features},
  };
  for (size_t i = 0; !st && i < sizeof named / sizeof *named; i++)
    if (named[i].t) st = vkp_forward_io_output(io, named[i].name, named[i].t);
  if (!st && out.text_last_hidden) st = add_hidden(io, "text", out.text_hidden, cfg->text.num_hidden_layers);
  if (!st && out.vision_last_hidden) st = add_hidden(io, "vision", out.vision_hidden, cfg->vision.num_hidden_layers);
  return st ? vkp_error_set(err, st, "out of host memory") : VKP_OK;
}

// `vkpeft eval`: retrieval, zero-shot, linear probe, WiSE-FT, gallery (vlm/clip_eval_cmd.c).
static vkp_status clip_eval(const vkp_loaded_model *lm, const vkp_eval_request *req, vkp_error *err) {
  return vkp_clip_eval_command(lm->impl, req, err);
}

static const char *const clip_types[] = {"clip", "clip_text_model", "clip_vision_model", NULL};

const vkp_model_family vkp_family_clip = {
    .name = "clip",
    .description = "CLIPModel / CLIPTextModel / CLIPVisionModel",
    .config_types = clip_types,
    .load = clip_load,
    .free = clip_free,
    .describe = clip_describe,
    .save = clip_save,
    .forward = clip_forward,
    .eval = clip_eval,
};
