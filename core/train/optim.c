// optim.c — parameter sets and the optimizer object: gradient/state buffers, the per-graph
// multi-tensor tables, the host step counter, and state save/load (safetensors).
// The device work is in core/ops/optim_ops.c and shaders/{grad_norm*,adamw,sgd}.comp.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_ops.h"
#include "vkp_optim.h"
#include "vkp_safetensors.h"
#include "vkp_vec.h"
#include "../../shaders/push/optim.h"

_Static_assert(VKP_OPTIM_8BIT_BLOCK == VKP_OPTIM_QBLOCK, "the public block size is the shaders'");

// From core/ops/optim_ops.c.
vkp_tensor *vkp_optim_append_nodes(vkp_graph *g, uint64_t table, uint64_t chunks, uint32_t n_chunks,
                                   uint64_t hparams, uint64_t qmap, int kind, vkp_tensor **norm_out);

// ---- parameter sets ---------------------------------------------------------------------------

typedef struct param_entry {
  vkp_param_info info;
  char *name;   // info.name points here
  bool owned;   // info.buffer created by the set
} param_entry;

struct vkp_param_set {
  vkp_ctx *ctx;
  VKP_VEC(param_entry *) e;   // pointers, so vkp_param_set_get results stay valid as the set grows
};

vkp_status vkp_param_set_new(vkp_ctx *ctx, vkp_param_set **out) {
  *out = calloc(1, sizeof **out);
  if (!*out) return vkp_error_set(vkp_ctx_err(ctx), VKP_ERR_OOM, "out of host memory");
  (*out)->ctx = ctx;
  return VKP_OK;
}

void vkp_param_set_free(vkp_param_set *ps) {
  if (!ps) return;
  for (int i = 0; i < ps->e.n; i++) {
    if (ps->e.v[i]->owned) vkp_buffer_free(ps->e.v[i]->info.buffer);
    free(ps->e.v[i]->name);
    free(ps->e.v[i]);
  }
  free(ps->e.v);
  free(ps);
}

static int64_t shape_numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) n *= shape[d];
  return n;
}

// Dims in (0, 2^31], at most 2^32 elements (the kernels' index range); *numel gets the count.
static vkp_status check_shape(vkp_error *err, const char *name, int ndim, const int64_t *shape, int64_t *numel) {
  if (ndim < 0 || ndim > VKP_MAX_DIMS) return vkp_error_set(err, VKP_ERR_INVALID, "param '%s': %d dims", name, ndim);
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] <= 0 || shape[d] > (1ll << 31))
      return vkp_error_set(err, VKP_ERR_INVALID, "param '%s': dim %d has invalid size %lld", name, d,
                           (long long)shape[d]);
    if (n > (int64_t)UINT32_MAX / shape[d])
      return vkp_error_set(err, VKP_ERR_INVALID, "param '%s': more than 2^32 - 1 elements", name);
    n *= shape[d];
  }
  *numel = n;
  return VKP_OK;
}

