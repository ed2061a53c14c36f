// classify_report.c — what a finished classification run leaves for people: plots/ (loss,
// accuracy, learning rate), confusion_matrix.png, misclassified.png, eval.json and report.html.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vkp_classify.h"
#include "vkp_config.h"
#include "vkp_json.h"
#include "vkp_metrics.h"
#include "vkp_plot.h"
#include "vkp_png.h"
#include "vkp_report.h"

static vkp_status save_png(vkp_image *img, const char *path, vkp_error *err) {
  vkp_status st = vkp_png_write(path, img, NULL, 0, err);
  vkp_image_free(img);
  return st;
}

static vkp_status line_plot(const vkp_metrics_log *log, const char *title, const char *ylabel, const char *const *keys,
                            const char *const *labels, int n, bool smooth, bool log_y, const char *path, vkp_error *err) {
  vkp_plot_series s[8];
  double *sm[4] = {0};
  int ns = 0;
  for (int i = 0; i < n; i++) {
    const vkp_metric_series *m = vkp_metrics_find(log, keys[i]);
    if (!m || m->n == 0) continue;
    if (smooth && m->n > 8 && ns + 2 <= 8) {
      sm[i] = malloc((size_t)m->n * sizeof *sm[i]);
      vkp_plot_smooth_ema(m->value, m->n, 0.9, sm[i]);
      s[ns++] = (vkp_plot_series){.label = NULL, .x = m->step, .y = m->value, .n = m->n, .color = VKP_PLOT_AUTO, .opacity = 0.3f};
      s[ns++] = (vkp_plot_series){.label = labels[i], .x = m->step, .y = sm[i], .n = m->n, .color = VKP_PLOT_AUTO};
    } else {
      s[ns++] = (vkp_plot_series){.label = labels[i], .x = m->step, .y = m->value, .n = m->n, .color = VKP_PLOT_AUTO,
                                  .style = m->n < 30 ? VKP_PLOT_LINE_MARKERS : VKP_PLOT_LINE};
    }
  }
  vkp_status st = VKP_OK;
  if (ns > 0) {
    // Raw and smoothed curves of one metric share a colour.
    for (int i = 0, c = 0; i < ns; i++) {
      s[i].color = vkp_plot_palette(c);
      if (s[i].label || i + 1 == ns || s[i + 1].label == NULL) c++;
    }
    vkp_line_chart ch = {.title = title, .x = {.label = "step"}, .y = {.label = ylabel, .log = log_y}, .series = s, .n_series = ns};
    vkp_image *img = NULL;
    st = vkp_plot_line(&ch, &img, NULL, err);
    if (!st) st = save_png(img, path, err);
  }
  for (int i = 0; i < 4; i++) free(sm[i]);
  return st;
}

static vkp_image *dataset_image(const vkp_dataset *ds, size_t i) {
  vkp_image *img = NULL;
  if (vkp_image_new(ds->widths[i], ds->heights[i], ds->channels, &img, NULL)) return NULL;
  memcpy(img->data, vkp_dataset_image(ds, i), (size_t)ds->widths[i] * ds->heights[i] * ds->channels);
  return img;
}

vkp_status vkp_classify_write_report(const char *run_dir, const cJSON *cfg, const vkp_train_summary *s,
                                     const vkp_eval_result *test, const vkp_classify_data *d, vkp_vit *v,
                                     vkp_error *err);
