// metrics.c — metrics.jsonl writer (append, resume truncation), reader, per-class statistics.
//
// Lines are appended with one write(2) on an O_APPEND descriptor: no stdio buffer holds records
// back, and a crash leaves at most one torn final line, which the next open drops.
#include "vkp_strbuf.h"
#include "vkp_metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vkp_fileio.h"
#include "vkp_vec.h"

#define METRICS_MAX_FILE ((size_t)1 << 34)  // 16 GiB: far beyond any real log

struct vkp_metrics_writer {
  int fd;
  char *path;  // owned
};

// ---- small string builder ----------------------------------------------------------------------




// The shortest of %.15g / %.16g / %.17g that reads back exactly; null when not finite.
static void sb_number(vkp_strbuf *b, double v) {
  if (!isfinite(v)) {
    vkp_strbuf_puts(b, "null");
    return;
  }
  char buf[40];
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) break;
  }
  vkp_strbuf_puts(b, buf);
}

// ---- writer -------------------------------------------------------------------------------------

static int write_full(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

// Classifies one line: 1 = JSON object with a numeric "step" (in *step), 0 = other valid JSON,
// -1 = not JSON.
static int line_step(const char *s, size_t len, double *step) {
  cJSON *j = cJSON_ParseWithLength(s, len);
  if (!j) return -1;
  int kind = 0;
  if (cJSON_IsObject(j)) {
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "step");
    if (cJSON_IsNumber(st)) {
      *step = st->valuedouble;
      kind = 1;
    }
  }
  cJSON_Delete(j);
  return kind;
}

// Keeps the records up to keep_through_step of an existing file; drops the later records and every
// line that is not a record (a torn last line, garbage).
static vkp_status truncate_log(const char *path, int64_t keep, vkp_error *err) {
  struct stat sb;
  if (stat(path, &sb) != 0) {
    if (errno == ENOENT) return VKP_OK;
    return vkp_error_set(err, VKP_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
  }
  char *data = NULL;
  size_t len = 0;
  VKP_TRY(vkp_file_read_all(path, METRICS_MAX_FILE, &data, &len, err));
  // Compact the kept lines in place (the kept text is never longer than what was read).
  size_t out = 0, pos = 0;
  int changed = 0;
  while (pos < len) {
    const char *nl = memchr(data + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - data) : len;
    size_t n = end - pos;
    double step = 0;
    int kind = line_step(data + pos, n, &step);
    // Only records are kept (every line vkpeft writes is one): garbage, other JSON and a torn
    // last line are dropped with the records after the checkpoint.
    int keep_line = kind == 1 && step <= (double)keep;
    if (keep_line) {
      memmove(data + out, data + pos, n);
      out += n;
      data[out++] = '\n';
      if (!nl) changed = 1;  // the newline is new
    } else {
      changed = 1;
    }
    pos = nl ? end + 1 : len;
  }
  vkp_status st = VKP_OK;
  if (changed) {
    const void *chunks[1] = {data};
    size_t sizes[1] = {out};
    st = vkp_file_write_atomic(path, chunks, sizes, 1, err);
  }
  free(data);
  return st;
}

vkp_status vkp_metrics_open(const char *path, int64_t keep_through_step, vkp_metrics_writer **out,
                            vkp_error *err) {
  if (out) *out = NULL;
  if (!path || !path[0] || !out)
    return vkp_error_set(err, VKP_ERR_INVALID, "metrics: bad arguments to open");
  if (keep_through_step >= 0) VKP_TRY(truncate_log(path, keep_through_step, err));
  int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC;
  if (keep_through_step < 0) flags |= O_TRUNC;
  vkp_metrics_writer *w = calloc(1, sizeof *w);
  if (!w) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", path);
  w->path = strdup(path);
  if (!w->path) {
    free(w);
    return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", path);
  }
  w->fd = open(path, flags, 0666);
  if (w->fd < 0) {
    vkp_status st =
        vkp_error_set(err, VKP_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
    free(w->path);
    free(w);
    return st;
  }
  *out = w;
  return VKP_OK;
}

static vkp_status append_line(vkp_metrics_writer *w, vkp_strbuf *b, vkp_error *err) {
  vkp_strbuf_puts(b, "\n");
  if (b->oom) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", w->path);
  if (write_full(w->fd, b->p, b->len) != 0)
    return vkp_error_set(err, VKP_ERR_IO, "%s: write failed: %s", w->path, strerror(errno));
  return VKP_OK;
}

vkp_status vkp_metrics_write(vkp_metrics_writer *w, int64_t step, const vkp_metric *m, int n,
                             vkp_error *err) {
  if (!w || n < 0 || (n > 0 && !m))
    return vkp_error_set(err, VKP_ERR_INVALID, "metrics: bad arguments to write");
  for (int i = 0; i < n; i++)
    if (!m[i].key || strcmp(m[i].key, "step") == 0)
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: metric %d has %s key", w->path, i,
                           m[i].key ? "the reserved \"step\"" : "a NULL");
  vkp_strbuf b = {0};
  char num[32];
  snprintf(num, sizeof num, "{\"step\":%lld", (long long)step);
  vkp_strbuf_puts(&b, num);
  for (int i = 0; i < n; i++) {
    vkp_strbuf_puts(&b, ",");
    vkp_strbuf_json_string(&b, m[i].key);
    vkp_strbuf_puts(&b, ":");
    sb_number(&b, m[i].value);
  }
  vkp_strbuf_puts(&b, "}");
  vkp_status st = append_line(w, &b, err);
  free(b.p);
  return st;
}

vkp_status vkp_metrics_write_json(vkp_metrics_writer *w, const cJSON *record, vkp_error *err) {
  if (!w || !cJSON_IsObject(record))
    return vkp_error_set(err, VKP_ERR_INVALID, "metrics: a record must be a JSON object");
  if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(record, "step")))
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: record has no numeric \"step\"", w->path);
  char *text = cJSON_PrintUnformatted(record);
  if (!text) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", w->path);
  vkp_strbuf b = {0};
  vkp_strbuf_puts(&b, text);
  cJSON_free(text);
  vkp_status st = append_line(w, &b, err);
  free(b.p);
  return st;
}

