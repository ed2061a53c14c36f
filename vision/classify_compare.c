// classify_compare.c — `vkpeft compare`: the same base, data and budget fine-tuned with every PEFT
// method; a table (markdown + JSON) and a plot of accuracy against trainable parameters.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vkp_classify.h"
#include "vkp_compare.h"
#include "vkp_config.h"
#include "vkp_fileio.h"
#include "vkp_json.h"
#include "vkp_plot.h"
#include "vkp_png.h"

// Each entry: a name and the `peft` list it trains (the classifier head trains in every method,
// as in the usual transfer setting; linear_probe trains only the head).
static const struct { const char *name, *peft; } methods[] = {
    {"lora", "[{\"method\":\"lora\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"query\",\"value\"],\"modules_to_save\":[\"classifier\"]}]"},
    {"lora_all", "[{\"method\":\"lora\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"query\",\"key\",\"value\",\"attention.output.dense\",\"intermediate.dense\",\"output.dense\"],\"modules_to_save\":[\"classifier\"]}]"},
    {"rslora", "[{\"method\":\"rslora\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"query\",\"value\"],\"modules_to_save\":[\"classifier\"]}]"},
    {"dora", "[{\"method\":\"dora\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"query\",\"value\"],\"modules_to_save\":[\"classifier\"]}]"},
    {"loha", "[{\"method\":\"loha\",\"r\":8,\"alpha\":8,\"target_modules\":[\"query\",\"value\"],\"modules_to_save\":[\"classifier\"]}]"},
    {"lokr", "[{\"method\":\"lokr\",\"r\":8,\"alpha\":8,\"target_modules\":[\"query\",\"value\"],\"modules_to_save\":[\"classifier\"]}]"},
    {"ia3", "[{\"method\":\"ia3\",\"target_modules\":[\"key\",\"value\",\"output.dense\"],\"feedforward_modules\":[\"output.dense\"],\"modules_to_save\":[\"classifier\"]}]"},
    {"vera", "[{\"method\":\"vera\",\"r\":64,\"target_modules\":[\"query\",\"value\"],\"modules_to_save\":[\"classifier\"]}]"},
    {"houlsby", "[{\"method\":\"bottleneck\",\"bottleneck\":16,\"placement\":\"houlsby\",\"modules_to_save\":[\"classifier\"]}]"},
    {"pfeiffer", "[{\"method\":\"bottleneck\",\"bottleneck\":16,\"placement\":\"pfeiffer\",\"modules_to_save\":[\"classifier\"]}]"},
    {"adaptformer", "[{\"method\":\"adaptformer\",\"bottleneck\":16,\"adapter_scale\":0.1,\"modules_to_save\":[\"classifier\"]}]"},
    {"vpt_shallow", "[{\"method\":\"vpt\",\"num_tokens\":10,\"modules_to_save\":[\"classifier\"]}]"},
    {"vpt_deep", "[{\"method\":\"vpt\",\"num_tokens\":10,\"deep\":true,\"modules_to_save\":[\"classifier\"]}]"},
    {"prefix", "[{\"method\":\"prefix\",\"num_virtual_tokens\":10,\"modules_to_save\":[\"classifier\"]}]"},
    {"bitfit", "[{\"method\":\"bitfit\",\"modules_to_save\":[\"classifier\"]}]"},
    {"ln_tuning", "[{\"method\":\"ln_tuning\",\"modules_to_save\":[\"classifier\"]}]"},
    {"masked", "[{\"method\":\"masked\",\"density\":0.02,\"mask\":\"magnitude\",\"target_modules\":[\"query\",\"key\",\"value\",\"intermediate.dense\",\"output.dense\"],\"modules_to_save\":[\"classifier\"]}]"},
    {"hybrid", "[{\"method\":\"lora\",\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"query\",\"value\"],\"modules_to_save\":[\"classifier\"]},{\"method\":\"bitfit\"},{\"method\":\"vpt\",\"num_tokens\":5}]"},
    {"full", "[{\"method\":\"full\"}]"},
    {"linear_probe", "[{\"method\":\"linear_probe\",\"modules_to_save\":[\"classifier\"]}]"},
};

int vkp_compare_method_count(void) { return (int)(sizeof methods / sizeof *methods); }
const char *vkp_compare_method_name(int i) { return i >= 0 && i < vkp_compare_method_count() ? methods[i].name : NULL; }

const char *vkp_compare_method_peft(int i) { return i >= 0 && i < vkp_compare_method_count() ? methods[i].peft : NULL; }

int vkp_compare_method_find(const char *name, size_t len) {
  for (int i = 0; i < vkp_compare_method_count(); i++)
    if (strlen(methods[i].name) == len && !strncmp(methods[i].name, name, len)) return i;
  return -1;
}

static int find_method(const char *name) { return vkp_compare_method_find(name, strlen(name)); }

