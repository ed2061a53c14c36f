// peft.c — attaching adapters to a model: module matching, parameter creation, initialisation,
// enable/scale, accounting and names.
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peft_internal.h"

// ---- suffix tables (saved-file names, HF PEFT spelling) -------------------------------------

typedef struct suffix_def {
  const char *saved;   // in adapter_model.safetensors
  const char *peft;    // in peft's in-memory state dict, %s = adapter name
} suffix_def;

static const suffix_def lora_suffixes[] = {{"lora_A.weight", "lora_A.%s.weight"},
                                           {"lora_B.weight", "lora_B.%s.weight"},
                                           {"lora_magnitude_vector", "lora_magnitude_vector.%s.weight"}};
static const suffix_def loha_suffixes[] = {{"hada_w1_a", "hada_w1_a.%s"}, {"hada_w1_b", "hada_w1_b.%s"},
                                           {"hada_w2_a", "hada_w2_a.%s"}, {"hada_w2_b", "hada_w2_b.%s"}};
static const suffix_def lokr_suffixes[] = {{"lokr_w1", "lokr_w1.%s"}, {"lokr_w2", "lokr_w2.%s"}};
static const suffix_def lokr_lowrank_suffixes[] = {{"lokr_w1", "lokr_w1.%s"}, {"lokr_w2_a", "lokr_w2_a.%s"}, {"lokr_w2_b", "lokr_w2_b.%s"}};
static const suffix_def ia3_suffixes[] = {{"ia3_l", "ia3_l.%s"}};
static const suffix_def vera_suffixes[] = {{"vera_lambda_d", "vera_lambda_d.%s"}, {"vera_lambda_b", "vera_lambda_b.%s"}};
static const suffix_def adapter_suffixes[] = {{"adapter_down.weight", "adapter_down.%s.weight"},
                                              {"adapter_down.bias", "adapter_down.%s.bias"},
                                              {"adapter_up.weight", "adapter_up.%s.weight"},
                                              {"adapter_up.bias", "adapter_up.%s.bias"}};
static const suffix_def attn_adapter_suffixes[] = {{"attn_adapter_down.weight", "attn_adapter_down.%s.weight"},
                                                   {"attn_adapter_down.bias", "attn_adapter_down.%s.bias"},
                                                   {"attn_adapter_up.weight", "attn_adapter_up.%s.weight"},
                                                   {"attn_adapter_up.bias", "attn_adapter_up.%s.bias"}};
static const suffix_def vpt_suffixes[] = {{"prompt_embeddings", "prompt_embeddings.%s"}};
static const suffix_def prefix_suffixes[] = {{"prefix_keys", "prefix_keys.%s"}, {"prefix_values", "prefix_values.%s"}};
static const suffix_def masked_suffixes[] = {{"sparse_delta", "sparse_delta.%s"}, {"sparse_index", "sparse_index.%s"}};

static const suffix_def *suffixes_of(const vkp_adapter_slot *s, int *n) {
  switch (s->adapter->cfg.method) {
    case VKP_PEFT_LORA: *n = 3; return lora_suffixes;
    case VKP_PEFT_LOHA: *n = 4; return loha_suffixes;
    case VKP_PEFT_LOKR: *n = s->lowrank ? 3 : 2; return s->lowrank ? lokr_lowrank_suffixes : lokr_suffixes;
    case VKP_PEFT_IA3: *n = 1; return ia3_suffixes;
    case VKP_PEFT_VERA: *n = 2; return vera_suffixes;
    case VKP_PEFT_BOTTLENECK:
    case VKP_PEFT_ADAPTFORMER: *n = 4; return s->site == VKP_SITE_ATTN ? attn_adapter_suffixes : adapter_suffixes;
    case VKP_PEFT_VPT: *n = 1; return vpt_suffixes;
    case VKP_PEFT_PREFIX: *n = 2; return prefix_suffixes;
    case VKP_PEFT_MASKED: *n = 2; return masked_suffixes;
    default: *n = 0; return NULL;
  }
}

const char *vkp_slot_suffix(const vkp_adapter_slot *s, int i) {
  int n;
  const suffix_def *d = suffixes_of(s, &n);
  return d && i < n ? d[i].saved : "?";
}