vkp_status vkp_metrics_sync(vkp_metrics_writer *w, vkp_error *err) {
  if (!w) return vkp_error_set(err, VKP_ERR_INVALID, "metrics: NULL writer");
  if (fsync(w->fd) != 0 && errno != EINVAL && errno != EROFS)
    return vkp_error_set(err, VKP_ERR_IO, "%s: fsync failed: %s", w->path, strerror(errno));
  return VKP_OK;
}

vkp_status vkp_metrics_close(vkp_metrics_writer *w, vkp_error *err) {
  if (!w) return VKP_OK;
  vkp_status st = vkp_metrics_sync(w, err);
  if (close(w->fd) != 0 && st == VKP_OK)
    st = vkp_error_set(err, VKP_ERR_IO, "%s: close failed: %s", w->path, strerror(errno));
  free(w->path);
  free(w);
  return st;
}

// ---- reader -------------------------------------------------------------------------------------

typedef struct reader {
  vkp_metrics_log *log;
  int32_t cap_series;
  int hint;  // index of the series after the last one appended to (records repeat key order)
  int oom;
} reader;

static vkp_metric_series *series_for(reader *r, const char *key) {
  vkp_metrics_log *log = r->log;
  if (r->hint < log->n_series && strcmp(log->series[r->hint].key, key) == 0)
    return &log->series[r->hint++];
  for (int i = 0; i < log->n_series; i++)
    if (strcmp(log->series[i].key, key) == 0) {
      r->hint = i + 1;
      return &log->series[i];
    }
  if (vkp_vec_reserve_((void **)&log->series, &r->cap_series, (int64_t)log->n_series + 1, sizeof *log->series))
    return NULL;
  vkp_metric_series *s = &log->series[log->n_series];
  memset(s, 0, sizeof *s);
  s->key = strdup(key);
  if (!s->key) return NULL;
  log->n_series++;
  r->hint = log->n_series;
  return s;
}

// Appends (step, v). The two arrays grow as VKP_VEC arrays do; their capacity is not stored but
// implied by n (powers of two from 16, the growth rule of vkp_vec_reserve_).
static int series_push(vkp_metric_series *s, double step, double v) {
  int32_t cap = 0;
  if (s->n > 0)
    for (cap = 16; cap < s->n; cap *= 2) {}
  int32_t cap2 = cap;
  if (vkp_vec_reserve_((void **)&s->step, &cap, (int64_t)s->n + 1, sizeof *s->step) ||
      vkp_vec_reserve_((void **)&s->value, &cap2, (int64_t)s->n + 1, sizeof *s->value))
    return -1;
  s->step[s->n] = step;
  s->value[s->n] = v;
  s->n++;
  return 0;
}

