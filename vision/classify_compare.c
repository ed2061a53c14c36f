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
#include "vkp_peft_method.h"
#include "vkp_json.h"
#include "vkp_plot.h"
#include "vkp_png.h"

// The methods are the presets of the PEFT method table (vkp_peft_method.h: every method's
// examples, in table order), then one hybrid. Presets name modules by role; a ViT's are below. The
// classifier head trains in every method but full, as in the usual transfer setting.
static const char *vit_role(void *user, const char *role) {
  (void)user;
  static const char *const roles[][2] = {{"q", "query"},
                                         {"k", "key"},
                                         {"v", "value"},
                                         {"o", "attention.output.dense"},
                                         {"mlp_in", "intermediate.dense"},
                                         {"mlp_out", "output.dense"},
                                         {"head", "classifier"}};
  for (size_t i = 0; i < sizeof roles / sizeof *roles; i++)
    if (!strcmp(roles[i][0], role)) return roles[i][1];
  return NULL;
}

// Several adapters on one model: a small LoRA, BitFit and shallow prompts.
static const char *const hybrid[] = {
    "{\"method\":\"lora\",\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"@q\",\"@v\"],\"modules_to_save\":[\"@head\"]}",
    "{\"method\":\"bitfit\"}", "{\"method\":\"vpt\",\"num_tokens\":5}"};
#define HYBRID_NAME "hybrid"

int vkp_compare_method_count(void) { return vkp_peft_preset_count() + 1; }

const char *vkp_compare_method_name(int i) {
  if (i == vkp_peft_preset_count()) return HYBRID_NAME;
  const vkp_peft_preset *p = vkp_peft_preset_at(i);
  return p ? p->name : NULL;
}

bool vkp_compare_method_default(int i) {
  const vkp_peft_preset *p = vkp_peft_preset_at(i);
  return i == vkp_peft_preset_count() || (p && !p->extra);
}

cJSON *vkp_compare_method_peft(int i, vkp_error *err) {
  int n = vkp_peft_preset_count();
  if (i < 0 || i > n) {
    vkp_error_set(err, VKP_ERR_INVALID, "compare: no method %d", i);
    return NULL;
  }
  const char *const *entries = i == n ? hybrid : &vkp_peft_preset_at(i)->config;
  int count = i == n ? (int)(sizeof hybrid / sizeof *hybrid) : 1;
  cJSON *list = cJSON_CreateArray();
  for (int k = 0; list && k < count; k++) {
    cJSON *e = NULL;
    if (vkp_peft_preset_resolve(entries[k], vit_role, NULL, &e, err)) {
      cJSON_Delete(list);
      return NULL;
    }
    cJSON_AddItemToArray(list, e);
  }
  if (!list) vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  return list;
}

int vkp_compare_method_find(const char *name, size_t len) {
  if (strlen(HYBRID_NAME) == len && !strncmp(HYBRID_NAME, name, len)) return vkp_peft_preset_count();
  return vkp_peft_preset_find(name, len);
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
    snprintf(dir, sizeof dir, "%s/%s", out, vkp_compare_method_name(m));
    snprintf(set, sizeof set, "output_dir=%s", dir);
    vkp_status st = vkp_config_apply_set(cfg, set, err);
    cJSON *peft = st ? NULL : vkp_compare_method_peft(m, err);
    if (!st && !peft) st = err->status;
    if (peft) cJSON_ReplaceItemInObjectCaseSensitive(cfg, "peft", peft);
    // A fresh device context per method, so its peak memory is its own.
    vkp_ctx *ctx = NULL;
    if (!st) st = vkp_ctx_new(NULL, &ctx, err);
    vkp_train_summary s = {0};
    if (!quiet) printf("== %s\n", vkp_compare_method_name(m));
    if (!st) st = vkp_classify_train(ctx, cfg, NULL, quiet, &s, err);
    vkp_ctx_free(ctx);
    cJSON_Delete(cfg);
    if (st) {
      char msg[VKP_ERROR_MSG_MAX];
      snprintf(msg, sizeof msg, "%s", err->msg);
      return vkp_error_set(err, st, "compare: method %s: %s", vkp_compare_method_name(m), msg);
    }
    vkp_compare_row *r = &rows[(*n_rows)++];
    snprintf(r->method, sizeof r->method, "%s", vkp_compare_method_name(m));
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