vkp_status vkp_param_set_add(vkp_param_set *ps, const char *name, vkp_buffer *buf, uint64_t byte_offset,
                             vkp_dtype dtype, int ndim, const int64_t *shape, bool trainable, int *index) {
  vkp_error *err = vkp_ctx_err(ps->ctx);
  if (!name || !*name) return vkp_error_set(err, VKP_ERR_INVALID, "param set: empty parameter name");
  if (vkp_param_set_find(ps, name) >= 0)
    return vkp_error_set(err, VKP_ERR_INVALID, "param set: duplicate parameter '%s'", name);
  int64_t numel;
  VKP_TRY(check_shape(err, name, ndim, shape, &numel));
  if ((unsigned)dtype >= VKP_DTYPE_COUNT) return vkp_error_set(err, VKP_ERR_INVALID, "param '%s': bad dtype", name);
  if (trainable && dtype != VKP_DTYPE_F32)
    return vkp_error_set(err, VKP_ERR_INVALID, "param '%s': trainable parameters must be f32 (is %s)", name,
                         vkp_dtype_name(dtype));
  uint64_t bytes = (uint64_t)numel * vkp_dtype_size(dtype);
  if (!buf || byte_offset > vkp_buffer_size(buf) || bytes > vkp_buffer_size(buf) - byte_offset)
    return vkp_error_set(err, VKP_ERR_INVALID, "param '%s': %llu bytes at offset %llu do not fit its buffer", name,
                         (unsigned long long)bytes, (unsigned long long)byte_offset);
  if (vkp_vec_reserve(&ps->e, (int64_t)ps->e.n + 1)) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  param_entry *e = calloc(1, sizeof *e);
  char *copy = strdup(name);
  if (!e || !copy) {
    free(e);
    free(copy);
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  e->name = copy;
  e->info = (vkp_param_info){.name = copy, .ndim = ndim, .dtype = dtype, .buffer = buf,
                             .byte_offset = byte_offset, .trainable = trainable};
  for (int d = 0; d < ndim; d++) e->info.shape[d] = shape[d];
  if (index) *index = ps->e.n;
  ps->e.v[ps->e.n++] = e;
  return VKP_OK;
}

vkp_status vkp_param_set_create(vkp_param_set *ps, const char *name, int ndim, const int64_t *shape, bool trainable,
                                const float *init, int *index) {
  int64_t n;
  VKP_TRY(check_shape(vkp_ctx_err(ps->ctx), name ? name : "", ndim, shape, &n));
  vkp_buffer *buf;
  VKP_TRY(vkp_buffer_new(ps->ctx, (uint64_t)n * 4, &buf));
  vkp_status st = init ? vkp_buffer_write(buf, 0, init, (uint64_t)n * 4) : VKP_OK;
  int i = -1;
  if (st == VKP_OK) st = vkp_param_set_add(ps, name, buf, 0, VKP_DTYPE_F32, ndim, shape, trainable, &i);
  if (st != VKP_OK) {
    vkp_buffer_free(buf);
    return st;
  }
  ps->e.v[i]->owned = true;
  if (index) *index = i;
  return VKP_OK;
}

int vkp_param_set_count(const vkp_param_set *ps) { return ps->e.n; }

const vkp_param_info *vkp_param_set_get(const vkp_param_set *ps, int i) {
  return i >= 0 && i < ps->e.n ? &ps->e.v[i]->info : NULL;
}

int vkp_param_set_find(const vkp_param_set *ps, const char *name) {
  for (int i = 0; i < ps->e.n; i++)
    if (strcmp(ps->e.v[i]->name, name) == 0) return i;
  return -1;
}

vkp_tensor *vkp_param_set_tensor(vkp_param_set *ps, vkp_graph *g, int i) {
  const vkp_param_info *p = vkp_param_set_get(ps, i);
  if (!p) {
    vkp_graph_fail(g, VKP_ERR_INVALID, "param set: no parameter %d (%d in the set)", i, ps->e.n);
    return NULL;
  }
  return vkp_tensor_external(g, p->name, p->buffer, p->byte_offset, p->dtype, p->ndim, p->shape);
}

static vkp_status param_io(vkp_param_set *ps, int i, float *data, int64_t n, bool write) {
  const vkp_param_info *p = vkp_param_set_get(ps, i);
  vkp_error *err = vkp_ctx_err(ps->ctx);
  if (!p) return vkp_error_set(err, VKP_ERR_INVALID, "param set: no parameter %d", i);
  if (p->dtype != VKP_DTYPE_F32 || n != shape_numel(p->ndim, p->shape))
    return vkp_error_set(err, VKP_ERR_SHAPE, "param '%s': %lld f32 values given, it holds %lld %s", p->name,
                         (long long)n, (long long)shape_numel(p->ndim, p->shape), vkp_dtype_name(p->dtype));
  return write ? vkp_buffer_write(p->buffer, p->byte_offset, data, (uint64_t)n * 4)
               : vkp_buffer_read(p->buffer, p->byte_offset, data, (uint64_t)n * 4);
}

vkp_status vkp_param_set_write(vkp_param_set *ps, int i, const float *data, int64_t n) {
  return param_io(ps, i, (float *)data, n, true);
}
vkp_status vkp_param_set_read(vkp_param_set *ps, int i, float *data, int64_t n) {
  return param_io(ps, i, data, n, false);
}

// ---- configuration ----------------------------------------------------------------------------

vkp_optim_config vkp_adamw_config(double weight_decay) {
  return (vkp_optim_config){
      .kind = VKP_OPTIM_ADAMW, .weight_decay = weight_decay, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
}

vkp_optim_config vkp_sgd_config(double momentum, bool nesterov, double weight_decay) {
  return (vkp_optim_config){
      .kind = VKP_OPTIM_SGD, .weight_decay = weight_decay, .momentum = momentum, .nesterov = nesterov};
}

const char *vkp_optim_kind_name(vkp_optim_kind k) { return k == VKP_OPTIM_SGD ? "sgd" : "adamw"; }

const char *vkp_optim_config_name(const vkp_optim_config *cfg) {
  return cfg->kind == VKP_OPTIM_ADAMW && cfg->state_bits == 8 ? "adamw8bit" : vkp_optim_kind_name(cfg->kind);
}

vkp_status vkp_optim_name_parse(const char *name, vkp_optim_config *cfg) {
  if (name && strcmp(name, "adamw8bit") == 0) {
    cfg->kind = VKP_OPTIM_ADAMW;
    cfg->state_bits = 8;
    return VKP_OK;
  }
  VKP_TRY(vkp_optim_kind_parse(name, &cfg->kind));
  cfg->state_bits = 32;
  return VKP_OK;
}

bool vkp_optim_name_is_adamw(const char *name) {
  vkp_optim_config probe = {0};
  return vkp_optim_name_parse(name, &probe) == VKP_OK && probe.kind == VKP_OPTIM_ADAMW;
}

// bitsandbytes' create_dynamic_map(signed, max_exponent_bits = 7, total_bits = 8) as torch
// computes it in float32: for exponent i = 0..6, the midpoints of linspace(0.1, 1, k_i + 1)
// scaled by 10^(i-6) (k_i = 2^i signed, with both signs; 2^(i+1) unsigned), plus 0 and 1, sorted.
static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

static void dynamic_map(bool is_signed, float *out) {
  int n = 0;
  for (int i = 0; i < 7; i++) {
    int items = is_signed ? (1 << i) + 1 : (1 << (i + 1)) + 1;
    float start = 0.1f, end = 1.0f, step = (end - start) / (float)(items - 1), prev = 0;
    float scale = (float)pow(10.0, i - 6);
    for (int k = 0; k < items; k++) {   // torch.linspace: from both ends towards the middle
      float bk = k < items / 2 ? start + step * (float)k : end - step * (float)(items - 1 - k);
      if (k > 0) {
        float mean = (prev + bk) / 2.0f;
        out[n++] = scale * mean;
        if (is_signed) out[n++] = -scale * mean;
      }
      prev = bk;
    }
  }
  out[n++] = 0.0f;
  out[n++] = 1.0f;
  qsort(out, (size_t)n, sizeof *out, cmp_float);   // n == 256
}

void vkp_optim_qmaps(float out[512]) {
  dynamic_map(true, out);
  dynamic_map(false, out + 256);
}

vkp_status vkp_optim_kind_parse(const char *name, vkp_optim_kind *out) {
  if (name && strcmp(name, "adamw") == 0) *out = VKP_OPTIM_ADAMW;
  else if (name && strcmp(name, "sgd") == 0) *out = VKP_OPTIM_SGD;
  else return VKP_ERR_INVALID;
  return VKP_OK;
}

// The checks torch.optim makes in its constructors.
static vkp_status check_config(vkp_error *err, const vkp_optim_config *c) {
  if (c->kind != VKP_OPTIM_ADAMW && c->kind != VKP_OPTIM_SGD)
    return vkp_error_set(err, VKP_ERR_INVALID, "optimizer: unknown kind %d", (int)c->kind);
  if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
    return vkp_error_set(err, VKP_ERR_INVALID, "optimizer: invalid weight_decay %g", c->weight_decay);
  if (!(c->max_grad_norm >= 0) || !isfinite(c->max_grad_norm))
    return vkp_error_set(err, VKP_ERR_INVALID, "optimizer: invalid max_grad_norm %g", c->max_grad_norm);
  if (c->state_bits != 0 && c->state_bits != 32 && !(c->state_bits == 8 && c->kind == VKP_OPTIM_ADAMW))
    return vkp_error_set(err, VKP_ERR_INVALID, "optimizer: state_bits %d (AdamW: 32 or 8; SGD: 32)", c->state_bits);
  if (c->kind == VKP_OPTIM_ADAMW) {
    if (!(c->beta1 >= 0 && c->beta1 < 1))
      return vkp_error_set(err, VKP_ERR_INVALID, "adamw: invalid beta1 %g", c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1))
      return vkp_error_set(err, VKP_ERR_INVALID, "adamw: invalid beta2 %g", c->beta2);
    if (!(c->eps >= 0) || !isfinite(c->eps))
      return vkp_error_set(err, VKP_ERR_INVALID, "adamw: invalid eps %g", c->eps);
  } else {
    if (!(c->momentum >= 0) || !isfinite(c->momentum))
      return vkp_error_set(err, VKP_ERR_INVALID, "sgd: invalid momentum %g", c->momentum);
    if (!isfinite(c->dampening)) return vkp_error_set(err, VKP_ERR_INVALID, "sgd: invalid dampening %g", c->dampening);
    if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
      return vkp_error_set(err, VKP_ERR_INVALID, "sgd: nesterov momentum requires a momentum and zero dampening");
  }
  return VKP_OK;
}

// ---- the optimizer ----------------------------------------------------------------------------

struct vkp_optimizer {
  vkp_ctx *ctx;
  vkp_param_set *ps;
  int n;                     // parameters of ps at creation
  vkp_optim_config cfg;
  vkp_buffer **grad;         // (n) accumulated gradients; NULL for frozen parameters (owned)
  vkp_buffer **state[2];     // (n) AdamW m, v / SGD momentum, NULL (owned); 8-bit: codes
  vkp_buffer **absmax[2];    // (n) 8-bit parameters: absmax of m, v per block; else NULL (owned)
  vkp_buffer *hparams;       // vkp_optim_hparams (owned)
  vkp_buffer *qmap;          // the 8-bit code book (vkp_optim_qmaps), when state_bits is 8 (owned)
  VKP_VEC(vkp_buffer *) tables;   // one per vkp_optimizer_append: entries + chunks (owned)
  int64_t steps;
};

static vkp_status write_hparams(vkp_optimizer *opt) {
  const vkp_optim_config *c = &opt->cfg;
  vkp_optim_hparams h = {0};
  h.beta1 = (float)c->beta1;
  h.beta2 = (float)c->beta2;
  h.one_minus_beta1 = (float)(1.0 - c->beta1);
  h.one_minus_beta2 = (float)(1.0 - c->beta2);
  // log(0) = -inf: beta 0 means no bias correction needed (1 - 0^t = 1); -1e30 gives exactly 1.
  h.log_beta1 = c->beta1 > 0 ? (float)log(c->beta1) : -1e30f;
  h.log_beta2 = c->beta2 > 0 ? (float)log(c->beta2) : -1e30f;
  h.eps = (float)c->eps;
  h.weight_decay = (float)c->weight_decay;
  h.momentum = (float)c->momentum;
  h.dampening = (float)c->dampening;
  h.nesterov = c->nesterov ? 1u : 0u;
  h.max_grad_norm = (float)c->max_grad_norm;
  return vkp_buffer_write(opt->hparams, 0, &h, sizeof h);
}

vkp_status vkp_optimizer_new(vkp_param_set *ps, const vkp_optim_config *cfg, vkp_optimizer **out) {
  vkp_ctx *ctx = ps->ctx;
  *out = NULL;
  VKP_TRY(check_config(vkp_ctx_err(ctx), cfg));
  vkp_optimizer *opt = calloc(1, sizeof *opt);
  if (!opt) return vkp_error_set(vkp_ctx_err(ctx), VKP_ERR_OOM, "out of host memory");
  opt->ctx = ctx;
  opt->ps = ps;
  opt->n = ps->e.n;
  opt->cfg = *cfg;
  size_t n = (size_t)(opt->n ? opt->n : 1);
  opt->grad = calloc(n, sizeof *opt->grad);
  opt->state[0] = calloc(n, sizeof *opt->state[0]);
  opt->state[1] = calloc(n, sizeof *opt->state[1]);
  opt->absmax[0] = calloc(n, sizeof *opt->absmax[0]);
  opt->absmax[1] = calloc(n, sizeof *opt->absmax[1]);
  vkp_status st = VKP_OK;
  if (!opt->grad || !opt->state[0] || !opt->state[1] || !opt->absmax[0] || !opt->absmax[1])
    st = vkp_error_set(vkp_ctx_err(ctx), VKP_ERR_OOM, "out of host memory");
  if (st == VKP_OK) st = vkp_buffer_new(ctx, sizeof(vkp_optim_hparams), &opt->hparams);
  if (st == VKP_OK) st = write_hparams(opt);
  if (st == VKP_OK && cfg->state_bits == 8) {
    float codes[512];
    vkp_optim_qmaps(codes);
    st = vkp_buffer_new(ctx, sizeof codes, &opt->qmap);
    if (st == VKP_OK) st = vkp_buffer_write(opt->qmap, 0, codes, sizeof codes);
  }
  int nstate = cfg->kind == VKP_OPTIM_ADAMW ? 2 : 1;
  for (int i = 0; i < opt->n && st == VKP_OK; i++) {
    const vkp_param_info *p = &ps->e.v[i]->info;
    if (!p->trainable) continue;
    int64_t numel = shape_numel(p->ndim, p->shape);
    uint64_t bytes = (uint64_t)numel * 4;
    st = vkp_buffer_new(ctx, bytes, &opt->grad[i]);   // zeroed on creation
    bool q8 = cfg->state_bits == 8 && numel >= VKP_OPTIM_8BIT_MIN;
    uint64_t sbytes = q8 ? ((uint64_t)numel + 3) / 4 * 4 : bytes;
    uint64_t blocks = ((uint64_t)numel + VKP_OPTIM_QBLOCK - 1) / VKP_OPTIM_QBLOCK;
    for (int s = 0; s < nstate && st == VKP_OK; s++) {
      st = vkp_buffer_new(ctx, sbytes, &opt->state[s][i]);
      if (st == VKP_OK && q8) st = vkp_buffer_new(ctx, blocks * 4, &opt->absmax[s][i]);
    }
  }
  if (st != VKP_OK) {
    vkp_optimizer_free(opt);
    return st;
  }
  *out = opt;
  return VKP_OK;
}

void vkp_optimizer_free(vkp_optimizer *opt) {
  if (!opt) return;
  for (int i = 0; i < opt->n; i++) {
    if (opt->grad) vkp_buffer_free(opt->grad[i]);
    for (int s = 0; s < 2; s++) {
      if (opt->state[s]) vkp_buffer_free(opt->state[s][i]);
      if (opt->absmax[s]) vkp_buffer_free(opt->absmax[s][i]);
    }
  }
  for (int i = 0; i < opt->tables.n; i++) vkp_buffer_free(opt->tables.v[i]);
  free(opt->tables.v);
  free(opt->grad);
  free(opt->state[0]);
  free(opt->state[1]);
  free(opt->absmax[0]);
  free(opt->absmax[1]);
  vkp_buffer_free(opt->hparams);
  vkp_buffer_free(opt->qmap);
  free(opt);
}

const vkp_optim_config *vkp_optimizer_config(const vkp_optimizer *opt) { return &opt->cfg; }

vkp_status vkp_optimizer_set_config(vkp_optimizer *opt, const vkp_optim_config *cfg) {
  vkp_error *err = vkp_ctx_err(opt->ctx);
  if (cfg->kind != opt->cfg.kind || (cfg->state_bits == 8) != (opt->cfg.state_bits == 8))
    return vkp_error_set(err, VKP_ERR_INVALID, "optimizer: cannot change from %s to %s", vkp_optim_config_name(&opt->cfg),
                         vkp_optim_config_name(cfg));
  VKP_TRY(check_config(err, cfg));
  opt->cfg = *cfg;
  return write_hparams(opt);
}

int64_t vkp_optimizer_steps(const vkp_optimizer *opt) { return opt->steps; }
void vkp_optimizer_set_steps(vkp_optimizer *opt, int64_t steps) { opt->steps = steps; }

void vkp_optimizer_prepare_step(vkp_optimizer *opt, float lr, bool apply_update, vkp_step_scalars *s) {
  s->lr = lr;
  s->step = (float)(opt->steps + 1);
  s->apply_update = apply_update ? 1u : 0u;
  if (apply_update) opt->steps++;
}

vkp_status vkp_optimizer_zero_grad(vkp_optimizer *opt) {
  for (int i = 0; i < opt->n; i++)
    if (opt->grad[i]) VKP_TRY(vkp_buffer_fill_zero(opt->grad[i]));
  return VKP_OK;
}

vkp_buffer *vkp_optimizer_grad(const vkp_optimizer *opt, int i) { return i >= 0 && i < opt->n ? opt->grad[i] : NULL; }

vkp_buffer *vkp_optimizer_state(const vkp_optimizer *opt, int i, int which) {
  return i >= 0 && i < opt->n && (which == 0 || which == 1) ? opt->state[which][i] : NULL;
}

vkp_buffer *vkp_optimizer_absmax(const vkp_optimizer *opt, int i, int which) {
  return i >= 0 && i < opt->n && (which == 0 || which == 1) ? opt->absmax[which][i] : NULL;
}


// ---- graph nodes ------------------------------------------------------------------------------

vkp_tensor *vkp_optimizer_append(vkp_optimizer *opt, vkp_graph *g, vkp_tensor *const *grads) {
  if (vkp_graph_status(g) != VKP_OK) return NULL;
  if (vkp_graph_ctx(g) != opt->ctx) {
    vkp_graph_fail(g, VKP_ERR_INVALID, "optimizer: the graph belongs to another device context");
    return NULL;
  }
  // 1. Accumulate gradients into the persistent buffers; collect the active parameters.
  int *active = calloc((size_t)(opt->n ? opt->n : 1), sizeof *active);
  if (!active) {
    vkp_graph_fail(g, VKP_ERR_OOM, "out of host memory");
    return NULL;
  }
  int nactive = 0;
  uint64_t nchunks = 0;
  // Last parameters first: a model registers its parameters in forward order, so their gradients
  // are ready first in backward; expanding in that order lets each layer's weight gradients run
  // right after its input gradient, so its activations (or recomputed checkpoint segment) are
  // freed early instead of living until the whole input-gradient chain has run.
  for (int i = opt->n - 1; i >= 0 && grads; i--) {
    const vkp_param_info *p = &opt->ps->e.v[i]->info;
    vkp_tensor *gr = grads[i];
    if (!gr || !opt->grad[i]) continue;
    bool same = gr->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = gr->shape[d] == p->shape[d];
    if (!same || gr->dtype != VKP_DTYPE_F32) {
      vkp_graph_fail(g, VKP_ERR_SHAPE, "optimizer: gradient '%s' does not match parameter '%s' (shape or dtype)",
                     gr->name, p->name);
      free(active);
      return NULL;
    }
    vkp_tensor *gbuf = vkp_tensor_external(g, p->name, opt->grad[i], 0, VKP_DTYPE_F32, p->ndim, p->shape);
    vkp_tensor_set_name(gbuf, "%s.grad", p->name);
    vkp_graph_expand(g, vkp_accumulate(g, gbuf, gr));
    active[nactive++] = i;
    nchunks += ((uint64_t)shape_numel(p->ndim, p->shape) + VKP_OPTIM_CHUNK - 1) / VKP_OPTIM_CHUNK;
  }
  if (vkp_graph_status(g) != VKP_OK) {
    free(active);
    return NULL;
  }
  if (nactive == 0) {   // nothing to update: the norm of no gradients is 0
    free(active);
    vkp_tensor *zero = vkp_tensor_set_name(vkp_fill(g, VKP_DTYPE_F32, 1, (int64_t[]){1}, 0.0f), "grad_norm");
    vkp_graph_output(g, zero);
    return zero;
  }
  if (nchunks > UINT32_MAX / 2) {
    free(active);
    vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "optimizer: %llu chunks are too many", (unsigned long long)nchunks);
    return NULL;
  }
  // 2. The table for this graph: entries of the active parameters, then the chunk list.
  uint64_t entries_bytes = (uint64_t)nactive * sizeof(vkp_optim_entry);
  uint64_t bytes = entries_bytes + nchunks * 8;
  uint8_t *host = calloc(1, bytes);
  vkp_buffer *table = NULL;
  if (!host || vkp_vec_reserve(&opt->tables, (int64_t)opt->tables.n + 1)) {
    free(host);
    free(active);
    vkp_graph_fail(g, VKP_ERR_OOM, "out of host memory");
    return NULL;
  }
  vkp_optim_entry *ent = (vkp_optim_entry *)host;
  uint32_t *chunk = (uint32_t *)(host + entries_bytes);
  uint64_t c = 0;
  for (int k = 0; k < nactive; k++) {   // entries in parameter order
    int i = active[nactive - 1 - k];
    const vkp_param_info *p = &opt->ps->e.v[i]->info;
    uint32_t n = (uint32_t)shape_numel(p->ndim, p->shape);
    bool q8 = opt->absmax[0][i] != NULL;
    ent[k] = (vkp_optim_entry){.p = vkp_buffer_address(p->buffer) + p->byte_offset,
                               .g = vkp_buffer_address(opt->grad[i]),
                               .s1 = vkp_buffer_address(opt->state[0][i]),
                               .s2 = opt->state[1][i] ? vkp_buffer_address(opt->state[1][i]) : 0,
                               .a1 = q8 ? vkp_buffer_address(opt->absmax[0][i]) : 0,
                               .a2 = q8 ? vkp_buffer_address(opt->absmax[1][i]) : 0,
                               .n = n,
                               .flags = q8 ? VKP_OPTIM_FLAG_8BIT : 0};
    for (uint64_t start = 0; start < n; start += VKP_OPTIM_CHUNK, c++) {
      chunk[2 * c] = (uint32_t)k;
      chunk[2 * c + 1] = (uint32_t)start;
    }
  }
  free(active);
  vkp_status st = vkp_buffer_new(opt->ctx, bytes, &table);
  if (st == VKP_OK) st = vkp_buffer_write(table, 0, host, bytes);
  free(host);
  if (st != VKP_OK) {
    vkp_buffer_free(table);
    vkp_graph_fail(g, st, "optimizer: %s", vkp_ctx_error(opt->ctx));
    return NULL;
  }
  opt->tables.v[opt->tables.n++] = table;
  // 3. Norm and update, after every accumulation (roots run in expansion order).
  uint64_t base = vkp_buffer_address(table);
  vkp_tensor *norm = NULL;
  vkp_tensor *upd = vkp_optim_append_nodes(g, base, base + entries_bytes, (uint32_t)nchunks,
                                           vkp_buffer_address(opt->hparams),
                                           opt->qmap ? vkp_buffer_address(opt->qmap) : 0,
                                           opt->cfg.kind == VKP_OPTIM_SGD, &norm);
  if (!upd) return NULL;
  vkp_graph_output(g, norm);
  vkp_graph_expand(g, upd);
  return norm;
}