static void read_object(reader *r, const cJSON *obj, const char *prefix, double step) {
  for (const cJSON *c = obj->child; c && !r->oom; c = c->next) {
    if (!c->string) continue;
    if (!prefix[0] && strcmp(c->string, "step") == 0) continue;
    char key[256];
    snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "", c->string);
    if (cJSON_IsObject(c)) {
      read_object(r, c, key, step);
      continue;
    }
    if (!cJSON_IsNumber(c) && !cJSON_IsNull(c)) continue;
    vkp_metric_series *s = series_for(r, key);
    if (!s || series_push(s, step, cJSON_IsNumber(c) ? c->valuedouble : NAN) != 0) r->oom = 1;
  }
}

vkp_status vkp_metrics_read(const char *path, vkp_metrics_log **out, vkp_error *err) {
  if (out) *out = NULL;
  if (!path || !out) return vkp_error_set(err, VKP_ERR_INVALID, "metrics: bad arguments to read");
  char *data = NULL;
  size_t len = 0;
  VKP_TRY(vkp_file_read_all(path, METRICS_MAX_FILE, &data, &len, err));
  vkp_metrics_log *log = calloc(1, sizeof *log);
  if (!log) {
    free(data);
    return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", path);
  }
  log->last_step = -1;
  reader r = {log, 0, 0, 0};
  size_t pos = 0;
  while (pos < len && !r.oom) {
    const char *nl = memchr(data + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - data) : len;
    size_t n = end - pos;
    pos = nl ? end + 1 : len;
    const char *line = data + end - n;
    size_t k = 0;
    while (k < n && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
    if (k == n) continue;  // blank line
    cJSON *j = cJSON_ParseWithLength(line, n);
    const cJSON *st = j && cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "step") : NULL;
    if (!cJSON_IsNumber(st)) {
      log->n_skipped++;
      cJSON_Delete(j);
      continue;
    }
    double step = st->valuedouble;
    if (step > (double)log->last_step) log->last_step = (int64_t)step;
    log->n_records++;
    read_object(&r, j, "", step);
    cJSON_Delete(j);
  }
  free(data);
  if (r.oom) {
    vkp_metrics_log_free(log);
    return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory reading metrics", path);
  }
  *out = log;
  return VKP_OK;
}

const vkp_metric_series *vkp_metrics_find(const vkp_metrics_log *log, const char *key) {
  for (int i = 0; log && key && i < log->n_series; i++)
    if (strcmp(log->series[i].key, key) == 0) return &log->series[i];
  return NULL;
}

void vkp_metrics_log_free(vkp_metrics_log *log) {
  if (!log) return;
  for (int i = 0; i < log->n_series; i++) {
    free(log->series[i].key);
    free(log->series[i].step);
    free(log->series[i].value);
  }
  free(log->series);
  free(log);
}

// ---- classification statistics -------------------------------------------------------------------

vkp_status vkp_metrics_class_stats(const int64_t *counts, int n, vkp_class_stats *out,
                                   double *accuracy, double *macro_f1, vkp_error *err) {
  if (!counts || !out || n < 1)
    return vkp_error_set(err, VKP_ERR_INVALID, "class stats: bad arguments (n = %d)", n);
  int64_t total = 0, trace = 0;
  for (int i = 0; i < n; i++) {
    out[i].support = 0;
    out[i].predicted = 0;
  }
  for (int i = 0; i < n; i++)
    for (int k = 0; k < n; k++) {
      int64_t v = counts[(size_t)i * n + k];
      if (v < 0)
        return vkp_error_set(err, VKP_ERR_INVALID, "class stats: negative count at (%d, %d)", i,
                             k);
      out[i].support += v;
      out[k].predicted += v;
      total += v;
      if (i == k) trace += v;
    }
  double f1_sum = 0;
  int f1_n = 0;
  for (int i = 0; i < n; i++) {
    double tp = (double)counts[(size_t)i * n + i];
    vkp_class_stats *s = &out[i];
    s->precision = s->predicted ? tp / (double)s->predicted : NAN;
    s->recall = s->support ? tp / (double)s->support : NAN;
    if (isnan(s->precision) || isnan(s->recall))
      s->f1 = NAN;
    else if (s->precision + s->recall == 0)
      s->f1 = 0;
    else
      s->f1 = 2 * s->precision * s->recall / (s->precision + s->recall);
    if (!isnan(s->f1)) {
      f1_sum += s->f1;
      f1_n++;
    }
  }
  if (accuracy) *accuracy = total ? (double)trace / (double)total : NAN;
  if (macro_f1) *macro_f1 = f1_n ? f1_sum / f1_n : NAN;
  return VKP_OK;
}
