// peft.c — attaching adapters to a model: targeting (HF PEFT semantics, Python-re regexes through
// PCRE2), slots and parameter creation through the method's def, enable/scale, discard,
// accounting and names.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "peft_internal.h"
#include "vkp_strbuf.h"

// ---- names ----------------------------------------------------------------------------------

static const char *module_name_at(const vkp_module *mod, int i) {
  if (mod->names && mod->n_names) return i < mod->n_names ? mod->names[i] : NULL;
  return i == 0 ? mod->name : i == 1 ? mod->alias : NULL;   // a module made before names[] existed
}

const char *vkp_module_file_name(const vkp_module *mod) { return mod->alias ? mod->alias : mod->name; }

static const vkp_peft_suffix *suffixes_of(const vkp_adapter_slot *s, int *n) {
  *n = 0;
  const vkp_peft_method_def *d = s->adapter->def;
  return d->suffixes ? d->suffixes(s, n) : NULL;
}

const char *vkp_slot_suffix(const vkp_adapter_slot *s, int i) {
  int n;
  const vkp_peft_suffix *d = suffixes_of(s, &n);
  return d && i < n ? d[i].saved : "?";
}

void vkp_slot_peft_suffix(const vkp_adapter_slot *s, int i, char *out, size_t cap) {
  int n;
  const vkp_peft_suffix *d = suffixes_of(s, &n);
  snprintf(out, cap, d && i < n ? d[i].peft : "?", s->adapter->cfg.name);
}

bool vkp_slot_active(const vkp_adapter_slot *s) { return s->adapter->enabled && !s->adapter->merged; }
float vkp_slot_scale(const vkp_adapter_slot *s) { return s->scaling * s->adapter->scale; }

// ---- targeting ------------------------------------------------------------------------------

static bool suffix_match(const char *name, const char *target) {
  size_t n = strlen(name), t = strlen(target);
  if (n == t) return !strcmp(name, target);
  return n > t && name[n - t - 1] == '.' && !strcmp(name + n - t, target);
}

bool vkp_peft_names_match(const vkp_module *mod, char *const *list, int n) {
  for (int i = 0; i < n; i++)
    for (int k = 0; module_name_at(mod, k); k++)
      if (suffix_match(module_name_at(mod, k), list[i])) return true;
  return false;
}

bool vkp_peft_layer_selected(const vkp_peft_config *c, const vkp_module *mod) {
  if (!c->n_layers_to_transform) return true;
  for (int i = 0; i < c->n_layers_to_transform; i++)
    if (c->layers_to_transform[i] == mod->layer) return true;
  return false;
}

// HF: a string target_modules is re.fullmatch'ed against the module name; PCRE2 with both ends
// anchored has that meaning (alternatives and backtracking must reach the end of the name).
static vkp_status regex_compile(const char *pattern, pcre2_code **out, vkp_error *err) {
  int code;
  PCRE2_SIZE at;
  *out = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED | PCRE2_ENDANCHORED, &code, &at, NULL);
  if (*out) return VKP_OK;
  PCRE2_UCHAR why[160];
  pcre2_get_error_message(code, why, sizeof why);
  return vkp_error_set(err, VKP_ERR_INVALID, "target_modules: invalid regex '%s': %s at offset %zu", pattern,
                       (const char *)why, (size_t)at);
}

static bool regex_full_match(pcre2_code *re, const char *s) {
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
  if (!md) return false;
  int rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL);
  pcre2_match_data_free(md);
  return rc >= 0;
}

static pcre2_code *regex_of(const vkp_adapter *a) { return a->target_re; }


bool vkp_peft_name_targeted(const vkp_adapter *a, const vkp_module *mod) {
  const vkp_peft_config *c = &a->cfg;
  if (c->target_regex) {
    pcre2_code *re = regex_of(a);
    for (int k = 0; re && module_name_at(mod, k); k++)
      if (regex_full_match(re, module_name_at(mod, k))) return true;
    return false;
  }
  return c->n_target_modules ? vkp_peft_names_match(mod, c->target_modules, c->n_target_modules) : true;
}

// Does the adapter put slots on this module?
static bool module_targeted(const vkp_adapter *a, const vkp_module *mod) {
  const vkp_peft_config *c = &a->cfg;
  const vkp_peft_method_def *d = a->def;
  if (a->only) {   // an explicit module list (vkp_adapter_attach_modules)
    for (int i = 0; i < a->n_only; i++)
      if (a->only[i] == mod) return d->fits && d->fits(c, mod);
    return false;
  }
  if (!d->fits || !d->fits(c, mod) || !vkp_peft_layer_selected(c, mod)) return false;
  if (c->target_regex || c->n_target_modules) return vkp_peft_name_targeted(a, mod);
  return d->default_target && d->default_target(c, mod);
}

