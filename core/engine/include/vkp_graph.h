// vkp_graph.h — tensors and the compute graph: build once, compile, replay every step.
//
// Lifecycle:
//   vkp_graph *g; vkp_graph_new(ctx, &g);
//   x = vkp_tensor_input(g, "x", VKP_DTYPE_F32, 2, (int64_t[]){B, C});      // uploaded per run
//   w = vkp_tensor_external(g, "w", weight_buffer, 0, VKP_DTYPE_F32, 2, ...); // persistent
//   y = vkp_matmul(g, x, w, false, true); ... loss = ...;
//   vkp_graph_output(g, loss);                    // kept, readable after a run
//   vkp_graph_backward(g, loss, params, n, grads) // gradient nodes for trainable tensors only
//   vkp_graph_compile(g);                         // order, plan memory, record one command buffer
//   loop: vkp_graph_set_input(g, x, data, bytes); vkp_graph_run(g); vkp_graph_read(g, loss, ...);
//
// Builder functions never abort: on a shape or argument error they record the first error on the
// graph and return NULL; every builder passes NULL through, and vkp_graph_compile returns the
// recorded error. Tensors are owned by their graph and freed with it.
#ifndef VKP_GRAPH_H
#define VKP_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include "vkp_device.h"
#include "vkp_dtype.h"
#include "vkp_vec.h"

#define VKP_MAX_DIMS 4
#define VKP_MAX_SRC 8
#define VKP_OP_PARAM_BYTES 64
#define VKP_NAME_MAX 96

typedef struct vkp_graph vkp_graph;
typedef struct vkp_tensor vkp_tensor;
typedef struct vkp_op_def vkp_op_def;
typedef VKP_VEC(vkp_tensor *) vkp_tensor_list;   // a growable list of tensor pointers

typedef enum vkp_tensor_kind {
  VKP_TENSOR_INTERMEDIATE = 0,  // produced by an op; memory planned by the compiler
  VKP_TENSOR_INPUT,             // written by the host before each run
  VKP_TENSOR_EXTERNAL,          // a persistent vkp_buffer (weights, gradients, optimizer state)
} vkp_tensor_kind;

// Read-only for users; written by graph builders.
struct vkp_tensor {
  vkp_dtype dtype;
  int ndim;
  int64_t shape[VKP_MAX_DIMS];   // row-major: shape[ndim-1] varies fastest
  int64_t stride[VKP_MAX_DIMS];  // in elements
  int64_t offset;                // elements from the start of the storage (views)
  vkp_tensor_kind kind;
  const vkp_op_def *op;          // NULL for leaves (inputs, externals)
  vkp_tensor *src[VKP_MAX_SRC];
  int nsrc;
  union {
    uint8_t bytes[VKP_OP_PARAM_BYTES];
    int32_t i[VKP_OP_PARAM_BYTES / 4];
    float f[VKP_OP_PARAM_BYTES / 4];
  } params;                      // op parameters
  vkp_tensor *view_src;          // storage owner when this tensor is a view or writes in place
  vkp_buffer *buffer;            // external storage (not owned)
  uint64_t buffer_offset;        // bytes into buffer
  bool requires_grad;
  bool stop_grad;                // vkp_detach: gradients stop here
  bool keep;                     // graph output: never reused, readable after a run
  vkp_tensor *grad;              // gradient during vkp_graph_backward
  int32_t segment;               // activation-checkpoint segment it was built in (0: none)
  vkp_tensor *recompute;         // during vkp_graph_backward: its recomputed copy (segment nodes)
  vkp_tensor *recompute_of;      // a recomputed copy: the node it copies (gradients go there)
  char name[VKP_NAME_MAX];
  vkp_graph *graph;
  int32_t id;
  // compiler state
  int32_t order;                 // position in execution order (-1 = not scheduled)
  int32_t last_use;
  uint64_t arena_offset;         // bytes into the graph arena (intermediates, inputs)
};

// Per-step values kept in a small device buffer, so a recorded graph replays unchanged.
typedef struct vkp_step_scalars {
  float lr;             // learning rate for this step
  float step;           // optimizer step count t (1-based, for bias correction)
  uint32_t seed;        // dropout / noise seed for this step
  uint32_t apply_update;// 1: optimizer nodes update parameters; 0: accumulate gradients only
  float loss_scale;     // multiplies the seed gradient of the loss (1 by default)
  float pad[11];
} vkp_step_scalars;

