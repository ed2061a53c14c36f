// vkp_run_report.h — pieces of a training run's report.html that every trainer's report file
// needs (vision/classify_report.c, vlm/clip_train_report.c, diffusion/train_report.c): charts of
// metrics.jsonl series against the step, and the "lora + ia3" name of a config's `peft` list.
#ifndef VKP_RUN_REPORT_H
#define VKP_RUN_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "vkp_metrics.h"
#include "vkp_status.h"

#define VKP_METRIC_CHART_KEYS 4

// One chart of a run: up to four metrics of metrics.jsonl (keys, with their legend labels; a NULL
// key ends the list) against the step. `smooth` draws the first metric raw and faint under its
// moving average (noisy per-step values, vkp_plot_smooth_ema with weight 0.9) when it has more than
// 8 values; series of fewer than 30 values get markers.
typedef struct vkp_metric_chart {
  const char *file, *title, *ylabel;   // file: the PNG's name (the caller joins it to a folder)
  const char *keys[VKP_METRIC_CHART_KEYS], *labels[VKP_METRIC_CHART_KEYS];
  bool smooth;
  bool log_y;                          // logarithmic value axis
} vkp_metric_chart;

// Draws ch into the PNG at path (written atomically) when the log has any of its metrics; *drawn
// says whether it did (nothing is written otherwise). Errors: VKP_ERR_IO, VKP_ERR_OOM.
vkp_status vkp_metric_chart_draw(const vkp_metrics_log *log, const vkp_metric_chart *ch, const char *path, bool *drawn,
                                 vkp_error *err);

// The methods of cfg's `peft` list joined with " + " ("lora + ia3"; "?" for an entry without a
// method) into out (cap bytes, truncated).
void vkp_report_method_names(const cJSON *cfg, char *out, size_t cap);

#endif