// ---- parameters -----------------------------------------------------------------------------

// The one host RNG (core/base vkp_rng, through core/model's initialiser).
vkp_status vkp_peft_init_uniform(vkp_model *m, vkp_param *p, float bound, uint64_t seed) {
  return vkp_param_init_uniform(m, p, bound, seed);
}

float *vkp_peft_read_param(vkp_model *m, const vkp_param *p) {
  float *v = malloc((size_t)vkp_param_numel(p) * sizeof *v);
  if (v && vkp_param_read_f32(m, p, v) != VKP_OK) {
    free(v);
    return NULL;
  }
  return v;
}

vkp_status vkp_peft_new_param(vkp_model *m, vkp_adapter_slot *s, vkp_dtype dtype, int ndim, const int64_t *shape) {
  if (s->np == VKP_SLOT_MAX_PARAMS) return vkp_error_set(vkp_ctx_err(m->ctx), VKP_ERR_INVALID, "too many slot parameters");
  char name[512];
  const vkp_module *mod = s->module;
  const char *sfx = vkp_slot_suffix(s, s->np);
  if (!strcmp(s->adapter->cfg.name, "default")) snprintf(name, sizeof name, "%s.%s", vkp_module_file_name(mod), sfx);
  else snprintf(name, sizeof name, "%s.%s.%s", vkp_module_file_name(mod), s->adapter->cfg.name, sfx);
  vkp_param *p;
  VKP_TRY(vkp_model_add_param(m, name, dtype, ndim, shape, &p));
  p->adapter = true;
  p->trainable = true;
  p->module = s->module;
  s->p[s->np++] = p;
  return VKP_OK;
}

vkp_status vkp_peft_new_shared(vkp_model *m, vkp_adapter *a, const char *key, int ndim, const int64_t *shape) {
  if (a->nshared == VKP_ADAPTER_MAX_SHARED) return vkp_error_set(vkp_ctx_err(m->ctx), VKP_ERR_INVALID, "too many shared parameters");
  char name[256];
  snprintf(name, sizeof name, "%s.%s", key, a->cfg.name);
  vkp_param *p;
  VKP_TRY(vkp_model_add_param(m, name, VKP_DTYPE_F32, ndim, shape, &p));
  p->adapter = true;
  a->shared[a->nshared++] = p;
  return VKP_OK;
}

