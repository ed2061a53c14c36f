// model.c — parameter store and module registry.
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_model.h"
#include "vkp_rng.h"
#include "vkp_safetensors.h"

vkp_status vkp_model_new(vkp_ctx *ctx, vkp_model **out) {
  vkp_model *m = calloc(1, sizeof *m);
  if (!m) return vkp_error_set(vkp_ctx_err(ctx), VKP_ERR_OOM, "out of host memory");
  m->ctx = ctx;
  *out = m;
  return VKP_OK;
}

void vkp_model_free(vkp_model *m) {
  if (!m) return;
  if (m->peft_free) m->peft_free(m);   // adapters first: they refer to modules and params
  for (int i = 0; i < m->nparams; i++) {
    vkp_buffer_free(m->params[i]->buf);
    free(m->params[i]->name);
    free(m->params[i]);
  }
  for (int i = 0; i < m->nmodules; i++) {
    free(m->modules[i]->name);
    free(m->modules[i]->alias);
    for (int k = 0; k < m->modules[i]->n_names; k++) free(m->modules[i]->names[k]);
    free(m->modules[i]->names);
    free(m->modules[i]);
  }
  free(m->params);
  free(m->modules);
  free(m);
}

static vkp_status fail(vkp_model *m, vkp_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static vkp_status fail(vkp_model *m, vkp_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m->err.msg, sizeof m->err.msg, fmt, ap);
  va_end(ap);
  m->err.status = st;
  return vkp_error_set(vkp_ctx_err(m->ctx), st, "%s", m->err.msg);
}

int64_t vkp_param_numel(const vkp_param *p) {
  int64_t n = 1;
  for (int i = 0; i < p->ndim; i++) n *= p->shape[i];
  return n;
}

vkp_param *vkp_model_find_param(const vkp_model *m, const char *name) {
  for (int i = m->nparams - 1; i >= 0; i--)
    if (strcmp(m->params[i]->name, name) == 0) return m->params[i];
  return NULL;
}

vkp_status vkp_model_add_param(vkp_model *m, const char *name, vkp_dtype dtype, int ndim, const int64_t *shape,
                               vkp_param **out) {
  *out = NULL;
  if (vkp_model_find_param(m, name)) return fail(m, VKP_ERR_INVALID, "parameter '%s' exists already", name);
  if (ndim < 1 || ndim > VKP_MAX_DIMS) return fail(m, VKP_ERR_SHAPE, "parameter '%s': bad rank", name);
  if (m->nparams == m->params_cap) {
    int cap = m->params_cap ? m->params_cap * 2 : 64;
    vkp_param **p = realloc(m->params, (size_t)cap * sizeof *p);
    if (!p) return fail(m, VKP_ERR_OOM, "out of host memory");
    m->params = p;
    m->params_cap = cap;
  }
  vkp_param *p = calloc(1, sizeof *p);
  if (!p || !(p->name = strdup(name))) {
    free(p);
    return fail(m, VKP_ERR_OOM, "out of host memory");
  }
  p->ndim = ndim;
  for (int i = 0; i < ndim; i++) p->shape[i] = shape[i];
  p->dtype = dtype;
  vkp_status st = vkp_buffer_new(m->ctx, (uint64_t)vkp_param_numel(p) * vkp_dtype_size(dtype), &p->buf);
  if (st != VKP_OK) {
    free(p->name);
    free(p);
    return st;
  }
  m->params[m->nparams++] = p;
  *out = p;
  return VKP_OK;
}

vkp_status vkp_param_write_f32(vkp_model *m, vkp_param *p, const float *data) {
  (void)m;
  size_t n = (size_t)vkp_param_numel(p);
  if (p->dtype == VKP_DTYPE_F32) return vkp_buffer_write(p->buf, 0, data, n * 4);
  size_t bytes = n * vkp_dtype_size(p->dtype);
  void *tmp = malloc(bytes);
  if (!tmp) return VKP_ERR_OOM;
  vkp_convert_from_f32(p->dtype, data, tmp, n);
  vkp_status st = vkp_buffer_write(p->buf, 0, tmp, bytes);
  free(tmp);
  return st;
}