void vkp_slot_peft_suffix(const vkp_adapter_slot *s, int i, char *out, size_t cap) {
  int n;
  const suffix_def *d = suffixes_of(s, &n);
  snprintf(out, cap, d && i < n ? d[i].peft : "?", s->adapter->cfg.name);
}

const char *vkp_module_file_name(const vkp_module *mod) { return mod->alias ? mod->alias : mod->name; }

bool vkp_slot_active(const vkp_adapter_slot *s) { return s->adapter->enabled && !s->adapter->merged; }
float vkp_slot_scale(const vkp_adapter_slot *s) { return s->scaling * s->adapter->scale; }

// ---- matching -------------------------------------------------------------------------------

static bool suffix_match(const char *name, const char *target) {
  size_t n = strlen(name), t = strlen(target);
  if (n == t) return !strcmp(name, target);
  return n > t && name[n - t - 1] == '.' && !strcmp(name + n - t, target);
}

static bool name_matches(const vkp_module *mod, char *const *list, int n) {
  for (int i = 0; i < n; i++)
    if (suffix_match(mod->name, list[i]) || (mod->alias && suffix_match(mod->alias, list[i]))) return true;
  return false;
}

static bool layer_selected(const vkp_peft_config *c, const vkp_module *mod) {
  if (!c->n_layers_to_transform) return true;
  for (int i = 0; i < c->n_layers_to_transform; i++)
    if (c->layers_to_transform[i] == mod->layer) return true;
  return false;
}

// Which module kinds a method attaches to, and whether it needs explicit targets.
static bool kind_fits(vkp_peft_method m, vkp_module_kind k) {
  switch (m) {
    case VKP_PEFT_LORA:
    case VKP_PEFT_LOHA:
    case VKP_PEFT_LOKR:
    case VKP_PEFT_IA3:
    case VKP_PEFT_MASKED: return k == VKP_MODULE_LINEAR || k == VKP_MODULE_CONV2D;
    case VKP_PEFT_VERA: return k == VKP_MODULE_LINEAR;
    case VKP_PEFT_BOTTLENECK:
    case VKP_PEFT_ADAPTFORMER:
    case VKP_PEFT_VPT: return k == VKP_MODULE_BLOCK;
    case VKP_PEFT_PREFIX: return k == VKP_MODULE_ATTENTION;
    case VKP_PEFT_LN_TUNING: return k == VKP_MODULE_LAYER_NORM || k == VKP_MODULE_GROUP_NORM;
    default: return false;
  }
}

static bool module_targeted(const vkp_peft_config *c, const vkp_module *mod, regex_t *re) {
  if (!kind_fits(c->method, mod->kind) || !layer_selected(c, mod)) return false;
  if (re) return !regexec(re, mod->name, 0, NULL, 0) || (mod->alias && !regexec(re, mod->alias, 0, NULL, 0));
  if (c->n_target_modules) return name_matches(mod, c->target_modules, c->n_target_modules);
  // No targets: methods defined on blocks / attention / norms take all of them.
  return mod->kind == VKP_MODULE_BLOCK || mod->kind == VKP_MODULE_ATTENTION || mod->kind == VKP_MODULE_LAYER_NORM ||
         mod->kind == VKP_MODULE_GROUP_NORM;
}

// ---- parameter creation and initialisation --------------------------------------------------

static uint64_t mix(uint64_t s) {
  s ^= s >> 33, s *= 0xff51afd7ed558ccdull, s ^= s >> 33, s *= 0xc4ceb9fe1a85ec53ull;
  return s ^ (s >> 33);
}

static vkp_status init_uniform(vkp_model *m, vkp_param *p, float bound, uint64_t seed) {
  size_t n = (size_t)vkp_param_numel(p);
  float *v = malloc(n * sizeof *v);
  if (!v) return VKP_ERR_OOM;
  uint64_t s = mix(seed);
  for (const char *c = p->name; *c; c++) s = mix(s ^ (uint8_t)*c);
  for (size_t i = 0; i < n; i++) {
    s = mix(s + 0x9E3779B97F4A7C15ull);
    v[i] = (float)(((double)(s >> 11) / 9007199254740992.0 * 2 - 1) * bound);
  }
  vkp_status st = vkp_param_write_f32(m, p, v);
  free(v);
  return st;
}

