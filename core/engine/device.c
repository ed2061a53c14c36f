// device.c — Vulkan instance, validation messages, physical-device choice, logical device.
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

#define VKP_VALIDATION_LAYER "VK_LAYER_KHRONOS_validation"

// VK_KHR_shader_bfloat16 / VK_KHR_cooperative_matrix are newer than Debian 12's headers: only
// their extension names are needed to detect them.
#define VKP_EXT_SHADER_BFLOAT16 "VK_KHR_shader_bfloat16"
#define VKP_EXT_COOPERATIVE_MATRIX "VK_KHR_cooperative_matrix"

vkp_status vkp_vk_fail(vkp_ctx *ctx, VkResult r, const char *what) {
  vkp_status st = VKP_ERR_DEVICE;
  if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY) st = VKP_ERR_OOM;
  const char *why = r == VK_ERROR_DEVICE_LOST             ? "device lost"
                    : r == VK_ERROR_OUT_OF_DEVICE_MEMORY  ? "out of device memory"
                    : r == VK_ERROR_OUT_OF_HOST_MEMORY    ? "out of host memory"
                    : r == VK_ERROR_INITIALIZATION_FAILED ? "initialization failed"
                    : r == VK_ERROR_LAYER_NOT_PRESENT     ? "layer not present"
                    : r == VK_ERROR_EXTENSION_NOT_PRESENT ? "extension not present"
                    : r == VK_ERROR_INCOMPATIBLE_DRIVER   ? "no compatible Vulkan driver"
                    : r == VK_ERROR_FEATURE_NOT_PRESENT   ? "feature not present"
                    : r == VK_TIMEOUT                     ? "timeout"
                                                          : "Vulkan error";
  return vkp_error_set(ctx ? &ctx->err : NULL, st, "%s: %s (VkResult %d)", what, why, (int)r);
}

const char *vkp_device_type_name(vkp_device_type t) {
  switch (t) {
    case VKP_DEVICE_INTEGRATED: return "integrated GPU";
    case VKP_DEVICE_DISCRETE: return "discrete GPU";
    case VKP_DEVICE_VIRTUAL: return "virtual GPU";
    case VKP_DEVICE_CPU: return "CPU";
    default: return "other";
  }
}

const char *vkp_kernel_family_name(vkp_kernel_family f) { return f == VKP_KERNELS_GPU ? "gpu" : "cpu"; }

vkp_kernel_family vkp_device_kernels(const vkp_device_info *info) {
  return info->type == VKP_DEVICE_CPU ? VKP_KERNELS_CPU : VKP_KERNELS_GPU;
}

// The kernel family: `want` ("cpu" / "gpu", else NULL for the device type's own).
static vkp_status choose_kernels(const char *want, const char *source, const vkp_device_info *info,
                                 vkp_kernel_family *out, vkp_error *err) {
  if (!want || !*want) {
    *out = vkp_device_kernels(info);
    return VKP_OK;
  }
  if (strcmp(want, "cpu") == 0 || strcmp(want, "gpu") == 0) {
    *out = want[0] == 'g' ? VKP_KERNELS_GPU : VKP_KERNELS_CPU;
    return VKP_OK;
  }
  return vkp_error_set(err, VKP_ERR_INVALID, "%s=%s: the kernel family must be cpu or gpu", source, want);
}

static VKAPI_ATTR VkBool32 VKAPI_CALL validation_callback(
    VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT types,
    const VkDebugUtilsMessengerCallbackDataEXT *data, void *user) {
  (void)types;
  vkp_ctx *ctx = user;
  if (severity & (VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT |
                  VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT)) {
    ctx->validation_messages++;
    fprintf(stderr, "vkpeft: validation %s: %s\n",
            (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) ? "error" : "warning",
            data->pMessage);
  }
  return VK_FALSE;
}

static bool env_flag(const char *name) {
  const char *v = getenv(name);
  return v && *v && strcmp(v, "0") != 0;
}

static bool layer_available(const char *name) {
  uint32_t n = 0;
  if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0) return false;
  VkLayerProperties *props = calloc(n, sizeof *props);
  if (!props) return false;
  bool found = false;
  if (vkEnumerateInstanceLayerProperties(&n, props) == VK_SUCCESS)
    for (uint32_t i = 0; i < n && !found; i++) found = strcmp(props[i].layerName, name) == 0;
  free(props);
  return found;
}

