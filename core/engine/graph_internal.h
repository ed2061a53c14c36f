// graph_internal.h — the vkp_graph structure, shared by graph.c, compile.c and backward.c.
#ifndef VKP_GRAPH_INTERNAL_H
#define VKP_GRAPH_INTERNAL_H

#include "engine_internal.h"
#include "vkp_op.h"

#define VKP_TENSOR_CHUNK 256

typedef struct vkp_tensor_chunk {
  struct vkp_tensor_chunk *next;
  vkp_tensor t[VKP_TENSOR_CHUNK];
} vkp_tensor_chunk;

struct vkp_graph {
  vkp_ctx *ctx;
  vkp_tensor_chunk *chunks;      // tensor storage (owned)
  int32_t chunk_used;            // tensors used in the head chunk
  int32_t next_id;
  vkp_tensor_list roots;            // in expansion order
  vkp_error err;                 // first build error
  int32_t segment_open;          // activation-checkpoint segment being built (0: none)
  int32_t segments;              // segments begun so far
  bool unfused_lora;             // vkp_graph_set_lora_fusion(g, false)

  // compiled state
  bool compiled;
  vkp_tensor_list order;            // execution order (op nodes only)
  vkp_buffer **arena;            // intermediates + inputs: n_arena segments (owned)
  int n_arena;
  uint64_t segment;              // bytes per arena segment (the last may be smaller)
  vkp_buffer *scalars;           // vkp_step_scalars (owned)
  VkCommandBuffer cmd;
  uint32_t dispatches;
  uint64_t arena_bytes, unplanned_bytes;
  uint32_t *query_node;          // profiling: node index per timestamp pair
  uint32_t *query_disp;          // profiling: dispatches the node recorded, per timestamp pair
  uint32_t query_count;
};

#endif
