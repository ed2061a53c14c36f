// method_vera.c — VeRA (peft VeraConfig): frozen random projections A (r, max in) and B (max
// out, r) shared by every targeted layer (sliced to each layer's size), and per layer two trained
// vectors: y += b ⊙ B (d ⊙ A dropout(x)). Files: vera_lambda_d (r), vera_lambda_b (out), and the
// shared projections as base_model.vera_A / base_model.vera_B (peft's save_projection).
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "peft_internal.h"

static const vkp_peft_suffix suffixes[] = {{"vera_lambda_d", "vera_lambda_d.%s"}, {"vera_lambda_b", "vera_lambda_b.%s"}};
static const char *const shared_keys[] = {"vera_A", "vera_B", NULL};

static const vkp_peft_suffix *vera_suffixes(const vkp_adapter_slot *s, int *n) {
  (void)s;
  *n = 2;
  return suffixes;
}

static vkp_status parse_save_projection(const cJSON *v, const char *where, vkp_peft_config *c, vkp_error *err) {
  (void)c;   // vkpeft always saves the projections
  if (!cJSON_IsBool(v))
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'save_projection' must be true or false", where);
  return VKP_OK;
}

static void write_save_projection(cJSON *j, const vkp_peft_config *c) {
  (void)c;
  cJSON_AddBoolToObject(j, "save_projection", true);
}

static const vkp_json_field fields[] = {
    {"r", VKP_JSON_INT, offsetof(vkp_peft_config, r), .lo = 1, .hi = 65536, .def = 256, .flags = VKP_JSON_KEEP},
    {"d_initial", VKP_JSON_FLOAT, offsetof(vkp_peft_config, vera_d_initial), .def = 0.1, .flags = VKP_JSON_KEEP},
    {"projection_prng_key", VKP_JSON_INT, offsetof(vkp_peft_config, projection_seed), .lo = 0, .hi = 1 << 30,
     .flags = VKP_JSON_KEEP},
    {"vera_dropout", VKP_JSON_FLOAT, offsetof(vkp_peft_config, dropout), .lo = 0, .hi = 1, .flags = VKP_JSON_KEEP},
    {"init_weights", VKP_JSON_BOOL, offsetof(vkp_peft_config, init_weights), .def = 1, .flags = VKP_JSON_KEEP},
};
static const vkp_peft_key keys[] = {{"save_projection", parse_save_projection, write_save_projection},
                                    {"bias", vkp_peft_key_bias, vkp_peft_write_bias}};

static vkp_status validate(const vkp_peft_config *c, const char *where, vkp_error *err) {
  if (c->r <= 0) return vkp_error_set(err, VKP_ERR_INVALID, "%s: r must be positive", where);
  return vkp_peft_check_probability(c->dropout, where, "vera_dropout", err);
}

static bool fits(const vkp_peft_config *c, const vkp_module *mod) {
  (void)c;
  return mod->kind == VKP_MODULE_LINEAR;
}

// The shared frozen projections, sized for the largest targeted module.
static vkp_status prepare(vkp_model *m, vkp_adapter *a, int64_t max_in, int64_t max_out) {
  int64_t as[2] = {a->cfg.r, max_in}, bs[2] = {max_out, a->cfg.r};
  VKP_TRY(vkp_peft_new_shared(m, a, "vera_A", 2, as));
  VKP_TRY(vkp_peft_new_shared(m, a, "vera_B", 2, bs));
  VKP_TRY(vkp_peft_init_uniform(m, a->shared[0], 1.0f / sqrtf((float)max_in), a->cfg.projection_seed + 11));
  return vkp_peft_init_uniform(m, a->shared[1], 1.0f / sqrtf((float)a->cfg.r), a->cfg.projection_seed + 12);
}

static vkp_status create(vkp_model *m, vkp_adapter_slot *s, uint64_t seed) {
  const vkp_peft_config *c = &s->adapter->cfg;
  int64_t r = c->r, out = s->module->out;
  s->scaling = 1.0f;
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 1, &r));
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 1, &out));
  VKP_TRY(vkp_param_fill(m, s->p[0], c->vera_d_initial));
  if (!c->init_weights) VKP_TRY(vkp_peft_init_uniform(m, s->p[1], 0.1f, seed));
  return VKP_OK;
}

static void weight_post(vkp_peft_weight_call *c, vkp_adapter_slot *s) {
  vkp_model *m = c->m;
  vkp_graph *g = c->g;
  vkp_adapter *a = s->adapter;
  int64_t r = a->cfg.r;
  vkp_tensor *A = vkp_contiguous(g, vkp_slice(g, vkp_param_tensor(m, a->shared[0]), 1, 0, c->mod->in));
  vkp_tensor *B = vkp_contiguous(g, vkp_slice(g, vkp_param_tensor(m, a->shared[1]), 0, 0, c->mod->out));
  vkp_tensor *xd = m->training && a->cfg.dropout > 0 ? vkp_dropout(g, c->x, a->cfg.dropout, vkp_peft_salt(s)) : c->x;
  vkp_tensor *h = vkp_mul(g, vkp_linear(g, xd, A, NULL), vkp_reshape(g, vkp_param_tensor(m, s->p[0]), 1, &r));
  h = vkp_mul(g, vkp_linear(g, h, B, NULL), vkp_param_tensor(m, s->p[1]));
  c->y = vkp_add(g, c->y, vkp_scale(g, h, vkp_slot_scale(s)));
}

static vkp_status merge(vkp_model *m, vkp_adapter_slot *s, vkp_peft_merge_call *c, bool merge) {
  vkp_adapter *a = s->adapter;
  int64_t out = c->out, cols = c->cols, r = a->cfg.r, in_max = a->shared[0]->shape[1], rr = a->shared[1]->shape[1];
  double *d = calloc((size_t)(out * cols), sizeof *d);
  float *p0 = vkp_peft_read_param(m, s->p[0]), *p1 = vkp_peft_read_param(m, s->p[1]),
        *p2 = vkp_peft_read_param(m, a->shared[0]), *p3 = vkp_peft_read_param(m, a->shared[1]);
  vkp_status st = d && p0 && p1 && p2 && p3 ? VKP_OK : VKP_ERR_OOM;
  double sc = vkp_slot_scale(s);
  for (int64_t i = 0; !st && i < out; i++)
    for (int64_t k = 0; k < r; k++)
      for (int64_t j = 0; j < cols; j++) d[i * cols + j] += sc * p1[i] * p3[i * rr + k] * p0[k] * p2[k * in_max + j];
  if (!st) vkp_peft_merge_add(c, d, merge);
  free(d), free(p0), free(p1), free(p2), free(p3);
  return st;
}

static const vkp_peft_preset presets[] = {
    {"vera", "{\"method\":\"vera\",\"r\":64,\"target_modules\":[\"@q\",\"@v\"],\"modules_to_save\":[\"@head\"]}", false},
};

const vkp_peft_method_def vkp_method_vera = {
    .id = VKP_PEFT_VERA,
    .name = "vera",
    .peft_type = "VERA",
    .level = VKP_PEFT_LEVEL_WEIGHT,
    .summary = "shared frozen random projections scaled by two trained vectors per layer",
    .fields = fields,
    .n_fields = sizeof fields / sizeof *fields,
    .keys = keys,
    .n_keys = 2,
    .validate = validate,
    .fits = fits,
    .prepare = prepare,
    .create = create,
    .suffixes = vera_suffixes,
    .shared_keys = shared_keys,
    .weight_post = weight_post,
    .merge = merge,
    .presets = presets,
    .n_presets = 1,
};
