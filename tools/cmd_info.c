// cmd_info.c — `vkpeft info --model DIR [--adapter DIR]...`: what a checkpoint and its adapters
// contain (architecture, parameter counts, adapter methods, targets and sizes), and
// `vkpeft info FILE.safetensors`: the tensors of a file.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_model.h"
#include "cli_png_info.h"
#include "vkp_peft.h"
#include "vkp_safetensors.h"
#include "vkpeft_cli.h"

static int usage(void) {
  fprintf(stderr, "usage: vkpeft info --model DIR [--adapter DIR]...\n       vkpeft info FILE.safetensors\n");
  return VKP_EXIT_BAD_INPUT;
}

static int file_info(const char *path) {
  vkp_error err = {0};
  vkp_safetensors *st;
  if (vkp_safetensors_open(path, &st, &err)) return vkp_cli_fail("info", err.status, err.msg);
  size_t total = 0;
  for (size_t i = 0; i < vkp_safetensors_count(st); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(st, i);
    char *name = vkp_cli_escape(t->name, false);   // names come from the file: no raw escape codes
    printf("%-70s %-5s [", name ? name : "?", vkp_dtype_name(t->dtype));
    free(name);
    for (int d = 0; d < t->ndim; d++) printf(d ? ", %lld" : "%lld", (long long)t->shape[d]);
    printf("]\n");
    total += vkp_st_tensor_numel(t);
  }
  for (size_t i = 0; i < vkp_safetensors_metadata_count(st); i++) {
    const char *v, *k = vkp_safetensors_metadata_at(st, i, &v);
    char *ks = vkp_cli_escape(k, false), *vs = vkp_cli_escape(v, true);
    printf("metadata %s = %s\n", ks ? ks : "?", vs ? vs : "?");
    free(ks);
    free(vs);
  }
  printf("%zu tensors, %zu values\n", vkp_safetensors_count(st), total);
  vkp_safetensors_free(st);
  return VKP_EXIT_OK;
}

int cmd_info(int argc, char **argv) {
  vkp_cli_model cm = {0};
  for (int i = 1; i < argc; i++) {
    int r = vkp_cli_model_arg(&cm, argc, argv, &i);
    if (r < 0) return usage();
    if (r) continue;
    if (argc == 2 && argv[i][0] != '-') return vkp_cli_is_png(argv[i]) ? vkp_cli_png_info(argv[i]) : file_info(argv[i]);
    return usage();
  }
  if (!cm.model_dir) return usage();
  vkp_error err = {0};
  vkp_ctx *ctx = NULL;
  if (vkp_ctx_new(NULL, &ctx, &err)) return vkp_cli_fail("info", err.status, err.msg);
  vkp_loaded_model lm = {0};
  vkp_status st = vkp_cli_model_load(ctx, &cm, &lm, &err);
  if (!st) {
    char line[512];
    lm.family->describe(&lm, line, sizeof line);
    printf("%s: %s\n", cm.model_dir, line);
    for (int i = 0; i < vkp_peft_count(lm.model); i++) {
      const vkp_peft_config *pc = vkp_adapter_config(vkp_peft_get(lm.model, i));
      char *name = vkp_cli_escape(pc->name, false);
      printf("adapter %s (%s): %s", cm.adapters[i], name ? name : "?", vkp_peft_method_name(pc->method));
      free(name);
      if (pc->method == VKP_PEFT_LORA)
        printf("%s%s r=%d alpha=%g", pc->use_rslora ? " rsLoRA" : "", pc->use_dora ? " DoRA" : "", pc->r, pc->alpha);
      printf(", targets:");
      for (int k = 0; k < pc->n_target_modules; k++) {
        char *t = vkp_cli_escape(pc->target_modules[k], false);
        printf(" %s", t ? t : "?");
        free(t);
      }
      char *re = pc->target_regex ? vkp_cli_escape(pc->target_regex, false) : NULL;
      if (re) printf(" /%s/", re);
      free(re);
      printf("\n");
    }
    vkp_peft_report r = vkp_peft_get_report(lm.model);
    printf("parameters: %lld in the base model, %lld in adapters (%.1f KiB), %lld trainable\n", (long long)r.total_params,
           (long long)r.adapter_params, (double)r.adapter_bytes / 1024.0, (long long)r.trainable_params);
  }
  vkp_loaded_model_free(&lm);
  vkp_ctx_free(ctx);
  return st ? vkp_cli_fail("info", st, err.msg) : VKP_EXIT_OK;
}