static vkp_status new_param(vkp_model *m, vkp_adapter_slot *s, int ndim, const int64_t *shape) {
  char name[512];
  const vkp_module *mod = s->module;
  const char *sfx = vkp_slot_suffix(s, s->np);
  if (!strcmp(s->adapter->cfg.name, "default")) snprintf(name, sizeof name, "%s.%s", vkp_module_file_name(mod), sfx);
  else snprintf(name, sizeof name, "%s.%s.%s", vkp_module_file_name(mod), s->adapter->cfg.name, sfx);
  vkp_param *p;
  VKP_TRY(vkp_model_add_param(m, name, VKP_DTYPE_F32, ndim, shape, &p));
  p->adapter = true;
  p->trainable = true;
  p->module = s->module;
  s->p[s->np++] = p;
  return VKP_OK;
}

// LoKr factorisation of a dimension into (m, n), m <= n, as LyCORIS/peft `factorization`.
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

static vkp_status create_slot_params(vkp_model *m, vkp_adapter_slot *s, uint64_t seed) {
  const vkp_peft_config *c = &s->adapter->cfg;
  vkp_module *mod = s->module;
  bool conv = mod->kind == VKP_MODULE_CONV2D;
  int64_t in = mod->in, out = mod->out, k = conv ? (int64_t)mod->kh * mod->kw : 1, r = c->r;
  float ku_in = 1.0f / sqrtf((float)(in * k));   // kaiming_uniform(a=sqrt(5)) bound
  switch (c->method) {
    case VKP_PEFT_LORA: {
      s->scaling = c->use_rslora ? c->alpha / sqrtf((float)r) : c->alpha / (float)r;
      int64_t a_shape[4] = {r, in, mod->kh, mod->kw}, b_shape[4] = {out, r, 1, 1};
      VKP_TRY(new_param(m, s, conv ? 4 : 2, a_shape));
      VKP_TRY(new_param(m, s, conv ? 4 : 2, b_shape));
      if (c->init == VKP_LORA_INIT_GAUSSIAN) VKP_TRY(vkp_param_init_normal(m, s->p[0], 1.0f / (float)r, seed));
      else VKP_TRY(init_uniform(m, s->p[0], ku_in, seed));
      if (!c->init_weights) VKP_TRY(init_uniform(m, s->p[1], 1.0f / sqrtf((float)r), seed + 1));
      if (c->use_dora) {   // magnitude: (out), or (1, out, 1, 1) on a conv as peft's DoraConv2dLayer
        int64_t ms[4] = {1, out, 1, 1};
        VKP_TRY(conv ? new_param(m, s, 4, ms) : new_param(m, s, 1, &out));
        float *norms = malloc((size_t)out * sizeof *norms);
        if (!norms) return VKP_ERR_OOM;
        vkp_status st = row_norms(m, mod->weight, s->p[0], s->p[1], r, s->scaling, norms, out);   // DoRA == LoRA at init
        if (st == VKP_OK) st = vkp_param_write_f32(m, s->p[2], norms);
        free(norms);
        VKP_TRY(st);
      }
      return VKP_OK;
    }
    case VKP_PEFT_LOHA: {
      s->scaling = c->alpha / (float)r;
      int64_t a[2] = {out, r}, b[2] = {r, in * k};
      VKP_TRY(new_param(m, s, 2, a));
      VKP_TRY(new_param(m, s, 2, b));
      VKP_TRY(new_param(m, s, 2, a));
      VKP_TRY(new_param(m, s, 2, b));
      VKP_TRY(vkp_param_init_normal(m, s->p[0], 0.1f, seed));
      VKP_TRY(vkp_param_init_normal(m, s->p[1], 1.0f, seed + 1));
      VKP_TRY(vkp_param_init_normal(m, s->p[2], 0.1f, seed + 2));
      if (!c->init_weights) VKP_TRY(vkp_param_init_normal(m, s->p[3], 1.0f, seed + 3));   // else zeros: ΔW = 0
      return VKP_OK;
    }
    case VKP_PEFT_LOKR: {
      s->scaling = c->alpha / (float)r;   // peft: alpha / r, also when w1 and w2 are full matrices
      // As peft: the input channels are factorised (not Cin*kh*kw); conv: lokr_w2 is
      // (out_n, in_n, kh, kw) and ΔW = kron(w1, w2) over (Cout, Cin*kh*kw).
      int64_t in_m, in_n, out_m, out_n;
      factorize(in, c->decompose_factor, &in_m, &in_n);
      factorize(out, c->decompose_factor, &out_m, &out_n);
      int64_t w1[2] = {out_m, in_m}, w2[4] = {out_n, in_n, mod->kh, mod->kw};
      VKP_TRY(new_param(m, s, 2, w1));
      VKP_TRY(init_uniform(m, s->p[0], 1.0f / sqrtf((float)in_m), seed));
      // As peft: w2 is low-rank (lokr_w2_a (out_n, r) @ lokr_w2_b (r, in_n*kh*kw)) when
      // r < max(out_n, in_n) / 2, else one full matrix.
      s->lowrank = (double)r < (double)(out_n > in_n ? out_n : in_n) / 2;
      if (s->lowrank) {
        int64_t a2[2] = {out_n, r}, b2[2] = {r, in_n * k};
        VKP_TRY(new_param(m, s, 2, a2));
        VKP_TRY(new_param(m, s, 2, b2));
        VKP_TRY(init_uniform(m, s->p[1], 1.0f / sqrtf((float)r), seed + 1));
        if (!c->init_weights) VKP_TRY(init_uniform(m, s->p[2], 1.0f / sqrtf((float)(in_n * k)), seed + 2));
        return VKP_OK;
      }
      VKP_TRY(new_param(m, s, conv ? 4 : 2, w2));
      if (!c->init_weights) VKP_TRY(init_uniform(m, s->p[1], 1.0f / sqrtf((float)(in_n * k)), seed + 1));
      return VKP_OK;
    }
    case VKP_PEFT_IA3: {
      s->scaling = 1.0f;
      mod->feedforward = name_matches(mod, c->feedforward_modules, c->n_feedforward_modules);
      int64_t ff[4] = {1, in, 1, 1}, o[4] = {out, 1, 1, 1};
      if (conv) {
        int64_t cs[4] = {1, mod->feedforward ? in : out, 1, 1};
        VKP_TRY(new_param(m, s, 4, cs));
      } else {
        VKP_TRY(new_param(m, s, 2, mod->feedforward ? ff : o));
      }
      if (c->init_weights) VKP_TRY(vkp_param_fill(m, s->p[0], 1.0f));
      else VKP_TRY(init_uniform(m, s->p[0], 1.0f, seed));
      return VKP_OK;
    }
    case VKP_PEFT_VERA: {
      s->scaling = 1.0f;
      VKP_TRY(new_param(m, s, 1, &r));
      VKP_TRY(new_param(m, s, 1, &out));
      VKP_TRY(vkp_param_fill(m, s->p[0], c->vera_d_initial));
      if (!c->init_weights) VKP_TRY(init_uniform(m, s->p[1], 0.1f, seed));
      return VKP_OK;
    }
    case VKP_PEFT_BOTTLENECK:
    case VKP_PEFT_ADAPTFORMER: {
      s->scaling = c->adapter_scale;
      int64_t h = mod->in, bn = c->bottleneck, down[2] = {bn, h}, up[2] = {h, bn};
      VKP_TRY(new_param(m, s, 2, down));
      VKP_TRY(new_param(m, s, 1, &bn));
      VKP_TRY(new_param(m, s, 2, up));
      VKP_TRY(new_param(m, s, 1, &h));
      VKP_TRY(init_uniform(m, s->p[0], 1.0f / sqrtf((float)h), seed));
      if (!c->init_weights) VKP_TRY(init_uniform(m, s->p[2], 1.0f / sqrtf((float)bn), seed + 1));   // else zeros: identity
      return VKP_OK;
    }
    case VKP_PEFT_VPT: {
      s->scaling = 1.0f;
      int64_t shape[2] = {c->n_tokens, mod->in};
      VKP_TRY(new_param(m, s, 2, shape));
      return init_uniform(m, s->p[0], sqrtf(6.0f / (float)(mod->in + c->n_tokens)), seed);
    }
    case VKP_PEFT_PREFIX: {
      s->scaling = 1.0f;
      int64_t shape[2] = {c->n_tokens, mod->in};
      VKP_TRY(new_param(m, s, 2, shape));
      VKP_TRY(new_param(m, s, 2, shape));
      VKP_TRY(vkp_param_init_normal(m, s->p[0], 0.02f, seed));
      return vkp_param_init_normal(m, s->p[1], 0.02f, seed + 1);
    }
    default:
      return vkp_error_set(vkp_ctx_err(m->ctx), VKP_ERR_UNSUPPORTED, "%s: not attachable to modules",
                           vkp_peft_method_name(c->method));
  }
}

