// compile.c — execution order, liveness-based memory planning, command recording, running.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_internal.h"

struct vkp_recorder {
  vkp_graph *g;
  VkCommandBuffer cmd;
  uint32_t dispatches;
};

static vkp_tensor *owner(const vkp_tensor *t) { return t->view_src ? t->view_src : (vkp_tensor *)t; }

// Depth-first post-order from t (sources first). Iterative, so deep graphs cannot overflow the stack.
static vkp_status schedule(vkp_graph *g, vkp_tensor *root) {
  if (root->order >= 0) return VKP_OK;
  vkp_tensor_list stack = {0};
  vkp_status st = vkp_vec_push(&stack, root);
  root->order = -2;   // on stack
  while (st == VKP_OK && stack.n > 0) {
    vkp_tensor *t = stack.v[stack.n - 1];
    bool pushed = false;
    for (int i = 0; i < t->nsrc && !pushed; i++) {
      vkp_tensor *s = t->src[i];
      if (s->order == -1) {
        s->order = -2;
        st = vkp_vec_push(&stack, s);
        pushed = true;
      }
    }
    if (pushed) continue;
    stack.n--;
    if (t->op) {
      t->order = g->order.n;
      if (vkp_vec_push(&g->order, t) != VKP_OK) st = VKP_ERR_OOM;
    } else {
      t->order = 0;   // leaves are available from the start
    }
  }
  free(stack.v);
  return st;
}

// Gives every op with a fold hook its compile-time rewrite (vkp_op_def.fold), in order. A fold
// may place a node that owned storage into another's (it becomes a view): views built on it then
// point through it, so their chains are flattened to the storage owner afterwards.
static vkp_status fold_nodes(vkp_graph *g) {
  uint32_t *readers = calloc((size_t)g->next_id + 1, sizeof *readers);
  if (!readers) return vkp_error_set(&g->ctx->err, VKP_ERR_OOM, "out of host memory");
  for (int32_t i = 0; i < g->order.n; i++)
    for (int s = 0; s < g->order.v[i]->nsrc; s++) readers[g->order.v[i]->src[s]->id]++;
  for (int32_t i = 0; i < g->order.n; i++)
    if (g->order.v[i]->op->fold) g->order.v[i]->op->fold(g->order.v[i], readers);
  free(readers);
  for (int32_t i = 0; i < g->order.n; i++) {
    vkp_tensor *x = g->order.v[i];
    while (x->view_src && x->view_src->view_src) {   // x's offset is relative to its former owner
      vkp_tensor *v = x->view_src;
      x->offset += v->offset;
      x->view_src = v->view_src;
      x->buffer = v->buffer;
      x->buffer_offset = v->buffer_offset;
    }
  }
  return VKP_OK;
}

// ---- memory planning ------------------------------------------------------------------------

typedef struct plan_range {
  uint64_t off, size;
} plan_range;

typedef struct planner {
  plan_range *free;
  int n, cap;
  uint64_t top;
  uint64_t seg;   // the arena is made of buffers of this size: no tensor may straddle two
} planner;

static uint64_t align256(uint64_t v) { return (v + 255) & ~(uint64_t)255; }
static void plan_free(planner *p, uint64_t off, uint64_t size);

// The first offset >= off at which `size` bytes stay inside one arena segment.
static uint64_t seg_fit(const planner *p, uint64_t off, uint64_t size) {
  return off / p->seg == (off + size - 1) / p->seg ? off : (off / p->seg + 1) * p->seg;
}

// Best-fit placement; UINT64_MAX if size exceeds a segment.
static uint64_t plan_alloc(planner *p, uint64_t size) {
  size = align256(size ? size : 1);
  if (size > p->seg) return UINT64_MAX;
  int best = -1;
  uint64_t best_start = 0;
  for (int i = 0; i < p->n; i++) {
    uint64_t start = seg_fit(p, p->free[i].off, size);
    if (start + size <= p->free[i].off + p->free[i].size && (best < 0 || p->free[i].size < p->free[best].size))
      best = i, best_start = start;
  }
  if (best >= 0) {
    plan_range r = p->free[best];
    p->free[best] = p->free[--p->n];
    if (best_start > r.off) plan_free(p, r.off, best_start - r.off);
    if (r.off + r.size > best_start + size) plan_free(p, best_start + size, r.off + r.size - best_start - size);
    return best_start;
  }
  // Extend the arena, absorbing a free range that ends at the top.
  uint64_t from = p->top;
  for (int i = 0; i < p->n; i++)
    if (p->free[i].off + p->free[i].size == p->top) {
      from = p->free[i].off;
      p->free[i] = p->free[--p->n];
      break;
    }
  uint64_t start = seg_fit(p, from, size);
  if (start > from) plan_free(p, from, start - from);
  p->top = start + size;
  return start;
}

