// fuzz_ldm.c — libFuzzer target: single-file Stable Diffusion checkpoints (diffusion/ldm_config.c,
// ldm_keys.c) without their weights: the architecture read from tensor shapes (UNet blocks, layers,
// transformers, context width; VAE; CLIP or OpenCLIP text tower, SD 1.x and 2.x rules), the configs
// checked as the loader checks them before building a model, and every key converted to diffusers /
// transformers names with the configs found.
//
// The input is a safetensors header (its JSON). The file handed to the reader is that header with
// its length prefix, followed by as many zero bytes as the header's largest data_offsets end (at
// most 4 GiB), as a sparse in-memory file: shapes of full-size models cost nothing, since none of
// this reads tensor data.
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "ldm_internal.h"

// The end of the data the header declares: the largest b of a `"data_offsets": [a, b]` (at most
// 4 GiB) in an object at the top level (a tensor's entry); 0 when there is none. A lexical scan,
// not a JSON parse: parsing each header here as well as in the reader cost a quarter of every
// execution (cJSON allocates a node per value, and ASan makes every allocation dear).
static uint64_t data_end(const uint8_t *data, size_t size) {
  static const char key[] = "\"data_offsets\"";
  uint64_t end = 0;
  int depth = 0;
  for (size_t i = 0; i < size; i++) {
    if (data[i] == '{' || data[i] == '[') depth++;
    else if (data[i] == '}' || data[i] == ']') depth--;
    if (data[i] != '"') continue;
    size_t close = i + 1;   // the string's closing quote
    while (close < size && data[close] != '"') close += data[close] == '\\' ? 2 : 1;
    bool is_key = depth == 2 && close < size && close + 1 - i == sizeof key - 1 &&
                  !memcmp(data + i, key, sizeof key - 1);
    i = close;
    if (!is_key) continue;
    char num[80];   // what follows, NUL-terminated: `: [a, b]`
    size_t n = size - i - 1 < sizeof num - 1 ? size - i - 1 : sizeof num - 1;
    memcpy(num, data + i + 1, n);
    num[n] = '\0';
    char *s = num + strspn(num, " \t\r\n"), *after;
    if (*s++ != ':') continue;
    s += strspn(s, " \t\r\n");
    if (*s++ != '[') continue;
    strtod(s, &after);
    if (after == s) continue;
    s = after + strspn(after, " \t\r\n");
    if (*s++ != ',') continue;
    double b = strtod(s, &after);
    if (after != s && b > (double)end && b <= 4294967296.0) end = (uint64_t)b;
  }
  return end;
}

static void check_names(vkp_ldm_map_fn map, const void *cfg, const vkp_safetensors *sf, const char *prefix) {
  size_t np = strlen(prefix);
  char out[3][VKP_LDM_NAME_MAX];
  for (size_t i = 0; i < vkp_safetensors_count(sf); i++) {
    const char *name = vkp_safetensors_at(sf, i)->name;
    if (strncmp(name, prefix, np)) continue;
    memset(out, 0x55, sizeof out);
    int n = map(cfg, name + np, out);
    if (n != 0 && n != 1 && n != 3) abort();
    for (int k = 0; k < n; k++)
      if (!memchr(out[k], 0, VKP_LDM_NAME_MAX) || !out[k][0]) abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t len[8];
  for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)size >> (8 * i));
  const char *path = fuzz_memfile_ext(0, len, 8, data, size, 8 + size + data_end(data, size));
  if (!path) return 0;
  vkp_safetensors *sf = NULL;
  vkp_error err;
  if (vkp_safetensors_open(path, &sf, &err) != VKP_OK) return 0;
  for (int v2 = 0; v2 < 2; v2++) {
    vkp_unet_config uc;
    if (vkp_ldm_unet_config(sf, v2, &uc, &err) == VKP_OK && vkp_unet_config_check(&uc, "fuzz", &err) == VKP_OK)
      check_names(vkp_ldm_unet_name, &uc, sf, VKP_LDM_UNET_PREFIX);
  }
  vkp_vae_config vc;
  if (vkp_ldm_vae_config(sf, &vc, &err) == VKP_OK && vkp_vae_config_check(&vc, "fuzz", &err) == VKP_OK)
    check_names(vkp_ldm_vae_name, &vc, sf, VKP_LDM_VAE_PREFIX);
  for (int openclip = 0; openclip < 2; openclip++) {
    vkp_clip_config tc;
    if (vkp_ldm_text_config(sf, openclip, &tc, &err) == VKP_OK && vkp_clip_config_check(&tc, "fuzz", &err) == VKP_OK)
      check_names(openclip ? vkp_ldm_openclip_name : vkp_ldm_clip_name, &tc.text, sf,
                  openclip ? VKP_LDM_OPENCLIP_PREFIX : VKP_LDM_CLIP_PREFIX);
  }
  vkp_safetensors_free(sf);
  return 0;
}
