// method_lora.c — LoRA and its variants rsLoRA and DoRA (peft LoraConfig).
//   LoRA    y = W x + b + s · B A dropout(x), A (r, in[, kh, kw]) applied as a linear / the base
//           conv, B (out, r[, 1, 1]); s = lora_alpha / r (rsLoRA: lora_alpha / sqrt(r)); never
//           materialises B A in the forward pass. On a Linear the term joins the base product's
//           node (vkp_linear_add_lora, core/ops/matmul.c: no separate scale/add dispatches).
//   DoRA    y = m / ||W + s·BA||_row ⊙ (W x + s·B A x) + b, the row norm detached (as peft); the
//           magnitude m starts at ||W + s·BA|| (so DoRA == LoRA at init).
// Files: lora_A.weight, lora_B.weight, lora_magnitude_vector.
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "peft_internal.h"

static const vkp_peft_suffix suffixes[] = {{"lora_A.weight", "lora_A.%s.weight"},
                                           {"lora_B.weight", "lora_B.%s.weight"},
                                           {"lora_magnitude_vector", "lora_magnitude_vector.%s.weight"}};

static const vkp_peft_suffix *lora_suffixes(const vkp_adapter_slot *s, int *n) {
  (void)s;
  *n = 3;
  return suffixes;
}

// ---- config ---------------------------------------------------------------------------------

static vkp_status parse_init(const cJSON *v, const char *where, vkp_peft_config *c, vkp_error *err) {
  if (cJSON_IsBool(v)) {
    c->init_weights = cJSON_IsTrue(v);
    c->init = VKP_LORA_INIT_DEFAULT;
  } else if (cJSON_IsString(v) && !strcmp(v->valuestring, "gaussian")) {
    c->init = VKP_LORA_INIT_GAUSSIAN;
  } else {
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'init_lora_weights': expected true, false or \"gaussian\"", where);
  }
  return VKP_OK;
}

static void write_init(cJSON *j, const vkp_peft_config *c) {
  if (c->init == VKP_LORA_INIT_GAUSSIAN) cJSON_AddStringToObject(j, "init_lora_weights", "gaussian");
  else cJSON_AddBoolToObject(j, "init_lora_weights", c->init_weights);
}

static const vkp_json_field fields[] = {
    {"r", VKP_JSON_INT, offsetof(vkp_peft_config, r), .lo = 1, .hi = 65536, .def = 8, .flags = VKP_JSON_KEEP},
    {"lora_alpha", VKP_JSON_FLOAT, offsetof(vkp_peft_config, alpha), .def = 8, .flags = VKP_JSON_KEEP},
    {"lora_dropout", VKP_JSON_FLOAT, offsetof(vkp_peft_config, dropout), .lo = 0, .hi = 1, .flags = VKP_JSON_KEEP},
    {"use_rslora", VKP_JSON_BOOL, offsetof(vkp_peft_config, use_rslora), .flags = VKP_JSON_KEEP},
    {"use_dora", VKP_JSON_BOOL, offsetof(vkp_peft_config, use_dora), .flags = VKP_JSON_KEEP},
};
static const vkp_peft_key keys[] = {{"bias", vkp_peft_key_bias, vkp_peft_write_bias},
                                    {"init_lora_weights", parse_init, write_init}};

static vkp_status validate(const vkp_peft_config *c, const char *where, vkp_error *err) {
  if (c->r <= 0) return vkp_error_set(err, VKP_ERR_INVALID, "%s: r must be positive", where);
  return vkp_peft_check_probability(c->dropout, where, "lora_dropout", err);
}

static bool fits_weight(const vkp_peft_config *c, const vkp_module *mod) {
  (void)c;
  return mod->kind == VKP_MODULE_LINEAR || mod->kind == VKP_MODULE_CONV2D;
}

// ---- parameters -----------------------------------------------------------------------------

// ||W + scale·B·A|| per output row (peft's DoRA magnitude init); A (r, cols), B (rows, r).
static vkp_status row_norms(vkp_model *m, vkp_param *w, vkp_param *A, vkp_param *B, int64_t r, float scale,
                            float *norms, int64_t rows) {
  int64_t n = vkp_param_numel(w), cols = n / rows;
  float *v = malloc((size_t)n * sizeof *v), *a = malloc((size_t)(r * cols) * sizeof *a),
        *b = malloc((size_t)(rows * r) * sizeof *b);
  vkp_status st = v && a && b ? VKP_OK : VKP_ERR_OOM;
  if (!st) st = vkp_param_read_f32(m, w, v);
  if (!st) st = vkp_param_read_f32(m, A, a);
  if (!st) st = vkp_param_read_f32(m, B, b);
  for (int64_t i = 0; !st && i < rows; i++) {
    double acc = 0;
    for (int64_t c = 0; c < cols; c++) {
      double d = 0;
      for (int64_t k = 0; k < r; k++) d += (double)b[i * r + k] * a[k * cols + c];
      double x = v[i * cols + c] + scale * d;
      acc += x * x;
    }
    norms[i] = (float)sqrt(acc);
  }
  free(v), free(a), free(b);
  return st;
}