static vkp_status create_instance(vkp_ctx *ctx, bool validation) {
  VkApplicationInfo app = {
      .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
      .pApplicationName = "vkpeft",
      .applicationVersion = 1,
      .pEngineName = "vkpeft",
      .apiVersion = VK_API_VERSION_1_3,
  };
  const char *layers[] = {VKP_VALIDATION_LAYER};
  const char *exts[] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME};
  VkDebugUtilsMessengerCreateInfoEXT dbg = {
      .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
      .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT |
                         VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT,
      .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                     VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT,
      .pfnUserCallback = validation_callback,
      .pUserData = ctx,
  };
  if (validation && !layer_available(VKP_VALIDATION_LAYER))
    return vkp_error_set(&ctx->err, VKP_ERR_UNSUPPORTED,
                         "validation requested but %s is not installed (Debian package "
                         "vulkan-validationlayers; run scripts/setup)",
                         VKP_VALIDATION_LAYER);
  VkInstanceCreateInfo ci = {
      .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
      .pNext = validation ? &dbg : NULL,
      .pApplicationInfo = &app,
      .enabledLayerCount = validation ? 1 : 0,
      .ppEnabledLayerNames = layers,
      .enabledExtensionCount = validation ? 1 : 0,
      .ppEnabledExtensionNames = exts,
  };
  VkResult r = vkCreateInstance(&ci, NULL, &ctx->instance);
  if (r != VK_SUCCESS) {
    vkp_vk_fail(ctx, r, "vkCreateInstance");
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
      vkp_error_set(&ctx->err, VKP_ERR_DEVICE,
                    "no Vulkan driver found (install mesa-vulkan-drivers for the CPU driver "
                    "lavapipe, or your GPU's driver; run scripts/setup)");
    return ctx->err.status;
  }
  if (validation) {
    PFN_vkCreateDebugUtilsMessengerEXT create = (PFN_vkCreateDebugUtilsMessengerEXT)
        vkGetInstanceProcAddr(ctx->instance, "vkCreateDebugUtilsMessengerEXT");
    if (create && create(ctx->instance, &dbg, NULL, &ctx->messenger) != VK_SUCCESS)
      ctx->messenger = VK_NULL_HANDLE;
  }
  return VKP_OK;
}

static bool has_extension(VkPhysicalDevice pd, const char *name) {
  uint32_t n = 0;
  if (vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL) != VK_SUCCESS) return false;
  VkExtensionProperties *props = calloc(n ? n : 1, sizeof *props);
  if (!props) return false;
  bool found = false;
  if (vkEnumerateDeviceExtensionProperties(pd, NULL, &n, props) == VK_SUCCESS)
    for (uint32_t i = 0; i < n && !found; i++) found = strcmp(props[i].extensionName, name) == 0;
  free(props);
  return found;
}

static void describe_device(VkPhysicalDevice pd, vkp_device_info *info) {
  memset(info, 0, sizeof *info);
  VkPhysicalDeviceDriverProperties driver = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
  VkPhysicalDeviceSubgroupProperties subgroup = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES,
                                                 .pNext = &driver};
  VkPhysicalDeviceProperties2 props = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                       .pNext = &subgroup};
  vkGetPhysicalDeviceProperties2(pd, &props);
  const VkPhysicalDeviceLimits *lim = &props.properties.limits;
  snprintf(info->name, sizeof info->name, "%s", props.properties.deviceName);
  snprintf(info->driver_name, sizeof info->driver_name, "%s", driver.driverName);
  snprintf(info->driver_info, sizeof info->driver_info, "%s", driver.driverInfo);
  switch (props.properties.deviceType) {
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: info->type = VKP_DEVICE_INTEGRATED; break;
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: info->type = VKP_DEVICE_DISCRETE; break;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: info->type = VKP_DEVICE_VIRTUAL; break;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: info->type = VKP_DEVICE_CPU; break;
    default: info->type = VKP_DEVICE_OTHER;
  }
  info->api_version = props.properties.apiVersion;
  info->subgroup_size = subgroup.subgroupSize;
  info->max_shared_memory = lim->maxComputeSharedMemorySize;
  info->max_workgroup_invocations = lim->maxComputeWorkGroupInvocations;
  for (int i = 0; i < 3; i++) info->max_workgroup_count[i] = lim->maxComputeWorkGroupCount[i];
  info->max_storage_buffer_range = lim->maxStorageBufferRange;
  info->timestamps = lim->timestampComputeAndGraphics;
  info->timestamp_period_ns = lim->timestampPeriod;

  VkPhysicalDeviceMaintenance3Properties m3 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
  VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &m3};
  vkGetPhysicalDeviceProperties2(pd, &p2);
  info->max_allocation_size = m3.maxMemoryAllocationSize;

  VkPhysicalDeviceMemoryProperties mp;
  vkGetPhysicalDeviceMemoryProperties(pd, &mp);
  for (uint32_t i = 0; i < mp.memoryHeapCount; i++)
    if ((mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) &&
        mp.memoryHeaps[i].size > info->device_local_bytes)
      info->device_local_bytes = mp.memoryHeaps[i].size;

  VkPhysicalDeviceShaderAtomicFloatFeaturesEXT atomics = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_ATOMIC_FLOAT_FEATURES_EXT};
  bool has_atomics_ext = has_extension(pd, VK_EXT_SHADER_ATOMIC_FLOAT_EXTENSION_NAME);
  VkPhysicalDeviceVulkan11Features f11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
                                          .pNext = has_atomics_ext ? &atomics : NULL};
  VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                                          .pNext = &f11};
  VkPhysicalDeviceFeatures2 f = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f12};
  vkGetPhysicalDeviceFeatures2(pd, &f);
  info->shader_f16 = f12.shaderFloat16 && f11.storageBuffer16BitAccess;
  info->float_atomics = has_atomics_ext && atomics.shaderBufferFloat32AtomicAdd;
  info->shader_bf16 = has_extension(pd, VKP_EXT_SHADER_BFLOAT16);
  info->cooperative_matrix = has_extension(pd, VKP_EXT_COOPERATIVE_MATRIX);
}

