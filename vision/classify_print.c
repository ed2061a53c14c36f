// classify_print.c — prints an evaluation result as a table or one JSON object (`vkpeft eval`).
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "vkp_classify.h"

#include <cjson/cJSON.h>

void vkp_classify_print_eval(const vkp_eval_result *res, const char *const *class_names, const char *data, bool json,
                             FILE *f) {
  if (json) {   // cJSON does the escaping of class names
    cJSON *o = cJSON_CreateObject(), *pc = cJSON_CreateArray();
    cJSON_AddNumberToObject(o, "images", (double)res->count);
    cJSON_AddNumberToObject(o, "accuracy", res->accuracy);
    cJSON_AddNumberToObject(o, "top5", res->top5);
    cJSON_AddNumberToObject(o, "loss", res->loss);
    cJSON_AddItemToObject(o, "per_class", pc);
    for (int c = 0; c < res->n_classes; c++) {
      cJSON *e = cJSON_CreateObject();
      cJSON_AddStringToObject(e, "class", class_names[c]);
      cJSON_AddNumberToObject(e, "precision", res->precision[c]);
      cJSON_AddNumberToObject(e, "recall", res->recall[c]);
      cJSON_AddItemToArray(pc, e);
    }
    char *text = cJSON_PrintUnformatted(o);
    if (text) fprintf(f, "%s\n", text);
    free(text);
    cJSON_Delete(o);
    return;
  }
  fprintf(f, "%s: %lld images\naccuracy %.2f%%  top-5 %.2f%%  loss %.4f\n\n%-20s %9s %9s\n", data, (long long)res->count,
          100 * res->accuracy, 100 * res->top5, res->loss, "class", "precision", "recall");
  for (int c = 0; c < res->n_classes; c++)
    fprintf(f, "%-20s %8.2f%% %8.2f%%\n", class_names[c], 100 * res->precision[c], 100 * res->recall[c]);
  fprintf(f, "\nconfusion matrix (rows: true class, columns: predicted)\n");
  for (int a = 0; a < res->n_classes; a++) {
    for (int b = 0; b < res->n_classes; b++) fprintf(f, "%6lld", (long long)res->confusion[a * res->n_classes + b]);
    fprintf(f, "\n");
  }
}
