// graph.c — graph and tensor creation, views, roots, build errors.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_internal.h"

vkp_status vkp_graph_new(vkp_ctx *ctx, vkp_graph **out) {
  vkp_graph *g = calloc(1, sizeof *g);
  if (!g) return vkp_error_set(&ctx->err, VKP_ERR_OOM, "out of host memory");
  g->ctx = ctx;
  g->chunk_used = VKP_TENSOR_CHUNK;
  *out = g;
  return VKP_OK;
}

void vkp_graph_free(vkp_graph *g) {
  if (!g) return;
  if (g->cmd) vkFreeCommandBuffers(g->ctx->device, g->ctx->cmd_pool, 1, &g->cmd);
  for (int k = 0; k < g->n_arena; k++) vkp_buffer_free(g->arena[k]);
  free(g->arena);
  vkp_buffer_free(g->scalars);
  free(g->order.v);
  free(g->roots.v);
  free(g->query_node);
  free(g->query_disp);
  for (vkp_tensor_chunk *c = g->chunks, *next; c; c = next) {
    next = c->next;
    free(c);
  }
  free(g);
}

vkp_ctx *vkp_graph_ctx(vkp_graph *g) { return g->ctx; }
vkp_status vkp_graph_status(const vkp_graph *g) { return g->err.status; }
const char *vkp_graph_error(const vkp_graph *g) { return g->err.msg; }

vkp_status vkp_graph_fail(vkp_graph *g, vkp_status status, const char *fmt, ...) {
  if (g->err.status == VKP_OK) {
    va_list ap;
    va_start(ap, fmt);
    vkp_error_setv(&g->err, status, fmt, ap);
    va_end(ap);
  }
  return status;
}

static vkp_tensor *tensor_alloc(vkp_graph *g) {
  if (g->compiled) {
    vkp_graph_fail(g, VKP_ERR_INVALID, "graph is already compiled: build a new graph");
    return NULL;
  }
  if (g->chunk_used == VKP_TENSOR_CHUNK) {
    vkp_tensor_chunk *c = calloc(1, sizeof *c);
    if (!c) {
      vkp_graph_fail(g, VKP_ERR_OOM, "out of host memory");
      return NULL;
    }
    c->next = g->chunks;
    g->chunks = c;
    g->chunk_used = 0;
  }
  vkp_tensor *t = &g->chunks->t[g->chunk_used++];
  t->graph = g;
  t->id = g->next_id++;
  t->order = -1;
  t->segment = g->segment_open;
  return t;
}

void vkp_graph_checkpoint_begin(vkp_graph *g) {
  if (g->segment_open) {
    vkp_graph_fail(g, VKP_ERR_INVALID, "activation checkpoint segments do not nest");
    return;
  }
  g->segment_open = ++g->segments;
}

void vkp_graph_checkpoint_end(vkp_graph *g) {
  if (!g->segment_open) vkp_graph_fail(g, VKP_ERR_INVALID, "activation checkpoint: end without begin");
  g->segment_open = 0;
}

void vkp_graph_set_lora_fusion(vkp_graph *g, bool fused) { g->unfused_lora = !fused; }
bool vkp_graph_lora_fusion(const vkp_graph *g) { return !g->unfused_lora; }

vkp_tensor *vkp_node_clone(vkp_graph *g, const vkp_tensor *t) {
  vkp_tensor *c = tensor_alloc(g);
  if (!c) return NULL;
  int32_t id = c->id;
  *c = *t;
  c->id = id;
  c->graph = g;
  c->order = -1;
  c->last_use = 0;
  c->arena_offset = 0;
  c->keep = false;
  c->grad = NULL;
  c->recompute = NULL;
  c->recompute_of = (vkp_tensor *)t;
  c->segment = 0;
  return c;
}

void vkp_strides_contiguous(int ndim, const int64_t *shape, int64_t *stride) {
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    stride[i] = s;
    s *= shape[i];
  }
}

static bool set_shape(vkp_graph *g, vkp_tensor *t, int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > VKP_MAX_DIMS) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "tensor '%s': %d dims (at most %d)", t->name, ndim, VKP_MAX_DIMS);
    return false;
  }
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] <= 0 || shape[i] > (1ll << 31) || n > (1ll << 40) / shape[i]) {
      vkp_graph_fail(g, VKP_ERR_SHAPE, "tensor '%s': dim %d has invalid size %lld", t->name, i,
                     (long long)shape[i]);
      return false;
    }
    n *= shape[i];
    t->shape[i] = shape[i];
  }
  if (n > (int64_t)UINT32_MAX) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "tensor '%s': %lld elements exceed the 2^32 kernel index range", t->name,
                   (long long)n);
    return false;
  }
  t->ndim = ndim;
  vkp_strides_contiguous(ndim, t->shape, t->stride);
  return true;
}

