// train_ema.c — an exponential moving average of the trained adapter weights (train.ema_decay > 0;
// the UNet's and, with peft_text_encoder, the text encoder's),
// as diffusers' EMAModel (src/diffusers/training_utils.py: get_decay and step):
//   after optimizer update k = 1, 2, ...: decay_k = 0 for k = 1 (the average starts as the weights
//   after the first update), else min(ema_decay, (1 + s) / (10 + s)) with s = k − 1 when
//   train.ema_warmup (EMAModel's decay without use_ema_warmup in the releases that had the
//   (1 + step) / (10 + step) ramp, timm's and TensorFlow's step-adjusted decay), or ema_decay (the
//   current EMAModel's constant decay);
//   shadow −= (1 − decay_k) · (shadow − param), in float32 as EMAModel.step computes it.
// The average is kept on the host (f32, every trainable parameter in one array) and updated after
// each optimizer step from the parameters read back. Saving swaps it into the parameters' device
// buffers (the trained values kept on the host and put back bit for bit), so every adapter format
// and the sample grids see it through the usual code. Checkpoints hold it as ema.safetensors (by
// parameter name, f32, with the update count) for an exact --resume.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"
#include "vkp_config.h"
#include "vkp_safetensors.h"

#define EMA_STATE_FILE "ema.safetensors"

vkp_status vkp_dtrain_ema_keys(vkp_dtrainer *t, vkp_error *err) {
  const cJSON *v = vkp_config_get(t->cfg, "train.ema_decay");
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < 1))
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'train.ema_decay' must be 0 (off) or a decay in (0, 1), e.g. 0.999");
  t->ema.decay = v->valuedouble;
  t->ema.warmup = vkp_config_bool(t->cfg, "train.ema_warmup");
  return VKP_OK;
}

double vkp_dtrain_ema_decay_at(const vkp_dtrain_ema *e, int64_t k) {
  int64_t s = k - 1;
  if (s <= 0) return 0;
  double d = e->warmup ? (1.0 + (double)s) / (10.0 + (double)s) : e->decay;
  return d < e->decay ? d : e->decay;
}

// The trainable parameters' values, one after the other, into out.
static vkp_status read_params(vkp_dtrainer *t, float *out, vkp_error *err) {
  for (int i = 0; i < vkp_dtrain_param_count(t); i++) {   // the UNet's, then the text encoder's
    vkp_model *m;
    vkp_param *p = vkp_dtrain_param_at(t, i, &m);
    if (vkp_param_read_f32(m, p, out + t->ema.offset[i])) return vkp_error_set(err, VKP_ERR_IO, "EMA: reading %s: %s", p->name, vkp_ctx_error(t->ctx));
  }
  return VKP_OK;
}

static vkp_status write_params(vkp_dtrainer *t, const float *in, vkp_error *err) {
  for (int i = 0; i < vkp_dtrain_param_count(t); i++) {
    vkp_model *m;
    vkp_param *p = vkp_dtrain_param_at(t, i, &m);
    if (vkp_param_write_f32(m, p, in + t->ema.offset[i])) return vkp_error_set(err, VKP_ERR_IO, "EMA: writing %s: %s", p->name, vkp_ctx_error(t->ctx));
  }
  return VKP_OK;
}

// The average of a checkpoint: every trainable parameter by name, and the update count.
static vkp_status load_state(vkp_dtrainer *t, const char *ck_dir, vkp_error *err) {
  char path[VKP_CHECKPOINT_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/" EMA_STATE_FILE, ck_dir);
  vkp_safetensors *sf = NULL;
  if (vkp_safetensors_open(path, &sf, NULL))
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: cannot read the checkpoint's EMA weights (train.ema_decay is on in the run's config.json)", path);
  vkp_status st = VKP_OK;
  const char *n = vkp_safetensors_metadata(sf, "ema_updates");
  char *end = NULL;
  long long updates = n ? strtoll(n, &end, 10) : -1;
  if (!n || *end || updates != (long long)t->step)
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: key 'ema_updates' is %s, want the checkpoint's step %lld", path, n ? n : "missing",
                       (long long)t->step);
  for (int i = 0; i < vkp_dtrain_param_count(t) && !st; i++) {
    vkp_model *m;
    const vkp_param *p = vkp_dtrain_param_at(t, i, &m);
    vkp_error e = {0};
    if (vkp_safetensors_read_f32(sf, p->name, t->ema.shadow + t->ema.offset[i], (size_t)vkp_param_numel(p), &e))
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: %s", path, e.msg);
  }
  vkp_safetensors_free(sf);
  if (!st) t->ema.updates = (int64_t)updates;
  return st;
}

