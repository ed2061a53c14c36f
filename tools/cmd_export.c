// cmd_export.c — `vkpeft export --model DIR --adapter DIR... --merge --output DIR`: a standalone
// checkpoint (HF layout of the model's family) with the adapters folded into the weights.
#include <stdio.h>
#include <string.h>

#include "cli_model.h"
#include "vkpeft_cli.h"

static int usage(void) {
  fprintf(stderr, "usage: vkpeft export --model DIR --adapter DIR[:scale]... --merge --output DIR\n"
                  "  Writes the checkpoint folder (config.json, weights, preprocessing) with the adapters merged.\n");
  return VKP_EXIT_BAD_INPUT;
}

int cmd_export(int argc, char **argv) {
  vkp_cli_model cm = {0};
  const char *output = NULL;
  for (int i = 1; i < argc; i++) {
    int r = vkp_cli_model_arg(&cm, argc, argv, &i);
    if (r < 0) return usage();
    if (r) continue;
    if (!strcmp(argv[i], "--output") && i + 1 < argc) output = argv[++i];
    else return usage();
  }
  if (!cm.model_dir || !output || !cm.merge) return usage();
  vkp_error err = {0};
  vkp_ctx *ctx = NULL;
  if (vkp_ctx_new(NULL, &ctx, &err)) return vkp_cli_fail("export", err.status, err.msg);
  vkp_loaded_model lm = {0};
  vkp_status st = vkp_cli_model_load(ctx, &cm, &lm, &err);
  if (!st) st = lm.family->save(&lm, output, &err);
  if (!st) printf("exported %s (%d adapter%s merged)\n", output, cm.n_adapters, cm.n_adapters == 1 ? "" : "s");
  vkp_loaded_model_free(&lm);
  vkp_ctx_free(ctx);
  return st ? vkp_cli_fail("export", st, err.msg) : VKP_EXIT_OK;
}

int cmd_merge(int argc, char **argv) {
  char *args[256];
  if (argc > 250) return usage();
  for (int i = 0; i < argc; i++) args[i] = argv[i];
  args[argc] = "--merge";
  return cmd_export(argc + 1, args);
}
