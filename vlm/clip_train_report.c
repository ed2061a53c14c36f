// clip_train_report.c — what a finished CLIP run leaves for people: plots/ (loss, learning rate,
// logit scale, validation metrics), eval.json and report.html (with a place for the retrieval
// gallery of vkp_clip_eval.h).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vkp_clip_train.h"
#include "vkp_config.h"
#include "vkp_fileio.h"
#include "vkp_json.h"
#include "vkp_metrics.h"
#include "vkp_plot.h"
#include "vkp_png.h"
#include "vkp_report.h"
#include "vkp_run_report.h"

static void add_number(cJSON *o, const char *key, double v) {
  if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
}

static vkp_status write_eval_json(const char *run_dir, const vkp_clip_train_summary *s, vkp_error *err) {
  cJSON *ev = cJSON_CreateObject();
  if (!ev) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  add_number(ev, "steps", (double)s->steps);
  add_number(ev, "seconds", s->seconds);
  add_number(ev, "images_per_s", s->images_per_s);
  add_number(ev, "trainable_params", (double)s->trainable_params);
  add_number(ev, "total_params", (double)s->total_params);
  add_number(ev, "peak_device_bytes", (double)s->peak_device_bytes);
  add_number(ev, "graph_arena_bytes", (double)s->arena_bytes);
  add_number(ev, "final_loss", s->final_loss);
  add_number(ev, "logit_scale", s->logit_scale);
  add_number(ev, "val_loss", s->val_loss);
  add_number(ev, "val_accuracy", s->val_accuracy);
  add_number(ev, "val_i2t_r1", s->val_i2t_r1);
  add_number(ev, "val_t2i_r1", s->val_t2i_r1);
  add_number(ev, "test_loss", s->test_loss);
  add_number(ev, "test_accuracy", s->test_accuracy);
  add_number(ev, "test_i2t_r1", s->test_i2t_r1);
  add_number(ev, "test_t2i_r1", s->test_t2i_r1);
  char path[1200];
  snprintf(path, sizeof path, "%s/eval.json", run_dir);
  vkp_status st = vkp_json_write_atomic(path, ev, err);
  cJSON_Delete(ev);
  return st;
}

static void fmt(char *buf, const char *f, double v, double mul) {
  if (isfinite(v)) snprintf(buf, 64, f, mul * v);
  else snprintf(buf, 64, "-");
}

vkp_status vkp_clip_train_report(const char *run_dir, const cJSON *cfg, const vkp_clip_train_summary *s,
                                 const char *const *gallery, const char *const *gallery_captions, int n_gallery,
                                 vkp_error *err) {
  bool probe = !strcmp(vkp_config_string(cfg, "train.objective"), "linear_probe");
  char plots[1100], path[1200];
  snprintf(plots, sizeof plots, "%s/plots", run_dir);
  VKP_TRY(vkp_dir_create(plots, err));
  snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
  vkp_metrics_log *log = NULL;
  VKP_TRY(vkp_metrics_read(path, &log, err));
  const vkp_metric_chart charts[] = {
      {"loss.png", "Loss", probe ? "cross-entropy" : "symmetric InfoNCE", {"loss", "val_loss"}, {"train loss", "validation loss"}, true, false},
      {"val.png", probe ? "Accuracy" : "Retrieval", probe ? "accuracy" : "recall",
       {probe ? "train_accuracy" : "train_r1", probe ? "val_accuracy" : "val_i2t_r1", "val_t2i_r1", "val_i2t_r5"},
       {probe ? "train (in batch)" : "train R@1 (in batch)", probe ? "validation" : "val image->text R@1",
        "val text->image R@1", "val image->text R@5"}, false, false},
      {"lr.png", "Learning rate", "lr", {"lr"}, {"learning rate"}, false, false},
      {"logit_scale.png", "Logit scale (log of the temperature's inverse)", "logit_scale", {"logit_scale"}, {"logit_scale"}, false, false},
  };
  const int n_charts = (int)(sizeof charts / sizeof *charts);
  char files[4][1300];
  bool drawn[4] = {false};
  vkp_status st = VKP_OK;
  for (int i = 0; i < n_charts && !st; i++) {
    snprintf(files[i], sizeof files[i], "%s/%s", plots, charts[i].file);
    st = vkp_metric_chart_draw(log, &charts[i], files[i], &drawn[i], err);
  }
  vkp_metrics_log_free(log);
  if (!st) st = write_eval_json(run_dir, s, err);
  if (st) return st;

  char title[256], methods[128];
  vkp_report_method_names(cfg, methods, sizeof methods);
  snprintf(title, sizeof title, "CLIP %s (%s) on %s", probe ? "linear probe" : "contrastive", methods,
           vkp_config_string(cfg, "data.train"));
  vkp_report *r = vkp_report_new(title, run_dir);
  char v[5 + VKP_REPORT_RUN_ROWS][64];
  const char *keys[5 + VKP_REPORT_RUN_ROWS] = {probe ? "test accuracy" : "test loss",
                                               probe ? "validation accuracy" : "validation loss",
                                               "validation image->text R@1", "final training loss", "logit scale (exp)"};
  fmt(v[0], probe ? "%.2f%%" : "%.4f", probe ? s->test_accuracy : s->test_loss, probe ? 100 : 1);
  fmt(v[1], probe ? "%.2f%%" : "%.4f", probe ? s->val_accuracy : s->val_loss, probe ? 100 : 1);
  fmt(v[2], "%.2f%%", s->val_i2t_r1, 100);
  fmt(v[3], "%.4f", s->final_loss, 1);
  fmt(v[4], "%.2f", exp(s->logit_scale), 1);
  vkp_report_run_rows(&(vkp_report_run){s->trainable_params, s->total_params, s->steps, s->seconds, s->images_per_s,
                                        "pairs/s", s->peak_device_bytes, s->arena_bytes},
                      keys + 5, v + 5);
  const char *vp[5 + VKP_REPORT_RUN_ROWS];
  for (int i = 0; i < 5 + VKP_REPORT_RUN_ROWS; i++) vp[i] = v[i];
  st = vkp_report_add_section(r, "Summary", err);
  if (!st) st = vkp_report_add_kv(r, keys, vp, 5 + VKP_REPORT_RUN_ROWS, err);
  if (!st) st = vkp_report_add_section(r, "Training", err);
  for (int i = 0; i < n_charts && !st; i++)
    if (drawn[i]) st = vkp_report_add_image(r, files[i], charts[i].title, err);
  // The retrieval gallery (vkp_clip_eval.h): held-out captions with their top-5 images.
  if (!st && n_gallery > 0) {
    st = vkp_report_add_section(r, "Retrieval gallery", err);
    for (int i = 0; i < n_gallery && !st; i++)
      st = vkp_report_add_image(r, gallery[i], gallery_captions ? gallery_captions[i] : NULL, err);
  }
  char *cfg_text = cJSON_Print(cfg);
  if (!st && cfg_text) st = vkp_report_add_json(r, "Configuration", cfg_text, err);
  free(cfg_text);
  snprintf(path, sizeof path, "%s/report.html", run_dir);
  if (!st) st = vkp_report_write(r, path, err);
  vkp_report_free(r);
  return st;
}
