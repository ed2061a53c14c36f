// peft_merge.c — folding weight-level adapters into the base weights and back out, computed on
// the host in float64 (merging is rare; this also gives an implementation independent of the
// device forward path, which the merge/unmerge tests compare against).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "peft_internal.h"

static float *read_param(vkp_model *m, vkp_param *p) {
  float *v = malloc((size_t)vkp_param_numel(p) * sizeof *v);
  if (v && vkp_param_read_f32(m, p, v) != VKP_OK) {
    free(v);
    return NULL;
  }
  return v;
}

// Delta weight (out x cols, row-major, scaled) of a slot; NULL for methods without one.
static double *slot_delta(vkp_model *m, const vkp_adapter_slot *s, int64_t out, int64_t cols) {
  const vkp_peft_config *c = &s->adapter->cfg;
  double *d = calloc((size_t)(out * cols), sizeof *d);
  if (!d) return NULL;
  double sc = vkp_slot_scale(s);
  float *p0 = NULL, *p1 = NULL, *p2 = NULL, *p3 = NULL;
  bool ok = true;
  switch (c->method) {
    case VKP_PEFT_LORA: {
      int64_t r = c->r;
      ok = (p0 = read_param(m, s->p[0])) && (p1 = read_param(m, s->p[1]));
      for (int64_t i = 0; ok && i < out; i++)
        for (int64_t k = 0; k < r; k++)
          for (int64_t j = 0; j < cols; j++) d[i * cols + j] += sc * p1[i * r + k] * p0[k * cols + j];
      break;
    }
    case VKP_PEFT_LOHA: {
      int64_t r = s->p[0]->shape[1];
      ok = (p0 = read_param(m, s->p[0])) && (p1 = read_param(m, s->p[1])) && (p2 = read_param(m, s->p[2])) &&
           (p3 = read_param(m, s->p[3]));
      for (int64_t i = 0; ok && i < out; i++)
        for (int64_t j = 0; j < cols; j++) {
          double a = 0, b = 0;
          for (int64_t k = 0; k < r; k++) a += (double)p0[i * r + k] * p1[k * cols + j], b += (double)p2[i * r + k] * p3[k * cols + j];
          d[i * cols + j] = sc * a * b;
        }
      break;
    }
    case VKP_PEFT_LOKR: {
      int64_t a = s->p[0]->shape[0], b = s->p[0]->shape[1], cc = s->p[1]->shape[0];
      int64_t e = s->lowrank ? s->p[2]->shape[1] : vkp_param_numel(s->p[1]) / cc;
      ok = (p0 = read_param(m, s->p[0])) && (p1 = read_param(m, s->p[1]));
      if (ok && s->lowrank) {   // w2 = w2_a @ w2_b on the host
        int64_t r = s->p[1]->shape[1];
        float *w2b = read_param(m, s->p[2]), *w2 = calloc((size_t)(cc * e), sizeof *w2);
        ok = w2b && w2;
        for (int64_t i = 0; ok && i < cc; i++)
          for (int64_t j = 0; j < e; j++) {
            double acc = 0;
            for (int64_t q = 0; q < r; q++) acc += (double)p1[i * r + q] * w2b[q * e + j];
            w2[i * e + j] = (float)acc;
          }
        free(w2b);
        free(p1);
        p1 = w2;
      }
      for (int64_t i = 0; ok && i < a; i++)
        for (int64_t j = 0; j < b; j++)
          for (int64_t k = 0; k < cc; k++)
            for (int64_t l = 0; l < e; l++) d[(i * cc + k) * cols + j * e + l] = sc * p0[i * b + j] * p1[k * e + l];
      break;
    }
    case VKP_PEFT_VERA: {
      int64_t r = c->r, in_max = s->adapter->vera_A->shape[1], rr = s->adapter->vera_B->shape[1];
      ok = (p0 = read_param(m, s->p[0])) && (p1 = read_param(m, s->p[1])) && (p2 = read_param(m, s->adapter->vera_A)) &&
           (p3 = read_param(m, s->adapter->vera_B));
      for (int64_t i = 0; ok && i < out; i++)
        for (int64_t k = 0; k < r; k++)
          for (int64_t j = 0; j < cols; j++)
            d[i * cols + j] += sc * p1[i] * p3[i * rr + k] * p0[k] * p2[k * in_max + j];
      break;
    }
    case VKP_PEFT_MASKED: {
      int64_t k = vkp_param_numel(s->p[0]);
      int32_t *idx = malloc((size_t)k * sizeof *idx);
      ok = idx && (p0 = read_param(m, s->p[0])) && vkp_buffer_read(s->p[1]->buf, 0, idx, (uint64_t)k * 4) == VKP_OK;
      for (int64_t i = 0; ok && i < k; i++) d[idx[i]] += sc * p0[i];
      free(idx);
      break;
    }
    default:
      ok = false;
  }
  free(p0), free(p1), free(p2), free(p3);
  if (!ok) free(d), d = NULL;
  return d;
}