// ---- save / load ------------------------------------------------------------------------------

// The state tensors of trainable parameter i as saved: f32 m / v (or the momentum) in the
// parameter's shape, or for an 8-bit parameter its codes (U8, the parameter's shape) and the
// absmax per block (F32).
typedef struct state_tensor {
  char suffix[16];
  vkp_buffer *buf;
  vkp_dtype dtype;
  int ndim;
  int64_t shape[VKP_MAX_DIMS];
  uint64_t nbytes;
} state_tensor;

static int state_tensors(const vkp_optimizer *opt, int i, state_tensor *out) {
  const vkp_param_info *p = &opt->ps->e.v[i]->info;
  int64_t numel = shape_numel(p->ndim, p->shape);
  int n = 0;
  for (int w = 0; w < 2; w++) {
    if (!opt->state[w][i]) continue;
    state_tensor *t = &out[n++];
    t->buf = opt->state[w][i];
    t->ndim = p->ndim;
    memcpy(t->shape, p->shape, sizeof t->shape);
    if (opt->absmax[w][i]) {
      snprintf(t->suffix, sizeof t->suffix, "state%d", w + 1);
      t->dtype = VKP_DTYPE_U8;
      t->nbytes = (uint64_t)numel;
      state_tensor *a = &out[n++];
      snprintf(a->suffix, sizeof a->suffix, "absmax%d", w + 1);
      a->buf = opt->absmax[w][i];
      a->dtype = VKP_DTYPE_F32;
      a->ndim = 1;
      a->shape[0] = (numel + VKP_OPTIM_QBLOCK - 1) / VKP_OPTIM_QBLOCK;
      a->nbytes = (uint64_t)a->shape[0] * 4;
    } else {
      snprintf(t->suffix, sizeof t->suffix, "%s",
               opt->cfg.kind == VKP_OPTIM_SGD ? "momentum_buffer" : w == 0 ? "exp_avg" : "exp_avg_sq");
      t->dtype = VKP_DTYPE_F32;
      t->nbytes = (uint64_t)numel * 4;
    }
  }
  return n;
}

