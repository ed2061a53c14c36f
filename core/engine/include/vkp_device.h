// vkp_device.h — the Vulkan device context: instance, device choice, memory, pipelines, submits.
//
// One vkp_ctx per device. It owns the VkInstance/VkDevice, a memory sub-allocator, the pipeline
// cache and the last error message. Domain packages never see Vulkan handles: they work through
// vkp_buffer (persistent device memory) and graphs (vkp_graph.h).
#ifndef VKP_DEVICE_H
#define VKP_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vkp_status.h"

typedef struct vkp_ctx vkp_ctx;
typedef struct vkp_buffer vkp_buffer;

typedef struct vkp_ctx_options {
  const char *device;      // index or name substring; NULL = $VKPEFT_DEVICE, then default order
  const char *kernels;     // "cpu" or "gpu": the kernel family ops record (vkp_ctx_kernels);
                           // NULL = $VKPEFT_KERNELS, else by device type
  bool validation;         // enable VK_LAYER_KHRONOS_validation (also on if $VKPEFT_VALIDATION=1)
  bool profiling;          // timestamp queries around every dispatch
  const char *cache_dir;   // pipeline cache dir; NULL = $XDG_CACHE_HOME/vkpeft or ~/.cache/vkpeft
} vkp_ctx_options;

typedef enum vkp_device_type {
  VKP_DEVICE_OTHER = 0,
  VKP_DEVICE_INTEGRATED,
  VKP_DEVICE_DISCRETE,
  VKP_DEVICE_VIRTUAL,
  VKP_DEVICE_CPU,
} vkp_device_type;

typedef struct vkp_device_info {
  char name[256];
  char driver_name[256];
  char driver_info[256];
  vkp_device_type type;
  uint32_t api_version;
  uint64_t device_local_bytes;     // largest device-local heap
  uint32_t subgroup_size;
  uint32_t max_shared_memory;
  uint32_t max_workgroup_invocations;
  uint32_t max_workgroup_count[3];
  uint64_t max_storage_buffer_range;
  uint64_t max_allocation_size;
  bool shader_f16;                 // shaderFloat16 + 16-bit storage
  bool shader_bf16;                // VK_KHR_shader_bfloat16
  bool cooperative_matrix;         // VK_KHR_cooperative_matrix
  bool float_atomics;              // shaderBufferFloat32AtomicAdd
  bool timestamps;
  float timestamp_period_ns;
} vkp_device_info;

const char *vkp_device_type_name(vkp_device_type t);

// Which kernels the ops record. The CPU family is tuned for lavapipe (every per-lane load a
// gather: pair loads, subgroup shuffles, packed panels, register tiles); the GPU family for
// devices with fast shared memory and coalesced loads (shared-memory tiles sized from the
// device's limits). A CPU device gets the CPU family, every other device the GPU family, unless
// vkp_ctx_options.kernels or $VKPEFT_KERNELS says otherwise (the test suite runs the GPU family on
// lavapipe that way, for correctness). Where the families differ: docs/ARCHITECTURE.md.
typedef enum vkp_kernel_family { VKP_KERNELS_CPU = 0, VKP_KERNELS_GPU } vkp_kernel_family;
const char *vkp_kernel_family_name(vkp_kernel_family f);
// The family a device gets by its type (before vkp_ctx_options.kernels / $VKPEFT_KERNELS).
vkp_kernel_family vkp_device_kernels(const vkp_device_info *info);

// Lists the physical devices (fills up to `cap` entries; *count = number found).
vkp_status vkp_devices_list(vkp_device_info *infos, uint32_t cap, uint32_t *count, vkp_error *err);

// Creates a context on the chosen device. On failure *out is NULL and err says why.
vkp_status vkp_ctx_new(const vkp_ctx_options *opts, vkp_ctx **out, vkp_error *err);
void vkp_ctx_free(vkp_ctx *ctx);

const vkp_device_info *vkp_ctx_info(const vkp_ctx *ctx);
vkp_kernel_family vkp_ctx_kernels(const vkp_ctx *ctx);
// Last error recorded on this context.
const char *vkp_ctx_error(const vkp_ctx *ctx);
vkp_error *vkp_ctx_err(vkp_ctx *ctx);
// Number of validation-layer errors and warnings seen so far (tests assert it stays 0).
uint32_t vkp_ctx_validation_messages(const vkp_ctx *ctx);
// Dispatches of the named shader recorded so far on this context (graph compiles): lets tests
// and benchmarks check which kernel a shape takes.
uint64_t vkp_ctx_shader_dispatches(const vkp_ctx *ctx, const char *shader);
// Device bytes currently allocated through this context, and the high-water mark.
uint64_t vkp_ctx_memory_in_use(const vkp_ctx *ctx);
uint64_t vkp_ctx_memory_peak(const vkp_ctx *ctx);

// Persistent device memory (weights, gradients, optimizer state, graph arenas).
// Sub-allocated from large blocks; addressable by shaders through buffer device addresses, so a
// buffer may exceed maxStorageBufferRange. Contents are zeroed on creation.
vkp_status vkp_buffer_new(vkp_ctx *ctx, uint64_t bytes, vkp_buffer **out);
void vkp_buffer_free(vkp_buffer *buf);
uint64_t vkp_buffer_size(const vkp_buffer *buf);
uint64_t vkp_buffer_address(const vkp_buffer *buf);   // device address of byte 0
vkp_status vkp_buffer_write(vkp_buffer *buf, uint64_t offset, const void *data, uint64_t bytes);
vkp_status vkp_buffer_read(vkp_buffer *buf, uint64_t offset, void *data, uint64_t bytes);
vkp_status vkp_buffer_fill_zero(vkp_buffer *buf);

#endif
