// method_lokr.c — LoKr (peft LoKrConfig): ΔW = s · kron(w1, w2), s = alpha / r, added to the
// weight. As peft, the input channels are factorised (not Cin·kh·kw): w1 (out_m, in_m) and w2
// (out_n, in_n[, kh, kw]) with Cin = in_m·in_n, Cout = out_m·out_n (LyCORIS `factorization`);
// w2 is low-rank, lokr_w2_a (out_n, r) @ lokr_w2_b (r, in_n·kh·kw), when r < max(out_n, in_n) / 2.
// Files: lokr_w1, lokr_w2 or lokr_w2_a + lokr_w2_b.
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "peft_internal.h"

static const vkp_peft_suffix full_suffixes[] = {{"lokr_w1", "lokr_w1.%s"}, {"lokr_w2", "lokr_w2.%s"}};
static const vkp_peft_suffix lowrank_suffixes[] = {{"lokr_w1", "lokr_w1.%s"}, {"lokr_w2_a", "lokr_w2_a.%s"},
                                                   {"lokr_w2_b", "lokr_w2_b.%s"}};

static const vkp_peft_suffix *lokr_suffixes(const vkp_adapter_slot *s, int *n) {
  *n = s->lowrank ? 3 : 2;
  return s->lowrank ? lowrank_suffixes : full_suffixes;
}

static const vkp_json_field fields[] = {
    {"r", VKP_JSON_INT, offsetof(vkp_peft_config, r), .lo = 1, .hi = 65536, .def = 8, .flags = VKP_JSON_KEEP},
    {"alpha", VKP_JSON_FLOAT, offsetof(vkp_peft_config, alpha), .def = 8, .flags = VKP_JSON_KEEP},
    {"init_weights", VKP_JSON_BOOL, offsetof(vkp_peft_config, init_weights), .def = 1, .flags = VKP_JSON_KEEP},
    {"decompose_factor", VKP_JSON_INT, offsetof(vkp_peft_config, decompose_factor), .lo = -1, .hi = 1 << 20, .def = -1,
     .flags = VKP_JSON_KEEP},
};

static bool fits(const vkp_peft_config *c, const vkp_module *mod) {
  (void)c;
  return mod->kind == VKP_MODULE_LINEAR || mod->kind == VKP_MODULE_CONV2D;
}

// Factorisation of a dimension into (m, n), m <= n, as LyCORIS/peft `factorization`.
static void factorize(int64_t dim, int factor, int64_t *a, int64_t *b) {
  if (factor > 0 && dim % factor == 0) {
    int64_t m = factor, n = dim / factor;
    if (m > n) *a = n, *b = m;
    else *a = m, *b = n;
    return;
  }
  if (factor < 0) factor = (int)dim;
  int64_t m = 1, n = dim, length = m + n;
  while (m < n) {
    int64_t nm = m + 1;
    while (dim % nm) nm++;
    int64_t nn = dim / nm;
    if (nm + nn > length || nm > factor) break;
    m = nm, n = nn, length = m + n;
  }
  if (m > n) *a = n, *b = m;
  else *a = m, *b = n;
}

static vkp_status create(vkp_model *m, vkp_adapter_slot *s, uint64_t seed) {
  const vkp_peft_config *c = &s->adapter->cfg;
  vkp_module *mod = s->module;
  bool conv = mod->kind == VKP_MODULE_CONV2D;
  int64_t k = conv ? (int64_t)mod->kh * mod->kw : 1, r = c->r;
  s->scaling = c->alpha / (float)r;   // peft: alpha / r, also when w1 and w2 are full matrices
  int64_t in_m, in_n, out_m, out_n;
  factorize(mod->in, c->decompose_factor, &in_m, &in_n);
  factorize(mod->out, c->decompose_factor, &out_m, &out_n);
  int64_t w1[2] = {out_m, in_m}, w2[4] = {out_n, in_n, mod->kh, mod->kw};
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 2, w1));
  VKP_TRY(vkp_peft_init_uniform(m, s->p[0], 1.0f / sqrtf((float)in_m), seed));
  s->lowrank = (double)r < (double)(out_n > in_n ? out_n : in_n) / 2;
  if (s->lowrank) {
    int64_t a2[2] = {out_n, r}, b2[2] = {r, in_n * k};
    VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 2, a2));
    VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, 2, b2));
    VKP_TRY(vkp_peft_init_uniform(m, s->p[1], 1.0f / sqrtf((float)r), seed + 1));
    if (!c->init_weights) VKP_TRY(vkp_peft_init_uniform(m, s->p[2], 1.0f / sqrtf((float)(in_n * k)), seed + 2));
    return VKP_OK;
  }
  VKP_TRY(vkp_peft_new_param(m, s, VKP_DTYPE_F32, conv ? 4 : 2, w2));
  if (!c->init_weights) VKP_TRY(vkp_peft_init_uniform(m, s->p[1], 1.0f / sqrtf((float)(in_n * k)), seed + 1));
  return VKP_OK;
}