static vkp_status enumerate(VkInstance inst, VkPhysicalDevice **out, uint32_t *count, vkp_error *err) {
  uint32_t n = 0;
  VkResult r = vkEnumeratePhysicalDevices(inst, &n, NULL);
  if (r != VK_SUCCESS) return vkp_error_set(err, VKP_ERR_DEVICE, "vkEnumeratePhysicalDevices failed (%d)", (int)r);
  if (n == 0)
    return vkp_error_set(err, VKP_ERR_NOT_FOUND,
                         "no Vulkan devices (install mesa-vulkan-drivers for lavapipe; run scripts/setup)");
  *out = calloc(n, sizeof **out);
  if (!*out) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  vkEnumeratePhysicalDevices(inst, &n, *out);
  *count = n;
  return VKP_OK;
}

static int type_rank(vkp_device_type t) {
  switch (t) {
    case VKP_DEVICE_DISCRETE: return 0;
    case VKP_DEVICE_INTEGRATED: return 1;
    case VKP_DEVICE_VIRTUAL: return 2;
    case VKP_DEVICE_CPU: return 3;
    default: return 4;
  }
}

static bool contains_ci(const char *hay, const char *needle) {
  for (; *hay; hay++) {
    size_t i = 0;
    while (needle[i] && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i])) i++;
    if (!needle[i]) return true;
  }
  return false;
}

// Chooses a device: `want` is an index or name substring; NULL = discrete > integrated > CPU.
static vkp_status choose_device(VkPhysicalDevice *pds, uint32_t n, const char *want, uint32_t *chosen,
                                vkp_error *err) {
  vkp_device_info info;
  if (want && *want) {
    char *end;
    long idx = strtol(want, &end, 10);
    if (*end == '\0') {
      if (idx < 0 || (uint32_t)idx >= n)
        return vkp_error_set(err, VKP_ERR_NOT_FOUND, "VKPEFT_DEVICE=%s: no device with that index (%u devices)",
                             want, n);
      *chosen = (uint32_t)idx;
      return VKP_OK;
    }
    for (uint32_t i = 0; i < n; i++) {
      describe_device(pds[i], &info);
      if (contains_ci(info.name, want)) {
        *chosen = i;
        return VKP_OK;
      }
    }
    return vkp_error_set(err, VKP_ERR_NOT_FOUND, "VKPEFT_DEVICE=%s: no device name contains it (see `vkpeft devices`)",
                         want);
  }
  int best = -1, best_rank = 1 << 30;
  for (uint32_t i = 0; i < n; i++) {
    describe_device(pds[i], &info);
    int rank = type_rank(info.type);
    if (rank < best_rank) best_rank = rank, best = (int)i;
  }
  *chosen = (uint32_t)best;
  return VKP_OK;
}