vkp_status vkp_param_read_f32(vkp_model *m, const vkp_param *p, float *data) {
  (void)m;
  size_t n = (size_t)vkp_param_numel(p);
  if (p->dtype == VKP_DTYPE_F32) return vkp_buffer_read(p->buf, 0, data, n * 4);
  size_t bytes = n * vkp_dtype_size(p->dtype);
  void *tmp = malloc(bytes);
  if (!tmp) return VKP_ERR_OOM;
  vkp_status st = vkp_buffer_read(p->buf, 0, tmp, bytes);
  if (st == VKP_OK) vkp_convert_to_f32(p->dtype, tmp, data, n);
  free(tmp);
  return st;
}

bool vkp_module_has_name(const vkp_module *mod, const char *name) {
  for (int k = 0; k < mod->n_names; k++)
    if (!strcmp(mod->names[k], name)) return true;
  return false;
}

vkp_module *vkp_model_find_module(const vkp_model *m, const char *name) {
  for (int i = 0; i < m->nmodules; i++)
    if (vkp_module_has_name(m->modules[i], name)) return m->modules[i];
  return NULL;
}

vkp_status vkp_module_add_name(vkp_model *m, vkp_module *mod, const char *name) {
  vkp_module *other = vkp_model_find_module(m, name);
  if (other == mod) return VKP_OK;
  if (other) return fail(m, VKP_ERR_INVALID, "module name '%s' is taken by '%s'", name, other->name);
  char **v = realloc(mod->names, (size_t)(mod->n_names + 1) * sizeof *v);
  if (!v) return fail(m, VKP_ERR_OOM, "out of host memory");
  mod->names = v;
  if (!(v[mod->n_names] = strdup(name))) return fail(m, VKP_ERR_OOM, "out of host memory");
  mod->n_names++;
  return VKP_OK;
}

vkp_status vkp_param_set_dtype(vkp_model *m, vkp_param *p, vkp_dtype dtype) {
  if (p->dtype == dtype) return VKP_OK;
  bool is_float = p->dtype == VKP_DTYPE_F32 || p->dtype == VKP_DTYPE_F16 || p->dtype == VKP_DTYPE_BF16;
  bool to_float = dtype == VKP_DTYPE_F32 || dtype == VKP_DTYPE_F16 || dtype == VKP_DTYPE_BF16;
  if (!is_float || !to_float)
    return fail(m, VKP_ERR_INVALID, "parameter '%s': cannot store %s as %s", p->name, vkp_dtype_name(p->dtype),
                vkp_dtype_name(dtype));
  size_t n = (size_t)vkp_param_numel(p);
  float *v = malloc((n ? n : 1) * sizeof *v);
  if (!v) return fail(m, VKP_ERR_OOM, "out of host memory");
  vkp_buffer *nb = NULL;
  vkp_status st = vkp_param_read_f32(m, p, v);
  if (!st) st = vkp_buffer_new(m->ctx, (uint64_t)n * vkp_dtype_size(dtype), &nb);
  if (!st) {
    vkp_buffer *old = p->buf;
    vkp_dtype old_dt = p->dtype;
    p->buf = nb, p->dtype = dtype;
    st = vkp_param_write_f32(m, p, v);
    if (st) p->buf = old, p->dtype = old_dt, vkp_buffer_free(nb);
    else vkp_buffer_free(old);
  }
  free(v);
  return st;
}

vkp_status vkp_model_set_base_dtype(vkp_model *m, vkp_dtype dtype, int64_t *bytes_saved) {
  if (bytes_saved) *bytes_saved = 0;
  if (dtype != VKP_DTYPE_F32 && dtype != VKP_DTYPE_F16 && dtype != VKP_DTYPE_BF16)
    return fail(m, VKP_ERR_INVALID, "base dtype %s: expected f32, f16 or bf16", vkp_dtype_name(dtype));
  for (int i = 0; i < m->nmodules; i++) {
    vkp_module *mod = m->modules[i];
    vkp_param *p = mod->weight;
    if (!p || p->trainable || p->adapter || p->dtype == dtype) continue;
    if (mod->kind != VKP_MODULE_LINEAR && mod->kind != VKP_MODULE_CONV2D && mod->kind != VKP_MODULE_EMBEDDING) continue;
    int64_t before = vkp_param_numel(p) * (int64_t)vkp_dtype_size(p->dtype);
    VKP_TRY(vkp_param_set_dtype(m, p, dtype));
    if (bytes_saved) *bytes_saved += before - vkp_param_numel(p) * (int64_t)vkp_dtype_size(dtype);
  }
  return VKP_OK;
}

