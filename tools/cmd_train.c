// cmd_train.c — `vkpeft train CONFIG.json [--set key=value]... | --resume RUN_DIR`.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_classify.h"
#include "vkpeft_cli.h"

static int usage(void) {
  fprintf(stderr,
          "usage: vkpeft train [CONFIG.json] [--set key=value]... [--quiet]   (no CONFIG: the defaults)\n"
          "       vkpeft train --resume RUN_DIR [--quiet]\n"
          "  Fine-tunes a ViT image classifier with PEFT methods; writes a run directory\n"
          "  (config.json, metrics.jsonl, checkpoints/, adapter/, plots/, report.html).\n"
          "  Keys: see docs/TRAINING.md; e.g. --set train.lr=3e-4 --set peft.0.r=16 --set output_dir=runs/x\n");
  return VKP_EXIT_BAD_INPUT;
}

int cmd_train(int argc, char **argv) {
  const char *config = NULL, *resume = NULL;
  const char **sets = calloc((size_t)argc + 1, sizeof *sets);
  int nsets = 0;
  bool quiet = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--set") && i + 1 < argc) sets[nsets++] = argv[++i];
    else if (!strncmp(argv[i], "--set=", 6)) sets[nsets++] = argv[i] + 6;
    else if (!strcmp(argv[i], "--resume") && i + 1 < argc) resume = argv[++i];
    else if (!strcmp(argv[i], "--quiet")) quiet = true;
    else if (argv[i][0] == '-' || config) {
      free(sets);
      return usage();
    } else config = argv[i];
  }
  if ((config && resume) || (resume && nsets)) {
    free(sets);
    return usage();
  }
  vkp_error err = {0};
  cJSON *cfg = NULL;
  if (!resume && vkp_classify_config(config, sets, nsets, &cfg, &err)) {
    free(sets);
    return vkp_cli_fail("train", err.status, err.msg);
  }
  free(sets);
  vkp_ctx *ctx = NULL;
  if (vkp_ctx_new(NULL, &ctx, &err)) {
    cJSON_Delete(cfg);
    return vkp_cli_fail("train", err.status, err.msg);
  }
  vkp_train_summary s;
  vkp_status st = vkp_classify_train(ctx, cfg, resume, quiet, &s, &err);
  cJSON_Delete(cfg);
  vkp_ctx_free(ctx);
  if (st) return vkp_cli_fail("train", st, err.msg);
  if (!quiet) {
    if (s.test_acc > 0) printf("test accuracy %.2f%% (top-5 %.2f%%)\n", 100 * s.test_acc, 100 * s.test_top5);
    printf("%lld steps in %.1f s (%.1f images/s); report: %s/report.html\n", (long long)s.steps, s.seconds, s.images_per_s, s.run_dir);
  }
  return VKP_EXIT_OK;
}