vkp_status vkp_peft_train_param(vkp_adapter *a, vkp_param *p) {
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

static vkp_status copy_strings(char **dst, int *nd, char *const *src, int ns) {
  for (int i = 0; i < ns; i++)
    if (!(dst[i] = strdup(src[i]))) return VKP_ERR_OOM;
  *nd = ns;
  return VKP_OK;
}

static void slot_free(vkp_adapter_slot *s) {
  if (!s) return;
  vkp_buffer_free(s->consts);
  free(s->dora_norm);
  free(s);
}

static void adapter_free(vkp_adapter *a) {
  if (!a) return;
  for (int i = 0; i < a->nslots; i++) slot_free(a->slots[i]);
  free(a->slots);
  free(a->saved);
  pcre2_code_free(a->target_re);
  vkp_peft_config_clear(&a->cfg);
  free(a);
}

// Creates the slots of one module (one per site of the method there), seeds seed, seed + 7, ...
static vkp_status attach_module(vkp_model *m, vkp_adapter *a, vkp_module *mod, uint64_t seed) {
  int sites[4] = {0}, n = 1;
  if (a->def->sites) n = a->def->sites(&a->cfg, mod, sites);
  vkp_adapter_slot *made[4] = {0};
  vkp_status st = VKP_OK;
  for (int j = 0; j < n && !st; j++) {
    vkp_adapter_slot *s = calloc(1, sizeof *s);
    if (!s) {
      st = VKP_ERR_OOM;
      break;
    }
    *s = (vkp_adapter_slot){.adapter = a, .module = mod, .site = sites[j]};
    st = push_slot(a, s);
    if (st) {
      slot_free(s);
      break;
    }
    made[j] = s;
    st = a->def->create(m, s, seed + 7u * (uint64_t)j);
  }
  // Linked in front of the module's list, the first one made first.
  for (int j = n - 1; j >= 0; j--)
    if (made[j]) {
      made[j]->next = mod->slots;
      mod->slots = made[j];
    }
  return st;
}

static vkp_status attach(vkp_model *m, const vkp_peft_config *cfg, uint64_t seed, vkp_module *const *only, int n_only,
                         vkp_adapter **out);

vkp_status vkp_peft_attach(vkp_model *m, const vkp_peft_config *cfg, uint64_t seed, vkp_adapter **out) {
  return attach(m, cfg, seed, NULL, 0, out);
}

// The adapter's target_modules becomes a regex that names exactly these modules (peft's fullmatch),
// so the adapter saved as an HF PEFT folder loads onto the same modules.
vkp_status vkp_adapter_attach_modules(vkp_model *m, const vkp_peft_config *cfg, vkp_module *const *mods, int n,
                                      uint64_t seed, vkp_adapter **out) {
  *out = NULL;
  vkp_strbuf re = {0};
  vkp_strbuf_puts(&re, "(?:");
  for (int i = 0; i < n; i++) {
    if (i) vkp_strbuf_puts(&re, "|");
    for (const char *c = vkp_module_file_name(mods[i]); *c; c++) {
      if (strchr(".^$*+?()[]{}|\\", *c)) vkp_strbuf_puts(&re, "\\");
      vkp_strbuf_put(&re, c, 1);
    }
  }
  vkp_strbuf_puts(&re, ")");
  if (re.oom) {
    free(re.p);
    return vkp_error_set(vkp_ctx_err(m->ctx), VKP_ERR_OOM, "out of host memory");
  }
  vkp_peft_config c = *cfg;
  c.n_target_modules = 0;
  c.target_regex = re.p;
  vkp_status st = attach(m, &c, seed, mods, n, out);
  free(re.p);
  return st;
}

static vkp_status attach(vkp_model *m, const vkp_peft_config *cfg, uint64_t seed, vkp_module *const *only, int n_only,
                         vkp_adapter **out) {
  vkp_error *err = vkp_ctx_err(m->ctx);
  *out = NULL;
  const vkp_peft_method_def *def = vkp_peft_method_get(cfg->method);
  if (!def) return vkp_error_set(err, VKP_ERR_INVALID, "adapter '%s': unknown method %d", cfg->name, (int)cfg->method);
  if (!m->peft) {
    if (!(m->peft = calloc(1, sizeof *m->peft))) return VKP_ERR_OOM;
    m->peft_free = vkp_peft_free_all;
    m->nn_hooks = &vkp_peft_nn_hooks;
    vkp_model_set_trainable(m, false);   // the first adapter freezes the base
  }
  for (int i = 0; i < m->peft->n; i++)
    if (!strcmp(m->peft->adapters[i]->cfg.name, cfg->name) && m->peft->adapters[i]->cfg.method == cfg->method)
      return vkp_error_set(err, VKP_ERR_INVALID, "adapter '%s' (%s) is attached already", cfg->name, def->name);
  if (def->validate) {
    char where[96];
    snprintf(where, sizeof where, "adapter '%s'", cfg->name);
    VKP_TRY(def->validate(cfg, where, err));
  }
  vkp_adapter *a = calloc(1, sizeof *a);
  if (!a) return VKP_ERR_OOM;
  a->cfg = *cfg;
  a->def = def;
  a->cfg.target_regex = cfg->target_regex ? strdup(cfg->target_regex) : NULL;
  a->cfg.n_target_modules = a->cfg.n_modules_to_save = a->cfg.n_feedforward_modules = 0;
  vkp_status st = copy_strings(a->cfg.target_modules, &a->cfg.n_target_modules, cfg->target_modules, cfg->n_target_modules);
  if (!st) st = copy_strings(a->cfg.modules_to_save, &a->cfg.n_modules_to_save, cfg->modules_to_save, cfg->n_modules_to_save);
  if (!st) st = copy_strings(a->cfg.feedforward_modules, &a->cfg.n_feedforward_modules, cfg->feedforward_modules, cfg->n_feedforward_modules);
  a->scale = 1.0f;
  a->enabled = true;
  a->only = only, a->n_only = n_only;
  if (!st && a->cfg.target_regex) {
    pcre2_code *re = NULL;
    st = regex_compile(a->cfg.target_regex, &re, err);
    a->target_re = re;
  }
  // Selective methods mark the base parameters they train; then modules_to_save.
  if (!st && def->select) st = def->select(m, a);
  for (int i = 0; i < m->nmodules && !st; i++) {
    vkp_module *mod = m->modules[i];
    if (!vkp_peft_names_match(mod, a->cfg.modules_to_save, a->cfg.n_modules_to_save)) continue;
    st = vkp_peft_train_param(a, mod->weight);
    if (!st) st = vkp_peft_train_param(a, mod->bias);
  }
  // Module-attached methods.
  if (!st && def->create) {
    if (def->prepare) {   // adapter-wide parameters sized for the largest targeted module
      int64_t max_in = 0, max_out = 0;
      for (int i = 0; i < m->nmodules; i++)
        if (module_targeted(a, m->modules[i])) {
          if (m->modules[i]->in > max_in) max_in = m->modules[i]->in;
          if (m->modules[i]->out > max_out) max_out = m->modules[i]->out;
        }
      if (max_in > 0) st = def->prepare(m, a, max_in, max_out);
    }
    int limit = def->max_modules ? def->max_modules(&a->cfg) : 0, order = 0;
    for (int i = 0; i < m->nmodules && !st; i++) {
      vkp_module *mod = m->modules[i];
      if (!module_targeted(a, mod) || (limit && order >= limit)) continue;
      st = attach_module(m, a, mod, seed * 1000003u + (uint64_t)i);
      order++;
    }
    if (!st && a->nslots == 0)
      st = vkp_error_set(err, VKP_ERR_NOT_FOUND, "adapter '%s' (%s): no module matches target_modules", a->cfg.name,
                         def->name);
  }
  if (!st && def->select && a->nsaved == 0)
    st = vkp_error_set(err, VKP_ERR_NOT_FOUND, "adapter '%s' (%s): no parameter matches", a->cfg.name, def->name);
  if (!st && m->peft->n == m->peft->cap) {
    int cap = m->peft->cap ? m->peft->cap * 2 : 8;
    vkp_adapter **v = realloc(m->peft->adapters, (size_t)cap * sizeof *v);
    if (!v) st = VKP_ERR_OOM;
    else m->peft->adapters = v, m->peft->cap = cap;
  }
  a->only = NULL, a->n_only = 0;
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
    bool own = false;
    for (int k = 0; !own && k < a->nshared; k++) own = a->shared[k] == p;
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

void vkp_adapter_discard(vkp_model *m, vkp_adapter *a) { vkp_peft_discard(m, a); }

void vkp_peft_free_all(vkp_model *m) {
  if (!m->peft) return;
  for (int i = 0; i < m->peft->n; i++) adapter_free(m->peft->adapters[i]);
  free(m->peft->adapters);
  free(m->peft);
  m->peft = NULL;
  m->nn_hooks = NULL;
}

// ---- accessors --------------------------------------------------------------------------------

int vkp_peft_count(const vkp_model *m) { return m->peft ? m->peft->n : 0; }
vkp_adapter *vkp_peft_get(const vkp_model *m, int i) { return m->peft && i >= 0 && i < m->peft->n ? m->peft->adapters[i] : NULL; }
const vkp_peft_config *vkp_adapter_config(const vkp_adapter *a) { return &a->cfg; }
void vkp_adapter_set_scale(vkp_adapter *a, float scale) { a->scale = scale; }
void vkp_adapter_set_enabled(vkp_adapter *a, bool enabled) { a->enabled = enabled; }
bool vkp_adapter_is_merged(const vkp_adapter *a) { return a->merged; }
vkp_module *vkp_adapter_slot_module(const vkp_adapter *a, int slot) {
  return a && slot >= 0 && slot < a->nslots ? a->slots[slot]->module : NULL;
}
int vkp_adapter_slot_count(const vkp_adapter *a) { return a ? a->nslots : 0; }
float vkp_adapter_slot_scaling(const vkp_adapter *a, int slot) {
  return a && slot >= 0 && slot < a->nslots ? a->slots[slot]->scaling : 0.0f;
}
void vkp_adapter_slot_set_scaling(vkp_adapter *a, int slot, float scaling) {
  if (a && slot >= 0 && slot < a->nslots) a->slots[slot]->scaling = scaling;
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
    char key[512];
    for (int s = 0; s < a->nsaved; s++)
      if (a->saved[s] == p && p->module && a->def->saved_key &&
          a->def->saved_key(a, p, vkp_module_file_name(p->module), a->cfg.name, key, sizeof key)) {
        snprintf(out, cap, "base_model.model.%s", key);
        return;
      }
    for (int s = 0; s < a->nsaved; s++)
      if (a->saved[s] == p && p->module && vkp_peft_names_match(p->module, a->cfg.modules_to_save, a->cfg.n_modules_to_save)) {
        const char *leaf = strrchr(p->name, '.');
        snprintf(out, cap, "base_model.model.%s.modules_to_save.%s%s", p->module->name, a->cfg.name, leaf ? leaf : "");
        return;
      }
  }
  snprintf(out, cap, "base_model.model.%s", p->name);
}