void vkp_model_block_begin(vkp_model *m) {
  if (m->gradient_checkpointing && m->graph) vkp_graph_checkpoint_begin(m->graph);
}

void vkp_model_block_end(vkp_model *m) {
  if (m->gradient_checkpointing && m->graph) vkp_graph_checkpoint_end(m->graph);
}

vkp_status vkp_base_dtype_parse(const char *name, vkp_dtype *out) {
  static const struct {
    const char *name;
    vkp_dtype dt;
  } names[] = {{"f32", VKP_DTYPE_F32},  {"fp32", VKP_DTYPE_F32},    {"float32", VKP_DTYPE_F32},
               {"f16", VKP_DTYPE_F16},  {"fp16", VKP_DTYPE_F16},    {"float16", VKP_DTYPE_F16},
               {"bf16", VKP_DTYPE_BF16}, {"bfloat16", VKP_DTYPE_BF16}};
  for (size_t i = 0; name && i < sizeof names / sizeof *names; i++)
    if (!strcmp(name, names[i].name)) {
      *out = names[i].dt;
      return VKP_OK;
    }
  return VKP_ERR_INVALID;
}

vkp_module *vkp_model_add_module(vkp_model *m, const char *name, const char *alias, vkp_module_kind kind, int layer,
                                 int wdim, const int64_t *wshape, int64_t bias_len) {
  if (vkp_model_find_module(m, name)) {
    fail(m, VKP_ERR_INVALID, "module '%s' exists already", name);
    return NULL;
  }
  if (m->nmodules == m->modules_cap) {
    int cap = m->modules_cap ? m->modules_cap * 2 : 64;
    vkp_module **p = realloc(m->modules, (size_t)cap * sizeof *p);
    if (!p) return NULL;
    m->modules = p;
    m->modules_cap = cap;
  }
  vkp_module *mod = calloc(1, sizeof *mod);
  if (!mod) return NULL;
  mod->name = strdup(name);
  mod->alias = alias ? strdup(alias) : NULL;
  if (vkp_module_add_name(m, mod, name) || (alias && vkp_module_add_name(m, mod, alias))) goto free_module;
  mod->kind = kind;
  mod->layer = layer;
  char pname[512];
  if (wdim > 0) {
    snprintf(pname, sizeof pname, "%s.weight", name);
    if (vkp_model_add_param(m, pname, VKP_DTYPE_F32, wdim, wshape, &mod->weight) != VKP_OK) goto free_module;
    mod->weight->module = mod;
    if (kind == VKP_MODULE_LINEAR && wdim == 2) mod->out = wshape[0], mod->in = wshape[1];
    if (kind == VKP_MODULE_CONV2D && wdim == 4) mod->out = wshape[0], mod->in = wshape[1], mod->kh = (int)wshape[2],
                                                mod->kw = (int)wshape[3];
    if (kind == VKP_MODULE_EMBEDDING && wdim == 2) mod->in = wshape[0], mod->out = wshape[1];
    if (kind == VKP_MODULE_LAYER_NORM || kind == VKP_MODULE_GROUP_NORM) mod->in = mod->out = wshape[0];
  }
  if (bias_len > 0) {
    snprintf(pname, sizeof pname, "%s.bias", name);
    if (vkp_model_add_param(m, pname, VKP_DTYPE_F32, 1, &bias_len, &mod->bias) != VKP_OK) goto free_module;
    mod->bias->module = mod;
  }
  m->modules[m->nmodules++] = mod;
  return mod;
free_module:
  free(mod->name);
  free(mod->alias);
  for (int k = 0; k < mod->n_names; k++) free(mod->names[k]);
  free(mod->names);
  free(mod);
  return NULL;
}

vkp_status vkp_param_fill(vkp_model *m, vkp_param *p, float value) {
  size_t n = (size_t)vkp_param_numel(p);
  float *v = malloc(n * sizeof *v);
  if (!v) return VKP_ERR_OOM;
  for (size_t i = 0; i < n; i++) v[i] = value;
  vkp_status st = vkp_param_write_f32(m, p, v);
  free(v);
  return st;
}