static vkp_status create(vkp_model *m, vkp_adapter_slot *s, uint64_t seed) {
  const vkp_peft_config *c = &s->adapter->cfg;
  vkp_module *mod = s->module;
  bool conv = mod->kind == VKP_MODULE_CONV2D;
  int64_t in = mod->in, out = mod->out, k = conv ? (int64_t)mod->kh * mod->kw : 1, r = c->r;
  float ku_in = 1.0f / sqrtf((float)(in * k));   // kaiming_uniform(a=sqrt(5)) bound
  s->scaling = c->use_rslora ? c->alpha / sqrtf((float)r) : c->alpha / (float)r;
  int64_t a_shape[4] = {r, in, mod->kh, mod->kw}, b_shape[4] = {out, r, 1, 1};
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, conv ? 4 : 2, a_shape));
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, conv ? 4 : 2, b_shape));
  if (c->init == VKP_LORA_INIT_GAUSSIAN) VKP_TRY(vkp_param_init_normal(m, s->p[0], 1.0f / (float)r, seed));
  else VKP_TRY(vkp_peft_init_uniform(m, s->p[0], ku_in, seed));
  if (!c->init_weights) VKP_TRY(vkp_peft_init_uniform(m, s->p[1], 1.0f / sqrtf((float)r), seed + 1));
  if (c->use_dora) {   // magnitude: (out), or (1, out, 1, 1) on a conv as peft's DoraConv2dLayer
    int64_t ms[4] = {1, out, 1, 1};
    VKP_TRY(conv ? vkp_peft_new_param(m, s, VKP_DTYPE_F32, 4, ms) : vkp_peft_new_param(m, s, VKP_DTYPE_F32, 1, &out));
    float *norms = malloc((size_t)out * sizeof *norms);
    if (!norms) return VKP_ERR_OOM;
    vkp_status st = row_norms(m, mod->weight, s->p[0], s->p[1], r, s->scaling, norms, out);   // DoRA == LoRA at init
    if (st == VKP_OK) st = vkp_param_write_f32(m, s->p[2], norms);
    free(norms);
    VKP_TRY(st);
  }
  return VKP_OK;
}

// ---- forward --------------------------------------------------------------------------------

static vkp_tensor *P(vkp_model *m, vkp_param *p) { return vkp_param_tensor(m, p); }

// s · B @ A shaped like the module's weight (DoRA's norm).
static vkp_tensor *delta_weight(vkp_model *m, vkp_adapter_slot *s) {
  vkp_graph *g = m->graph;
  vkp_module *mod = s->module;
  vkp_tensor *W = P(m, mod->weight);
  if (!W) return NULL;
  vkp_tensor *d = vkp_matmul(g, vkp_reshape(g, P(m, s->p[1]), 2, (int64_t[]){mod->out, s->adapter->cfg.r}),
                             vkp_reshape(g, P(m, s->p[0]), 2, (int64_t[]){s->adapter->cfg.r, -1}), false, false);
  d = vkp_scale(g, d, vkp_slot_scale(s));
  return vkp_reshape(g, d, W->ndim, W->shape);
}

static void weight_pre(vkp_peft_weight_call *c, vkp_adapter_slot *s) {
  if (s->adapter->cfg.use_dora) c->defer_bias = true;
}