static vkp_tensor *leaf_new(vkp_graph *g, const char *name, vkp_dtype dtype, int ndim, const int64_t *shape,
                            vkp_tensor_kind kind) {
  vkp_tensor *t = tensor_alloc(g);
  if (!t) return NULL;
  snprintf(t->name, sizeof t->name, "%s", name ? name : "");
  t->dtype = dtype;
  t->kind = kind;
  return set_shape(g, t, ndim, shape) ? t : NULL;
}

vkp_tensor *vkp_tensor_input(vkp_graph *g, const char *name, vkp_dtype dtype, int ndim, const int64_t *shape) {
  vkp_tensor *t = leaf_new(g, name, dtype, ndim, shape, VKP_TENSOR_INPUT);
  if (t) t->keep = true;
  return t;
}

vkp_tensor *vkp_tensor_external(vkp_graph *g, const char *name, vkp_buffer *buf, uint64_t byte_offset,
                                vkp_dtype dtype, int ndim, const int64_t *shape) {
  vkp_tensor *t = leaf_new(g, name, dtype, ndim, shape, VKP_TENSOR_EXTERNAL);
  if (!t) return NULL;
  if (!buf || byte_offset + vkp_tensor_nbytes(t) > vkp_buffer_size(buf)) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "tensor '%s': %llu bytes at offset %llu do not fit its buffer", t->name,
                   (unsigned long long)vkp_tensor_nbytes(t), (unsigned long long)byte_offset);
    return NULL;
  }
  t->buffer = buf;
  t->buffer_offset = byte_offset;
  return t;
}

vkp_tensor *vkp_tensor_set_name(vkp_tensor *t, const char *fmt, ...) {
  if (!t) return NULL;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->name, sizeof t->name, fmt, ap);
  va_end(ap);
  return t;
}

int64_t vkp_tensor_numel(const vkp_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

uint64_t vkp_tensor_nbytes(const vkp_tensor *t) { return (uint64_t)vkp_tensor_numel(t) * vkp_dtype_size(t->dtype); }

bool vkp_tensor_is_contiguous(const vkp_tensor *t) {
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] != 1 && t->stride[i] != s) return false;
    s *= t->shape[i];
  }
  return true;
}

bool vkp_tensor_same_shape(const vkp_tensor *a, const vkp_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

void vkp_shape4(const vkp_tensor *t, int32_t shape[4], int32_t stride[4]) {
  int pad = 4 - t->ndim;
  for (int i = 0; i < 4; i++) {
    shape[i] = i < pad ? 1 : (int32_t)t->shape[i - pad];
    stride[i] = i < pad ? 0 : (int32_t)t->stride[i - pad];
  }
}

bool vkp_any_null(vkp_tensor *const *ts, int n) {
  for (int i = 0; i < n; i++)
    if (!ts[i]) return true;
  return false;
}

vkp_tensor *vkp_node_new(vkp_graph *g, const vkp_op_def *op, vkp_dtype dtype, int ndim, const int64_t *shape,
                         vkp_tensor *const *srcs, int nsrc) {
  if (vkp_any_null(srcs, nsrc)) return NULL;
  vkp_tensor *t = tensor_alloc(g);
  if (!t) return NULL;
  snprintf(t->name, sizeof t->name, "%s", op->name);
  t->dtype = dtype;
  t->op = op;
  t->nsrc = nsrc;
  for (int i = 0; i < nsrc; i++) {
    t->src[i] = srcs[i];
    if (srcs[i]->requires_grad) t->requires_grad = true;
  }
  return set_shape(g, t, ndim, shape) ? t : NULL;
}

void vkp_graph_output(vkp_graph *g, vkp_tensor *t) {
  if (!t) return;
  t->keep = true;
  vkp_graph_expand(g, t);
}

void vkp_graph_expand(vkp_graph *g, vkp_tensor *t) {
  if (!t) return;
  if (vkp_vec_push(&g->roots, t) != VKP_OK) vkp_graph_fail(g, VKP_ERR_OOM, "out of host memory");
}
