// method_masked.c — masked (sparse) tuning: a fixed set of weight entries per targeted module is
// trainable, chosen at random or by weight magnitude under a density budget (or by gradient
// scores the trainer measures, vkp_masked_set_scores). Only the chosen entries get values,
// gradients and optimizer state; the weight used is W + scatter(values). Files: sparse_delta
// (k values), sparse_index (k flat indices, I32).
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peft_internal.h"
#include "vkp_rng.h"

static const vkp_peft_suffix suffixes[] = {{"sparse_delta", "sparse_delta.%s"}, {"sparse_index", "sparse_index.%s"}};

static const vkp_peft_suffix *masked_suffixes(const vkp_adapter_slot *s, int *n) {
  (void)s;
  *n = 2;
  return suffixes;
}

static const vkp_json_choice masks[] = {{"random", VKP_MASK_RANDOM}, {"magnitude", VKP_MASK_MAGNITUDE},
                                        {"gradient", VKP_MASK_GRADIENT}, {NULL, 0}};
static const vkp_json_field fields[] = {
    {"density", VKP_JSON_FLOAT, offsetof(vkp_peft_config, density), .lo = 0, .hi = 1, .def = 0.01,
     .flags = VKP_JSON_KEEP | VKP_JSON_OPEN_LO},
    {"mask", VKP_JSON_ENUM, offsetof(vkp_peft_config, mask), .choices = masks, .flags = VKP_JSON_KEEP},
    {"init_weights", VKP_JSON_BOOL, offsetof(vkp_peft_config, init_weights), .def = 1, .flags = VKP_JSON_KEEP},
};

static bool fits(const vkp_peft_config *c, const vkp_module *mod) {
  (void)c;
  return mod->kind == VKP_MODULE_LINEAR || mod->kind == VKP_MODULE_CONV2D;
}

// Orders indices by descending key (ties: ascending index); keys passed through qsort_r.
static int cmp_desc(const void *a, const void *b, void *keys) {
  const float *k = keys;
  float x = k[*(const int32_t *)a], y = k[*(const int32_t *)b];
  return x < y ? 1 : x > y ? -1 : (*(const int32_t *)a - *(const int32_t *)b);
}
static int cmp_int(const void *a, const void *b) { return *(const int32_t *)a - *(const int32_t *)b; }

// Chooses k indices of the weight by the configured rule (sorted ascending).
static vkp_status choose(vkp_model *m, vkp_adapter_slot *s, int64_t n, int64_t k, uint64_t seed, int32_t *idx) {
  int32_t *all = malloc((size_t)n * sizeof *all);
  if (!all) return VKP_ERR_OOM;
  for (int64_t i = 0; i < n; i++) all[i] = (int32_t)i;
  vkp_status st = VKP_OK;
  if (s->adapter->cfg.mask == VKP_MASK_MAGNITUDE) {
    float *w = malloc((size_t)n * sizeof *w);
    if (!w) st = VKP_ERR_OOM;
    if (!st) st = vkp_param_read_f32(m, s->module->weight, w);
    if (!st) {
      for (int64_t i = 0; i < n; i++) w[i] = fabsf(w[i]);
      qsort_r(all, (size_t)n, sizeof *all, cmp_desc, w);   // largest |w| first
    }
    free(w);
  } else {   // random (also the starting point of gradient-score masks, refined by the trainer)
    vkp_rng r = vkp_rng_new(seed);   // torch.randperm(n)[:k]
    vkp_rng_shuffle(&r, all, (size_t)n, sizeof *all, (size_t)k);
  }
  memcpy(idx, all, (size_t)k * sizeof *idx);
  qsort(idx, (size_t)k, sizeof *idx, cmp_int);
  free(all);
  return st;
}

static vkp_status create(vkp_model *m, vkp_adapter_slot *s, uint64_t seed) {
  vkp_module *mod = s->module;
  int64_t n = vkp_param_numel(mod->weight);
  int64_t k = (int64_t)ceil(s->adapter->cfg.density * (double)n);
  if (k < 1) k = 1;
  if (k > n) k = n;
  s->scaling = 1.0f;
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 1, &k));
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_I32, 1, &k));
  vkp_param *vals = s->p[0], *index = s->p[1];
  index->trainable = false;
  int32_t *idx = malloc((size_t)k * sizeof *idx);
  if (!idx) return VKP_ERR_OOM;
  vkp_status st = choose(m, s, n, k, seed, idx);
  if (!st) st = vkp_buffer_write(index->buf, 0, idx, (uint64_t)k * 4);
  free(idx);
  if (!st && !s->adapter->cfg.init_weights) {   // non-zero start (tests)
    float *v = malloc((size_t)k * sizeof *v);
    if (!v) return VKP_ERR_OOM;
    for (int64_t i = 0; i < k; i++) v[i] = 0.01f * (float)((i * 7919) % 13 - 6);
    st = vkp_param_write_f32(m, vals, v);
    free(v);
  }
  return st;
}