vkp_status vkp_classify_write_report(const char *run_dir, const cJSON *cfg, const vkp_train_summary *s,
                                     const vkp_eval_result *test, const vkp_classify_data *d, vkp_vit *v,
                                     vkp_error *err) {
  char path[1200], plots[1100];
  snprintf(plots, sizeof plots, "%s/plots", run_dir);
  mkdir(plots, 0755);
  snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
  vkp_metrics_log *log = NULL;
  VKP_TRY(vkp_metrics_read(path, &log, err));
  const char *loss_keys[] = {"loss", "val_loss"}, *loss_labels[] = {"train loss", "validation loss"};
  const char *acc_keys[] = {"val_accuracy", "val_top5"}, *acc_labels[] = {"validation accuracy", "validation top-5"};
  const char *lr_keys[] = {"lr"}, *lr_labels[] = {"learning rate"};
  char loss_png[1200], acc_png[1200], lr_png[1200], cm_png[1200], wrong_png[1200];
  snprintf(loss_png, sizeof loss_png, "%s/loss.png", plots);
  snprintf(acc_png, sizeof acc_png, "%s/accuracy.png", plots);
  snprintf(lr_png, sizeof lr_png, "%s/lr.png", plots);
  snprintf(cm_png, sizeof cm_png, "%s/confusion_matrix.png", run_dir);
  snprintf(wrong_png, sizeof wrong_png, "%s/misclassified.png", run_dir);
  vkp_status st = line_plot(log, "Loss", "cross-entropy", loss_keys, loss_labels, 2, true, false, loss_png, err);
  if (!st) st = line_plot(log, "Validation accuracy", "accuracy", acc_keys, acc_labels, 2, false, false, acc_png, err);
  if (!st) st = line_plot(log, "Learning rate", "lr", lr_keys, lr_labels, 1, false, false, lr_png, err);
  vkp_metrics_log_free(log);
  const vkp_dataset *tds = d->test;
  const char *const *names = tds ? (const char *const *)tds->class_names : NULL;
  if (!st && test && tds) {
    vkp_confusion_chart cc = {.title = "Confusion matrix (test set)", .n_classes = test->n_classes, .class_names = names,
                              .counts = test->confusion};
    vkp_image *img = NULL;
    st = vkp_plot_confusion(&cc, &img, err);
    if (!st) st = save_png(img, cm_png, err);
  }
  if (!st && test && tds && test->n_wrong > 0) {
    int n = test->n_wrong < 36 ? test->n_wrong : 36;
    vkp_image *imgs = calloc((size_t)n, sizeof *imgs), **owned = calloc((size_t)n, sizeof *owned);
    char **caps = calloc((size_t)n, sizeof *caps);
    uint32_t *colors = calloc((size_t)n, sizeof *colors);
    for (int i = 0; i < n && imgs && caps && colors; i++) {
      owned[i] = dataset_image(tds, test->wrong[i]);
      if (owned[i]) imgs[i] = *owned[i];
      caps[i] = malloc(128);
      snprintf(caps[i], 128, "%s\n-> %s", names[tds->labels[test->wrong[i]]], names[test->wrong_pred[i]]);
      colors[i] = VKP_RGB(0xB00020);
    }
    vkp_image_grid grid = {.title = "Misclassified test images (true -> predicted)", .images = imgs,
                           .captions = (const char *const *)caps, .caption_colors = colors, .n = n, .cols = 6};
    vkp_image *img = NULL;
    st = vkp_plot_image_grid(&grid, &img, err);
    if (!st) st = save_png(img, wrong_png, err);
    for (int i = 0; i < n; i++) vkp_image_free(owned[i]), free(caps[i]);
    free(imgs), free(owned), free(caps), free(colors);
  }
  // eval.json: the numbers behind the page.
  cJSON *ev = cJSON_CreateObject();
  cJSON_AddNumberToObject(ev, "steps", (double)s->steps);
  cJSON_AddNumberToObject(ev, "seconds", s->seconds);
  cJSON_AddNumberToObject(ev, "images_per_s", s->images_per_s);
  cJSON_AddNumberToObject(ev, "trainable_params", (double)s->trainable_params);
  cJSON_AddNumberToObject(ev, "total_params", (double)s->total_params);
  cJSON_AddNumberToObject(ev, "peak_device_bytes", (double)s->peak_device_bytes);
  cJSON_AddNumberToObject(ev, "graph_arena_bytes", (double)s->arena_bytes);
  cJSON_AddNumberToObject(ev, "best_val_accuracy", s->best_val_acc);
  if (test) {
    cJSON_AddNumberToObject(ev, "test_accuracy", test->accuracy);
    cJSON_AddNumberToObject(ev, "test_top5", test->top5);
    cJSON_AddNumberToObject(ev, "test_loss", test->loss);
    cJSON_AddNumberToObject(ev, "test_images", (double)test->count);
  }
  snprintf(path, sizeof path, "%s/eval.json", run_dir);
  if (!st) st = vkp_json_write_atomic(path, ev, err);
  cJSON_Delete(ev);
  if (st) return st;

  // report.html
  char title[256];
  const cJSON *peft = vkp_config_get(cfg, "peft");
  char methods[128] = "";
  const cJSON *item;
  cJSON_ArrayForEach(item, peft) {
    const char *m = vkp_config_string(item, "method");
    size_t l = strlen(methods);
    snprintf(methods + l, sizeof methods - l, "%s%s", l ? " + " : "", m ? m : "?");
  }
  snprintf(title, sizeof title, "ViT + %s on %s", methods, vkp_config_string(cfg, "data.train"));
  vkp_report *r = vkp_report_new(title, run_dir);
  char vals[3 + VKP_REPORT_RUN_ROWS][64];
  const char *keys[3 + VKP_REPORT_RUN_ROWS] = {"test accuracy", "test top-5", "best validation accuracy"};
  snprintf(vals[0], 64, test ? "%.2f%%" : "-", test ? 100 * test->accuracy : 0);
  snprintf(vals[1], 64, test ? "%.2f%%" : "-", test ? 100 * test->top5 : 0);
  snprintf(vals[2], 64, s->best_val_acc >= 0 ? "%.2f%%" : "-", 100 * s->best_val_acc);
  vkp_report_run_rows(&(vkp_report_run){s->trainable_params, s->total_params, s->steps, s->seconds, s->images_per_s,
                                        "images/s", s->peak_device_bytes, s->arena_bytes},
                      keys + 3, vals + 3);
  const char *vp[3 + VKP_REPORT_RUN_ROWS];
  for (int i = 0; i < 3 + VKP_REPORT_RUN_ROWS; i++) vp[i] = vals[i];
  st = vkp_report_add_section(r, "Summary", err);
  if (!st) st = vkp_report_add_kv(r, keys, vp, 3 + VKP_REPORT_RUN_ROWS, err);
  if (!st) st = vkp_report_add_section(r, "Training", err);
  struct stat sb;
  const char *imgs[3] = {loss_png, acc_png, lr_png}, *caps[3] = {"Loss", "Validation accuracy", "Learning rate"};
  for (int i = 0; i < 3 && !st; i++)
    if (stat(imgs[i], &sb) == 0) st = vkp_report_add_image(r, imgs[i], caps[i], err);
  if (!st && test && tds) {
    st = vkp_report_add_section(r, "Test set", err);
    if (!st && stat(cm_png, &sb) == 0) st = vkp_report_add_image(r, cm_png, "Confusion matrix", err);
    if (!st && stat(wrong_png, &sb) == 0) st = vkp_report_add_image(r, wrong_png, "Misclassified examples", err);
    int nc = test->n_classes;
    char **cells = calloc((size_t)nc * 4, sizeof *cells);
    for (int c = 0; c < nc && cells; c++) {
      int64_t support = 0;
      for (int k = 0; k < nc; k++) support += test->confusion[(size_t)c * nc + k];
      cells[c * 4] = strdup(names[c]);
      cells[c * 4 + 1] = malloc(32), snprintf(cells[c * 4 + 1], 32, "%.1f%%", 100 * test->precision[c]);
      cells[c * 4 + 2] = malloc(32), snprintf(cells[c * 4 + 2], 32, "%.1f%%", 100 * test->recall[c]);
      cells[c * 4 + 3] = malloc(32), snprintf(cells[c * 4 + 3], 32, "%lld", (long long)support);
    }
    const char *hdr[4] = {"class", "precision", "recall", "images"};
    if (!st && cells) st = vkp_report_add_table(r, "Per-class results (test set)", hdr, 4, (const char *const *)cells, nc, err);
    for (int i = 0; cells && i < nc * 4; i++) free(cells[i]);
    free(cells);
  }
  char *cfg_text = cJSON_Print(cfg);
  if (!st && cfg_text) st = vkp_report_add_json(r, "Configuration", cfg_text, err);
  free(cfg_text);
  snprintf(path, sizeof path, "%s/report.html", run_dir);
  if (!st) st = vkp_report_write(r, path, err);
  vkp_report_free(r);
  (void)v;
  return st;
}