static void plan_free(planner *p, uint64_t off, uint64_t size) {
  size = align256(size ? size : 1);
  for (int i = 0; i < p->n; i++) {   // coalesce with neighbours
    if (p->free[i].off + p->free[i].size == off) {
      off = p->free[i].off;
      size += p->free[i].size;
      p->free[i--] = p->free[--p->n];
    } else if (off + size == p->free[i].off) {
      size += p->free[i].size;
      p->free[i--] = p->free[--p->n];
    }
  }
  if (p->n == p->cap) {
    int cap = p->cap ? p->cap * 2 : 64;
    plan_range *f = realloc(p->free, (size_t)cap * sizeof *f);
    if (!f) return;   // the range stays unused: wasteful, never wrong
    p->free = f;
    p->cap = cap;
  }
  p->free[p->n++] = (plan_range){off, size};
}

static bool planned_storage(const vkp_tensor *o) { return o->kind != VKP_TENSOR_EXTERNAL; }

static vkp_status plan_memory(vkp_graph *g) {
  planner p = {.seg = g->segment};
  vkp_tensor_list *ord = &g->order;
  // Liveness: last use of every storage owner.
  for (int32_t i = 0; i < ord->n; i++) {
    vkp_tensor *t = ord->v[i];
    owner(t)->last_use = i > owner(t)->last_use ? i : owner(t)->last_use;
    if (t->keep) owner(t)->keep = true;
    for (int s = 0; s < t->nsrc; s++) {
      vkp_tensor *o = owner(t->src[s]);
      if (i > o->last_use) o->last_use = i;
    }
  }
  // Inputs are placed first: they live for the whole run.
  bool *placed = calloc((size_t)g->next_id, 1);
  if (!placed) return VKP_ERR_OOM;
  const vkp_tensor *too_big = NULL;
  for (vkp_tensor_chunk *c = g->chunks; c; c = c->next) {
    int used = c == g->chunks ? g->chunk_used : VKP_TENSOR_CHUNK;
    for (int k = 0; k < used; k++) {
      vkp_tensor *t = &c->t[k];
      if (t->kind == VKP_TENSOR_INPUT && t->order >= 0) {
        t->arena_offset = plan_alloc(&p, vkp_tensor_nbytes(t));
        if (t->arena_offset == UINT64_MAX) too_big = t;
        placed[t->id] = true;
      }
    }
  }
  for (int32_t i = 0; i < ord->n; i++) {
    vkp_tensor *t = ord->v[i];
    vkp_tensor *o = owner(t);
    if (planned_storage(o) && !placed[o->id]) {
      o->arena_offset = plan_alloc(&p, vkp_tensor_nbytes(o));
      if (o->arena_offset == UINT64_MAX) too_big = o;
      placed[o->id] = true;
      g->unplanned_bytes += align256(vkp_tensor_nbytes(o));
    }
    // Release storage whose last reader is this node (outputs and inputs stay).
    for (int s = 0; s <= t->nsrc; s++) {
      vkp_tensor *r = owner(s < t->nsrc ? t->src[s] : t);
      if (planned_storage(r) && !r->keep && r->last_use == i && placed[r->id] && r->kind != VKP_TENSOR_INPUT) {
        plan_free(&p, r->arena_offset, vkp_tensor_nbytes(r));
        r->last_use = -1;   // freed once
      }
    }
  }
  free(placed);
  free(p.free);
  g->arena_bytes = p.top;
  if (too_big)
    return vkp_error_set(&g->ctx->err, VKP_ERR_OOM, "tensor '%s' (%llu bytes) is larger than the device's largest allocation",
                         too_big->name, (unsigned long long)vkp_tensor_nbytes(too_big));
  return VKP_OK;
}

// ---- recording ------------------------------------------------------------------------------

uint64_t vkp_rec_addr(vkp_recorder *rec, const vkp_tensor *t) {
  const vkp_tensor *o = owner(t);
  uint64_t base = o->kind == VKP_TENSOR_EXTERNAL
                      ? vkp_buffer_address(o->buffer) + o->buffer_offset
                      : vkp_buffer_address(rec->g->arena[o->arena_offset / rec->g->segment]) + o->arena_offset % rec->g->segment;
  return base + (uint64_t)t->offset * vkp_dtype_size(t->dtype);
}