vkp_status vkp_graph_new(vkp_ctx *ctx, vkp_graph **out);
void vkp_graph_free(vkp_graph *g);
vkp_ctx *vkp_graph_ctx(vkp_graph *g);
// First error recorded while building (VKP_OK if none) and its message.
vkp_status vkp_graph_status(const vkp_graph *g);
const char *vkp_graph_error(const vkp_graph *g);
// Records an error on the graph (first one wins); returns status.
vkp_status vkp_graph_fail(vkp_graph *g, vkp_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Leaves.
vkp_tensor *vkp_tensor_input(vkp_graph *g, const char *name, vkp_dtype dtype, int ndim, const int64_t *shape);
vkp_tensor *vkp_tensor_external(vkp_graph *g, const char *name, vkp_buffer *buf, uint64_t byte_offset,
                                vkp_dtype dtype, int ndim, const int64_t *shape);
vkp_tensor *vkp_tensor_set_name(vkp_tensor *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int64_t vkp_tensor_numel(const vkp_tensor *t);
uint64_t vkp_tensor_nbytes(const vkp_tensor *t);
bool vkp_tensor_is_contiguous(const vkp_tensor *t);
bool vkp_tensor_same_shape(const vkp_tensor *a, const vkp_tensor *b);

// Activation checkpointing: the nodes built between _begin and _end form a segment whose
// intermediates are not kept for backward. vkp_graph_backward recomputes the segment from its
// inputs (tensors built before it, parameters) right before the segment's gradients are needed,
// so only the segment boundaries stay alive between forward and backward: memory for one
// segment's activations instead of all of them, for one more forward pass of compute. Dropout
// masks come out identical (hash RNG), so gradients are bit-identical to a run without it.
// Segments do not nest (VKP_ERR_INVALID); a segment node may not write into a tensor built outside
// it (reported by vkp_graph_backward).
void vkp_graph_checkpoint_begin(vkp_graph *g);
void vkp_graph_checkpoint_end(vkp_graph *g);

// LoRA on a linear layer is one fused matmul node by default (vkp_linear_add_lora: the low-rank
// term accumulated by the base product's epilogue); false builds it from separate matmul, scale and
// add ops, for benchmarks that compare the two (`vkpeft bench peft --unfused-lora`). Applies to
// nodes built after the call.
void vkp_graph_set_lora_fusion(vkp_graph *g, bool fused);
bool vkp_graph_lora_fusion(const vkp_graph *g);

// Roots: outputs are kept and readable; expanded tensors are computed for their side effects (in
// expansion order: in-place updates of external tensors run after everything expanded before).
void vkp_graph_output(vkp_graph *g, vkp_tensor *t);
void vkp_graph_expand(vkp_graph *g, vkp_tensor *t);

vkp_status vkp_graph_compile(vkp_graph *g);
vkp_status vkp_graph_set_input(vkp_graph *g, vkp_tensor *t, const void *data, uint64_t bytes);
vkp_status vkp_graph_set_scalars(vkp_graph *g, const vkp_step_scalars *s);
vkp_status vkp_graph_run(vkp_graph *g);
// Reads a kept output, an input, or an external tensor (must be contiguous) after a run.
vkp_status vkp_graph_read(vkp_graph *g, const vkp_tensor *t, void *data, uint64_t bytes);

// Statistics of a compiled graph.
typedef struct vkp_graph_stats {
  uint32_t nodes;            // ops executed per run
  uint32_t dispatches;       // compute dispatches recorded
  uint64_t arena_bytes;      // planned device memory for intermediates + inputs (peak)
  uint64_t unplanned_bytes;  // what the intermediates would need without reuse
} vkp_graph_stats;
vkp_graph_stats vkp_graph_get_stats(const vkp_graph *g);

// Per-op device time of the last run (requires a context created with profiling).
typedef struct vkp_op_time {
  const char *op;
  uint32_t count;        // nodes of this op that recorded at least one dispatch
  double ms;
  uint32_t dispatches;   // dispatches those nodes recorded
} vkp_op_time;
// Fills up to cap entries sorted by time; returns the number of distinct ops.
uint32_t vkp_graph_profile(const vkp_graph *g, vkp_op_time *out, uint32_t cap);

#endif
