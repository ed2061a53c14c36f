// run_report.c — metric charts and method names for the trainers' report pages (vkp_run_report.h).
#include "vkp_run_report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_config.h"
#include "vkp_plot.h"
#include "vkp_png.h"

vkp_status vkp_metric_chart_draw(const vkp_metrics_log *log, const vkp_metric_chart *ch, const char *path, bool *drawn,
                                 vkp_error *err) {
  vkp_plot_series s[VKP_METRIC_CHART_KEYS + 1];
  double *ema = NULL;
  int ns = 0;
  for (int k = 0; k < VKP_METRIC_CHART_KEYS && ch->keys[k]; k++) {
    const vkp_metric_series *m = vkp_metrics_find(log, ch->keys[k]);
    if (!m || m->n == 0) continue;
    vkp_plot_series base = {.label = ch->labels[k], .x = m->step, .y = m->value, .n = m->n, .color = vkp_plot_palette(k),
                            .style = m->n < 30 ? VKP_PLOT_LINE_MARKERS : VKP_PLOT_LINE};
    if (k == 0 && ch->smooth && m->n > 8) {
      if (!(ema = malloc((size_t)m->n * sizeof *ema))) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of host memory", path);
      vkp_plot_smooth_ema(m->value, m->n, 0.9, ema);
      s[ns] = base, s[ns].label = NULL, s[ns].opacity = 0.3f, s[ns].style = VKP_PLOT_LINE, ns++;
      base.y = ema, base.style = VKP_PLOT_LINE;
    }
    s[ns++] = base;
  }
  *drawn = ns > 0;
  vkp_status st = VKP_OK;
  if (ns > 0) {
    vkp_line_chart lc = {.title = ch->title, .x = {.label = "step"}, .y = {.label = ch->ylabel, .log = ch->log_y},
                         .series = s, .n_series = ns};
    vkp_image *img = NULL;
    st = vkp_plot_line(&lc, &img, NULL, err);
    if (!st) st = vkp_png_write(path, img, NULL, 0, err);
    vkp_image_free(img);
  }
  free(ema);
  return st;
}

void vkp_report_method_names(const cJSON *cfg, char *out, size_t cap) {
  out[0] = '\0';
  const cJSON *item;
  cJSON_ArrayForEach(item, vkp_config_get(cfg, "peft")) {
    const char *m = vkp_config_string(item, "method");
    size_t l = strlen(out);
    snprintf(out + l, cap - l, "%s%s", l ? " + " : "", m ? m : "?");
  }
}
