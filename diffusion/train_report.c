// train_report.c — what a diffusion run shows people, rewritten at every checkpoint and at the end
// (each file atomically): plots/loss.png (the plain MSE per logged step, the objective when min-SNR
// weighting or the loss mask makes it differ, the validation loss at its steps), plots/lr.png, and
// report.html: the summary (final losses, EMA, latents, the run rows), the plots, the sample timeline
// (every samples/step-NNNNNN.png in step order; rows: adapters off, on, EMA), links to the adapter
// files (the final ones once written, else the newest checkpoint's) and the configuration.
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train_internal.h"
#include "vkp_config.h"
#include "vkp_fileio.h"
#include "vkp_report.h"
#include "vkp_run_report.h"

// Sample grids are embedded up to this many bytes in all; later ones are linked (a long run's page
// stays openable).
#define EMBED_MAX ((size_t)64 << 20)

// ---- the sample timeline ----------------------------------------------------------------------------

typedef struct sample_file {
  long long step;
  char name[40];   // "step-000010.png"
} sample_file;

static int by_step(const void *a, const void *b) {
  long long x = ((const sample_file *)a)->step, y = ((const sample_file *)b)->step;
  return (x > y) - (x < y);
}

// The grids of dir/samples in step order: a new array (free()) of *n.
static vkp_status list_samples(const char *dir, sample_file **out, int *n, vkp_error *err) {
  char path[1200];
  snprintf(path, sizeof path, "%s/samples", dir);
  *out = NULL, *n = 0;
  DIR *d = opendir(path);
  if (!d) return VKP_OK;   // no grids (yet)
  int cap = 0;
  struct dirent *e;
  vkp_status st = VKP_OK;
  while (!st && (e = readdir(d))) {
    long long step;
    int used = 0;
    if (sscanf(e->d_name, "step-%lld.png%n", &step, &used) != 1 || used != (int)strlen(e->d_name) || strlen(e->d_name) >= 40) continue;
    if (*n == cap) {
      sample_file *g = realloc(*out, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *g);
      if (!g) {
        st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
        break;
      }
      *out = g;
    }
    (*out)[*n].step = step;
    snprintf((*out)[*n].name, sizeof (*out)[*n].name, "%s", e->d_name);
    (*n)++;
  }
  closedir(d);
  if (*n > 1) qsort(*out, (size_t)*n, sizeof **out, by_step);
  return st;
}

static vkp_status add_samples(vkp_dtrainer *t, vkp_report *r, vkp_error *err) {
  sample_file *files = NULL;
  int n = 0;
  VKP_TRY(list_samples(t->dir, &files, &n, err));
  vkp_status st = n ? vkp_report_add_section(r, "Samples", err) : VKP_OK;
  char text[1024];
  int len = snprintf(text, sizeof text, "Rows: the adapters off (the frozen base), on%s. Columns: the prompts of samples.prompts,",
                     t->ema.decay > 0 ? ", their EMA" : "");
  const cJSON *p;
  cJSON_ArrayForEach(p, vkp_config_get(t->cfg, "samples.prompts")) if (len < (int)sizeof text)
      len += snprintf(text + len, sizeof text - (size_t)len, " \"%s\"", p->valuestring);
  if (!st && n) st = vkp_report_add_text(r, text, err);
  size_t embedded = 0;
  for (int i = 0; i < n && !st; i++) {
    char path[1300], rel[64], cap[128];
    snprintf(path, sizeof path, "%s/samples/%s", t->dir, files[i].name);
    snprintf(rel, sizeof rel, "samples/%s", files[i].name);
    snprintf(cap, sizeof cap, "step %lld (%s)", files[i].step, rel);
    struct stat sb;
    embedded += stat(path, &sb) ? 0 : (size_t)sb.st_size;
    if (embedded <= EMBED_MAX) st = vkp_report_add_image(r, path, cap, err);
    else st = vkp_report_add_links(r, (const char *const[]){rel}, NULL, (const char *const[]){cap}, 1, err);
  }
  free(files);
  return st;
}

// ---- adapter files ----------------------------------------------------------------------------------

