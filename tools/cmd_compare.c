// cmd_compare.c — `vkpeft compare [CONFIG.json] [--set key=value]... [--methods a,b,...]`.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_classify.h"
#include "vkp_compare.h"
#include "vkp_config.h"
#include "vkpeft_cli.h"

static int usage(void) {
  fprintf(stderr, "usage: vkpeft compare [CONFIG.json] [--set key=value]... [--methods m1,m2,...] [--quiet]\n"
                  "  Fine-tunes the config's base with every PEFT method under the same budget; writes\n"
                  "  <output_dir>/compare.md, compare.json, compare.png and one run directory per method.\n  methods:");
  for (int i = 0; i < vkp_compare_method_count(); i++) fprintf(stderr, " %s", vkp_compare_method_name(i));
  fprintf(stderr, "\n");
  return VKP_EXIT_BAD_INPUT;
}

int cmd_compare(int argc, char **argv) {
  const char *config = NULL;
  const char **sets = calloc((size_t)argc + 1, sizeof *sets), *only[64];
  int nsets = 0, n_only = 0;
  bool quiet = false;
  char methods_buf[1024] = "";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--set") && i + 1 < argc) sets[nsets++] = argv[++i];
    else if (!strcmp(argv[i], "--methods") && i + 1 < argc) snprintf(methods_buf, sizeof methods_buf, "%s", argv[++i]);
    else if (!strcmp(argv[i], "--quiet")) quiet = true;
    else if (argv[i][0] == '-' || config) return free(sets), usage();
    else config = argv[i];
  }
  char *save = NULL;
  for (char *t = strtok_r(methods_buf, ",", &save); t && n_only < 64; t = strtok_r(NULL, ",", &save)) only[n_only++] = t;
  vkp_error err = {0};
  cJSON *cfg = NULL;
  vkp_status st = vkp_classify_config(config, sets, nsets, &cfg, &err);
  free(sets);
  if (st) return vkp_cli_fail("compare", st, err.msg);
  vkp_compare_row *rows = calloc((size_t)vkp_compare_method_count(), sizeof *rows);
  int n = 0;
  st = vkp_compare_run(cfg, only, n_only, quiet, rows, &n, &err);
  char title[256];
  snprintf(title, sizeof title, "PEFT methods on %s", vkp_config_string(cfg, "data.train"));
  if (!st) st = vkp_compare_write(vkp_config_string(cfg, "output_dir"), title, rows, n, &err);
  if (!st) {
    printf("%-14s %9s %12s %10s %9s\n", "method", "test acc", "trainable", "peak MiB", "img/s");
    for (int i = 0; i < n; i++)
      printf("%-14s %8.2f%% %12lld %10.1f %9.1f\n", rows[i].method, 100 * rows[i].test_acc, (long long)rows[i].trainable,
             (double)rows[i].peak_bytes / 1048576.0, rows[i].images_per_s);
    printf("table: %s/compare.md\n", vkp_config_string(cfg, "output_dir"));
  }
  free(rows);
  cJSON_Delete(cfg);
  return st ? vkp_cli_fail("compare", st, err.msg) : VKP_EXIT_OK;
}
