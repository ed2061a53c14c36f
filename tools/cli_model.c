// cli_model.c — loading a ViT + adapters for eval, predict, export and forward.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_model.h"
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
  static char copies[VKP_CLI_MAX_ADAPTERS][1024];
  snprintf(copies[m->n_adapters], sizeof copies[0], "%s", v);
  char *colon = strrchr(copies[m->n_adapters], ':');
  m->scales[m->n_adapters] = 1.0f;
  if (colon && colon[1] && strspn(colon + 1, "0123456789.-+eE") == strlen(colon + 1)) {
    *colon = '\0';
    m->scales[m->n_adapters] = strtof(colon + 1, NULL);
  }
  m->adapters[m->n_adapters] = copies[m->n_adapters];
  m->n_adapters++;
  return 1;
}

vkp_status vkp_cli_model_load(vkp_ctx *ctx, const vkp_cli_model *m, vkp_vit **out, vkp_data_transform *tf,
                              vkp_error *err) {
  *out = NULL;
  if (!m->model_dir) return vkp_error_set(err, VKP_ERR_INVALID, "--model DIR is required");
  vkp_vit *v = NULL;
  VKP_TRY(vkp_vit_load(ctx, m->model_dir, 0, &v, err));
  vkp_status st = VKP_OK;
  for (int k = 0; k < m->n_adapters && !st; k++) {
    vkp_adapter *a = NULL;
    if (vkp_peft_load(v->model, m->adapters[k], &a)) st = vkp_error_set(err, VKP_ERR_FORMAT, "%s", vkp_ctx_error(ctx));
    if (!st) vkp_adapter_set_scale(a, m->scales[k]);
    if (!st && m->merge && vkp_adapter_merge(v->model, a))
      st = vkp_error_set(err, VKP_ERR_UNSUPPORTED, "%s: %s", m->adapters[k], vkp_ctx_error(ctx));
  }
  if (!st && tf) {
    vkp_error e2 = {0};
    const char *dir = m->n_adapters ? m->adapters[0] : m->model_dir;
    vkp_status p = vkp_preprocess_load(dir, v->cfg.image_size, v->cfg.num_channels, tf, &e2);
    if (p == VKP_ERR_NOT_FOUND && m->n_adapters) p = vkp_preprocess_load(m->model_dir, v->cfg.image_size, v->cfg.num_channels, tf, &e2);
    if (p == VKP_ERR_NOT_FOUND) fprintf(stderr, "vkpeft: no preprocessor_config.json beside the model or adapter: pixels are only scaled to [0, 1]\n");
    else if (p) st = vkp_error_set(err, p, "%s", e2.msg);
  }
  if (st) {
    vkp_vit_free(v);
    return st;
  }
  *out = v;
  return VKP_OK;
}