vkp_status vkp_devices_list(vkp_device_info *infos, uint32_t cap, uint32_t *count, vkp_error *err) {
  vkp_ctx tmp = {0};
  *count = 0;
  vkp_status st = create_instance(&tmp, false);
  if (st != VKP_OK) return vkp_error_set(err, st, "%s", tmp.err.msg);
  VkPhysicalDevice *pds = NULL;
  uint32_t n = 0;
  st = enumerate(tmp.instance, &pds, &n, err);
  if (st == VKP_OK) {
    for (uint32_t i = 0; i < n && i < cap; i++) describe_device(pds[i], &infos[i]);
    *count = n;
  }
  free(pds);
  vkDestroyInstance(tmp.instance, NULL);
  return st;
}

static vkp_status create_device(vkp_ctx *ctx) {
  uint32_t nq = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(ctx->phys, &nq, NULL);
  VkQueueFamilyProperties qf[16];
  if (nq > 16) nq = 16;
  vkGetPhysicalDeviceQueueFamilyProperties(ctx->phys, &nq, qf);
  int family = -1;
  for (uint32_t i = 0; i < nq; i++)  // prefer a compute queue family with graphics (the universal one)
    if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
      family = (int)i;
      break;
    }
  if (family < 0) return vkp_error_set(&ctx->err, VKP_ERR_UNSUPPORTED, "%s: no compute queue", ctx->info.name);
  ctx->queue_family = (uint32_t)family;

  // Query, then enable, the features vkpeft uses.
  VkPhysicalDeviceShaderAtomicFloatFeaturesEXT atomics = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_ATOMIC_FLOAT_FEATURES_EXT};
  bool atomics_ext = has_extension(ctx->phys, VK_EXT_SHADER_ATOMIC_FLOAT_EXTENSION_NAME);
  VkPhysicalDeviceVulkan13Features f13 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES,
                                          .pNext = atomics_ext ? &atomics : NULL};
  VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                                          .pNext = &f13};
  VkPhysicalDeviceVulkan11Features f11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
                                          .pNext = &f12};
  VkPhysicalDeviceFeatures2 have = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f11};
  vkGetPhysicalDeviceFeatures2(ctx->phys, &have);
  if (!f12.bufferDeviceAddress)
    return vkp_error_set(&ctx->err, VKP_ERR_UNSUPPORTED, "%s: bufferDeviceAddress is required", ctx->info.name);

  VkPhysicalDeviceShaderAtomicFloatFeaturesEXT en_atomics = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_ATOMIC_FLOAT_FEATURES_EXT,
      .shaderBufferFloat32AtomicAdd = atomics.shaderBufferFloat32AtomicAdd};
  VkPhysicalDeviceVulkan13Features en13 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES,
                                           .pNext = atomics_ext ? &en_atomics : NULL,
                                           .subgroupSizeControl = f13.subgroupSizeControl,
                                           .computeFullSubgroups = f13.computeFullSubgroups,
                                           .maintenance4 = f13.maintenance4};
  VkPhysicalDeviceVulkan12Features en12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                                           .pNext = &en13,
                                           .bufferDeviceAddress = VK_TRUE,
                                           .shaderFloat16 = f12.shaderFloat16,
                                           .shaderInt8 = f12.shaderInt8,
                                           .storageBuffer8BitAccess = f12.storageBuffer8BitAccess,
                                           .scalarBlockLayout = f12.scalarBlockLayout};
  VkPhysicalDeviceVulkan11Features en11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
                                           .pNext = &en12,
                                           .storageBuffer16BitAccess = f11.storageBuffer16BitAccess};
  VkPhysicalDeviceFeatures2 en = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &en11};
  en.features.shaderInt64 = have.features.shaderInt64;
  en.features.shaderInt16 = have.features.shaderInt16;
  en.features.shaderFloat64 = VK_FALSE;

  float prio = 1.0f;
  VkDeviceQueueCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                 .queueFamilyIndex = ctx->queue_family,
                                 .queueCount = 1,
                                 .pQueuePriorities = &prio};
  const char *exts[1];
  uint32_t next = 0;
  if (atomics_ext) exts[next++] = VK_EXT_SHADER_ATOMIC_FLOAT_EXTENSION_NAME;
  VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                            .pNext = &en,
                            .queueCreateInfoCount = 1,
                            .pQueueCreateInfos = &qci,
                            .enabledExtensionCount = next,
                            .ppEnabledExtensionNames = exts};
  VkResult r = vkCreateDevice(ctx->phys, &dci, NULL, &ctx->device);
  if (r != VK_SUCCESS) return vkp_vk_fail(ctx, r, "vkCreateDevice");
  vkGetDeviceQueue(ctx->device, ctx->queue_family, 0, &ctx->queue);

  VkCommandPoolCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                 .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                 .queueFamilyIndex = ctx->queue_family};
  if ((r = vkCreateCommandPool(ctx->device, &pci, NULL, &ctx->cmd_pool)) != VK_SUCCESS)
    return vkp_vk_fail(ctx, r, "vkCreateCommandPool");
  VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  if ((r = vkCreateFence(ctx->device, &fci, NULL, &ctx->fence)) != VK_SUCCESS)
    return vkp_vk_fail(ctx, r, "vkCreateFence");
  VkPushConstantRange range = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .size = VKP_PUSH_CONSTANT_BYTES};
  VkPipelineLayoutCreateInfo lci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                    .pushConstantRangeCount = 1,
                                    .pPushConstantRanges = &range};
  if ((r = vkCreatePipelineLayout(ctx->device, &lci, NULL, &ctx->pipeline_layout)) != VK_SUCCESS)
    return vkp_vk_fail(ctx, r, "vkCreatePipelineLayout");
  return VKP_OK;
}