static void weight_pre(vkp_peft_weight_call *c, vkp_adapter_slot *s) {
  vkp_tensor *vals = vkp_param_tensor(c->m, s->p[0]);
  if (vkp_slot_scale(s) != 1.0f) vals = vkp_scale(c->g, vals, vkp_slot_scale(s));
  c->W = vkp_sparse_add(c->g, c->W, vals, vkp_param_tensor(c->m, s->p[1]));
}

static vkp_status merge(vkp_model *m, vkp_adapter_slot *s, vkp_peft_merge_call *c, bool merge) {
  int64_t k = vkp_param_numel(s->p[0]);
  double *d = calloc((size_t)(c->out * c->cols), sizeof *d);
  int32_t *idx = malloc((size_t)k * sizeof *idx);
  float *v = vkp_peft_read_param(m, s->p[0]);
  vkp_status st = d && idx && v ? vkp_buffer_read(s->p[1]->buf, 0, idx, (uint64_t)k * 4) : VKP_ERR_OOM;
  double sc = vkp_slot_scale(s);
  for (int64_t i = 0; !st && i < k; i++) d[idx[i]] += sc * v[i];
  if (!st) vkp_peft_merge_add(c, d, merge);
  free(d), free(idx), free(v);
  return st;
}

// Gradient-score masks (Fisher-style saliency): the trainer accumulates |dL/dW| of each targeted
// weight over a few calibration batches and hands the scores here; the top-k entries become the
// trainable set. Values restart at zero, so the model is unchanged.
vkp_status vkp_masked_set_scores(vkp_model *m, vkp_adapter *a, int slot, const float *scores) {
  if (!a || slot < 0 || slot >= a->nslots || a->def != &vkp_method_masked)
    return vkp_error_set(vkp_ctx_err(m->ctx), VKP_ERR_INVALID, "masked scores: not a masked adapter slot");
  vkp_adapter_slot *s = a->slots[slot];
  int64_t n = vkp_param_numel(s->module->weight), k = vkp_param_numel(s->p[0]);
  int32_t *all = malloc((size_t)n * sizeof *all), *idx = malloc((size_t)k * sizeof *idx);
  float *zeros = calloc((size_t)k, sizeof *zeros);
  vkp_status st = all && idx && zeros ? VKP_OK : VKP_ERR_OOM;
  if (!st) {
    for (int64_t i = 0; i < n; i++) all[i] = (int32_t)i;
    qsort_r(all, (size_t)n, sizeof *all, cmp_desc, (void *)scores);   // largest score first
    memcpy(idx, all, (size_t)k * sizeof *idx);
    qsort(idx, (size_t)k, sizeof *idx, cmp_int);
    st = vkp_buffer_write(s->p[1]->buf, 0, idx, (uint64_t)k * 4);
    if (!st) st = vkp_param_write_f32(m, s->p[0], zeros);
  }
  free(all), free(idx), free(zeros);
  return st;
}

static const vkp_peft_alias aliases[] = {{"sparse", NULL}};
static const vkp_peft_preset presets[] = {
    {"masked", "{\"method\":\"masked\",\"density\":0.02,\"mask\":\"magnitude\",\"target_modules\":[\"@q\",\"@k\",\"@v\",\"@mlp_in\",\"@mlp_out\"],\"modules_to_save\":[\"@head\"]}", false},
};

const vkp_peft_method_def vkp_method_masked = {
    .id = VKP_PEFT_MASKED,
    .name = "masked",
    .peft_type = "VKPEFT_MASKED",
    .level = VKP_PEFT_LEVEL_WEIGHT,
    .summary = "a sparse set of each targeted weight's entries (random, largest |W|, or largest gradient)",
    .aliases = aliases,
    .n_aliases = 1,
    .fields = fields,
    .n_fields = sizeof fields / sizeof *fields,
    .fits = fits,
    .create = create,
    .suffixes = masked_suffixes,
    .weight_pre = weight_pre,
    .merge = merge,
    .presets = presets,
    .n_presets = 1,
};