static vkp_status add_adapter_links(vkp_dtrainer *t, vkp_report *r, bool final, vkp_error *err) {
  static const char *const what[VKP_DTRAIN_FORMATS] = {"HF PEFT folder (adapter_config.json + adapter_model.safetensors)",
                                                       "kohya (A1111, ComfyUI, stable-diffusion.cpp)",
                                                       "diffusers (load_lora_weights)"};
  // The final files once written, else the newest checkpoint's (the one of this step).
  char ck[VKP_CHECKPOINT_PATH_MAX], base[VKP_CHECKPOINT_PATH_MAX + 2], name[160], full[VKP_CHECKPOINT_PATH_MAX + 300];
  const char *where = "";
  if (!final) {
    vkp_checkpoint_path(t->dir, t->step, ck, sizeof ck);
    size_t dl = strlen(t->dir);
    where = !strncmp(ck, t->dir, dl) && ck[dl] == '/' ? ck + dl + 1 : ck;
  }
  snprintf(base, sizeof base, "%s%s", where, *where ? "/" : "");
  int na = vkp_peft_count(t->unet->model), n = 0, cap = 2 * VKP_DTRAIN_FORMATS * na + 1;
  char **hrefs = calloc((size_t)cap, sizeof *hrefs), **notes = calloc((size_t)cap, sizeof *notes);
  vkp_status st = hrefs && notes ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (int ema = 0; ema < 1 + (t->ema.decay > 0) && !st; ema++)
    for (int f = 0; f < VKP_DTRAIN_FORMATS && !st; f++)
      for (int k = 0; k < na && !st; k++) {
        vkp_dtrain_adapter_name(t, (vkp_dtrain_format)f, k, ema, name, sizeof name);
        snprintf(full, sizeof full, "%s/%s%s", t->dir, base, name);
        struct stat sb;
        if (stat(full, &sb)) continue;
        size_t hl = strlen(base) + strlen(name) + 2, nl = strlen(what[f]) + 64;
        if (!(hrefs[n] = malloc(hl)) || !(notes[n] = malloc(nl))) {
          st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
          n++;
          break;
        }
        snprintf(hrefs[n], hl, "%s%s%s", base, name, f == VKP_DTRAIN_PEFT ? "/" : "");
        snprintf(notes[n], nl, "%s%s", ema ? "EMA weights, " : "", what[f]);
        n++;
      }
  snprintf(full, sizeof full, "%s/pipeline", t->dir);   // a whole new pipeline (train_pipeline.c), once written
  struct stat sb;
  if (!st && final && n < cap && !stat(full, &sb)) {
    hrefs[n] = strdup("pipeline/"), notes[n] = strdup("the trained pipeline folder (vkpeft generate --model)");
    if (!hrefs[n++] || !notes[n - 1]) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  if (!st) st = vkp_report_add_section(r, "Adapter files", err);
  char text[200];
  snprintf(text, sizeof text, *where ? "Training, at step %lld: the checkpoint's files (the final ones are written at the end)."
                                     : "The final adapters of step %lld.", (long long)t->step);
  if (!st) st = vkp_report_add_text(r, n ? text : "No adapter files yet.", err);
  if (!st && n) st = vkp_report_add_links(r, (const char *const *)hrefs, NULL, (const char *const *)notes, n, err);
  for (int i = 0; i < n; i++) free(hrefs[i]), free(notes[i]);
  free(hrefs), free(notes);
  return st;
}

// ---- the page -------------------------------------------------------------------------------------------

static void fmt(char *buf, const char *f, double v) {
  if (isfinite(v)) snprintf(buf, 64, f, v);
  else snprintf(buf, 64, "-");
}

static vkp_status add_summary(vkp_dtrainer *t, vkp_report *r, vkp_error *err) {
  enum { N = 5 };
  char v[N + VKP_REPORT_RUN_ROWS][64];
  const char *keys[N + VKP_REPORT_RUN_ROWS] = {"final training loss (MSE)", "final objective", "validation loss",
                                               "EMA of the adapter weights", "latents"};
  fmt(v[0], "%.5f", t->last_loss);
  fmt(v[1], "%.5f", t->last_wloss);
  if (t->min_snr_gamma > 0) snprintf(v[1] + strlen(v[1]), 64 - strlen(v[1]), " (min-SNR γ %g)", t->min_snr_gamma);
  fmt(v[2], "%.5f", t->last_val);
  if (isfinite(t->last_val)) snprintf(v[2] + strlen(v[2]), 64 - strlen(v[2]), " (%zu images)", t->n_val);
  if (t->ema.decay > 0) snprintf(v[3], 64, "decay %g%s", t->ema.decay, t->ema.warmup ? ", warmup (1+s)/(10+s)" : "");
  else snprintf(v[3], 64, "off");
  snprintf(v[4], 64, "%lld encoded, %lld from the cache", (long long)t->latents_encoded, (long long)t->latents_reused);
  vkp_peft_report rep = vkp_peft_get_report(t->unet->model);
  double secs, ips;
  vkp_trainer_loop_rate(&t->loop, &secs, &ips);
  vkp_report_run_rows(&(vkp_report_run){rep.trainable_params, rep.total_params, t->step, secs, ips, "images/s", vkp_ctx_memory_peak(t->ctx), vkp_graph_get_stats(t->tg.g).arena_bytes},
                      keys + N, v + N);
  const char *vp[N + VKP_REPORT_RUN_ROWS];
  for (int i = 0; i < N + VKP_REPORT_RUN_ROWS; i++) vp[i] = v[i];
  VKP_TRY(vkp_report_add_section(r, "Summary", err));
  return vkp_report_add_kv(r, keys, vp, N + VKP_REPORT_RUN_ROWS, err);
}

// plots/loss.png and plots/lr.png from metrics.jsonl, then their section.
static vkp_status add_plots(vkp_dtrainer *t, vkp_report *r, vkp_error *err) {
  char plots[1100], path[1200];
  snprintf(plots, sizeof plots, "%s/plots", t->dir);
  VKP_TRY(vkp_dir_create(plots, err));
  snprintf(path, sizeof path, "%s/metrics.jsonl", t->dir);
  vkp_metrics_log *log = NULL;
  VKP_TRY(vkp_metrics_read(path, &log, err));
  // The objective differs from the MSE only with min-SNR weights or the loss mask.
  bool weighted = t->min_snr_gamma > 0 || t->masked_loss;
  const vkp_metric_chart charts[2] = {
      {"loss.png", "Loss", "loss", {"loss", weighted ? "loss_weighted" : "val_loss", weighted ? "val_loss" : NULL},
       {"train loss (MSE)", weighted ? "objective (weighted)" : "validation loss", "validation loss"}, true, false},
      {"lr.png", "Learning rate", "lr", {"lr"}, {"learning rate"}, false, false},
  };
  char files[2][1300];
  bool drawn[2] = {false, false};
  vkp_status st = VKP_OK;
  for (int i = 0; i < 2 && !st; i++) {
    snprintf(files[i], sizeof files[i], "%s/%s", plots, charts[i].file);
    st = vkp_metric_chart_draw(log, &charts[i], files[i], &drawn[i], err);
  }
  vkp_metrics_log_free(log);
  if (!st && (drawn[0] || drawn[1])) st = vkp_report_add_section(r, "Training", err);
  for (int i = 0; i < 2 && !st; i++)
    if (drawn[i]) st = vkp_report_add_image(r, files[i], charts[i].title, err);
  return st;
}

vkp_status vkp_dtrain_write_report(vkp_dtrainer *t, bool final, vkp_error *err) {
  char title[512], methods[128], path[1200];
  vkp_report_method_names(t->cfg, methods, sizeof methods);
  snprintf(title, sizeof title, "Diffusion UNet + %s on %s", methods, vkp_config_string(t->cfg, "data.train"));
  vkp_report *r = vkp_report_new(title, t->dir);
  if (!r) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  vkp_status st = add_summary(t, r, err);
  if (!st) st = add_plots(t, r, err);
  if (!st) st = add_samples(t, r, err);
  if (!st) st = add_adapter_links(t, r, final, err);
  char *cfg_text = st ? NULL : cJSON_Print(t->cfg);
  if (cfg_text) st = vkp_report_add_json(r, "Configuration", cfg_text, err);
  free(cfg_text);
  snprintf(path, sizeof path, "%s/report.html", t->dir);
  if (!st) st = vkp_report_write(r, path, err);
  vkp_report_free(r);
  return st;
}