uint64_t vkp_optimizer_state_bytes(const vkp_optimizer *opt) {
  uint64_t b = 0;
  for (int i = 0; i < opt->n; i++) {
    if (!opt->grad[i]) continue;
    state_tensor t[4];
    int nt = state_tensors(opt, i, t);
    for (int k = 0; k < nt; k++) b += t[k].nbytes;
  }
  return b;
}

typedef struct meta_field {
  const char *key;
  double *value;
} meta_field;

static int config_fields(vkp_optim_config *c, meta_field *f) {
  int n = 0;
  f[n++] = (meta_field){"weight_decay", &c->weight_decay};
  f[n++] = (meta_field){"max_grad_norm", &c->max_grad_norm};
  if (c->kind == VKP_OPTIM_ADAMW) {
    f[n++] = (meta_field){"beta1", &c->beta1};
    f[n++] = (meta_field){"beta2", &c->beta2};
    f[n++] = (meta_field){"eps", &c->eps};
  } else {
    f[n++] = (meta_field){"momentum", &c->momentum};
    f[n++] = (meta_field){"dampening", &c->dampening};
  }
  return n;
}

vkp_status vkp_optimizer_save(vkp_optimizer *opt, const char *path) {
  vkp_error *err = vkp_ctx_err(opt->ctx);
  vkp_safetensors_writer *w = NULL;
  VKP_TRY(vkp_safetensors_writer_new(&w, err));
  vkp_status st = VKP_OK;
  char key[VKP_NAME_MAX + 256], val[64];
  vkp_optim_config cfg = opt->cfg;
  meta_field f[8];
  int nf = config_fields(&cfg, f);
  st = vkp_safetensors_writer_set_metadata(w, "format", "vkpeft-optimizer", err);
  if (st == VKP_OK) st = vkp_safetensors_writer_set_metadata(w, "optimizer", vkp_optim_kind_name(cfg.kind), err);
  if (st == VKP_OK) st = vkp_safetensors_writer_set_metadata(w, "state_bits", cfg.state_bits == 8 ? "8" : "32", err);
  snprintf(val, sizeof val, "%lld", (long long)opt->steps);
  if (st == VKP_OK) st = vkp_safetensors_writer_set_metadata(w, "step", val, err);
  for (int k = 0; k < nf && st == VKP_OK; k++) {
    snprintf(val, sizeof val, "%.17g", *f[k].value);   // round-trips a double exactly
    st = vkp_safetensors_writer_set_metadata(w, f[k].key, val, err);
  }
  if (st == VKP_OK && cfg.kind == VKP_OPTIM_SGD)
    st = vkp_safetensors_writer_set_metadata(w, "nesterov", cfg.nesterov ? "true" : "false", err);
  void *host = NULL;
  for (int i = 0; i < opt->n && st == VKP_OK; i++) {
    if (!opt->grad[i]) continue;
    state_tensor t[4];
    int nt = state_tensors(opt, i, t);
    for (int k = 0; k < nt && st == VKP_OK; k++) {
      void *h = realloc(host, t[k].nbytes ? t[k].nbytes : 1);
      if (!h) {
        st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
        break;
      }
      host = h;
      st = vkp_buffer_read(t[k].buf, 0, host, t[k].nbytes);
      snprintf(key, sizeof key, "%s.%s", opt->ps->e.v[i]->info.name, t[k].suffix);
      if (st == VKP_OK) st = vkp_safetensors_writer_add(w, key, t[k].dtype, t[k].ndim, t[k].shape, host, err);
    }
  }
  free(host);
  if (st == VKP_OK) st = vkp_safetensors_writer_save(w, path, err);
  vkp_safetensors_writer_free(w);
  return st;
}