vkp_status vkp_dtrain_ema_start(vkp_dtrainer *t, vkp_error *err) {
  vkp_dtrain_ema *e = &t->ema;
  if (e->decay <= 0) return VKP_OK;
  const int n = vkp_dtrain_param_count(t);
  if (!(e->offset = malloc(((size_t)n + 1) * sizeof *e->offset))) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  e->offset[0] = 0;
  vkp_model *m;
  for (int i = 0; i < n; i++) e->offset[i + 1] = e->offset[i] + (size_t)vkp_param_numel(vkp_dtrain_param_at(t, i, &m));
  e->total = e->offset[n];
  e->shadow = malloc((e->total ? e->total : 1) * sizeof *e->shadow);
  e->raw = malloc((e->total ? e->total : 1) * sizeof *e->raw);
  if (!e->shadow || !e->raw) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory (EMA of %zu weights)", e->total);
  if (t->ck) return load_state(t, t->ck->dir, err);
  e->updates = 0;
  return read_params(t, e->shadow, err);   // EMAModel: the shadow starts as a copy of the parameters
}

vkp_status vkp_dtrain_ema_update(vkp_dtrainer *t, vkp_error *err) {
  vkp_dtrain_ema *e = &t->ema;
  if (e->decay <= 0) return VKP_OK;
  VKP_TRY(read_params(t, e->raw, err));
  e->updates++;
  const float one_minus = (float)(1.0 - vkp_dtrain_ema_decay_at(e, e->updates));
  for (size_t i = 0; i < e->total; i++) {   // shadow.sub_(one_minus_decay * (shadow - param)), each op rounded to f32
    float diff = e->shadow[i] - e->raw[i];
    float step = one_minus * diff;
    e->shadow[i] = e->shadow[i] - step;
  }
  return VKP_OK;
}

vkp_status vkp_dtrain_ema_swap(vkp_dtrainer *t, bool in, vkp_error *err) {
  vkp_dtrain_ema *e = &t->ema;
  if (e->decay <= 0 || e->swapped == in) return VKP_OK;
  if (in) {
    VKP_TRY(read_params(t, e->raw, err));
    e->swapped = true;   // from here on the device may hold the average: put the raw values back on failure
    return write_params(t, e->shadow, err);
  }
  VKP_TRY(write_params(t, e->raw, err));
  e->swapped = false;
  return VKP_OK;
}

vkp_status vkp_dtrain_ema_save_state(vkp_dtrainer *t, const char *dir, vkp_error *err) {
  vkp_dtrain_ema *e = &t->ema;
  if (e->decay <= 0) return VKP_OK;
  char path[VKP_CHECKPOINT_PATH_MAX + 32], num[32];
  snprintf(path, sizeof path, "%s/" EMA_STATE_FILE, dir);
  snprintf(num, sizeof num, "%lld", (long long)e->updates);
  vkp_safetensors_writer *w = NULL;
  VKP_TRY(vkp_safetensors_writer_new(&w, err));
  vkp_status st = vkp_safetensors_writer_set_metadata(w, "ema_updates", num, err);
  for (int i = 0; i < vkp_dtrain_param_count(t) && !st; i++) {
    vkp_model *m;
    const vkp_param *p = vkp_dtrain_param_at(t, i, &m);
    st = vkp_safetensors_writer_add_f32(w, p->name, VKP_DTYPE_F32, p->ndim, p->shape, e->shadow + e->offset[i], err);
  }
  if (!st) st = vkp_safetensors_writer_save(w, path, err);
  vkp_safetensors_writer_free(w);
  return st;
}

void vkp_dtrain_ema_free(vkp_dtrain_ema *e) {
  free(e->offset), free(e->shadow), free(e->raw);
  e->offset = NULL, e->shadow = e->raw = NULL;
}
