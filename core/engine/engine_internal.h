// vkp_internal.h — definitions shared inside core/ only (Vulkan handles live here).
#ifndef VKP_INTERNAL_H
#define VKP_INTERNAL_H

#include <vulkan/vulkan.h>

#include "vkp_device.h"

#define VKP_MAX_MEMORY_BLOCKS 256
#define VKP_BLOCK_BYTES (256ull << 20)   // default block; bigger requests get their own block
#define VKP_BUFFER_ALIGN 256

typedef struct vkp_free_range {
  uint64_t offset, size;
} vkp_free_range;

// One VkDeviceMemory with one VkBuffer spanning it; buffers are sub-ranges.
typedef struct vkp_memory_block {
  VkDeviceMemory memory;
  VkBuffer buffer;
  uint64_t size;
  VkDeviceAddress address;
  void *mapped;                  // non-NULL when host-visible (UMA, lavapipe)
  vkp_free_range *free_list;     // sorted by offset, coalesced
  uint32_t free_count, free_cap;
} vkp_memory_block;

struct vkp_buffer {
  vkp_ctx *ctx;
  uint32_t block;
  uint64_t offset, size;
};

typedef struct vkp_pipeline_entry {
  const char *name;              // shader name (static storage)
  VkShaderModule module;
  VkPipeline pipeline;
  uint64_t recorded;             // dispatches recorded with it (vkp_ctx_shader_dispatches)
} vkp_pipeline_entry;

struct vkp_ctx {
  VkInstance instance;
  VkDebugUtilsMessengerEXT messenger;
  VkPhysicalDevice phys;
  VkDevice device;
  VkQueue queue;
  uint32_t queue_family;
  VkCommandPool cmd_pool;
  VkFence fence;
  VkPipelineLayout pipeline_layout;   // one layout for all: push constants only (BDA)
  VkPipelineCache pipeline_cache;
  char cache_path[1024];
  vkp_pipeline_entry *pipelines;
  uint32_t pipeline_count, pipeline_cap;

  vkp_device_info info;
  vkp_kernel_family kernels;
  VkPhysicalDeviceMemoryProperties mem_props;
  uint32_t mem_type_device;      // device-local type for blocks
  bool device_host_visible;      // blocks are mappable (UMA)
  uint32_t mem_type_staging;     // host-visible coherent type for staging
  vkp_memory_block blocks[VKP_MAX_MEMORY_BLOCKS];
  uint32_t block_count;
  uint64_t bytes_in_use, bytes_peak;

  VkQueryPool query_pool;        // profiling timestamps (NULL when off)
  uint32_t query_cap;

  uint32_t validation_messages;
  vkp_error err;
};

#define VKP_PUSH_CONSTANT_BYTES 128

// Records a Vulkan failure into the context error; returns VKP_ERR_DEVICE (or OOM).
vkp_status vkp_vk_fail(vkp_ctx *ctx, VkResult r, const char *what);

// Returns the compute pipeline for an embedded shader, creating it on first use; each call counts
// one recorded dispatch of it (vkp_rec_dispatch is the only caller).
vkp_status vkp_pipeline_get(vkp_ctx *ctx, const char *shader, VkPipeline *out);
void vkp_pipelines_free(vkp_ctx *ctx);
vkp_status vkp_pipeline_cache_open(vkp_ctx *ctx, const char *cache_dir);
void vkp_pipeline_cache_save(vkp_ctx *ctx);

// One-time command buffer helpers (begin → record → submit and wait).
vkp_status vkp_cmd_begin(vkp_ctx *ctx, VkCommandBuffer *out);
vkp_status vkp_cmd_submit_wait(vkp_ctx *ctx, VkCommandBuffer cmd);

void vkp_memory_free_all(vkp_ctx *ctx);
// The VkBuffer behind a vkp_buffer and the buffer's byte offset in it.
VkBuffer vkp_buffer_vk(const vkp_buffer *buf, uint64_t *offset);

// SPIR-V compiled from shaders/*.comp at build time (generated shaders_embedded.c).
typedef struct vkp_shader_blob {
  const char *name;          // file stem, e.g. "binary_f32"
  const uint32_t *code;
  size_t words;
} vkp_shader_blob;
extern const vkp_shader_blob vkp_shader_blobs[];
extern const size_t vkp_shader_blob_count;

#endif