static vkp_status choose_memory_types(vkp_ctx *ctx) {
  vkGetPhysicalDeviceMemoryProperties(ctx->phys, &ctx->mem_props);
  const VkPhysicalDeviceMemoryProperties *mp = &ctx->mem_props;
  int device = -1, uma = -1, staging = -1;
  const VkMemoryPropertyFlags hv = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  for (uint32_t i = 0; i < mp->memoryTypeCount; i++) {
    VkMemoryPropertyFlags f = mp->memoryTypes[i].propertyFlags;
    uint64_t heap = mp->memoryHeaps[mp->memoryTypes[i].heapIndex].size;
    bool big = heap >= ctx->info.device_local_bytes;   // on the largest device-local heap
    if ((f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) && device < 0 && big) device = (int)i;
    if ((f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) && (f & hv) == hv && big && uma < 0) uma = (int)i;
    if ((f & hv) == hv && staging < 0) staging = (int)i;
  }
  // UMA devices (lavapipe, integrated GPUs) map device memory directly; discrete GPUs stage.
  if (uma >= 0 && (ctx->info.type == VKP_DEVICE_CPU || ctx->info.type == VKP_DEVICE_INTEGRATED)) device = uma;
  if (device < 0 || staging < 0)
    return vkp_error_set(&ctx->err, VKP_ERR_UNSUPPORTED, "%s: no suitable memory types", ctx->info.name);
  ctx->mem_type_device = (uint32_t)device;
  ctx->mem_type_staging = (uint32_t)staging;
  ctx->device_host_visible = (mp->memoryTypes[device].propertyFlags & hv) == hv;
  return VKP_OK;
}

static vkp_status create_query_pool(vkp_ctx *ctx) {
  if (!ctx->info.timestamps) return VKP_OK;
  ctx->query_cap = 8192;
  VkQueryPoolCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                              .queryType = VK_QUERY_TYPE_TIMESTAMP,
                              .queryCount = ctx->query_cap};
  VkResult r = vkCreateQueryPool(ctx->device, &qi, NULL, &ctx->query_pool);
  if (r != VK_SUCCESS) return vkp_vk_fail(ctx, r, "vkCreateQueryPool");
  return VKP_OK;
}

vkp_status vkp_ctx_new(const vkp_ctx_options *opts, vkp_ctx **out, vkp_error *err) {
  *out = NULL;
  vkp_ctx_options defaults = {0};
  if (!opts) opts = &defaults;
  vkp_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  bool validation = opts->validation || env_flag("VKPEFT_VALIDATION");
  vkp_status st = create_instance(ctx, validation);
  VkPhysicalDevice *pds = NULL;
  uint32_t n = 0, chosen = 0;
  if (st == VKP_OK) st = enumerate(ctx->instance, &pds, &n, &ctx->err);
  if (st == VKP_OK) st = choose_device(pds, n, opts->device ? opts->device : getenv("VKPEFT_DEVICE"), &chosen,
                                       &ctx->err);
  if (st == VKP_OK) {
    ctx->phys = pds[chosen];
    describe_device(ctx->phys, &ctx->info);
    st = choose_kernels(opts->kernels ? opts->kernels : getenv("VKPEFT_KERNELS"),
                        opts->kernels ? "kernels" : "VKPEFT_KERNELS", &ctx->info, &ctx->kernels, &ctx->err);
  }
  if (st == VKP_OK) st = create_device(ctx);
  free(pds);
  if (st == VKP_OK) st = choose_memory_types(ctx);
  if (st == VKP_OK && (opts->profiling || env_flag("VKPEFT_PROFILE"))) st = create_query_pool(ctx);
  if (st == VKP_OK) st = vkp_pipeline_cache_open(ctx, opts->cache_dir);
  if (st != VKP_OK) {
    vkp_error_set(err, st, "%s", ctx->err.msg);
    vkp_ctx_free(ctx);
    return st;
  }
  *out = ctx;
  return VKP_OK;
}

