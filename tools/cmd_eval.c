// cmd_eval.c — `vkpeft eval --model DIR [--adapter DIR[:scale]]... --data SPEC [--batch N] [--json]`.
#include <stdio.h>
#include <string.h>

#include "cli_model.h"
#include "vkpeft_cli.h"

static int usage(void) {
  fprintf(stderr,
          "usage: vkpeft eval --model DIR [--adapter DIR[:scale]]... [--merge] --data SPEC [--batch N] [--json]\n"
          "  SPEC: fashion-mnist:test, mnist:test, digits, an image folder or a .csv/.jsonl list\n"
          "  Prints accuracy, top-5 accuracy, loss, per-class precision/recall and the confusion matrix.\n");
  return VKP_EXIT_BAD_INPUT;
}

int cmd_eval(int argc, char **argv) {
  vkp_cli_model cm = {0};
  const char *data = NULL;
  int batch = 256;
  bool json = false;
  for (int i = 1; i < argc; i++) {
    int r = vkp_cli_model_arg(&cm, argc, argv, &i);
    if (r < 0) return usage();
    if (r) continue;
    if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
    else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
      if (sscanf(argv[++i], "%d", &batch) != 1 || batch < 1) return usage();
    } else if (!strcmp(argv[i], "--json")) json = true;
    else return usage();
  }
  if (!cm.model_dir || !data) return usage();
  vkp_error err = {0};
  vkp_ctx *ctx = NULL;
  if (vkp_ctx_new(NULL, &ctx, &err)) return vkp_cli_fail("eval", err.status, err.msg);
  vkp_loaded_model lm = {0};
  vkp_status st = vkp_cli_model_load(ctx, &cm, &lm, &err);
  if (!st && !lm.family->eval)
    st = vkp_error_set(&err, VKP_ERR_UNSUPPORTED, "%s: %s models have no evaluation", cm.model_dir, lm.family->name);
  if (!st) st = lm.family->eval(&lm, &(vkp_eval_request){.data = data, .batch = batch, .json = json}, &err);
  vkp_loaded_model_free(&lm);
  vkp_ctx_free(ctx);
  return st ? vkp_cli_fail("eval", st, err.msg) : VKP_EXIT_OK;
}
