// vkp_metrics.h — a run's metrics.jsonl: one JSON object per line, written as training goes and
// read back for plots and the report; plus per-class statistics from a confusion matrix.
//
// A record is a flat JSON object with an integer "step" and numeric values, e.g.
//   {"step":1200,"epoch":2.5,"loss":0.4132,"lr":0.0003,"grad_norm":1.21,"images_per_s":812.4}
//   {"step":1200,"val_accuracy":0.9121,"val_loss":0.2873}
// Several records may share a step (train and validation lines). Non-finite values are written as
// null (JSON has no NaN) and read back as NaN.
//
// Resuming: a run restarted from the checkpoint of step S opens the log with keep_through_step = S,
// which drops the records of steps > S written after that checkpoint (and lines that are not
// records: a line torn by a crash, garbage), so the resumed run does not log those steps twice.
#ifndef VKP_METRICS_H
#define VKP_METRICS_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "vkp_status.h"

// ---- writer -------------------------------------------------------------------------------------
typedef struct vkp_metrics_writer vkp_metrics_writer;

// keep_through_step for a new run: start with an empty file.
#define VKP_METRICS_NEW_RUN (-1)

// Opens `path` for appending. keep_through_step >= 0: keeps the records (JSON objects with a
// numeric "step") whose step is <= it and drops everything else: later records, lines that are
// not records (garbage, a line torn by a crash); the file is rewritten atomically, and only when
// something is dropped. VKP_METRICS_NEW_RUN: an existing file is emptied. A missing file is created.
// Errors: VKP_ERR_INVALID, VKP_ERR_IO (messages name the file), VKP_ERR_OOM.
vkp_status vkp_metrics_open(const char *path, int64_t keep_through_step, vkp_metrics_writer **out,
                            vkp_error *err);

// One numeric metric of a record.
typedef struct vkp_metric {
  const char *key;  // JSON key ("loss", "val_accuracy", ...); must not be "step"
  double value;     // NaN / inf are written as null
} vkp_metric;

// Appends {"step": step, m[0].key: m[0].value, ...} as one line (one write) and flushes it to the
// OS, so a crash loses at most this line. Numbers use the shortest text that reads back exactly.
// Errors: VKP_ERR_INVALID (NULL key, key "step"), VKP_ERR_IO (write failed), VKP_ERR_OOM.
vkp_status vkp_metrics_write(vkp_metrics_writer *w, int64_t step, const vkp_metric *m, int n,
                             vkp_error *err);

// Appends any JSON object (it must hold a numeric "step"; strings and nested objects allowed,
// e.g. {"step":100,"split":"val","memory":{"device_mb":812}}) as one line and flushes it.
vkp_status vkp_metrics_write_json(vkp_metrics_writer *w, const cJSON *record, vkp_error *err);

// Forces written lines to disk (fsync), e.g. right after a checkpoint is saved.
vkp_status vkp_metrics_sync(vkp_metrics_writer *w, vkp_error *err);

// Syncs and closes the file and frees w (NULL is a no-op). Errors: VKP_ERR_IO.
vkp_status vkp_metrics_close(vkp_metrics_writer *w, vkp_error *err);

// ---- reader -------------------------------------------------------------------------------------
// The values of one key over the run, in file order.
typedef struct vkp_metric_series {
  char *key;      // e.g. "loss"; keys of nested objects are joined with '.' ("memory.device_mb")
  int n;
  double *step;   // (n) the record's step
  double *value;  // (n) NaN where the record had null
} vkp_metric_series;

typedef struct vkp_metrics_log {
  int n_series;
  vkp_metric_series *series;  // (n_series) in order of first appearance; "step" is not a series
  int64_t n_records;          // records read (objects with a numeric step)
  int64_t n_skipped;          // other lines: invalid JSON, no step, a torn last line
  int64_t last_step;          // largest step seen, -1 when none
} vkp_metrics_log;

// Loads every record of a metrics.jsonl into series (numbers and nulls; strings, booleans and
// arrays are ignored). Errors: VKP_ERR_IO (cannot read), VKP_ERR_OOM.
vkp_status vkp_metrics_read(const char *path, vkp_metrics_log **out, vkp_error *err);

// The series named key, or NULL.
const vkp_metric_series *vkp_metrics_find(const vkp_metrics_log *log, const char *key);

// Frees a log from vkp_metrics_read; NULL is a no-op.
void vkp_metrics_log_free(vkp_metrics_log *log);

// ---- classification statistics -------------------------------------------------------------------
typedef struct vkp_class_stats {
  double precision;   // tp / predicted; NaN when the class was never predicted
  double recall;      // tp / support; NaN when the class has no examples
  double f1;          // harmonic mean; NaN when either is NaN, 0 when both are 0
  int64_t support;    // examples of the class (row sum)
  int64_t predicted;  // predictions of the class (column sum)
} vkp_class_stats;

// Per-class statistics of an (n, n) confusion matrix (row = true class, column = predicted):
// out has n entries. *accuracy (may be NULL): trace / total (NaN when empty); *macro_f1 (may be
// NULL): mean F1 over classes with a defined F1. Errors: VKP_ERR_INVALID (n < 1, negative counts).
vkp_status vkp_metrics_class_stats(const int64_t *counts, int n, vkp_class_stats *out,
                                   double *accuracy, double *macro_f1, vkp_error *err);

#endif
