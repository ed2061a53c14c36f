// vkp_op.h — what an op implementation needs: its definition, node creation, recording.
//
// Adding an op: (1) a push-constant header shaders/push/<family>.h and shader(s)
// shaders/<name>.comp; (2) a builder in core/ops/<family>.c that checks shapes, creates the node
// with vkp_node_new and fills params; (3) a `record` callback that fills the push constants with
// vkp_rec_addr() addresses and calls vkp_rec_dispatch*; (4) a `backward` callback that builds the
// gradient of each input from the output gradient and hands it to vkp_grad_accumulate;
// (5) a float64 reference and finite-difference test in tests/core/.
#ifndef VKP_OP_H
#define VKP_OP_H

#include "vkp_graph.h"

typedef struct vkp_recorder vkp_recorder;

struct vkp_op_def {
  const char *name;
  // Records the node's dispatches. Inputs are ready; a barrier follows automatically.
  vkp_status (*record)(vkp_recorder *rec, const vkp_tensor *node);
  // Appends gradient nodes: `grad` is dL/d(node) (same shape as node). NULL: not differentiable.
  void (*backward)(vkp_graph *g, vkp_tensor *node, vkp_tensor *grad);
  // Optional compile-time rewrite, called for every scheduled node in execution order before
  // memory is planned; readers[id] counts the scheduled nodes that read the tensor with that id.
  void (*fold)(vkp_tensor *node, const uint32_t *readers);
  // Optional: the node's kernels add its result to what its storage already holds from now on
  // (a fold has pointed that storage at an external tensor: vkp_accumulate of a gradient).
  void (*accumulate_into)(vkp_tensor *node);
};

// Creates an op node with a contiguous output of the given shape; NULL if any src is NULL.
vkp_tensor *vkp_node_new(vkp_graph *g, const vkp_op_def *op, vkp_dtype dtype, int ndim, const int64_t *shape,
                         vkp_tensor *const *srcs, int nsrc);
// True if any argument is NULL (used by builders to pass NULL through).
bool vkp_any_null(vkp_tensor *const *ts, int n);
// A copy of op node t (same op, params, shape, sources, view settings) to be rewired by the caller:
// the recomputation of activation checkpointing (vkp_graph_backward). Not in any segment.
vkp_tensor *vkp_node_clone(vkp_graph *g, const vkp_tensor *t);
// Fills contiguous strides for shape.
void vkp_strides_contiguous(int ndim, const int64_t *shape, int64_t *stride);
// Right-aligns a tensor's shape/strides into 4 dims (leading dims 1, stride 0).
void vkp_shape4(const vkp_tensor *t, int32_t shape[4], int32_t stride[4]);

// Recording.
uint64_t vkp_rec_addr(vkp_recorder *rec, const vkp_tensor *t);   // address of element 0 of t
uint64_t vkp_rec_scalars_addr(vkp_recorder *rec);               // vkp_step_scalars buffer
vkp_ctx *vkp_rec_ctx(vkp_recorder *rec);
vkp_status vkp_rec_dispatch(vkp_recorder *rec, const char *shader, const void *push, uint32_t push_bytes,
                            uint32_t gx, uint32_t gy, uint32_t gz);
// Dispatches ceil(n_items / items_per_group) workgroups, folded into x*y when above the x limit;
// shaders recover the linear index with vkp_global_index() / vkp_group_index().
vkp_status vkp_rec_dispatch_1d(vkp_recorder *rec, const char *shader, const void *push, uint32_t push_bytes,
                               uint64_t n_items, uint32_t items_per_group);
// Inserts a compute→compute memory barrier between dispatches of one node.
void vkp_rec_barrier(vkp_recorder *rec);

#endif
