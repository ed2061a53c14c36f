// memory.c — device-memory sub-allocator and host transfers.
//
// Device memory comes in blocks of VKP_BLOCK_BYTES (or one block per larger request, up to
// maxMemoryAllocationSize); each block is one VkBuffer with a device address, and vkp_buffer is a
// first-fit sub-range of a block, aligned to VKP_BUFFER_ALIGN. Shaders address buffers through
// buffer device addresses, so a vkp_buffer may be larger than maxStorageBufferRange.
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static vkp_status free_list_push(vkp_memory_block *b, uint32_t at, vkp_free_range r) {
  if (b->free_count == b->free_cap) {
    uint32_t cap = b->free_cap ? b->free_cap * 2 : 16;
    vkp_free_range *fl = realloc(b->free_list, cap * sizeof *fl);
    if (!fl) return VKP_ERR_OOM;
    b->free_list = fl;
    b->free_cap = cap;
  }
  memmove(&b->free_list[at + 1], &b->free_list[at], (b->free_count - at) * sizeof *b->free_list);
  b->free_list[at] = r;
  b->free_count++;
  return VKP_OK;
}

static vkp_status block_create(vkp_ctx *ctx, uint64_t size, uint32_t *out) {
  if (ctx->block_count >= VKP_MAX_MEMORY_BLOCKS)
    return vkp_error_set(&ctx->err, VKP_ERR_OOM, "too many device memory blocks");
  vkp_memory_block *b = &ctx->blocks[ctx->block_count];
  memset(b, 0, sizeof *b);
  VkBufferCreateInfo bci = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                            .size = size,
                            .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                     VK_BUFFER_USAGE_TRANSFER_DST_BIT |
                                     VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT,
                            .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
  VkResult r = vkCreateBuffer(ctx->device, &bci, NULL, &b->buffer);
  if (r != VK_SUCCESS) return vkp_vk_fail(ctx, r, "vkCreateBuffer");
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(ctx->device, b->buffer, &req);
  if (!(req.memoryTypeBits & (1u << ctx->mem_type_device))) {
    vkDestroyBuffer(ctx->device, b->buffer, NULL);
    return vkp_error_set(&ctx->err, VKP_ERR_UNSUPPORTED, "device memory type not usable for storage buffers");
  }
  VkMemoryAllocateFlagsInfo flags = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO,
                                     .flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT};
  VkMemoryAllocateInfo mai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                              .pNext = &flags,
                              .allocationSize = req.size,
                              .memoryTypeIndex = ctx->mem_type_device};
  r = vkAllocateMemory(ctx->device, &mai, NULL, &b->memory);
  if (r != VK_SUCCESS) {
    vkDestroyBuffer(ctx->device, b->buffer, NULL);
    return vkp_vk_fail(ctx, r, "vkAllocateMemory");
  }
  vkBindBufferMemory(ctx->device, b->buffer, b->memory, 0);
  if (ctx->device_host_visible &&
      vkMapMemory(ctx->device, b->memory, 0, VK_WHOLE_SIZE, 0, &b->mapped) != VK_SUCCESS)
    b->mapped = NULL;
  VkBufferDeviceAddressInfo ai = {.sType = VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO, .buffer = b->buffer};
  b->address = vkGetBufferDeviceAddress(ctx->device, &ai);
  b->size = size;
  free_list_push(b, 0, (vkp_free_range){0, size});
  *out = ctx->block_count++;
  return VKP_OK;
}

static bool block_take(vkp_memory_block *b, uint64_t size, uint64_t *off) {
  for (uint32_t i = 0; i < b->free_count; i++) {
    vkp_free_range *r = &b->free_list[i];
    if (r->size < size) continue;
    *off = r->offset;
    r->offset += size;
    r->size -= size;
    if (r->size == 0) {
      memmove(r, r + 1, (b->free_count - i - 1) * sizeof *r);
      b->free_count--;
    }
    return true;
  }
  return false;
}