vkp_status vkp_compare_run(const cJSON *base_cfg, const char *const *only, int n_only, bool quiet, vkp_compare_row *rows,
                           int *n_rows, vkp_error *err) {
  *n_rows = 0;
  const char *out = vkp_config_string(base_cfg, "output_dir");
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'output_dir' is required");
  for (int k = 0; k < n_only; k++)
    if (find_method(only[k]) < 0) return vkp_error_set(err, VKP_ERR_INVALID, "--methods: unknown method '%s'", only[k]);
  int n = n_only ? n_only : vkp_compare_method_count();
  for (int k = 0; k < n; k++) {
    int m = n_only ? find_method(only[k]) : k;
    cJSON *cfg = cJSON_Duplicate(base_cfg, true);
    char dir[1200], set[1400];
    snprintf(dir, sizeof dir, "%s/%s", out, methods[m].name);
    snprintf(set, sizeof set, "output_dir=%s", dir);
    vkp_status st = vkp_config_apply_set(cfg, set, err);
    cJSON_ReplaceItemInObjectCaseSensitive(cfg, "peft", cJSON_Parse(methods[m].peft));
    // A fresh device context per method, so its peak memory is its own.
    vkp_ctx *ctx = NULL;
    if (!st) st = vkp_ctx_new(NULL, &ctx, err);
    vkp_train_summary s = {0};
    if (!quiet) printf("== %s\n", methods[m].name);
    if (!st) st = vkp_classify_train(ctx, cfg, NULL, quiet, &s, err);
    vkp_ctx_free(ctx);
    cJSON_Delete(cfg);
    if (st) {
      char msg[VKP_ERROR_MSG_MAX];
      snprintf(msg, sizeof msg, "%s", err->msg);
      return vkp_error_set(err, st, "compare: method %s: %s", methods[m].name, msg);
    }
    vkp_compare_row *r = &rows[(*n_rows)++];
    snprintf(r->method, sizeof r->method, "%s", methods[m].name);
    r->test_acc = s.test_acc;
    r->best_val_acc = s.best_val_acc;
    r->trainable = s.trainable_params;
    r->total = s.total_params;
    r->peak_bytes = s.peak_device_bytes;
    r->arena_bytes = s.arena_bytes;
    r->images_per_s = s.images_per_s;
    r->seconds = s.seconds;
  }
  return VKP_OK;
}

vkp_status vkp_compare_write(const char *out_dir, const char *title, const vkp_compare_row *rows, int n, vkp_error *err) {
  // Markdown table.
  size_t cap = 4096 + (size_t)n * 256;
  char *md = malloc(cap);
  if (!md) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  int o = snprintf(md, cap, "| method | test accuracy | trainable params | %% of model | peak device memory (MiB) | graph arena (MiB) | images/s |\n|---|---:|---:|---:|---:|---:|---:|\n");
  for (int i = 0; i < n; i++)
    o += snprintf(md + o, cap - (size_t)o, "| %s | %.2f%% | %lld | %.2f%% | %.1f | %.1f | %.1f |\n", rows[i].method,
                  100 * rows[i].test_acc, (long long)rows[i].trainable, 100.0 * (double)rows[i].trainable / (double)rows[i].total,
                  (double)rows[i].peak_bytes / 1048576.0, (double)rows[i].arena_bytes / 1048576.0, rows[i].images_per_s);
  char path[1200];
  snprintf(path, sizeof path, "%s/compare.md", out_dir);
  const void *chunks[1] = {md};
  size_t sizes[1] = {(size_t)o};
  vkp_status st = vkp_file_write_atomic(path, chunks, sizes, 1, err);
  free(md);
  // JSON.
  cJSON *arr = cJSON_CreateArray();
  for (int i = 0; i < n; i++) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "method", rows[i].method);
    cJSON_AddNumberToObject(r, "test_accuracy", rows[i].test_acc);
    cJSON_AddNumberToObject(r, "best_val_accuracy", rows[i].best_val_acc);
    cJSON_AddNumberToObject(r, "trainable_params", (double)rows[i].trainable);
    cJSON_AddNumberToObject(r, "total_params", (double)rows[i].total);
    cJSON_AddNumberToObject(r, "peak_device_bytes", (double)rows[i].peak_bytes);
    cJSON_AddNumberToObject(r, "graph_arena_bytes", (double)rows[i].arena_bytes);
    cJSON_AddNumberToObject(r, "images_per_s", rows[i].images_per_s);
    cJSON_AddNumberToObject(r, "seconds", rows[i].seconds);
    cJSON_AddItemToArray(arr, r);
  }
  snprintf(path, sizeof path, "%s/compare.json", out_dir);
  if (!st) st = vkp_json_write_atomic(path, arr, err);
  cJSON_Delete(arr);
  // Accuracy vs trainable parameters.
  vkp_scatter_point *pts = calloc((size_t)n, sizeof *pts);
  for (int i = 0; i < n && pts; i++)
    pts[i] = (vkp_scatter_point){.x = (double)(rows[i].trainable > 0 ? rows[i].trainable : 1), .y = 100 * rows[i].test_acc,
                                 .label = rows[i].method, .color = VKP_PLOT_AUTO};
  vkp_scatter_chart ch = {.title = title, .width = 900, .height = 560, .x = {.label = "trainable parameters", .log = true},
                          .y = {.label = "test accuracy (%)"}, .points = pts, .n_points = n};
  vkp_image *img = NULL;
  if (!st && pts) st = vkp_plot_scatter(&ch, &img, NULL, err);
  snprintf(path, sizeof path, "%s/compare.png", out_dir);
  if (!st) st = vkp_png_write(path, img, NULL, 0, err);
  vkp_image_free(img);
  free(pts);
  return st;
}