uint64_t vkp_rec_scalars_addr(vkp_recorder *rec) { return vkp_buffer_address(rec->g->scalars); }
vkp_ctx *vkp_rec_ctx(vkp_recorder *rec) { return rec->g->ctx; }

vkp_status vkp_rec_dispatch(vkp_recorder *rec, const char *shader, const void *push, uint32_t push_bytes,
                            uint32_t gx, uint32_t gy, uint32_t gz) {
  vkp_ctx *ctx = rec->g->ctx;
  if (push_bytes > VKP_PUSH_CONSTANT_BYTES)
    return vkp_error_set(&ctx->err, VKP_ERR_SHADER, "shader '%s': %u push-constant bytes (max %d)", shader,
                         push_bytes, VKP_PUSH_CONSTANT_BYTES);
  if (gx == 0 || gy == 0 || gz == 0) return VKP_OK;
  const uint32_t *lim = ctx->info.max_workgroup_count;
  if (gx > lim[0] || gy > lim[1] || gz > lim[2])
    return vkp_error_set(&ctx->err, VKP_ERR_UNSUPPORTED, "shader '%s': %ux%ux%u workgroups exceed the device limit",
                         shader, gx, gy, gz);
  VkPipeline pipe;
  VKP_TRY(vkp_pipeline_get(ctx, shader, &pipe));
  if (rec->dispatches > 0) vkp_rec_barrier(rec);
  vkCmdBindPipeline(rec->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
  vkCmdPushConstants(rec->cmd, ctx->pipeline_layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
  vkCmdDispatch(rec->cmd, gx, gy, gz);
  rec->dispatches++;
  return VKP_OK;
}

vkp_status vkp_rec_dispatch_1d(vkp_recorder *rec, const char *shader, const void *push, uint32_t push_bytes,
                               uint64_t n_items, uint32_t items_per_group) {
  uint64_t groups = (n_items + items_per_group - 1) / items_per_group;
  uint32_t max_x = rec->g->ctx->info.max_workgroup_count[0];
  if (max_x > 65535) max_x = 65535;
  uint32_t gx = groups < max_x ? (uint32_t)groups : max_x;
  uint32_t gy = gx ? (uint32_t)((groups + gx - 1) / gx) : 0;
  return vkp_rec_dispatch(rec, shader, push, push_bytes, gx, gy, 1);
}

void vkp_rec_barrier(vkp_recorder *rec) {
  VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_SHADER_READ_BIT,
                        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT};
  vkCmdPipelineBarrier(rec->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1,
                       &mb, 0, NULL, 0, NULL);
}

static vkp_status record(vkp_graph *g) {
  vkp_ctx *ctx = g->ctx;
  VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                    .commandPool = ctx->cmd_pool,
                                    .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                    .commandBufferCount = 1};
  VkResult r = vkAllocateCommandBuffers(ctx->device, &ai, &g->cmd);
  if (r != VK_SUCCESS) return vkp_vk_fail(ctx, r, "vkAllocateCommandBuffers");
  VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  if ((r = vkBeginCommandBuffer(g->cmd, &bi)) != VK_SUCCESS) return vkp_vk_fail(ctx, r, "vkBeginCommandBuffer");
  vkp_recorder rec = {.g = g, .cmd = g->cmd};
  bool profile = ctx->query_pool != VK_NULL_HANDLE;
  if (profile) {
    free(g->query_node);
    free(g->query_disp);
    g->query_node = calloc((size_t)g->order.n + 1, sizeof *g->query_node);
    g->query_disp = calloc((size_t)g->order.n + 1, sizeof *g->query_disp);
    g->query_count = 0;
    vkCmdResetQueryPool(g->cmd, ctx->query_pool, 0, ctx->query_cap);
  }
  vkp_status st = VKP_OK;
  for (int32_t i = 0; i < g->order.n && st == VKP_OK; i++) {
    const vkp_tensor *t = g->order.v[i];
    uint32_t before = rec.dispatches;
    bool timed = profile && g->query_node && g->query_disp && 2 * (g->query_count + 1) <= ctx->query_cap;
    if (timed && rec.dispatches > 0) vkp_rec_barrier(&rec);
    if (timed) vkCmdWriteTimestamp(g->cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, ctx->query_pool, 2 * g->query_count);
    st = t->op->record(&rec, t);
    if (st != VKP_OK)
      vkp_error_set(&ctx->err, st, "recording op '%s' (%s): %s", t->op->name, t->name, ctx->err.msg);
    if (timed) {
      vkCmdWriteTimestamp(g->cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, ctx->query_pool, 2 * g->query_count + 1);
      g->query_disp[g->query_count] = rec.dispatches - before;
      g->query_node[g->query_count++] = (uint32_t)i;
    }
  }
  g->dispatches = rec.dispatches;
  if ((r = vkEndCommandBuffer(g->cmd)) != VK_SUCCESS && st == VKP_OK) st = vkp_vk_fail(ctx, r, "vkEndCommandBuffer");
  return st;
}

