// cmd_eval.c — `vkpeft eval --model DIR [--adapter DIR[:scale]]... --data SPEC [--batch N] [--json]`.
#include <stdio.h>
#include <string.h>

#include "cli_model.h"
#include "vkp_classify.h"
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
  vkp_vit *v = NULL;
  vkp_data_transform tf;
  vkp_dataset *ds = NULL;
  vkp_eval_result res = {0};
  const char *names[256];
  vkp_status st = vkp_cli_model_load(ctx, &cm, &v, &tf, &err);
  for (int c = 0; !st && c < v->cfg.num_labels; c++) names[c] = v->cfg.labels[c];
  if (!st) st = vkp_classify_load_source(data, v->cfg.num_channels, v->cfg.image_size, NULL, 0, &ds, &err);
  if (!st) st = vkp_classify_evaluate(v, ds, NULL, 0, &tf, batch, &res, &err);
  if (!st && json) {
    printf("{\"images\": %lld, \"accuracy\": %.6f, \"top5\": %.6f, \"loss\": %.6f, \"per_class\": [", (long long)res.count,
           res.accuracy, res.top5, res.loss);
    for (int c = 0; c < res.n_classes; c++)
      printf("%s{\"class\": \"%s\", \"precision\": %.6f, \"recall\": %.6f}", c ? ", " : "", c < ds->n_classes ? ds->class_names[c] : names[c],
             res.precision[c], res.recall[c]);
    printf("]}\n");
  } else if (!st) {
    printf("%s: %lld images\naccuracy %.2f%%  top-5 %.2f%%  loss %.4f\n\n%-20s %9s %9s\n", data, (long long)res.count,
           100 * res.accuracy, 100 * res.top5, res.loss, "class", "precision", "recall");
    for (int c = 0; c < res.n_classes; c++)
      printf("%-20s %8.2f%% %8.2f%%\n", c < ds->n_classes ? ds->class_names[c] : names[c], 100 * res.precision[c], 100 * res.recall[c]);
    printf("\nconfusion matrix (rows: true class, columns: predicted)\n");
    for (int a = 0; a < res.n_classes; a++) {
      for (int b = 0; b < res.n_classes; b++) printf("%6lld", (long long)res.confusion[a * res.n_classes + b]);
      printf("\n");
    }
  }
  vkp_eval_result_free(&res);
  vkp_dataset_free(ds);
  vkp_vit_free(v);
  vkp_ctx_free(ctx);
  return st ? vkp_cli_fail("eval", st, err.msg) : VKP_EXIT_OK;
}