// Random initialisation: torch.nn.init's normal_ / uniform_ on a generator (vkp_rng) seeded per
// (seed, parameter name), so a parameter's values do not depend on what else the model holds.
static vkp_status init_random(vkp_model *m, vkp_param *p, bool normal, float a, uint64_t seed) {
  size_t n = (size_t)vkp_param_numel(p);
  float *v = malloc(n * sizeof *v);
  if (!v) return VKP_ERR_OOM;
  vkp_rng r = vkp_rng_new(vkp_rng_key_str(seed, p->name));
  if (normal) vkp_rng_normal_fill(&r, v, n, 0.0, a);
  else vkp_rng_uniform_fill(&r, v, n, -a, a);
  vkp_status st = vkp_param_write_f32(m, p, v);
  free(v);
  return st;
}

vkp_status vkp_param_init_normal(vkp_model *m, vkp_param *p, float std, uint64_t seed) {
  return init_random(m, p, true, std, seed);
}

vkp_status vkp_param_init_uniform(vkp_model *m, vkp_param *p, float bound, uint64_t seed) {
  return init_random(m, p, false, bound, seed);
}

vkp_status vkp_model_load_safetensors(vkp_model *m, const char *path, const char *prefix, vkp_load_report *report,
                                      vkp_name_fn on_name, void *user) {
  vkp_load_options opt = {.prefix = prefix, .on_name = on_name, .user = user};
  return vkp_model_load_safetensors_opts(m, path, &opt, report);
}

vkp_status vkp_model_load_safetensors_opts(vkp_model *m, const char *path, const vkp_load_options *opt,
                                           vkp_load_report *report) {
  const char *prefix = opt->prefix;
  vkp_name_fn on_name = opt->on_name;
  void *user = opt->user;
  char mapped[1024];
  vkp_load_report rep = {0};
  vkp_safetensors *st = NULL;
  vkp_status s = vkp_safetensors_open(path, &st, &m->err);
  if (s != VKP_OK) return vkp_error_set(vkp_ctx_err(m->ctx), s, "%s", m->err.msg);
  size_t plen = prefix ? strlen(prefix) : 0;
  bool *loaded = calloc((size_t)m->nparams + 1, 1);
  float *tmp = NULL;
  size_t tmp_cap = 0;
  for (size_t i = 0; i < vkp_safetensors_count(st) && s == VKP_OK; i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(st, i);
    const char *name = t->name;
    if (plen && strncmp(name, prefix, plen) == 0) name += plen;
    if (opt->map) name = opt->map(opt->map_user, name, mapped, sizeof mapped) ? mapped : NULL;
    vkp_param *p = name ? vkp_model_find_param(m, name) : NULL;
    if (!p) {
      rep.unused++;
      if (on_name) on_name(user, "unused", t->name);
      continue;
    }
    bool same = (size_t)vkp_param_numel(p) == vkp_st_tensor_numel(t);
    if (same && t->ndim == p->ndim)
      for (int d = 0; d < p->ndim; d++) same = same && t->shape[d] == p->shape[d];
    if (!same) {
      char ps[128], ts[128];
      int o = snprintf(ps, sizeof ps, "[");
      for (int d = 0; d < p->ndim; d++) o += snprintf(ps + o, sizeof ps - (size_t)o, d ? ",%lld" : "%lld", (long long)p->shape[d]);
      snprintf(ps + o, sizeof ps - (size_t)o, "]");
      o = snprintf(ts, sizeof ts, "[");
      for (int d = 0; d < t->ndim; d++) o += snprintf(ts + o, sizeof ts - (size_t)o, d ? ",%lld" : "%lld", (long long)t->shape[d]);
      snprintf(ts + o, sizeof ts - (size_t)o, "]");
      s = vkp_error_set(vkp_ctx_err(m->ctx), VKP_ERR_SHAPE, "%s: tensor '%s' has shape %s, the model expects %s", path,
                        t->name, ts, ps);
      break;
    }
    if (t->dtype != VKP_DTYPE_F32 && t->dtype != VKP_DTYPE_F16 && t->dtype != VKP_DTYPE_BF16) {
      s = vkp_error_set(vkp_ctx_err(m->ctx), VKP_ERR_FORMAT, "%s: tensor '%s' has dtype %s; weights must be F32, F16 or BF16",
                        path, t->name, vkp_dtype_name(t->dtype));
      break;
    }
    if (opt->keep_dtype && p->ndim >= 2 && !p->trainable && !p->adapter && p->dtype != t->dtype &&
        (s = vkp_param_set_dtype(m, p, t->dtype)) != VKP_OK)
      break;
    size_t n = vkp_st_tensor_numel(t);
    if (n > tmp_cap) {
      free(tmp);
      tmp = malloc(n * sizeof *tmp);
      tmp_cap = tmp ? n : 0;
      if (!tmp) {
        s = vkp_error_set(vkp_ctx_err(m->ctx), VKP_ERR_OOM, "out of host memory");
        break;
      }
    }
    vkp_convert_to_f32(t->dtype, t->data, tmp, n);
    s = vkp_param_write_f32(m, p, tmp);
    for (int k = 0; k < m->nparams; k++)
      if (m->params[k] == p) loaded[k] = true;
    rep.loaded++;
  }
  for (int k = 0; k < m->nparams && s == VKP_OK; k++)
    if (!loaded[k] && !m->params[k]->adapter) {
      rep.missing++;
      if (on_name) on_name(user, "missing", m->params[k]->name);
    }
  free(tmp);
  free(loaded);
  vkp_safetensors_free(st);
  if (report) *report = rep;
  return s;
}

