// peft_masked.c — masked (sparse) tuning: a fixed set of weight entries per targeted module is
// trainable, chosen at random or by weight magnitude under a density budget. Only the chosen
// entries get values, gradients and optimizer state; the weight used is W + scatter(values).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peft_internal.h"
#include "vkp_nn.h"

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
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < k; i++) {   // partial Fisher–Yates
      x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
      int64_t j = i + (int64_t)((x * 0x2545F4914F6CDD1Dull >> 11) % (uint64_t)(n - i));
      int32_t t = all[i];
      all[i] = all[j];
      all[j] = t;
    }
  }
  memcpy(idx, all, (size_t)k * sizeof *idx);
  qsort(idx, (size_t)k, sizeof *idx, cmp_int);
  free(all);
  return st;
}

int vkp_masked_create(vkp_model *m, vkp_adapter_slot *s, uint64_t seed);
int vkp_masked_create(vkp_model *m, vkp_adapter_slot *s, uint64_t seed) {
  vkp_module *mod = s->module;
  int64_t n = vkp_param_numel(mod->weight);
  int64_t k = (int64_t)ceil(s->adapter->cfg.density * (double)n);
  if (k < 1) k = 1;
  if (k > n) k = n;
  s->scaling = 1.0f;
  char name[512];
  const char *file = vkp_module_file_name(mod), *an = s->adapter->cfg.name;
  bool dflt = !strcmp(an, "default");
  vkp_param *vals, *index;
  snprintf(name, sizeof name, dflt ? "%s.sparse_delta" : "%s.%s.sparse_delta", file, an);
  VKP_TRY(vkp_model_add_param(m, name, VKP_DTYPE_F32, 1, &k, &vals));
  snprintf(name, sizeof name, dflt ? "%s.sparse_index" : "%s.%s.sparse_index", file, an);
  VKP_TRY(vkp_model_add_param(m, name, VKP_DTYPE_I32, 1, &k, &index));
  vals->adapter = index->adapter = true;
  vals->trainable = true;
  vals->module = index->module = mod;
  s->p[s->np++] = vals;
  s->p[s->np++] = index;
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

vkp_tensor *vkp_sparse_delta_apply(vkp_model *m, vkp_adapter_slot *s, vkp_tensor *W);
vkp_tensor *vkp_sparse_delta_apply(vkp_model *m, vkp_adapter_slot *s, vkp_tensor *W) {
  vkp_graph *g = m->graph;
  vkp_tensor *vals = vkp_param_tensor(m, s->p[0]);
  if (vkp_slot_scale(s) != 1.0f) vals = vkp_scale(g, vals, vkp_slot_scale(s));
  return vkp_sparse_add(g, W, vals, vkp_param_tensor(m, s->p[1]));
}

// Gradient-score masks (Fisher-style saliency): the trainer accumulates |dL/dW| of each targeted
// weight over a few calibration batches and hands the scores here; the top-k entries become the
// trainable set. Values restart at zero, so the model is unchanged.
vkp_status vkp_masked_set_scores(vkp_model *m, vkp_adapter *a, int slot, const float *scores) {
  if (!a || slot < 0 || slot >= a->nslots || a->cfg.method != VKP_PEFT_MASKED)
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
