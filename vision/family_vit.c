// family_vit.c — ViTForImageClassification as a model family: what `vkpeft forward`, `info`,
// `eval`, `export` and `predict` need to run an HF ViT checkpoint (see vkp_family.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_classify.h"
#include "vkp_family.h"
#include "vkp_preprocess.h"
#include "vkp_vision_family.h"

static vkp_status vit_load(vkp_ctx *ctx, const char *dir, const char *aux_dir, vkp_loaded_model *out, vkp_error *err) {
  vkp_vit_handle *h = calloc(1, sizeof *h);
  if (!h) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  vkp_status st = vkp_vit_load(ctx, dir, 0, &h->vit, err);
  if (!st) {
    // Preprocessing: the aux folder's (an adapter trained with other preprocessing), else the model's.
    vkp_error e2 = {0};
    const vkp_vit_config *c = &h->vit->cfg;
    vkp_status p = aux_dir ? vkp_preprocess_load(aux_dir, c->image_size, c->num_channels, &h->tf, &e2) : VKP_ERR_NOT_FOUND;
    if (p == VKP_ERR_NOT_FOUND) p = vkp_preprocess_load(dir, c->image_size, c->num_channels, &h->tf, &e2);
    if (p == VKP_ERR_NOT_FOUND) {
      h->tf_default = true;   // vkp_preprocess_load left the default transform: pixels scaled to [0, 1]
    } else if (p) {
      st = vkp_error_set(err, p, "%s", e2.msg);
    }
  }
  if (st) {
    vkp_vit_free(h->vit);
    free(h);
    return st;
  }
  out->impl = h;
  out->model = h->vit->model;
  return VKP_OK;
}

static void vit_free(vkp_loaded_model *lm) {
  vkp_vit_handle *h = lm->impl;
  if (!h) return;
  vkp_vit_free(h->vit);
  free(h);
}

static void vit_describe(const vkp_loaded_model *lm, char *out, size_t cap) {
  const vkp_vit_config *c = &((vkp_vit_handle *)lm->impl)->vit->cfg;
  snprintf(out, cap, "ViTForImageClassification, image %d, patch %d, %d channels, hidden %d, %d layers, %d heads, MLP %d, %d labels",
           c->image_size, c->patch_size, c->num_channels, c->hidden_size, c->num_hidden_layers, c->num_attention_heads,
           c->intermediate_size, c->num_labels);
}

static vkp_status vit_save(const vkp_loaded_model *lm, const char *dir, vkp_error *err) {
  vkp_vit_handle *h = lm->impl;
  VKP_TRY(vkp_vit_save(h->vit, dir, err));
  return vkp_preprocess_save(&h->tf, h->vit->cfg.num_channels, dir, err);
}

// Inputs: pixel_values (B, C, S, S); with_loss: labels (B). Outputs: logits, hidden_states/i;
// the loss is the mean cross-entropy.
static vkp_status vit_forward(const vkp_loaded_model *lm, vkp_graph *g, const vkp_safetensors *in, const char *where,
                              bool with_loss, vkp_forward_io *io, vkp_error *err) {
  vkp_vit *v = ((vkp_vit_handle *)lm->impl)->vit;
  const vkp_vit_config *c = &v->cfg;
  vkp_tensor *px, *labels = NULL;
  VKP_TRY(vkp_forward_io_input(io, g, in, where, "pixel_values", VKP_DTYPE_F32, 4,
                               (int64_t[]){-1, c->num_channels, c->image_size, c->image_size}, &px, err));
  if (with_loss)
    VKP_TRY(vkp_forward_io_input(io, g, in, where, "labels", VKP_DTYPE_I32, 1, (int64_t[]){px->shape[0]}, &labels, err));
  vkp_vit_outputs out;
  vkp_status st = vkp_vit_forward(v, g, px, &out);
  if (st) return vkp_error_set(err, st, "%s", vkp_graph_error(g));
  if (labels) {
    // Labels outside [0, classes) would be ignored by the loss: refuse them instead of a silent 0.
    const int32_t *ids = io->inputs.v[io->inputs.n - 1].data;
    for (int64_t i = 0; i < labels->shape[0]; i++)
      if (ids[i] < 0 || ids[i] >= c->num_labels)
        return vkp_error_set(err, VKP_ERR_INVALID, "%s: labels[%lld] = %d is outside [0, %d)", where, (long long)i, ids[i],
                             c->num_labels);
    io->loss = vkp_cross_entropy(g, out.logits, labels);
  }
  vkp_status o = vkp_forward_io_output(io, "logits", out.logits);
  for (int i = 0; !o && i <= c->num_hidden_layers; i++) {
    char name[32];
    snprintf(name, sizeof name, "hidden_states/%d", i);
    o = vkp_forward_io_output(io, name, out.hidden[i]);
  }
  return o ? vkp_error_set(err, o, "out of host memory") : VKP_OK;
}

static vkp_status vit_eval(const vkp_loaded_model *lm, const vkp_eval_request *req, vkp_error *err) {
  vkp_vit_handle *h = lm->impl;
  vkp_vit *v = h->vit;
  vkp_dataset *ds = NULL;
  vkp_eval_result res = {0};
  vkp_status st = vkp_classify_load_source(req->data, v->cfg.num_channels, v->cfg.image_size, NULL, 0, &ds, err);
  if (!st) st = vkp_classify_evaluate(v, ds, NULL, 0, &h->tf, req->batch, &res, err);
  if (!st) {
    const char *names[256];
    for (int c = 0; c < res.n_classes && c < 256; c++) names[c] = c < ds->n_classes ? ds->class_names[c] : v->cfg.labels[c];
    vkp_classify_print_eval(&res, names, req->data, req->json, stdout);
  }
  vkp_eval_result_free(&res);
  vkp_dataset_free(ds);
  return st;
}

static const char *const vit_types[] = {"vit", NULL};

const vkp_model_family vkp_family_vit = {
    .name = "vit",
    .description = "ViTForImageClassification",
    .config_types = vit_types,
    .load = vit_load,
    .free = vit_free,
    .describe = vit_describe,
    .save = vit_save,
    .forward = vit_forward,
    .eval = vit_eval,
};