vkp_status vkp_graph_compile(vkp_graph *g) {
  vkp_ctx *ctx = g->ctx;
  if (g->err.status != VKP_OK) return vkp_error_set(&ctx->err, g->err.status, "%s", g->err.msg);
  if (g->compiled) return VKP_OK;
  for (int32_t i = 0; i < g->roots.n; i++)
    if (schedule(g, g->roots.v[i]) != VKP_OK) return vkp_error_set(&ctx->err, VKP_ERR_OOM, "out of host memory");
  for (int32_t i = 0; i < g->order.n; i++) g->order.v[i]->last_use = -1;
  VKP_TRY(fold_nodes(g));
  // The arena is split into segments no larger than the device's largest allocation
  // (VKPEFT_ARENA_SEGMENT overrides it, for tests); no tensor straddles two.
  uint64_t seg = ctx->info.max_allocation_size ? ctx->info.max_allocation_size : (1ull << 31);
  const char *env = getenv("VKPEFT_ARENA_SEGMENT");
  if (env && strtoull(env, NULL, 10) >= 4096) seg = strtoull(env, NULL, 10);
  g->segment = seg & ~(uint64_t)255;
  vkp_status pst = plan_memory(g);
  if (pst == VKP_ERR_OOM && !ctx->err.msg[0]) return vkp_error_set(&ctx->err, VKP_ERR_OOM, "out of host memory");
  if (pst) return pst;
  g->n_arena = (int)((g->arena_bytes + g->segment - 1) / g->segment);
  if (g->n_arena < 1) g->n_arena = 1;
  g->arena = calloc((size_t)g->n_arena, sizeof *g->arena);
  if (!g->arena) return vkp_error_set(&ctx->err, VKP_ERR_OOM, "out of host memory");
  for (int k = 0; k < g->n_arena; k++) {
    uint64_t left = g->arena_bytes - (uint64_t)k * g->segment;
    VKP_TRY(vkp_buffer_new(ctx, left > g->segment ? g->segment : (left ? left : 256), &g->arena[k]));
  }
  VKP_TRY(vkp_buffer_new(ctx, sizeof(vkp_step_scalars), &g->scalars));
  vkp_step_scalars s = {.lr = 0, .step = 1, .seed = 0, .apply_update = 1, .loss_scale = 1};
  VKP_TRY(vkp_buffer_write(g->scalars, 0, &s, sizeof s));
  g->compiled = true;
  return record(g);
}

vkp_status vkp_graph_set_input(vkp_graph *g, vkp_tensor *t, const void *data, uint64_t bytes) {
  vkp_ctx *ctx = g->ctx;
  if (!g->compiled) return vkp_error_set(&ctx->err, VKP_ERR_INVALID, "set_input before vkp_graph_compile");
  if (!t || t->kind != VKP_TENSOR_INPUT || t->graph != g)
    return vkp_error_set(&ctx->err, VKP_ERR_INVALID, "tensor '%s' is not an input of this graph", t ? t->name : "?");
  if (bytes != vkp_tensor_nbytes(t))
    return vkp_error_set(&ctx->err, VKP_ERR_SHAPE, "input '%s': %llu bytes given, %llu expected", t->name,
                         (unsigned long long)bytes, (unsigned long long)vkp_tensor_nbytes(t));
  if (t->order < 0) return VKP_OK;   // not used by any scheduled op
  return vkp_buffer_write(g->arena[t->arena_offset / g->segment], t->arena_offset % g->segment, data, bytes);
}

vkp_status vkp_graph_set_scalars(vkp_graph *g, const vkp_step_scalars *s) {
  if (!g->compiled) return vkp_error_set(&g->ctx->err, VKP_ERR_INVALID, "set_scalars before vkp_graph_compile");
  return vkp_buffer_write(g->scalars, 0, s, sizeof *s);
}