int vkp_masked_create(vkp_model *m, vkp_adapter_slot *s, uint64_t seed);   // peft_masked.c

// ---- attach ---------------------------------------------------------------------------------

static vkp_status push_slot(vkp_adapter *a, vkp_adapter_slot *s) {
  if (a->nslots == a->slots_cap) {
    int cap = a->slots_cap ? a->slots_cap * 2 : 32;
    vkp_adapter_slot **v = realloc(a->slots, (size_t)cap * sizeof *v);
    if (!v) return VKP_ERR_OOM;
    a->slots = v;
    a->slots_cap = cap;
  }
  a->slots[a->nslots++] = s;
  return VKP_OK;
}

static vkp_status push_saved(vkp_adapter *a, vkp_param *p) {
  if (!p) return VKP_OK;
  for (int i = 0; i < a->nsaved; i++)
    if (a->saved[i] == p) return VKP_OK;
  if (a->nsaved == a->saved_cap) {
    int cap = a->saved_cap ? a->saved_cap * 2 : 32;
    vkp_param **v = realloc(a->saved, (size_t)cap * sizeof *v);
    if (!v) return VKP_ERR_OOM;
    a->saved = v;
    a->saved_cap = cap;
  }
  a->saved[a->nsaved++] = p;
  p->trainable = true;
  return VKP_OK;
}

