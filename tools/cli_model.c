// cli_model.c — loading a model of any registered family + adapters for eval, predict, export,
// info and forward.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_model.h"
#include "vkp_adapter_format.h"
#include "vkp_peft.h"

int vkp_cli_model_arg(vkp_cli_model *m, int argc, char **argv, int *i) {
  const char *a = argv[*i];
  if (!strcmp(a, "--merge")) {
    m->merge = true;
    return 1;
  }
  if (strcmp(a, "--model") && strcmp(a, "--adapter")) return 0;
  if (*i + 1 >= argc) return -1;
  const char *v = argv[++*i];
  if (!strcmp(a, "--model")) {
    m->model_dir = v;
    return 1;
  }
  if (m->n_adapters >= VKP_CLI_MAX_ADAPTERS) return -1;
  char *copy = m->adapters[m->n_adapters];
  snprintf(copy, sizeof m->adapters[0], "%s", v);
  char *colon = strrchr(copy, ':');
  m->scales[m->n_adapters] = 1.0f;
  if (colon && colon[1] && strspn(colon + 1, "0123456789.-+eE") == strlen(colon + 1)) {
    *colon = '\0';
    m->scales[m->n_adapters] = strtof(colon + 1, NULL);
  }
  m->n_adapters++;
  return 1;
}

vkp_status vkp_cli_model_load(vkp_ctx *ctx, const vkp_cli_model *m, vkp_loaded_model *out, vkp_error *err) {
  memset(out, 0, sizeof *out);
  if (!m->model_dir) return vkp_error_set(err, VKP_ERR_INVALID, "--model DIR is required");
  VKP_TRY(vkp_family_load(vkp_model_families, ctx, m->model_dir, m->n_adapters ? m->adapters[0] : NULL, out, err));
  vkp_status st = VKP_OK;
  for (int k = 0; k < m->n_adapters && !st; k++) {
    vkp_adapter *a = NULL;
    // An HF PEFT folder, or a kohya / diffusers .safetensors file (format by detection).
    if (vkp_adapter_load(out->model, m->adapters[k], &a)) st = vkp_error_set(err, VKP_ERR_FORMAT, "%s", vkp_ctx_error(ctx));
    if (!st) vkp_adapter_set_scale(a, m->scales[k]);
    if (!st && m->merge && vkp_adapter_merge(out->model, a))
      st = vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: %s", m->adapters[k], vkp_ctx_error(ctx));
  }
  if (st) vkp_loaded_model_free(out);
  return st;
}