static void block_give(vkp_memory_block *b, uint64_t off, uint64_t size) {
  uint32_t i = 0;
  while (i < b->free_count && b->free_list[i].offset < off) i++;
  bool merge_prev = i > 0 && b->free_list[i - 1].offset + b->free_list[i - 1].size == off;
  bool merge_next = i < b->free_count && off + size == b->free_list[i].offset;
  if (merge_prev && merge_next) {
    b->free_list[i - 1].size += size + b->free_list[i].size;
    memmove(&b->free_list[i], &b->free_list[i + 1], (b->free_count - i - 1) * sizeof *b->free_list);
    b->free_count--;
  } else if (merge_prev) {
    b->free_list[i - 1].size += size;
  } else if (merge_next) {
    b->free_list[i].offset = off;
    b->free_list[i].size += size;
  } else {
    free_list_push(b, i, (vkp_free_range){off, size});   // on OOM the range is leaked, not corrupted
  }
}

vkp_status vkp_buffer_new(vkp_ctx *ctx, uint64_t bytes, vkp_buffer **out) {
  *out = NULL;
  uint64_t size = align_up(bytes ? bytes : 1, VKP_BUFFER_ALIGN);
  if (ctx->info.max_allocation_size && size > ctx->info.max_allocation_size)
    return vkp_error_set(&ctx->err, VKP_ERR_OOM, "buffer of %llu bytes exceeds the device's largest allocation (%llu)",
                         (unsigned long long)size, (unsigned long long)ctx->info.max_allocation_size);
  vkp_buffer *buf = calloc(1, sizeof *buf);
  if (!buf) return vkp_error_set(&ctx->err, VKP_ERR_OOM, "out of host memory");
  uint64_t off = 0;
  uint32_t bi = UINT32_MAX;
  for (uint32_t i = 0; i < ctx->block_count && bi == UINT32_MAX; i++)
    if (ctx->blocks[i].buffer && block_take(&ctx->blocks[i], size, &off)) bi = i;
  if (bi == UINT32_MAX) {
    uint64_t block_size = size > VKP_BLOCK_BYTES ? size : VKP_BLOCK_BYTES;
    if (ctx->info.max_allocation_size && block_size > ctx->info.max_allocation_size) block_size = size;
    vkp_status st = block_create(ctx, block_size, &bi);
    if (st != VKP_OK) {
      free(buf);
      return st;
    }
    block_take(&ctx->blocks[bi], size, &off);
  }
  buf->ctx = ctx;
  buf->block = bi;
  buf->offset = off;
  buf->size = size;
  ctx->bytes_in_use += size;
  if (ctx->bytes_in_use > ctx->bytes_peak) ctx->bytes_peak = ctx->bytes_in_use;
  vkp_status st = vkp_buffer_fill_zero(buf);
  if (st != VKP_OK) {
    vkp_buffer_free(buf);
    return st;
  }
  *out = buf;
  return VKP_OK;
}

void vkp_buffer_free(vkp_buffer *buf) {
  if (!buf) return;
  vkp_ctx *ctx = buf->ctx;
  block_give(&ctx->blocks[buf->block], buf->offset, buf->size);
  ctx->bytes_in_use -= buf->size;
  free(buf);
}

void vkp_memory_free_all(vkp_ctx *ctx) {
  for (uint32_t i = 0; i < ctx->block_count; i++) {
    vkp_memory_block *b = &ctx->blocks[i];
    if (b->mapped) vkUnmapMemory(ctx->device, b->memory);
    if (b->buffer) vkDestroyBuffer(ctx->device, b->buffer, NULL);
    if (b->memory) vkFreeMemory(ctx->device, b->memory, NULL);
    free(b->free_list);
    memset(b, 0, sizeof *b);
  }
  ctx->block_count = 0;
}

uint64_t vkp_buffer_size(const vkp_buffer *buf) { return buf->size; }
uint64_t vkp_buffer_address(const vkp_buffer *buf) {
  return buf->ctx->blocks[buf->block].address + buf->offset;
}


VkBuffer vkp_buffer_vk(const vkp_buffer *buf, uint64_t *offset) {
  *offset = buf->offset;
  return buf->ctx->blocks[buf->block].buffer;
}