static vkp_status copy_strings(char **dst, int *nd, char *const *src, int ns) {
  for (int i = 0; i < ns; i++)
    if (!(dst[i] = strdup(src[i]))) return VKP_ERR_OOM;
  *nd = ns;
  return VKP_OK;
}

static void adapter_free(vkp_adapter *a) {
  if (!a) return;
  for (int i = 0; i < a->nslots; i++) {
    free(a->slots[i]->dora_norm);
    free(a->slots[i]);
  }
  free(a->slots);
  free(a->saved);
  vkp_peft_config_clear(&a->cfg);
  free(a);
}

vkp_status vkp_peft_attach(vkp_model *m, const vkp_peft_config *cfg, uint64_t seed, vkp_adapter **out) {
  vkp_error *err = vkp_ctx_err(m->ctx);
  *out = NULL;
  if (!m->peft) {
    if (!(m->peft = calloc(1, sizeof *m->peft))) return VKP_ERR_OOM;
    m->peft_free = vkp_peft_free_all;
    vkp_model_set_trainable(m, false);   // the first adapter freezes the base
  }
  for (int i = 0; i < m->peft->n; i++)
    if (!strcmp(m->peft->adapters[i]->cfg.name, cfg->name) && m->peft->adapters[i]->cfg.method == cfg->method)
      return vkp_error_set(err, VKP_ERR_INVALID, "adapter '%s' (%s) is attached already", cfg->name,
                           vkp_peft_method_name(cfg->method));
  if (cfg->r <= 0 && (cfg->method == VKP_PEFT_LORA || cfg->method == VKP_PEFT_LOHA || cfg->method == VKP_PEFT_VERA))
    return vkp_error_set(err, VKP_ERR_INVALID, "adapter '%s': r must be positive", cfg->name);
  vkp_adapter *a = calloc(1, sizeof *a);
  if (!a) return VKP_ERR_OOM;
  a->cfg = *cfg;
  a->cfg.target_regex = cfg->target_regex ? strdup(cfg->target_regex) : NULL;
  a->cfg.n_target_modules = a->cfg.n_modules_to_save = a->cfg.n_feedforward_modules = 0;
  vkp_status st = copy_strings(a->cfg.target_modules, &a->cfg.n_target_modules, cfg->target_modules, cfg->n_target_modules);
  if (!st) st = copy_strings(a->cfg.modules_to_save, &a->cfg.n_modules_to_save, cfg->modules_to_save, cfg->n_modules_to_save);
  if (!st) st = copy_strings(a->cfg.feedforward_modules, &a->cfg.n_feedforward_modules, cfg->feedforward_modules, cfg->n_feedforward_modules);
  a->scale = 1.0f;
  a->enabled = true;
  regex_t re;
  bool have_re = false;
  if (!st && a->cfg.target_regex) {
    char pat[1024];
    snprintf(pat, sizeof pat, "^(%s)$", a->cfg.target_regex);
    if (regcomp(&re, pat, REG_EXTENDED | REG_NOSUB)) st = vkp_error_set(err, VKP_ERR_INVALID, "target_modules: invalid regex '%s'", a->cfg.target_regex);
    else have_re = true;
  }
  vkp_peft_method meth = a->cfg.method;
  // Selective methods unfreeze existing parameters.
  for (int i = 0; i < m->nmodules && !st; i++) {
    vkp_module *mod = m->modules[i];
    bool targeted = have_re ? !regexec(&re, mod->name, 0, NULL, 0) || (mod->alias && !regexec(&re, mod->alias, 0, NULL, 0))
                    : a->cfg.n_target_modules ? name_matches(mod, a->cfg.target_modules, a->cfg.n_target_modules)
                                              : true;
    if (meth == VKP_PEFT_BITFIT && targeted && layer_selected(&a->cfg, mod)) st = push_saved(a, mod->bias);
    if (meth == VKP_PEFT_LN_TUNING && kind_fits(meth, mod->kind) && targeted && layer_selected(&a->cfg, mod)) {
      st = push_saved(a, mod->weight);
      if (!st) st = push_saved(a, mod->bias);
    }
    if (meth == VKP_PEFT_FULL)
      for (int k = 0; k < m->nparams && !st; k++)
        if (!m->params[k]->adapter) st = push_saved(a, m->params[k]);
  }
  for (int i = 0; i < m->nmodules && !st; i++) {   // modules_to_save: the module's own parameters train
    vkp_module *mod = m->modules[i];
    if (!name_matches(mod, a->cfg.modules_to_save, a->cfg.n_modules_to_save)) continue;
    st = push_saved(a, mod->weight);
    if (!st) st = push_saved(a, mod->bias);
  }
  // Module-attached methods.
  if (!st && meth != VKP_PEFT_BITFIT && meth != VKP_PEFT_LN_TUNING && meth != VKP_PEFT_FULL && meth != VKP_PEFT_LINEAR_PROBE) {
    if (meth == VKP_PEFT_VERA) {
      // Shared frozen projections sized for the largest targeted module.
      int64_t max_in = 0, max_out = 0;
      for (int i = 0; i < m->nmodules; i++)
        if (module_targeted(&a->cfg, m->modules[i], have_re ? &re : NULL)) {
          if (m->modules[i]->in > max_in) max_in = m->modules[i]->in;
          if (m->modules[i]->out > max_out) max_out = m->modules[i]->out;
        }
      if (max_in > 0) {
        char name[128];
        int64_t as[2] = {a->cfg.r, max_in}, bs[2] = {max_out, a->cfg.r};
        snprintf(name, sizeof name, "vera_A.%s", a->cfg.name);
        st = vkp_model_add_param(m, name, VKP_DTYPE_F32, 2, as, &a->vera_A);
        snprintf(name, sizeof name, "vera_B.%s", a->cfg.name);
        if (!st) st = vkp_model_add_param(m, name, VKP_DTYPE_F32, 2, bs, &a->vera_B);
        if (!st) {
          a->vera_A->adapter = a->vera_B->adapter = true;
          st = init_uniform(m, a->vera_A, 1.0f / sqrtf((float)max_in), a->cfg.projection_seed + 11);
          if (!st) st = init_uniform(m, a->vera_B, 1.0f / sqrtf((float)a->cfg.r), a->cfg.projection_seed + 12);
        }
      }
    }
    int order = 0;
    for (int i = 0; i < m->nmodules && !st; i++) {
      vkp_module *mod = m->modules[i];
      if (!module_targeted(&a->cfg, mod, have_re ? &re : NULL)) continue;
      if (meth == VKP_PEFT_VPT && !a->cfg.deep && order > 0) continue;   // shallow: first block only
      vkp_adapter_slot *s = calloc(1, sizeof *s);
      if (!s) {
        st = VKP_ERR_OOM;
        break;
      }
      s->adapter = a;
      s->module = mod;
      s->site = meth == VKP_PEFT_BOTTLENECK ? (a->cfg.pfeiffer ? VKP_SITE_MLP : VKP_SITE_ATTN | VKP_SITE_MLP)
                : meth == VKP_PEFT_ADAPTFORMER ? VKP_SITE_MLP : VKP_SITE_NONE;
      uint64_t sseed = seed * 1000003u + (uint64_t)i;
      st = meth == VKP_PEFT_MASKED ? (vkp_status)vkp_masked_create(m, s, sseed) : create_slot_params(m, s, sseed);
      if (!st && meth == VKP_PEFT_BOTTLENECK && !a->cfg.pfeiffer) {
        // Houlsby: a second adapter after attention, sharing nothing with the MLP one.
        st = push_slot(a, s);
        if (!st) {
          vkp_adapter_slot *s2 = calloc(1, sizeof *s2);
          if (!s2) st = VKP_ERR_OOM;
          else {
            *s2 = (vkp_adapter_slot){.adapter = a, .module = mod, .site = VKP_SITE_ATTN};
            s->site = VKP_SITE_MLP;
            st = create_slot_params(m, s2, sseed + 7);
            if (!st) st = push_slot(a, s2);
            if (!st) {
              s2->next = mod->slots;
              mod->slots = s2;
            }
          }
        }
      } else if (!st) {
        st = push_slot(a, s);
      }
      if (st) break;
      s->next = mod->slots;
      mod->slots = s;
      order++;
    }
    if (!st && a->nslots == 0)
      st = vkp_error_set(err, VKP_ERR_NOT_FOUND, "adapter '%s' (%s): no module matches target_modules", a->cfg.name,
                         vkp_peft_method_name(meth));
  }
  if (!st && (meth == VKP_PEFT_BITFIT || meth == VKP_PEFT_LN_TUNING) && a->nsaved == 0)
    st = vkp_error_set(err, VKP_ERR_NOT_FOUND, "adapter '%s' (%s): no parameter matches", a->cfg.name, vkp_peft_method_name(meth));
  if (have_re) regfree(&re);
  if (!st && m->peft->n == m->peft->cap) {
    int cap = m->peft->cap ? m->peft->cap * 2 : 8;
    vkp_adapter **v = realloc(m->peft->adapters, (size_t)cap * sizeof *v);
    if (!v) st = VKP_ERR_OOM;
    else m->peft->adapters = v, m->peft->cap = cap;
  }
  if (st) {
    vkp_peft_discard(m, a);   // unlinks partially created slots and frees their parameters
    return st;
  }
  m->peft->adapters[m->peft->n++] = a;
  *out = a;
  return VKP_OK;
}