static void weight_pre(vkp_peft_weight_call *c, vkp_adapter_slot *s) {
  vkp_model *m = c->m;
  vkp_graph *g = c->g;
  vkp_tensor *W = vkp_param_tensor(m, c->mod->weight);
  if (!W) return;
  vkp_tensor *w1 = vkp_param_tensor(m, s->p[0]);
  vkp_tensor *w2 = s->lowrank ? vkp_matmul(g, vkp_param_tensor(m, s->p[1]), vkp_param_tensor(m, s->p[2]), false, false)
                              : vkp_param_tensor(m, s->p[1]);   // conv: (c, in_n*kh*kw)
  if (!w1 || !w2) return;
  int64_t a = w1->shape[0], b = w1->shape[1], cc = w2->shape[0], e = vkp_tensor_numel(w2) / cc;
  vkp_tensor *kr = vkp_mul(g, vkp_reshape(g, w1, 4, (int64_t[]){a, 1, b, 1}), vkp_reshape(g, w2, 4, (int64_t[]){1, cc, 1, e}));
  vkp_tensor *d = vkp_scale(g, vkp_reshape(g, kr, 2, (int64_t[]){a * cc, b * e}), vkp_slot_scale(s));
  c->W = vkp_add(g, c->W, vkp_reshape(g, d, W->ndim, W->shape));
}

static vkp_status merge(vkp_model *m, vkp_adapter_slot *s, vkp_peft_merge_call *c, bool merge) {
  int64_t cols = c->cols, a = s->p[0]->shape[0], b = s->p[0]->shape[1], cc = s->p[1]->shape[0];
  int64_t e = s->lowrank ? s->p[2]->shape[1] : vkp_param_numel(s->p[1]) / cc;
  double *d = calloc((size_t)(c->out * cols), sizeof *d);
  float *p0 = vkp_peft_read_param(m, s->p[0]), *p1 = vkp_peft_read_param(m, s->p[1]);
  vkp_status st = d && p0 && p1 ? VKP_OK : VKP_ERR_OOM;
  if (!st && s->lowrank) {   // w2 = w2_a @ w2_b on the host
    int64_t r = s->p[1]->shape[1];
    float *w2b = vkp_peft_read_param(m, s->p[2]), *w2 = calloc((size_t)(cc * e), sizeof *w2);
    if (!w2b || !w2) st = VKP_ERR_OOM;
    for (int64_t i = 0; !st && i < cc; i++)
      for (int64_t j = 0; j < e; j++) {
        double acc = 0;
        for (int64_t q = 0; q < r; q++) acc += (double)p1[i * r + q] * w2b[q * e + j];
        w2[i * e + j] = (float)acc;
      }
    free(w2b);
    free(p1);
    p1 = w2;
  }
  double sc = vkp_slot_scale(s);
  for (int64_t i = 0; !st && i < a; i++)
    for (int64_t j = 0; j < b; j++)
      for (int64_t k = 0; k < cc; k++)
        for (int64_t l = 0; l < e; l++) d[(i * cc + k) * cols + j * e + l] = sc * p0[i * b + j] * p1[k * e + l];
  if (!st) vkp_peft_merge_add(c, d, merge);
  free(d), free(p0), free(p1);
  return st;
}

static const vkp_peft_preset presets[] = {
    {"lokr", "{\"method\":\"lokr\",\"r\":8,\"alpha\":8,\"target_modules\":[\"@q\",\"@v\"],\"modules_to_save\":[\"@head\"]}", false},
};

const vkp_peft_method_def vkp_method_lokr = {
    .id = VKP_PEFT_LOKR,
    .name = "lokr",
    .peft_type = "LOKR",
    .level = VKP_PEFT_LEVEL_WEIGHT,
    .summary = "Kronecker product of two small factors (the second optionally low-rank) added to the weight",
    .fields = fields,
    .n_fields = sizeof fields / sizeof *fields,
    .fits = fits,
    .create = create,
    .suffixes = lokr_suffixes,
    .weight_pre = weight_pre,
    .merge = merge,
    .presets = presets,
    .n_presets = 1,
};