// Copies between host memory and a device range through a temporary staging buffer.
static vkp_status staged_copy(vkp_buffer *buf, uint64_t offset, void *host, uint64_t bytes, bool to_device) {
  vkp_ctx *ctx = buf->ctx;
  VkBuffer staging = VK_NULL_HANDLE;
  VkDeviceMemory mem = VK_NULL_HANDLE;
  void *map = NULL;
  vkp_status st = VKP_OK;
  VkBufferCreateInfo bci = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                            .size = bytes,
                            .usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT};
  VkResult r = vkCreateBuffer(ctx->device, &bci, NULL, &staging);
  if (r != VK_SUCCESS) return vkp_vk_fail(ctx, r, "vkCreateBuffer (staging)");
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(ctx->device, staging, &req);
  VkMemoryAllocateInfo mai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                              .allocationSize = req.size,
                              .memoryTypeIndex = ctx->mem_type_staging};
  if ((r = vkAllocateMemory(ctx->device, &mai, NULL, &mem)) != VK_SUCCESS) {
    st = vkp_vk_fail(ctx, r, "vkAllocateMemory (staging)");
    goto destroy_buffer;
  }
  vkBindBufferMemory(ctx->device, staging, mem, 0);
  if ((r = vkMapMemory(ctx->device, mem, 0, VK_WHOLE_SIZE, 0, &map)) != VK_SUCCESS) {
    st = vkp_vk_fail(ctx, r, "vkMapMemory (staging)");
    goto free_memory;
  }
  if (to_device) memcpy(map, host, bytes);
  VkCommandBuffer cmd;
  if ((st = vkp_cmd_begin(ctx, &cmd)) != VKP_OK) goto free_memory;
  uint64_t dev_off;
  VkBuffer dev = vkp_buffer_vk(buf, &dev_off);
  VkBufferCopy region = {.srcOffset = to_device ? 0 : dev_off + offset,
                         .dstOffset = to_device ? dev_off + offset : 0,
                         .size = bytes};
  vkCmdCopyBuffer(cmd, to_device ? staging : dev, to_device ? dev : staging, 1, &region);
  if ((st = vkp_cmd_submit_wait(ctx, cmd)) != VKP_OK) goto free_memory;
  if (!to_device) memcpy(host, map, bytes);
free_memory:
  vkFreeMemory(ctx->device, mem, NULL);
destroy_buffer:
  vkDestroyBuffer(ctx->device, staging, NULL);
  return st;
}

static vkp_status check_range(vkp_buffer *buf, uint64_t offset, uint64_t bytes) {
  if (offset > buf->size || bytes > buf->size - offset)
    return vkp_error_set(&buf->ctx->err, VKP_ERR_INVALID, "buffer access [%llu, +%llu) outside %llu bytes",
                         (unsigned long long)offset, (unsigned long long)bytes, (unsigned long long)buf->size);
  return VKP_OK;
}

vkp_status vkp_buffer_write(vkp_buffer *buf, uint64_t offset, const void *data, uint64_t bytes) {
  VKP_TRY(check_range(buf, offset, bytes));
  if (bytes == 0) return VKP_OK;
  vkp_memory_block *b = &buf->ctx->blocks[buf->block];
  if (b->mapped) {
    memcpy((char *)b->mapped + buf->offset + offset, data, bytes);
    return VKP_OK;
  }
  return staged_copy(buf, offset, (void *)data, bytes, true);
}

vkp_status vkp_buffer_read(vkp_buffer *buf, uint64_t offset, void *data, uint64_t bytes) {
  VKP_TRY(check_range(buf, offset, bytes));
  if (bytes == 0) return VKP_OK;
  vkp_memory_block *b = &buf->ctx->blocks[buf->block];
  if (b->mapped) {
    memcpy(data, (char *)b->mapped + buf->offset + offset, bytes);
    return VKP_OK;
  }
  return staged_copy(buf, offset, data, bytes, false);
}

vkp_status vkp_buffer_fill_zero(vkp_buffer *buf) {
  vkp_ctx *ctx = buf->ctx;
  vkp_memory_block *b = &ctx->blocks[buf->block];
  if (b->mapped) {
    memset((char *)b->mapped + buf->offset, 0, buf->size);
    return VKP_OK;
  }
  VkCommandBuffer cmd;
  VKP_TRY(vkp_cmd_begin(ctx, &cmd));
  vkCmdFillBuffer(cmd, b->buffer, buf->offset, buf->size, 0);
  return vkp_cmd_submit_wait(ctx, cmd);
}