void vkp_peft_discard(vkp_model *m, vkp_adapter *a) {
  if (!a) return;
  for (int i = 0; i < a->nslots; i++)   // unlink its slots from their modules
    for (vkp_adapter_slot **pp = &a->slots[i]->module->slots; *pp; pp = &(*pp)->next)
      if (*pp == a->slots[i]) {
        *pp = a->slots[i]->next;
        break;
      }
  int keep = 0;   // free the parameters it created
  for (int i = 0; i < m->nparams; i++) {
    vkp_param *p = m->params[i];
    bool own = p == a->vera_A || p == a->vera_B;
    for (int s = 0; !own && s < a->nslots; s++)
      for (int k = 0; !own && k < a->slots[s]->np; k++) own = a->slots[s]->p[k] == p;
    if (!own) {
      m->params[keep++] = p;
      continue;
    }
    vkp_buffer_free(p->buf);
    free(p->name);
    free(p);
  }
  m->nparams = keep;
  for (int i = 0; i < a->nsaved; i++) {   // base parameters it unfroze, unless another adapter trains them
    bool other = false;
    for (int k = 0; m->peft && k < m->peft->n && !other; k++)
      for (int j = 0; m->peft->adapters[k] != a && j < m->peft->adapters[k]->nsaved && !other; j++)
        other = m->peft->adapters[k]->saved[j] == a->saved[i];
    if (!other) a->saved[i]->trainable = false;
  }
  for (int i = 0; m->peft && i < m->peft->n; i++)
    if (m->peft->adapters[i] == a) {
      memmove(&m->peft->adapters[i], &m->peft->adapters[i + 1], (size_t)(m->peft->n - i - 1) * sizeof a);
      m->peft->n--;
      break;
    }
  adapter_free(a);
}