void vkp_ctx_free(vkp_ctx *ctx) {
  if (!ctx) return;
  if (ctx->device) {
    vkDeviceWaitIdle(ctx->device);
    vkp_pipeline_cache_save(ctx);
    vkp_pipelines_free(ctx);
    vkp_memory_free_all(ctx);
    if (ctx->query_pool) vkDestroyQueryPool(ctx->device, ctx->query_pool, NULL);
    if (ctx->pipeline_cache) vkDestroyPipelineCache(ctx->device, ctx->pipeline_cache, NULL);
    if (ctx->pipeline_layout) vkDestroyPipelineLayout(ctx->device, ctx->pipeline_layout, NULL);
    if (ctx->fence) vkDestroyFence(ctx->device, ctx->fence, NULL);
    if (ctx->cmd_pool) vkDestroyCommandPool(ctx->device, ctx->cmd_pool, NULL);
    vkDestroyDevice(ctx->device, NULL);
  }
  if (ctx->messenger) {
    PFN_vkDestroyDebugUtilsMessengerEXT destroy = (PFN_vkDestroyDebugUtilsMessengerEXT)
        vkGetInstanceProcAddr(ctx->instance, "vkDestroyDebugUtilsMessengerEXT");
    if (destroy) destroy(ctx->instance, ctx->messenger, NULL);
  }
  if (ctx->instance) vkDestroyInstance(ctx->instance, NULL);
  free(ctx);
}

const vkp_device_info *vkp_ctx_info(const vkp_ctx *ctx) { return &ctx->info; }
vkp_kernel_family vkp_ctx_kernels(const vkp_ctx *ctx) { return ctx->kernels; }
const char *vkp_ctx_error(const vkp_ctx *ctx) { return ctx->err.msg; }
vkp_error *vkp_ctx_err(vkp_ctx *ctx) { return &ctx->err; }
uint32_t vkp_ctx_validation_messages(const vkp_ctx *ctx) { return ctx->validation_messages; }
uint64_t vkp_ctx_memory_in_use(const vkp_ctx *ctx) { return ctx->bytes_in_use; }
uint64_t vkp_ctx_memory_peak(const vkp_ctx *ctx) { return ctx->bytes_peak; }

vkp_status vkp_cmd_begin(vkp_ctx *ctx, VkCommandBuffer *out) {
  VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                    .commandPool = ctx->cmd_pool,
                                    .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                    .commandBufferCount = 1};
  VkResult r = vkAllocateCommandBuffers(ctx->device, &ai, out);
  if (r != VK_SUCCESS) return vkp_vk_fail(ctx, r, "vkAllocateCommandBuffers");
  VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                 .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
  if ((r = vkBeginCommandBuffer(*out, &bi)) != VK_SUCCESS) {
    vkFreeCommandBuffers(ctx->device, ctx->cmd_pool, 1, out);
    return vkp_vk_fail(ctx, r, "vkBeginCommandBuffer");
  }
  return VKP_OK;
}

vkp_status vkp_cmd_submit_wait(vkp_ctx *ctx, VkCommandBuffer cmd) {
  VkResult r = vkEndCommandBuffer(cmd);
  if (r == VK_SUCCESS) {
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &cmd};
    r = vkQueueSubmit(ctx->queue, 1, &si, ctx->fence);
    if (r == VK_SUCCESS) {
      r = vkWaitForFences(ctx->device, 1, &ctx->fence, VK_TRUE, UINT64_MAX);
      vkResetFences(ctx->device, 1, &ctx->fence);
    }
  }
  vkFreeCommandBuffers(ctx->device, ctx->cmd_pool, 1, &cmd);
  return r == VK_SUCCESS ? VKP_OK : vkp_vk_fail(ctx, r, "queue submit");
}