static vkp_status parse_double(vkp_error *err, const vkp_safetensors *st, const char *key, double *out) {
  const char *v = vkp_safetensors_metadata(st, key);
  if (!v)
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: optimizer metadata '%s' is missing", vkp_safetensors_path(st), key);
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (end == v || *end || errno)
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: optimizer metadata '%s' = '%s' is not a number",
                         vkp_safetensors_path(st), key, v);
  *out = d;
  return VKP_OK;
}

vkp_status vkp_optimizer_load(vkp_optimizer *opt, const char *path) {
  vkp_error *err = vkp_ctx_err(opt->ctx);
  vkp_safetensors *st = NULL;
  VKP_TRY(vkp_safetensors_open(path, &st, err));
  vkp_status s = VKP_OK;
  const char *fmt = vkp_safetensors_metadata(st, "format");
  const char *kind = vkp_safetensors_metadata(st, "optimizer");
  vkp_optim_kind k;
  vkp_optim_config cfg = {0};
  const char *bits = NULL;
  double step = 0;
  if (!fmt || strcmp(fmt, "vkpeft-optimizer") != 0) {
    s = vkp_error_set(err, VKP_ERR_FORMAT, "%s: not a vkpeft optimizer state (metadata 'format')", path);
  } else if (!kind || vkp_optim_kind_parse(kind, &k) != VKP_OK) {
    s = vkp_error_set(err, VKP_ERR_FORMAT, "%s: metadata 'optimizer' = '%s' is not adamw or sgd", path,
                      kind ? kind : "(missing)");
  } else if (k != opt->cfg.kind) {
    s = vkp_error_set(err, VKP_ERR_INVALID, "%s: holds %s state but the optimizer is %s", path, kind,
                      vkp_optim_kind_name(opt->cfg.kind));
  } else if ((bits = vkp_safetensors_metadata(st, "state_bits") ? vkp_safetensors_metadata(st, "state_bits") : "32"),
             strcmp(bits, opt->cfg.state_bits == 8 ? "8" : "32")) {
    s = vkp_error_set(err, VKP_ERR_INVALID, "%s: holds %s-bit state but the optimizer is %s", path, bits,
                      vkp_optim_config_name(&opt->cfg));
  } else {
    cfg.kind = k;
    cfg.state_bits = opt->cfg.state_bits;
    meta_field f[8];
    int nf = config_fields(&cfg, f);
    s = parse_double(err, st, "step", &step);
    if (s == VKP_OK && !(step >= 0 && step <= 9e15 && step == floor(step)))
      s = vkp_error_set(err, VKP_ERR_FORMAT, "%s: invalid step %g", path, step);
    for (int i = 0; i < nf && s == VKP_OK; i++) s = parse_double(err, st, f[i].key, f[i].value);
    if (s == VKP_OK && k == VKP_OPTIM_SGD) {
      const char *nv = vkp_safetensors_metadata(st, "nesterov");
      if (!nv || (strcmp(nv, "true") != 0 && strcmp(nv, "false") != 0))
        s = vkp_error_set(err, VKP_ERR_FORMAT, "%s: metadata 'nesterov' must be true or false", path);
      else cfg.nesterov = strcmp(nv, "true") == 0;
    }
    if (s == VKP_OK && check_config(err, &cfg) != VKP_OK) {
      char why[VKP_ERROR_MSG_MAX];
      snprintf(why, sizeof why, "%s", err->msg);
      s = vkp_error_set(err, VKP_ERR_FORMAT, "%s: %s", path, why);
    }
  }
  // Every trainable parameter needs its state tensors, of its shape; nothing else may be there.
  char key[VKP_NAME_MAX + 256];
  size_t expected = 0;
  for (int i = 0; i < opt->n && s == VKP_OK; i++) {
    if (!opt->grad[i]) continue;
    const char *pname = opt->ps->e.v[i]->info.name;
    state_tensor want[4];
    int nt = state_tensors(opt, i, want);
    for (int w = 0; w < nt && s == VKP_OK; w++) {
      snprintf(key, sizeof key, "%s.%s", pname, want[w].suffix);
      const vkp_st_tensor *t = vkp_safetensors_find(st, key);
      expected++;
      bool same = t && t->ndim == want[w].ndim && t->dtype == want[w].dtype;
      for (int d = 0; same && d < want[w].ndim; d++) same = t->shape[d] == want[w].shape[d];
      if (!t) s = vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: no state '%s' for parameter '%s'", path, key, pname);
      else if (!same)
        s = vkp_error_set(err, VKP_ERR_SHAPE, "%s: state '%s' has another shape or dtype than parameter '%s' needs", path,
                          key, pname);
    }
  }
  if (s == VKP_OK && vkp_safetensors_count(st) != expected) {
    for (size_t j = 0; j < vkp_safetensors_count(st); j++) {   // name one tensor nobody asked for
      const char *name = vkp_safetensors_at(st, j)->name;
      bool known = false;
      for (int i = 0; i < opt->n && !known; i++) {
        if (!opt->grad[i]) continue;
        state_tensor want[4];
        int nt = state_tensors(opt, i, want);
        for (int w = 0; w < nt && !known; w++) {
          snprintf(key, sizeof key, "%s.%s", opt->ps->e.v[i]->name, want[w].suffix);
          known = strcmp(key, name) == 0;
        }
      }
      if (!known) {
        s = vkp_error_set(err, VKP_ERR_INVALID, "%s: state '%s' belongs to no trainable parameter of this optimizer",
                          path, name);
        break;
      }
    }
  }
  // Apply.
  for (int i = 0; i < opt->n && s == VKP_OK; i++) {
    if (!opt->grad[i]) continue;
    state_tensor want[4];
    int nt = state_tensors(opt, i, want);
    for (int w = 0; w < nt && s == VKP_OK; w++) {
      snprintf(key, sizeof key, "%s.%s", opt->ps->e.v[i]->name, want[w].suffix);
      const vkp_st_tensor *t = vkp_safetensors_find(st, key);
      s = vkp_buffer_write(want[w].buf, 0, t->data, t->nbytes);
    }
  }
  if (s == VKP_OK) {
    opt->cfg = cfg;
    opt->steps = (int64_t)step;
    s = write_hparams(opt);
  }
  vkp_safetensors_free(st);
  return s;
}