vkp_status vkp_graph_run(vkp_graph *g) {
  vkp_ctx *ctx = g->ctx;
  if (!g->compiled) return vkp_error_set(&ctx->err, VKP_ERR_INVALID, "run before vkp_graph_compile");
  VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &g->cmd};
  VkResult r = vkQueueSubmit(ctx->queue, 1, &si, ctx->fence);
  if (r != VK_SUCCESS) return vkp_vk_fail(ctx, r, "vkQueueSubmit");
  r = vkWaitForFences(ctx->device, 1, &ctx->fence, VK_TRUE, UINT64_MAX);
  vkResetFences(ctx->device, 1, &ctx->fence);
  return r == VK_SUCCESS ? VKP_OK : vkp_vk_fail(ctx, r, "graph run");
}

vkp_status vkp_graph_read(vkp_graph *g, const vkp_tensor *t, void *data, uint64_t bytes) {
  vkp_ctx *ctx = g->ctx;
  if (!g->compiled) return vkp_error_set(&ctx->err, VKP_ERR_INVALID, "read before vkp_graph_compile");
  const vkp_tensor *o = owner(t);
  if (!vkp_tensor_is_contiguous(t))
    return vkp_error_set(&ctx->err, VKP_ERR_INVALID, "tensor '%s' is a non-contiguous view", t->name);
  if (o->kind == VKP_TENSOR_INTERMEDIATE && (!o->keep || o->order < 0))
    return vkp_error_set(&ctx->err, VKP_ERR_INVALID,
                         "tensor '%s' is not a graph output (mark it with vkp_graph_output)", t->name);
  if (bytes != vkp_tensor_nbytes(t))
    return vkp_error_set(&ctx->err, VKP_ERR_SHAPE, "read of '%s': %llu bytes asked, %llu available", t->name,
                         (unsigned long long)bytes, (unsigned long long)vkp_tensor_nbytes(t));
  uint64_t off = (uint64_t)t->offset * vkp_dtype_size(t->dtype);
  if (o->kind == VKP_TENSOR_EXTERNAL) return vkp_buffer_read(o->buffer, o->buffer_offset + off, data, bytes);
  return vkp_buffer_read(g->arena[o->arena_offset / g->segment], o->arena_offset % g->segment + off, data, bytes);
}

vkp_graph_stats vkp_graph_get_stats(const vkp_graph *g) {
  vkp_graph_stats s = {0};
  for (int32_t i = 0; i < g->order.n; i++)
    if (g->order.v[i]->view_src == NULL || g->order.v[i]->op->record) s.nodes++;
  s.dispatches = g->dispatches;
  s.arena_bytes = g->arena_bytes;
  s.unplanned_bytes = g->unplanned_bytes;
  return s;
}

uint32_t vkp_graph_profile(const vkp_graph *g, vkp_op_time *out, uint32_t cap) {
  vkp_ctx *ctx = g->ctx;
  if (!ctx->query_pool || !g->query_count) return 0;
  uint64_t *ts = calloc(2 * (size_t)g->query_count, sizeof *ts);
  if (!ts) return 0;
  uint32_t n = 0;
  if (vkGetQueryPoolResults(ctx->device, ctx->query_pool, 0, 2 * g->query_count, 2 * g->query_count * sizeof *ts,
                            ts, sizeof *ts, VK_QUERY_RESULT_64_BIT) == VK_SUCCESS) {
    for (uint32_t q = 0; q < g->query_count; q++) {
      if (!g->query_disp[q]) continue;   // views and other nodes that record nothing
      const char *name = g->order.v[g->query_node[q]]->op->name;
      double ms = (double)(ts[2 * q + 1] - ts[2 * q]) * ctx->info.timestamp_period_ns * 1e-6;
      uint32_t k = 0;
      while (k < n && strcmp(out[k].op, name) != 0) k++;
      if (k == n) {
        if (n == cap) continue;
        out[n++] = (vkp_op_time){name, 0, 0, 0};
      }
      out[k].count++;
      out[k].dispatches += g->query_disp[q];
      out[k].ms += ms;
    }
    for (uint32_t a = 0; a < n; a++)   // sort by time, descending
      for (uint32_t b = a + 1; b < n; b++)
        if (out[b].ms > out[a].ms) {
          vkp_op_time tmp = out[a];
          out[a] = out[b];
          out[b] = tmp;
        }
  }
  free(ts);
  return n;
}
