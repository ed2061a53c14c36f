// method_loha.c — LoHa (peft LoHaConfig): ΔW = s · (w1a w1b) ⊙ (w2a w2b) over (out, in·kh·kw),
// s = alpha / r, added to the weight. Files: hada_w1_a (out, r), hada_w1_b (r, in·kh·kw),
// hada_w2_a, hada_w2_b.
#include <stddef.h>
#include <stdlib.h>

#include "peft_internal.h"

static const vkp_peft_suffix suffixes[] = {{"hada_w1_a", "hada_w1_a.%s"}, {"hada_w1_b", "hada_w1_b.%s"},
                                           {"hada_w2_a", "hada_w2_a.%s"}, {"hada_w2_b", "hada_w2_b.%s"}};

static const vkp_peft_suffix *loha_suffixes(const vkp_adapter_slot *s, int *n) {
  (void)s;
  *n = 4;
  return suffixes;
}

static const vkp_json_field fields[] = {
    {"r", VKP_JSON_INT, offsetof(vkp_peft_config, r), .lo = 1, .hi = 65536, .def = 8, .flags = VKP_JSON_KEEP},
    {"alpha", VKP_JSON_FLOAT, offsetof(vkp_peft_config, alpha), .def = 8, .flags = VKP_JSON_KEEP},
    {"init_weights", VKP_JSON_BOOL, offsetof(vkp_peft_config, init_weights), .def = 1, .flags = VKP_JSON_KEEP},
};

static vkp_status validate(const vkp_peft_config *c, const char *where, vkp_error *err) {
  return c->r > 0 ? VKP_OK : vkp_error_set(err, VKP_ERR_INVALID, "%s: r must be positive", where);
}

static bool fits(const vkp_peft_config *c, const vkp_module *mod) {
  (void)c;
  return mod->kind == VKP_MODULE_LINEAR || mod->kind == VKP_MODULE_CONV2D;
}

static vkp_status create(vkp_model *m, vkp_adapter_slot *s, uint64_t seed) {
  const vkp_peft_config *c = &s->adapter->cfg;
  vkp_module *mod = s->module;
  int64_t k = mod->kind == VKP_MODULE_CONV2D ? (int64_t)mod->kh * mod->kw : 1, r = c->r;
  s->scaling = c->alpha / (float)r;
  int64_t a[2] = {mod->out, r}, b[2] = {r, mod->in * k};
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 2, a));
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 2, b));
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 2, a));
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 2, b));
  VKP_TRY(vkp_param_init_normal(m, s->p[0], 0.1f, seed));
  VKP_TRY(vkp_param_init_normal(m, s->p[1], 1.0f, seed + 1));
  VKP_TRY(vkp_param_init_normal(m, s->p[2], 0.1f, seed + 2));
  if (!c->init_weights) VKP_TRY(vkp_param_init_normal(m, s->p[3], 1.0f, seed + 3));   // else zeros: ΔW = 0
  return VKP_OK;
}

static void weight_pre(vkp_peft_weight_call *c, vkp_adapter_slot *s) {
  vkp_model *m = c->m;
  vkp_graph *g = c->g;
  vkp_tensor *W = vkp_param_tensor(m, c->mod->weight);
  if (!W) return;
  vkp_tensor *w1 = vkp_matmul(g, vkp_param_tensor(m, s->p[0]), vkp_param_tensor(m, s->p[1]), false, false);
  vkp_tensor *w2 = vkp_matmul(g, vkp_param_tensor(m, s->p[2]), vkp_param_tensor(m, s->p[3]), false, false);
  vkp_tensor *d = vkp_scale(g, vkp_mul(g, w1, w2), vkp_slot_scale(s));
  c->W = vkp_add(g, c->W, vkp_reshape(g, d, W->ndim, W->shape));
}

static vkp_status merge(vkp_model *m, vkp_adapter_slot *s, vkp_peft_merge_call *c, bool merge) {
  int64_t out = c->out, cols = c->cols, r = s->p[0]->shape[1];
  double *d = calloc((size_t)(out * cols), sizeof *d);
  float *p0 = vkp_peft_read_param(m, s->p[0]), *p1 = vkp_peft_read_param(m, s->p[1]), *p2 = vkp_peft_read_param(m, s->p[2]),
        *p3 = vkp_peft_read_param(m, s->p[3]);
  vkp_status st = d && p0 && p1 && p2 && p3 ? VKP_OK : VKP_ERR_OOM;
  double sc = vkp_slot_scale(s);
  for (int64_t i = 0; !st && i < out; i++)
    for (int64_t j = 0; j < cols; j++) {
      double a = 0, b = 0;
      for (int64_t k = 0; k < r; k++) a += (double)p0[i * r + k] * p1[k * cols + j], b += (double)p2[i * r + k] * p3[k * cols + j];
      d[i * cols + j] = sc * a * b;
    }
  if (!st) vkp_peft_merge_add(c, d, merge);
  free(d), free(p0), free(p1), free(p2), free(p3);
  return st;
}

static const vkp_peft_preset presets[] = {
    {"loha", "{\"method\":\"loha\",\"r\":8,\"alpha\":8,\"target_modules\":[\"@q\",\"@v\"],\"modules_to_save\":[\"@head\"]}", false},
};

const vkp_peft_method_def vkp_method_loha = {
    .id = VKP_PEFT_LOHA,
    .name = "loha",
    .peft_type = "LOHA",
    .level = VKP_PEFT_LEVEL_WEIGHT,
    .summary = "Hadamard product of two low-rank matrices added to the weight",
    .fields = fields,
    .n_fields = sizeof fields / sizeof *fields,
    .validate = validate,
    .fits = fits,
    .create = create,
    .suffixes = loha_suffixes,
    .weight_pre = weight_pre,
    .merge = merge,
    .presets = presets,
    .n_presets = 1,
};
