// cli_gen_prompt.c — A1111's `<lora:NAME:SCALE>` prompt syntax (cli_generate.h): the tags are
// taken out of the prompt text (as A1111's extra_networks.parse_prompt does) and become LoRA files
// looked up in --lora-dir.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_generate.h"

// One tag's inside ("NAME" or "NAME:SCALE") -> a LoRA entry.
static vkp_status parse_tag(const char *in, size_t len, const char *lora_dir, vkp_gen_lora *l, vkp_error *err) {
  char body[256];
  if (len >= sizeof body) return vkp_error_set(err, VKP_ERR_INVALID, "prompt: <lora:...> tag too long");
  memcpy(body, in, len);
  body[len] = 0;
  char *colon = strchr(body, ':');
  l->scale = 1.0f;
  if (colon) {
    *colon = 0;
    if (strchr(colon + 1, ':'))
      return vkp_error_set(err, VKP_ERR_UNSUPPORTED,
                           "prompt: <lora:%s:%s>: separate text-encoder and UNet multipliers are not supported", body,
                           colon + 1);
    char *end;
    double s = strtod(colon + 1, &end);
    if (end == colon + 1 || *end || !isfinite(s))
      return vkp_error_set(err, VKP_ERR_INVALID, "prompt: <lora:%s:%s>: the multiplier is not a number", body, colon + 1);
    l->scale = (float)s;
  }
  if (!body[0]) return vkp_error_set(err, VKP_ERR_INVALID, "prompt: <lora:%.*s>: no name", (int)len, in);
  if (!lora_dir)
    return vkp_error_set(err, VKP_ERR_INVALID, "prompt: <lora:%s...>: a LoRA tag needs --lora-dir DIR (DIR/%s.safetensors)",
                         body, body);
  snprintf(l->name, sizeof l->name, "%.255s", body);
  snprintf(l->path, sizeof l->path, "%s/%s.safetensors", lora_dir, body);
  struct stat sb;
  if (stat(l->path, &sb) || !S_ISREG(sb.st_mode))
    return vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: no such LoRA file (from <lora:%s> in the prompt)", l->path, body);
  l->from_prompt = true;
  return VKP_OK;
}

vkp_status vkp_gen_prompt_loras(const char *prompt, const char *lora_dir, vkp_gen_lora *loras, int *n, char **clean,
                                vkp_error *err) {
  size_t len = strlen(prompt);
  char *out = malloc(len + 1);
  if (!out) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  size_t o = 0;
  const char *p = prompt;
  while (*p) {
    const char *end;
    if (!strncmp(p, "<lora:", 6) && (end = strchr(p + 6, '>'))) {
      if (*n == VKP_GEN_MAX_LORAS) {
        free(out);
        return vkp_error_set(err, VKP_ERR_INVALID, "prompt: at most %d LoRAs", VKP_GEN_MAX_LORAS);
      }
      vkp_gen_lora l = {0};
      vkp_status st = parse_tag(p + 6, (size_t)(end - p - 6), lora_dir, &l, err);
      if (st) {
        free(out);
        return st;
      }
      loras[(*n)++] = l;
      p = end + 1;
      continue;
    }
    out[o++] = *p++;
  }
  out[o] = 0;
  *clean = out;
  return VKP_OK;
}
