// autograd.c — reverse-mode autodiff over the graph (vkp_graph_backward).
#include <stdlib.h>

#include "ops_internal.h"
#include "vkp_op.h"
#include "vkp_ops.h"

void vkp_grad_accumulate(vkp_graph *g, vkp_tensor *t, vkp_tensor *grad) {
  if (t && t->recompute_of) t = t->recompute_of;   // a recomputed copy: the gradient is the original's
  if (!t || !grad || !t->requires_grad) return;
  if (!vkp_tensor_same_shape(t, grad)) {
    vkp_graph_fail(g, VKP_ERR_SHAPE, "backward: gradient for '%s' has the wrong shape", t->name);
    return;
  }
  t->grad = t->grad ? vkp_add(g, t->grad, grad) : grad;
}

// Collects the nodes reachable from `loss` in topological order (sources first).
static vkp_status collect(vkp_tensor *loss, vkp_tensor_list *out) {
  vkp_tensor_list stack = {0};
  vkp_status st = VKP_OK;
  // Mark with a visit flag kept in last_use (reset afterwards): 1 = on stack/visited.
  loss->last_use = 1;
  st = vkp_vec_push(&stack, loss);
  while (st == VKP_OK && stack.n) {
    vkp_tensor *t = stack.v[stack.n - 1];
    bool pushed = false;
    for (int i = 0; i < t->nsrc && !pushed; i++)
      if (t->src[i]->last_use != 1) {
        t->src[i]->last_use = 1;
        st = vkp_vec_push(&stack, t->src[i]);
        pushed = true;
      }
    if (pushed) continue;
    stack.n--;
    st = vkp_vec_push(out, t);
  }
  free(stack.v);
  return st;
}

// Activation checkpointing: copies every node of segment k (in topological order) with its
// sources inside the segment rewired to their copies, so the segment's backward reads
// recomputed values and the originals' memory is free after the forward pass. Sources built
// before the segment are read through views ordered after `trigger` (the gradient reaching the
// segment), so the recomputation is scheduled where backward needs it, not right after forward.
static void recompute_segment(vkp_graph *g, const vkp_tensor_list *topo, int32_t k, vkp_tensor *trigger) {
  vkp_tensor_list gated = {0};   // outside sources given an ordered view (in their `recompute`)
  for (int32_t i = 0; i < topo->n && vkp_graph_status(g) == VKP_OK; i++) {
    vkp_tensor *x = topo->v[i];
    if (x->segment != k || !x->op || x->recompute) continue;
    vkp_tensor *c = vkp_node_clone(g, x);
    if (!c) break;
    for (int s = 0; s < c->nsrc; s++) {
      vkp_tensor *src = c->src[s];
      if (!src->op) continue;   // leaves (inputs, parameters) stay as they are
      if (src->segment == k) {
        c->src[s] = src->recompute;
      } else {
        if (!src->recompute) {
          vkp_tensor *v = vkp_order_after(g, src, trigger);
          if (!v || vkp_vec_push(&gated, src) != VKP_OK) {
            vkp_graph_fail(g, VKP_ERR_OOM, "out of host memory");
            break;
          }
          v->recompute_of = src;   // gradients reaching the view belong to src
          src->recompute = v;
        }
        c->src[s] = src->recompute;
      }
    }
    if (c->view_src) {
      if (c->view_src->segment == k && c->view_src->op) c->view_src = c->view_src->recompute;
      else if (!vkp_tensor_is_view(x)) {
        vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "activation checkpoint: '%s' writes into '%s', built outside its segment",
                       x->name, c->view_src->name);
        break;
      }
    }
    if (vkp_any_null(c->src, c->nsrc) || (x->view_src && !c->view_src)) {
      vkp_graph_fail(g, VKP_ERR_INVALID, "activation checkpoint: '%s' depends on a segment node outside the loss graph",
                     x->name);
      break;
    }
    x->recompute = c;
  }
  for (int32_t i = 0; i < gated.n; i++) gated.v[i]->recompute = NULL;
  free(gated.v);
}

vkp_status vkp_graph_backward(vkp_graph *g, vkp_tensor *loss, vkp_tensor *const *params, int n, vkp_tensor **grads) {
  if (vkp_graph_status(g) != VKP_OK) return vkp_graph_status(g);
  if (!loss) return vkp_graph_fail(g, VKP_ERR_INVALID, "backward: loss is NULL");
  if (vkp_tensor_numel(loss) != 1)
    return vkp_graph_fail(g, VKP_ERR_SHAPE, "backward: loss '%s' is not a scalar", loss->name);
  vkp_tensor_list topo = {0};
  if (collect(loss, &topo) != VKP_OK) return vkp_graph_fail(g, VKP_ERR_OOM, "out of host memory");
  for (int32_t i = 0; i < topo.n; i++) {
    topo.v[i]->last_use = -1;
    topo.v[i]->requires_grad = false;
    topo.v[i]->grad = NULL;
  }
  for (int i = 0; i < n; i++)
    if (params[i]) params[i]->requires_grad = true, params[i]->grad = NULL;
  for (int32_t i = 0; i < topo.n; i++) {   // propagate trainability forward
    vkp_tensor *t = topo.v[i];
    if (t->stop_grad) continue;
    for (int s = 0; s < t->nsrc && !t->requires_grad; s++) t->requires_grad = t->src[s]->requires_grad;
  }
  if (loss->requires_grad) {
    loss->grad = vkp_loss_seed(g, loss);
    for (int32_t i = topo.n - 1; i >= 0; i--) {
      vkp_tensor *t = topo.v[i];
      if (!t->op || !t->grad || !t->requires_grad) continue;
      if (!t->op->backward) {
        vkp_graph_fail(g, VKP_ERR_UNSUPPORTED, "backward: op '%s' (%s) is not differentiable", t->op->name,
                       t->name);
        break;
      }
      vkp_tensor *bt = t;
      if (t->segment) {
        if (!t->recompute) recompute_segment(g, &topo, t->segment, t->grad);
        if (!(bt = t->recompute)) break;
      }
      t->op->backward(g, bt, t->grad);
    }
  }
  // Gradients handed out are contiguous (readable, and what optimizers expect); inside the
  // backward pass they may be views (a permute's gradient is one).
  for (int i = 0; i < n; i++) grads[i] = params[i] ? vkp_contiguous(g, params[i]->grad) : NULL;
  for (int32_t i = 0; i < topo.n; i++) topo.v[i]->grad = NULL, topo.v[i]->recompute = NULL;
  free(topo.v);
  return vkp_graph_status(g);
}