vkp_status vkp_model_save_safetensors(vkp_model *m, const char *path, vkp_param_filter filter, void *user,
                                      const char *const *metadata_kv, int n_metadata) {
  vkp_safetensors_writer *w = NULL;
  vkp_status s = vkp_safetensors_writer_new(&w, &m->err);
  for (int i = 0; i < n_metadata && s == VKP_OK; i++)
    s = vkp_safetensors_writer_set_metadata(w, metadata_kv[2 * i], metadata_kv[2 * i + 1], &m->err);
  for (int i = 0; i < m->nparams && s == VKP_OK; i++) {
    vkp_param *p = m->params[i];
    if (filter && !filter(p, user)) continue;
    float *v = malloc((size_t)vkp_param_numel(p) * sizeof *v);
    if (!v) {
      s = vkp_error_set(&m->err, VKP_ERR_OOM, "out of host memory");
      break;
    }
    s = vkp_param_read_f32(m, p, v);
    if (s == VKP_OK) s = vkp_safetensors_writer_add_f32(w, p->name, VKP_DTYPE_F32, p->ndim, p->shape, v, &m->err);
    free(v);
  }
  if (s == VKP_OK) s = vkp_safetensors_writer_save(w, path, &m->err);
  vkp_safetensors_writer_free(w);
  if (s != VKP_OK) vkp_error_set(vkp_ctx_err(m->ctx), s, "%s", m->err.msg);
  return s;
}

void vkp_model_begin_graph(vkp_model *m, vkp_graph *g) {
  m->graph = g;
  for (int i = 0; i < m->nparams; i++) m->params[i]->t = NULL;
}

vkp_tensor *vkp_param_tensor(vkp_model *m, vkp_param *p) {
  if (!p) return NULL;
  if (!p->t) p->t = vkp_tensor_external(m->graph, p->name, p->buf, 0, p->dtype, p->ndim, p->shape);
  return p->t;
}

int64_t vkp_model_count_params(const vkp_model *m, bool trainable_only) {
  int64_t n = 0;
  for (int i = 0; i < m->nparams; i++)
    if (!trainable_only || m->params[i]->trainable) n += vkp_param_numel(m->params[i]);
  return n;
}

int vkp_model_trainable(const vkp_model *m, vkp_param ***out) {
  int n = 0;
  *out = calloc((size_t)m->nparams + 1, sizeof **out);
  if (!*out) return 0;
  for (int i = 0; i < m->nparams; i++)
    if (m->params[i]->trainable) (*out)[n++] = m->params[i];
  return n;
}

void vkp_model_set_trainable(vkp_model *m, bool trainable) {
  for (int i = 0; i < m->nparams; i++)
    if (!m->params[i]->adapter) m->params[i]->trainable = trainable;
}