void vkp_peft_free_all(vkp_model *m) {
  if (!m->peft) return;
  for (int i = 0; i < m->peft->n; i++) adapter_free(m->peft->adapters[i]);
  free(m->peft->adapters);
  free(m->peft);
  m->peft = NULL;
}

int vkp_peft_count(const vkp_model *m) { return m->peft ? m->peft->n : 0; }
vkp_adapter *vkp_peft_get(const vkp_model *m, int i) { return m->peft && i >= 0 && i < m->peft->n ? m->peft->adapters[i] : NULL; }
const vkp_peft_config *vkp_adapter_config(const vkp_adapter *a) { return &a->cfg; }
void vkp_adapter_set_scale(vkp_adapter *a, float scale) { a->scale = scale; }
void vkp_adapter_set_enabled(vkp_adapter *a, bool enabled) { a->enabled = enabled; }
bool vkp_adapter_is_merged(const vkp_adapter *a) { return a->merged; }
vkp_module *vkp_adapter_slot_module(const vkp_adapter *a, int slot) {
  return a && slot >= 0 && slot < a->nslots ? a->slots[slot]->module : NULL;
}

vkp_peft_report vkp_peft_get_report(const vkp_model *m) {
  vkp_peft_report r = {0};
  for (int i = 0; i < m->nparams; i++) {
    const vkp_param *p = m->params[i];
    int64_t n = vkp_param_numel(p);
    r.total_params += p->adapter ? 0 : n;
    if (p->trainable) r.trainable_params += n;
    if (p->adapter) r.adapter_params += n, r.adapter_bytes += (uint64_t)n * vkp_dtype_size(p->dtype);
  }
  return r;
}