static void weight_post(vkp_peft_weight_call *c, vkp_adapter_slot *s) {
  vkp_model *m = c->m;
  vkp_graph *g = c->g;
  vkp_module *mod = c->mod;
  const vkp_peft_config *cf = &s->adapter->cfg;
  vkp_tensor *xd = m->training && cf->dropout > 0 ? vkp_dropout(g, c->x, cf->dropout, vkp_peft_salt(s)) : c->x;
  vkp_tensor *A = P(m, s->p[0]), *B = P(m, s->p[1]);
  if (cf->use_dora) {
    // DoRA (peft): y = m / ||W + s·BA||_row ⊙ (W x + s·B A x) + b, the norm detached.
    vkp_tensor *Wm = vkp_add(g, P(m, mod->weight), delta_weight(m, s));
    vkp_tensor *W2 = vkp_reshape(g, Wm, 2, (int64_t[]){mod->out, -1});
    vkp_tensor *norm = vkp_detach(g, vkp_sqrt(g, vkp_sum_axis(g, vkp_sqr(g, W2), 1)));
    vkp_tensor *mag = vkp_reshape(g, P(m, s->p[2]), 2, (int64_t[]){mod->out, 1});
    vkp_tensor *sc = vkp_div(g, mag, norm);   // (out, 1)
    if (s->adapter->scale != 1.0f) sc = vkp_affine(g, sc, s->adapter->scale, 1.0f - s->adapter->scale);
    c->out_scale = vkp_peft_channel_vector(m, sc, c->conv);
  }
  if (c->conv) {
    vkp_tensor *h = vkp_conv2d(g, vkp_conv2d(g, xd, A, NULL, c->stride, c->padding), B, NULL, 1, 0);
    c->y = vkp_add(g, c->y, vkp_scale(g, h, vkp_slot_scale(s)));
  } else {   // the low-rank term accumulates into the base product's node (core/ops/matmul.c)
    c->y = vkp_linear_add_lora(g, c->y, xd, A, B, vkp_slot_scale(s));
  }
}

// ---- merge ----------------------------------------------------------------------------------

static vkp_status merge(vkp_model *m, vkp_adapter_slot *s, vkp_peft_merge_call *c, bool merge) {
  const vkp_peft_config *cf = &s->adapter->cfg;
  int64_t out = c->out, cols = c->cols, r = cf->r;
  double *d = calloc((size_t)(out * cols), sizeof *d);
  float *p0 = vkp_peft_read_param(m, s->p[0]), *p1 = vkp_peft_read_param(m, s->p[1]);
  float *mag = cf->use_dora ? vkp_peft_read_param(m, s->p[2]) : NULL;
  vkp_status st = d && p0 && p1 && (!cf->use_dora || mag) ? VKP_OK : VKP_ERR_OOM;
  double sc = vkp_slot_scale(s);
  for (int64_t i = 0; !st && i < out; i++)
    for (int64_t k = 0; k < r; k++)
      for (int64_t j = 0; j < cols; j++) d[i * cols + j] += sc * p1[i * r + k] * p0[k * cols + j];
  double *w = c->w;
  if (!st && cf->use_dora) {
    // As the forward pass: y = f ⊙ (W + s·BA) x + b, f = u·m/||W + s·BA|| + 1 - u per row.
    double u = s->adapter->scale;
    if (merge) {
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
    } else {
      for (int64_t i = 0; i < out; i++)
        for (int64_t j = 0; j < cols; j++) w[i * cols + j] = (float)(w[i * cols + j] / (double)s->dora_norm[i] - d[i * cols + j]);
    }
  } else if (!st) {
    vkp_peft_merge_add(c, d, merge);
  }
  free(d), free(p0), free(p1), free(mag);
  return st;
}

static const vkp_peft_alias aliases[] = {{"rslora", "{\"use_rslora\": true}"}, {"dora", "{\"use_dora\": true}"}};

static const vkp_peft_preset presets[] = {
    {"lora", "{\"method\":\"lora\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"@q\",\"@v\"],\"modules_to_save\":[\"@head\"]}", false},
    {"lora_all", "{\"method\":\"lora\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"@q\",\"@k\",\"@v\",\"@o\",\"@mlp_in\",\"@mlp_out\"],\"modules_to_save\":[\"@head\"]}", true},
    {"rslora", "{\"method\":\"rslora\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"@q\",\"@v\"],\"modules_to_save\":[\"@head\"]}", false},
    {"dora", "{\"method\":\"dora\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"@q\",\"@v\"],\"modules_to_save\":[\"@head\"]}", false},
};

const vkp_peft_method_def vkp_method_lora = {
    .id = VKP_PEFT_LORA,
    .name = "lora",
    .peft_type = "LORA",
    .level = VKP_PEFT_LEVEL_WEIGHT,
    .summary = "low-rank update s·B·A per linear/conv (rsLoRA: s = alpha/sqrt(r); DoRA: with a learned row magnitude)",
    .aliases = aliases,
    .n_aliases = 2,
    .fields = fields,
    .n_fields = sizeof fields / sizeof *fields,
    .keys = keys,
    .n_keys = 2,
    .validate = validate,
    .fits = fits_weight,
    .create = create,
    .suffixes = lora_suffixes,
    .weight_pre = weight_pre,
    .weight_post = weight_post,
    .merge = merge,
    .presets = presets,
    .n_presets = sizeof presets / sizeof *presets,
};
