// pipeline.c — compute pipelines from embedded SPIR-V, created lazily, with a disk cache.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vkp_fileio.h"
#include "engine_internal.h"

static const vkp_shader_blob *find_blob(const char *name) {
  for (size_t i = 0; i < vkp_shader_blob_count; i++)
    if (strcmp(vkp_shader_blobs[i].name, name) == 0) return &vkp_shader_blobs[i];
  return NULL;
}

vkp_status vkp_pipeline_get(vkp_ctx *ctx, const char *shader, VkPipeline *out) {
  for (uint32_t i = 0; i < ctx->pipeline_count; i++)
    if (strcmp(ctx->pipelines[i].name, shader) == 0) {
      *out = ctx->pipelines[i].pipeline;
      ctx->pipelines[i].recorded++;
      return VKP_OK;
    }
  const vkp_shader_blob *blob = find_blob(shader);
  if (!blob) return vkp_error_set(&ctx->err, VKP_ERR_SHADER, "shader '%s' is not embedded in this build", shader);
  if (ctx->pipeline_count == ctx->pipeline_cap) {
    uint32_t cap = ctx->pipeline_cap ? ctx->pipeline_cap * 2 : 64;
    vkp_pipeline_entry *p = realloc(ctx->pipelines, cap * sizeof *p);
    if (!p) return vkp_error_set(&ctx->err, VKP_ERR_OOM, "out of host memory");
    ctx->pipelines = p;
    ctx->pipeline_cap = cap;
  }
  vkp_pipeline_entry *e = &ctx->pipelines[ctx->pipeline_count];
  VkShaderModuleCreateInfo mci = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                  .codeSize = blob->words * 4,
                                  .pCode = blob->code};
  VkResult r = vkCreateShaderModule(ctx->device, &mci, NULL, &e->module);
  if (r != VK_SUCCESS) {
    vkp_vk_fail(ctx, r, "vkCreateShaderModule");
    return vkp_error_set(&ctx->err, VKP_ERR_SHADER, "shader '%s': %s", shader, ctx->err.msg);
  }
  VkComputePipelineCreateInfo pci = {
      .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
      .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                .module = e->module,
                .pName = "main"},
      .layout = ctx->pipeline_layout,
  };
  r = vkCreateComputePipelines(ctx->device, ctx->pipeline_cache, 1, &pci, NULL, &e->pipeline);
  if (r != VK_SUCCESS) {
    vkDestroyShaderModule(ctx->device, e->module, NULL);
    vkp_vk_fail(ctx, r, "vkCreateComputePipelines");
    return vkp_error_set(&ctx->err, VKP_ERR_SHADER, "shader '%s': %s", shader, ctx->err.msg);
  }
  e->name = blob->name;
  e->recorded = 1;
  ctx->pipeline_count++;
  *out = e->pipeline;
  return VKP_OK;
}

uint64_t vkp_ctx_shader_dispatches(const vkp_ctx *ctx, const char *shader) {
  for (uint32_t i = 0; i < ctx->pipeline_count; i++)
    if (strcmp(ctx->pipelines[i].name, shader) == 0) return ctx->pipelines[i].recorded;
  return 0;
}

void vkp_pipelines_free(vkp_ctx *ctx) {
  for (uint32_t i = 0; i < ctx->pipeline_count; i++) {
    vkDestroyPipeline(ctx->device, ctx->pipelines[i].pipeline, NULL);
    vkDestroyShaderModule(ctx->device, ctx->pipelines[i].module, NULL);
  }
  free(ctx->pipelines);
  ctx->pipelines = NULL;
  ctx->pipeline_count = ctx->pipeline_cap = 0;
}

// Opens the pipeline cache: $cache_dir or $XDG_CACHE_HOME/vkpeft or ~/.cache/vkpeft, one file per
// device+driver (the driver also validates the blob's header and ignores a stale one).
vkp_status vkp_pipeline_cache_open(vkp_ctx *ctx, const char *cache_dir) {
  char dir[900] = "";
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (cache_dir) snprintf(dir, sizeof dir, "%s", cache_dir);
  else if (xdg && *xdg) snprintf(dir, sizeof dir, "%s/vkpeft", xdg);
  else if (home && *home) snprintf(dir, sizeof dir, "%s/.cache/vkpeft", home);
  VkPhysicalDeviceProperties props;
  vkGetPhysicalDeviceProperties(ctx->phys, &props);
  void *data = NULL;
  size_t size = 0;
  if (dir[0]) {
    vkp_dir_create(dir, NULL);   // a cache we cannot create is simply not saved
    snprintf(ctx->cache_path, sizeof ctx->cache_path, "%s/pipelines-%04x-%04x-%08x.bin", dir, props.vendorID,
             props.deviceID, props.driverVersion);
    FILE *f = fopen(ctx->cache_path, "rb");
    if (f) {
      if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n > 0 && n < (64l << 20) && fseek(f, 0, SEEK_SET) == 0 && (data = malloc((size_t)n))) {
          size = fread(data, 1, (size_t)n, f);
          if (size != (size_t)n) size = 0;
        }
      }
      fclose(f);
    }
  }
  VkPipelineCacheCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
                                  .initialDataSize = size,
                                  .pInitialData = size ? data : NULL};
  VkResult r = vkCreatePipelineCache(ctx->device, &ci, NULL, &ctx->pipeline_cache);
  if (r != VK_SUCCESS && size) {   // a corrupt cache file is ignored, not fatal
    ci.initialDataSize = 0;
    ci.pInitialData = NULL;
    r = vkCreatePipelineCache(ctx->device, &ci, NULL, &ctx->pipeline_cache);
  }
  free(data);
  return r == VK_SUCCESS ? VKP_OK : vkp_vk_fail(ctx, r, "vkCreatePipelineCache");
}

void vkp_pipeline_cache_save(vkp_ctx *ctx) {
  if (!ctx->pipeline_cache || !ctx->cache_path[0] || ctx->pipeline_count == 0) return;
  size_t size = 0;
  if (vkGetPipelineCacheData(ctx->device, ctx->pipeline_cache, &size, NULL) != VK_SUCCESS || size == 0) return;
  void *data = malloc(size);
  if (!data) return;
  if (vkGetPipelineCacheData(ctx->device, ctx->pipeline_cache, &size, data) == VK_SUCCESS) {
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", ctx->cache_path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (f) {
      bool ok = fwrite(data, 1, size, f) == size;
      ok = (fclose(f) == 0) && ok;
      if (ok) rename(tmp, ctx->cache_path);
      else remove(tmp);
    }
  }
  free(data);
}
