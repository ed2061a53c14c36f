// cmd_devices.c — `vkpeft devices`: lists devices with the facts and features vkpeft uses.
#include <stdio.h>
#include <string.h>

#include "vkp_device.h"
#include "vkpeft_cli.h"

int cmd_devices(int argc, char **argv) {
  bool json = argc > 1 && !strcmp(argv[1], "--json");
  if (argc > 1 && !json) {
    fprintf(stderr, "usage: vkpeft devices [--json]\n");
    return VKP_EXIT_BAD_INPUT;
  }
  vkp_device_info infos[16];
  uint32_t n = 0;
  vkp_error err = {0};
  if (vkp_devices_list(infos, 16, &n, &err) != VKP_OK) return vkp_cli_fail("devices", err.status, err.msg);
  if (json) printf("[\n");
  for (uint32_t i = 0; i < n && i < 16; i++) {
    const vkp_device_info *d = &infos[i];
    unsigned major = d->api_version >> 22, minor = (d->api_version >> 12) & 0x3ff, patch = d->api_version & 0xfff;
    if (json) {
      printf("  {\"index\": %u, \"name\": \"%s\", \"type\": \"%s\", \"driver\": \"%s\", \"driver_info\": \"%s\", "
             "\"vulkan\": \"%u.%u.%u\", \"memory_bytes\": %llu, \"subgroup_size\": %u, \"shared_memory\": %u, "
             "\"f16\": %s, \"bf16\": %s, \"cooperative_matrix\": %s, \"float_atomics\": %s, \"kernels\": \"%s\"}%s\n",
             i, d->name, vkp_device_type_name(d->type), d->driver_name, d->driver_info, major, minor, patch,
             (unsigned long long)d->device_local_bytes, d->subgroup_size, d->max_shared_memory,
             d->shader_f16 ? "true" : "false", d->shader_bf16 ? "true" : "false",
             d->cooperative_matrix ? "true" : "false", d->float_atomics ? "true" : "false",
             vkp_kernel_family_name(vkp_device_kernels(d)), i + 1 < n ? "," : "");
      continue;
    }
    printf("[%u] %s (%s)\n", i, d->name, vkp_device_type_name(d->type));
    printf("    driver: %s %s, Vulkan %u.%u.%u\n", d->driver_name, d->driver_info, major, minor, patch);
    printf("    memory: %.1f GiB, max allocation %.1f GiB, storage range %.0f MiB\n",
           d->device_local_bytes / 1073741824.0, d->max_allocation_size / 1073741824.0,
           d->max_storage_buffer_range / 1048576.0);
    printf("    subgroup %u, shared memory %u KiB, workgroup invocations %u\n", d->subgroup_size,
           d->max_shared_memory / 1024, d->max_workgroup_invocations);
    printf("    features: f16 %s, bf16 %s, cooperative matrix %s, float atomics %s, timestamps %s\n",
           d->shader_f16 ? "yes" : "no", d->shader_bf16 ? "yes" : "no", d->cooperative_matrix ? "yes" : "no",
           d->float_atomics ? "yes" : "no", d->timestamps ? "yes" : "no");
    printf("    kernels: %s family (VKPEFT_KERNELS=cpu|gpu overrides)\n", vkp_kernel_family_name(vkp_device_kernels(d)));
  }
  if (json) printf("]\n");
  return VKP_EXIT_OK;
}