static vkp_status apply(vkp_model *m, vkp_adapter_slot *s, bool merge) {
  vkp_module *mod = s->module;
  const vkp_peft_config *c = &s->adapter->cfg;
  int64_t out = mod->out, n = vkp_param_numel(mod->weight), cols = n / out;
  float *w = read_param(m, mod->weight);
  if (!w) return VKP_ERR_OOM;
  vkp_status st = VKP_OK;
  if (c->method == VKP_PEFT_IA3) {
    float *l = read_param(m, s->p[0]);
    float *b = mod->bias && !mod->feedforward ? read_param(m, mod->bias) : NULL;
    if (!l) st = VKP_ERR_OOM;
    for (int64_t i = 0; !st && i < out; i++)
      for (int64_t j = 0; j < cols; j++) {
        // feed-forward: scales input channel j (conv: j / (kh*kw)); else output row i
        int64_t k = mod->kind == VKP_MODULE_CONV2D ? (int64_t)mod->kh * mod->kw : 1;
        double f = mod->feedforward ? l[j / k] : l[i];
        w[i * cols + j] = (float)(merge ? w[i * cols + j] * f : w[i * cols + j] / f);
      }
    if (b && !st) {
      for (int64_t i = 0; i < out; i++) b[i] = (float)(merge ? b[i] * (double)l[i] : b[i] / (double)l[i]);
      st = vkp_param_write_f32(m, mod->bias, b);
    }
    free(l), free(b);
  } else {
    double *d = slot_delta(m, s, out, cols);
    if (!d) st = vkp_error_set(vkp_ctx_err(m->ctx), VKP_ERR_UNSUPPORTED, "%s: cannot merge %s", mod->name, vkp_peft_method_name(c->method));
    if (!st && c->method == VKP_PEFT_LORA && c->use_dora) {
      float *mag = read_param(m, s->p[2]);
      if (!mag) st = VKP_ERR_OOM;
      // As the forward pass (nn.c): y = f ⊙ (W + s·BA) x + b, f = u·m/||W + s·BA|| + 1 - u per row.
      double u = s->adapter->scale;
      if (merge && !st) {
        free(s->dora_norm);
        s->dora_norm = malloc((size_t)out * sizeof *s->dora_norm);
        if (!s->dora_norm) st = VKP_ERR_OOM;
        for (int64_t i = 0; !st && i < out; i++) {
          double nn = 0;
          for (int64_t j = 0; j < cols; j++) nn += (w[i * cols + j] + d[i * cols + j]) * (w[i * cols + j] + d[i * cols + j]);
          double f = u * mag[i] / sqrt(nn) + 1 - u;
          s->dora_norm[i] = (float)f;
          for (int64_t j = 0; j < cols; j++) w[i * cols + j] = (float)(f * (w[i * cols + j] + d[i * cols + j]));
        }
      } else if (!st) {
        for (int64_t i = 0; i < out; i++)
          for (int64_t j = 0; j < cols; j++)
            w[i * cols + j] = (float)(w[i * cols + j] / (double)s->dora_norm[i] - d[i * cols + j]);
      }
      free(mag);
    } else if (!st) {
      for (int64_t i = 0; i < n; i++) w[i] = (float)(w[i] + (merge ? d[i] : -d[i]));
    }
    free(d);
  }
  if (!st) st = vkp_param_write_f32(m, mod->weight, w);
  free(w);
  return st;
}

static vkp_status merge_all(vkp_model *m, vkp_adapter *a, bool merge) {
  vkp_error *err = vkp_ctx_err(m->ctx);
  if (a->merged == merge) return vkp_error_set(err, VKP_ERR_INVALID, "adapter '%s' is %s", a->cfg.name, merge ? "merged already" : "not merged");
  switch (a->cfg.method) {
    case VKP_PEFT_LORA: case VKP_PEFT_LOHA: case VKP_PEFT_LOKR: case VKP_PEFT_IA3: case VKP_PEFT_VERA: case VKP_PEFT_MASKED: break;
    case VKP_PEFT_BITFIT: case VKP_PEFT_LN_TUNING: case VKP_PEFT_FULL: case VKP_PEFT_LINEAR_PROBE:
      a->merged = merge;   // their parameters are the base parameters: nothing to fold
      return VKP_OK;
    default:
      return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "adapter '%s': %s adds modules and cannot be merged into weights",
                           a->cfg.name, vkp_peft_method_name(a->cfg.method));
  }
  if (a->scale != 1.0f && a->cfg.method == VKP_PEFT_IA3)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "adapter '%s': merging a scaled (IA)^3 adapter", a->cfg.name);
  // Unmerge takes out what merge folded in: the delta at the scale of merge time, even if
  // vkp_adapter_set_scale was called in between.
  float now = a->scale;
  if (!merge) a->scale = a->merged_scale;
  vkp_status st = VKP_OK;
  for (int i = 0; i < a->nslots && !st; i++) st = apply(m, a->slots[merge ? i : a->nslots - 1 - i], merge);
  a->scale = now;
  if (st) return st;
  a->merged = merge;
  if (merge) a->merged_scale = now;
  return VKP_OK;
}

vkp_status vkp_adapter_merge(vkp_model *m, vkp_adapter *a) { return merge_all(m, a, true); }
vkp_status vkp_adapter_unmerge(vkp_model *m, vkp_adapter *a) { return merge_all(m, a, false); }