void vkp_peft_param_peft_name(const vkp_model *m, const vkp_param *p, char *out, size_t cap) {
  for (int i = 0; m->peft && i < m->peft->n; i++) {
    vkp_adapter *a = m->peft->adapters[i];
    for (int s = 0; s < a->nslots; s++)
      for (int k = 0; k < a->slots[s]->np; k++)
        if (a->slots[s]->p[k] == p) {
          char sfx[128];
          vkp_slot_peft_suffix(a->slots[s], k, sfx, sizeof sfx);
          snprintf(out, cap, "base_model.model.%s.%s", vkp_module_file_name(p->module), sfx);
          return;
        }
    for (int s = 0; s < a->nsaved; s++)
      if (a->saved[s] == p && a->cfg.method == VKP_PEFT_LN_TUNING && p->module &&
          (p->module->kind == VKP_MODULE_LAYER_NORM || p->module->kind == VKP_MODULE_GROUP_NORM)) {
        const char *leaf = strrchr(p->name, '.');   // peft wraps the norm: <module>.ln_tuning_layers.<adapter>
        snprintf(out, cap, "base_model.model.%s.ln_tuning_layers.%s%s", vkp_module_file_name(p->module), a->cfg.name,
                 leaf ? leaf : "");
        return;
      }
    for (int s = 0; s < a->nsaved; s++)
      if (a->saved[s] == p && p->module && name_matches(p->module, a->cfg.modules_to_save, a->cfg.n_modules_to_save)) {
        const char *leaf = strrchr(p->name, '.');
        snprintf(out, cap, "base_model.model.%s.modules_to_save.%s%s", p->module->name, a->cfg.name, leaf ? leaf : "");
        return;
      }
  }
  snprintf(out, cap, "base_model.model.%s", p->name);
}
