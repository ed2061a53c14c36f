// test_metrics_report.c — metrics.jsonl (write, resume truncation, torn lines, read back),
// per-class statistics, the progress display (with a fake clock), and report.html (escaping,
// embedded images that decode to the original PNG bytes, atomic writes, errors).
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vkp_fileio.h"
#include "vkp_test.h"
#include "vkp_metrics.h"
#include "vkp_plot.h"
#include "vkp_png.h"
#include "vkp_progress.h"
#include "vkp_report.h"

// ---- helpers ------------------------------------------------------------------------------------


static char *slurp(const char *path, size_t *n) {
  char *buf = NULL;
  size_t len = 0;
  vkp_error err = {0};
  if (vkp_file_read_all(path, 1u << 30, &buf, &len, &err) != VKP_OK) fail_msg("%s", err.msg);
  if (n) *n = len;
  return buf;
}

static void spit(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

static void append_text(const char *path, const char *text) {
  FILE *f = fopen(path, "ab");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

#define ASSERT_OK(expr)                                                                  \
  do {                                                                                   \
    vkp_status st_ = (expr);                                                             \
    if (st_ != VKP_OK) fail_msg("%s -> %s: %s", #expr, vkp_status_name(st_), err.msg);   \
  } while (0)

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

static int count_tmp_files(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) n++;
  closedir(d);
  return n;
}

// ---- metrics.jsonl ------------------------------------------------------------------------------

static void test_metrics_write_read(void **state) {
  vkp_error err = {0};
  char path[256];
  vkp_test_dir_path(state, "metrics.jsonl", path, sizeof path);
  vkp_metrics_writer *w = NULL;
  ASSERT_OK(vkp_metrics_open(path, VKP_METRICS_NEW_RUN, &w, &err));
  for (int s = 1; s <= 10; s++) {
    vkp_metric m[4] = {{"epoch", s / 4.0},
                       {"loss", 1.0 / (s + 0.1)},  // not exactly representable in short decimals
                       {"lr", 3e-4 * s / 10},
                       {"grad_norm", s == 3 ? NAN : 0.5 * s}};
    ASSERT_OK(vkp_metrics_write(w, s, m, 4, &err));
    if (s % 5 == 0) {
      vkp_metric v[2] = {{"val_accuracy", 0.8 + s / 100.0}, {"val_loss", INFINITY}};
      ASSERT_OK(vkp_metrics_write(w, s, v, 2, &err));
    }
  }
  // Each line is on disk as soon as it is written (no buffering in the writer).
  char *text = slurp(path, NULL);
  assert_int_equal(count_lines(text), 12);
  assert_non_null(strstr(text, "{\"step\":1,\"epoch\":0.25,\"loss\":"));
  assert_non_null(strstr(text, "\"grad_norm\":null"));
  free(text);

  // A nested record through cJSON.
  cJSON *rec = cJSON_CreateObject();
  cJSON_AddNumberToObject(rec, "step", 10);
  cJSON_AddStringToObject(rec, "split", "val");
  cJSON *mem = cJSON_AddObjectToObject(rec, "memory");
  cJSON_AddNumberToObject(mem, "device_mb", 812.5);
  ASSERT_OK(vkp_metrics_write_json(w, rec, &err));
  cJSON_Delete(rec);
  // Rejected records.
  vkp_metric bad[1] = {{"step", 1}};
  assert_int_equal(vkp_metrics_write(w, 11, bad, 1, &err), VKP_ERR_INVALID);
  bad[0].key = NULL;
  assert_int_equal(vkp_metrics_write(w, 11, bad, 1, &err), VKP_ERR_INVALID);
  cJSON *nostep = cJSON_CreateObject();
  assert_int_equal(vkp_metrics_write_json(w, nostep, &err), VKP_ERR_INVALID);
  cJSON_Delete(nostep);
  ASSERT_OK(vkp_metrics_close(w, &err));

  vkp_metrics_log *log = NULL;
  ASSERT_OK(vkp_metrics_read(path, &log, &err));
  assert_int_equal(log->n_records, 13);
  assert_int_equal(log->n_skipped, 0);
  assert_int_equal(log->last_step, 10);
  const vkp_metric_series *loss = vkp_metrics_find(log, "loss");
  assert_non_null(loss);
  assert_int_equal(loss->n, 10);
  for (int i = 0; i < 10; i++) {
    assert_true(loss->step[i] == i + 1);
    assert_true(loss->value[i] == 1.0 / (i + 1 + 0.1));  // exact round trip
  }
  const vkp_metric_series *gn = vkp_metrics_find(log, "grad_norm");
  assert_non_null(gn);
  assert_true(isnan(gn->value[2]));
  assert_true(gn->value[3] == 2.0);
  const vkp_metric_series *va = vkp_metrics_find(log, "val_accuracy");
  assert_non_null(va);
  assert_int_equal(va->n, 2);
  assert_true(va->step[0] == 5 && va->step[1] == 10);
  assert_true(va->value[1] == 0.8 + 10 / 100.0);
  assert_true(isinf(INFINITY) && isnan(vkp_metrics_find(log, "val_loss")->value[0]));
  const vkp_metric_series *dm = vkp_metrics_find(log, "memory.device_mb");
  assert_non_null(dm);
  assert_int_equal(dm->n, 1);
  assert_true(dm->value[0] == 812.5);
  assert_null(vkp_metrics_find(log, "split"));  // strings are not series
  assert_null(vkp_metrics_find(log, "step"));
  vkp_metrics_log_free(log);
  vkp_metrics_log_free(NULL);
}

static void test_metrics_resume(void **state) {
  vkp_error err = {0};
  char path[256];
  vkp_test_dir_path(state, "resume.jsonl", path, sizeof path);
  vkp_metrics_writer *w = NULL;
  ASSERT_OK(vkp_metrics_open(path, VKP_METRICS_NEW_RUN, &w, &err));
  for (int s = 1; s <= 10; s++) {
    vkp_metric m = {"loss", 10.0 - s};
    ASSERT_OK(vkp_metrics_write(w, s, &m, 1, &err));
  }
  ASSERT_OK(vkp_metrics_close(w, &err));
  // Lines that are not records (garbage, JSON without a numeric step, a torn last line from a
  // crash) are dropped on resume: the log holds records only.
  append_text(path, "{\"note\":\"manual\"}\nthis is not json\n{\"step\":\"x\"}\n[1]\n{\"step\":11,\"loss\":-1,\"lr");

  // Resume from the checkpoint at step 6: steps 7..10 (and the torn 11) are removed.
  ASSERT_OK(vkp_metrics_open(path, 6, &w, &err));
  char *text = slurp(path, NULL);
  assert_int_equal(count_lines(text), 6);
  assert_null(strstr(text, "\"step\":7"));
  assert_null(strstr(text, "\"step\":11"));
  assert_null(strstr(text, "note"));
  assert_null(strstr(text, "not json"));
  assert_null(strstr(text, "\"x\""));
  free(text);
  for (int s = 7; s <= 12; s++) {
    vkp_metric m = {"loss", 100.0 + s};
    ASSERT_OK(vkp_metrics_write(w, s, &m, 1, &err));
  }
  ASSERT_OK(vkp_metrics_close(w, &err));
  assert_int_equal(count_tmp_files(((vkp_test_dir *)*state)->dir), 0);

  vkp_metrics_log *log = NULL;
  ASSERT_OK(vkp_metrics_read(path, &log, &err));
  const vkp_metric_series *loss = vkp_metrics_find(log, "loss");
  assert_int_equal(loss->n, 12);  // every step once
  for (int i = 0; i < 12; i++) {
    assert_true(loss->step[i] == i + 1);
    assert_true(loss->value[i] == (i + 1 <= 6 ? 10.0 - (i + 1) : 100.0 + i + 1));
  }
  assert_int_equal(log->n_skipped, 0);  // nothing but records is left
  assert_int_equal(log->last_step, 12);
  vkp_metrics_log_free(log);

  // Resuming at a step past the end changes nothing (not even the file's bytes).
  char *before = slurp(path, NULL);
  ASSERT_OK(vkp_metrics_open(path, 1000, &w, &err));
  ASSERT_OK(vkp_metrics_close(w, &err));
  char *after = slurp(path, NULL);
  assert_string_equal(before, after);
  free(before);
  free(after);

  // A complete last record that only lacks its newline is kept and terminated.
  append_text(path, "{\"step\":13,\"loss\":1}");
  ASSERT_OK(vkp_metrics_open(path, 1000, &w, &err));
  vkp_metric m = {"loss", 2};
  ASSERT_OK(vkp_metrics_write(w, 14, &m, 1, &err));
  ASSERT_OK(vkp_metrics_close(w, &err));
  text = slurp(path, NULL);
  assert_non_null(strstr(text, "{\"step\":13,\"loss\":1}\n{\"step\":14,\"loss\":2}\n"));
  free(text);

  // A new run starts empty; a missing file is created on resume.
  ASSERT_OK(vkp_metrics_open(path, VKP_METRICS_NEW_RUN, &w, &err));
  ASSERT_OK(vkp_metrics_close(w, &err));
  size_t n;
  free(slurp(path, &n));
  assert_int_equal(n, 0);
  char fresh[256];
  vkp_test_dir_path(state, "fresh.jsonl", fresh, sizeof fresh);
  ASSERT_OK(vkp_metrics_open(fresh, 5, &w, &err));
  ASSERT_OK(vkp_metrics_close(w, &err));

  // Errors name the file.
  char bad[256];
  vkp_test_dir_path(state, "missing/dir/metrics.jsonl", bad, sizeof bad);
  assert_int_equal(vkp_metrics_open(bad, VKP_METRICS_NEW_RUN, &w, &err), VKP_ERR_IO);
  assert_non_null(strstr(err.msg, bad));
  assert_null(w);
  assert_int_equal(vkp_metrics_read(bad, &log, &err), VKP_ERR_IO);
  assert_non_null(strstr(err.msg, bad));
  assert_null(log);
  ASSERT_OK(vkp_metrics_close(NULL, &err));
}

static void test_class_stats(void **state) {
  (void)state;
  vkp_error err = {0};
  // rows = true, columns = predicted
  const int64_t cm[9] = {8, 2, 0,   // class 0: 10 examples, 8 right
                         1, 6, 3,   // class 1: 10 examples, 6 right
                         0, 0, 0};  // class 2: no examples, predicted 3 times (all wrong)
  vkp_class_stats s[3];
  double acc, mf1;
  ASSERT_OK(vkp_metrics_class_stats(cm, 3, s, &acc, &mf1, &err));
  assert_true(fabs(acc - 14.0 / 20) < 1e-12);
  assert_int_equal(s[0].support, 10);
  assert_int_equal(s[0].predicted, 9);
  assert_true(fabs(s[0].precision - 8.0 / 9) < 1e-12);
  assert_true(fabs(s[0].recall - 0.8) < 1e-12);
  assert_true(fabs(s[0].f1 - 2 * (8.0 / 9) * 0.8 / (8.0 / 9 + 0.8)) < 1e-12);
  assert_true(fabs(s[1].precision - 6.0 / 8) < 1e-12);
  assert_true(fabs(s[1].recall - 0.6) < 1e-12);
  assert_true(s[2].precision == 0);  // predicted 3 times, never right
  assert_true(isnan(s[2].recall));
  assert_true(isnan(s[2].f1));
  assert_true(fabs(mf1 - (s[0].f1 + s[1].f1) / 2) < 1e-12);
  const int64_t neg[1] = {-1};
  assert_int_equal(vkp_metrics_class_stats(neg, 1, s, NULL, NULL, &err), VKP_ERR_INVALID);
  assert_int_equal(vkp_metrics_class_stats(cm, 0, s, NULL, NULL, &err), VKP_ERR_INVALID);
}

// ---- progress -----------------------------------------------------------------------------------

static double fake_now;
static double fake_clock(void *user) {
  (void)user;
  return fake_now;
}

static void test_progress_plain(void **state) {
  (void)state;
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  assert_non_null(out);
  fake_now = 100;
  vkp_progress_opts o = {.label = "train", .total = 100, .out = out, .tty = 0,
                         .clock = fake_clock, .log_interval = 10};
  vkp_progress *p = vkp_progress_new(&o);
  assert_non_null(p);
  // 10 steps per second, 320 images per second.
  for (int s = 1; s <= 40; s++) {
    fake_now = 100 + s * 0.1;
    vkp_progress_update(p, s, s * 32, 2.0 / s, NULL);
  }
  fflush(out);
  // A line at the first update and one 10 s later... which has not come yet (4 s elapsed).
  assert_int_equal(count_lines(buf), 1);
  assert_non_null(strstr(buf, "train: step 1/100 (1.0%)  loss 2"));
  fake_now = 110.2;
  vkp_progress_update(p, 80, 80 * 32, 0.025, "acc 91.2%");
  fflush(out);
  assert_int_equal(count_lines(buf), 2);
  const char *l2 = strchr(buf, '\n') + 1;
  assert_non_null(strstr(l2, "step 80/100 (80.0%)"));
  assert_non_null(strstr(l2, "loss 0.025"));
  assert_non_null(strstr(l2, "img/s"));
  assert_non_null(strstr(l2, "elapsed 0:10"));
  assert_non_null(strstr(l2, "eta 0:"));
  assert_non_null(strstr(l2, "acc 91.2%"));
  assert_null(strchr(buf, '\r'));  // no terminal control in plain output
  assert_null(strchr(buf, '\x1b'));
  vkp_progress_print(p, "validation: %d%%", 91);
  fake_now = 110.3;
  vkp_progress_update(p, 100, 3200, 0.02, NULL);
  vkp_progress_finish(p);
  vkp_progress_update(p, 101, 3300, 0.01, NULL);  // ignored after finish
  vkp_progress_free(p);
  fclose(out);
  assert_int_equal(count_lines(buf), 4);
  assert_non_null(strstr(buf, "validation: 91%\n"));
  const char *last = strstr(buf, "train: done: step 100/100");
  assert_non_null(last);
  assert_non_null(strstr(last, "in 0:10"));
  assert_non_null(strstr(last, "img/s"));
  free(buf);
  vkp_progress_free(NULL);  // no-op
  vkp_progress_update(NULL, 1, 1, 1, NULL);
}

static void test_progress_tty(void **state) {
  (void)state;
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  assert_non_null(out);
  fake_now = 0;
  // Times are exact binary fractions: 128 steps/s, redraws every 1/8 s = every 16 steps.
  vkp_progress_opts o = {.label = "train", .total = 1000, .out = out, .tty = 1, .width = 100,
                         .ascii = true, .clock = fake_clock, .redraw_interval = 0.125};
  vkp_progress *p = vkp_progress_new(&o);
  int draws = 0;
  for (int s = 1; s <= 520; s++) {
    fake_now = s / 128.0;
    vkp_progress_update(p, s, s * 64, 1.0, NULL);
  }
  fflush(out);
  for (const char *c = buf; *c; c++) draws += *c == '\r';
  assert_int_equal(draws, 33);  // steps 1, 17, 33, ..., 513
  assert_null(strchr(buf, '\n'));  // redrawn in place
  assert_non_null(strstr(buf, "\x1b[K"));
  // The last frame: label, bar, count, percentage, rate and elapsed<eta.
  const char *frame = strrchr(buf, '\r');
  if (!strstr(frame, "train |") || !strstr(frame, "| 513/1000   51%  loss 1  8192 img/s  0:04<0:04"))
    fail_msg("last frame: %s", frame + 1);
  // Fits the terminal: no line longer than 99 columns.
  const char *end = strstr(frame, "\x1b[K");
  assert_true(end - frame - 1 <= 99);
  // The bar: 40 cells, 20 full (51.3% of 40 = 20.5).
  const char *bar = strchr(frame, '|');
  int hashes = 0, dots = 0;
  for (const char *c = bar + 1; *c != '|'; c++) {
    hashes += *c == '#';
    dots += *c == '.';
  }
  assert_int_equal(hashes, 20);
  assert_int_equal(dots, 20);
  // Printing a message keeps the bar intact: clear line, text, newline, bar again.
  size_t mark = len;
  vkp_progress_print(p, "checkpoint saved");
  fflush(out);
  assert_true(strncmp(buf + mark, "\r\x1b[Kcheckpoint saved\n\r", 22) == 0);
  vkp_progress_finish(p);
  vkp_progress_free(p);
  fclose(out);
  assert_int_equal(buf[strlen(buf) - 1], '\n');
  free(buf);
}

static void test_duration_format(void **state) {
  (void)state;
  char b[32];
  struct {
    double s;
    const char *want;
  } cases[] = {{0, "0:00"},          {59.4, "0:59"},      {61, "1:01"},       {3599.6, "1:00:00"},
               {3661, "1:01:01"},    {90000, "1d 01:00"}, {-1, "--:--"},      {NAN, "--:--"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    vkp_progress_format_duration(cases[i].s, b, sizeof b);
    assert_string_equal(b, cases[i].want);
  }
}

// ---- report -------------------------------------------------------------------------------------

static int b64_val(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// An independent base64 decoder for the check.
static unsigned char *b64_decode(const char *s, size_t n, size_t *out_len) {
  assert_int_equal(n % 4, 0);
  unsigned char *out = malloc(n / 4 * 3 + 1);
  size_t o = 0;
  for (size_t i = 0; i < n; i += 4) {
    int v[4];
    for (int k = 0; k < 4; k++) v[k] = s[i + k] == '=' ? 0 : b64_val(s[i + k]);
    for (int k = 0; k < 4; k++) assert_true(v[k] >= 0);
    uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
    out[o++] = (unsigned char)(w >> 16);
    if (s[i + 2] != '=') out[o++] = (unsigned char)(w >> 8);
    if (s[i + 3] != '=') out[o++] = (unsigned char)w;
  }
  *out_len = o;
  return out;
}

static void test_base64(void **state) {
  (void)state;
  const char *in[7] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char *want[7] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (int i = 0; i < 7; i++) {
    char *e = vkp_base64_encode(in[i], strlen(in[i]));
    assert_string_equal(e, want[i]);
    free(e);
  }
  unsigned char all[256];
  for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
  char *e = vkp_base64_encode(all, 256);
  size_t n;
  unsigned char *d = b64_decode(e, strlen(e), &n);
  assert_int_equal(n, 256);
  assert_memory_equal(d, all, 256);
  free(d);
  free(e);
}

// Every embedded image, decoded, in page order.
static int embedded_images(const char *html, unsigned char **imgs, size_t *lens, int cap) {
  int n = 0;
  const char *key = "src=\"data:image/png;base64,";
  for (const char *p = strstr(html, key); p && n < cap; p = strstr(p, key)) {
    p += strlen(key);
    const char *q = strchr(p, '"');
    assert_non_null(q);
    imgs[n] = b64_decode(p, (size_t)(q - p), &lens[n]);
    n++;
    p = q;
  }
  return n;
}

static void test_report(void **state) {
  vkp_error err = {0};
  vkp_test_dir *env = *state;
  char png1[256], png2[256], html_path[256];
  vkp_test_dir_path(state, "loss.png", png1, sizeof png1);
  vkp_test_dir_path(state, "report.html", html_path, sizeof html_path);

  // Two real PNGs: a chart written to a file, and one kept in memory.
  double y[3] = {3, 2, 1.5};
  vkp_plot_series s = {.label = "loss", .y = y, .n = 3};
  vkp_line_chart c = {.title = "Loss", .series = &s, .n_series = 1, .width = 400, .height = 250};
  vkp_image *img = NULL;
  ASSERT_OK(vkp_plot_line(&c, &img, NULL, &err));
  ASSERT_OK(vkp_png_write(png1, img, NULL, 0, &err));
  uint8_t *mem = NULL;
  size_t mem_len = 0;
  ASSERT_OK(vkp_png_encode(img, NULL, 0, &mem, &mem_len, &err));
  vkp_image_free(img);
  size_t file_len;
  unsigned char *file_bytes = (unsigned char *)slurp(png1, &file_len);

  vkp_report *r = vkp_report_new("Run <script>alert('x')</script> & \"quotes\"", "runs/a&b");
  assert_non_null(r);
  ASSERT_OK(vkp_report_add_section(r, "Summary <1>", &err));
  const char *keys[3] = {"final loss", "trainable params", "note"};
  const char *vals[3] = {"0.1234", "1.2 M", "<b>not bold</b>"};
  ASSERT_OK(vkp_report_add_kv(r, keys, vals, 3, &err));
  ASSERT_OK(vkp_report_add_section(r, "Training curves", &err));
  ASSERT_OK(vkp_report_add_image(r, png1, "Loss & smoothed <loss>", &err));
  ASSERT_OK(vkp_report_add_png(r, mem, mem_len, NULL, &err));
  ASSERT_OK(vkp_report_add_section(r, "Per-class", &err));
  const char *hdr[4] = {"class", "precision", "recall", "support"};
  const char *cells[8] = {"T-shirt/top", "0.91", "0.88", "1000", "<img src=x onerror=alert(1)>",
                          "0.5", "n/a", "12"};
  ASSERT_OK(vkp_report_add_table(r, "Validation set", hdr, 4, cells, 2, &err));
  ASSERT_OK(vkp_report_add_text(r, "line one\nline <two>", &err));
  ASSERT_OK(vkp_report_add_json(r, "Configuration",
                                "{\"model\":\"vit-s\",\"lr\":0.0003,\"note\":\"</pre><script>\"}",
                                &err));
  ASSERT_OK(vkp_report_add_json(r, "Raw", "not json <at all>", &err));

  // Failed additions report the file and leave the report as it was.
  char *before = NULL;
  ASSERT_OK(vkp_report_render(r, &before, NULL, &err));
  vkp_test_dir_path(state, "absent.png", png2, sizeof png2);
  assert_int_equal(vkp_report_add_image(r, png2, NULL, &err), VKP_ERR_IO);
  assert_non_null(strstr(err.msg, png2));
  vkp_test_dir_path(state, "fake.png", png2, sizeof png2);
  spit(png2, "GIF89a not a png at all, sorry");
  assert_int_equal(vkp_report_add_image(r, png2, NULL, &err), VKP_ERR_FORMAT);
  assert_non_null(strstr(err.msg, png2));
  char *html = NULL;
  size_t html_len = 0;
  ASSERT_OK(vkp_report_render(r, &html, &html_len, &err));
  assert_string_equal(before, html);
  assert_int_equal(strlen(html), html_len);
  free(before);

  // Escaping: no markup from the inputs survives.
  assert_null(strstr(html, "<script"));
  assert_null(strstr(html, "<b>not bold"));
  assert_null(strstr(html, "<img src=x"));
  assert_null(strstr(html, "<two>"));
  assert_non_null(strstr(html, "Run &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; "
                               "&quot;quotes&quot;"));
  assert_non_null(strstr(html, "&lt;b&gt;not bold&lt;/b&gt;"));
  assert_non_null(strstr(html, "&lt;img src=x onerror=alert(1)&gt;"));
  assert_non_null(strstr(html, "Loss &amp; smoothed &lt;loss&gt;"));
  assert_non_null(strstr(html, "runs/a&amp;b"));
  assert_non_null(strstr(html, "line one<br>"));
  assert_non_null(strstr(html, "not json &lt;at all&gt;"));
  assert_non_null(strstr(html, "&lt;/pre&gt;&lt;script&gt;"));
  // Pretty config (2-space indents) and numeric columns aligned right.
  assert_non_null(strstr(html, "\n  <span class=\"k\">&quot;model&quot;</span>: "
                               "<span class=\"s\">&quot;vit-s&quot;</span>,\n"));
  assert_non_null(strstr(html, "<th class=\"num\">precision</th>"));
  assert_non_null(strstr(html, "<td class=\"num\">1000</td>"));
  assert_non_null(strstr(html, "<th>recall</th>"));  // "n/a" in it: a text column, left-aligned
  assert_non_null(strstr(html, "<td>n/a</td>"));
  // Self-contained: no external resources.
  assert_null(strstr(html, "http://"));
  assert_null(strstr(html, "https://"));
  assert_null(strstr(html, "<link"));
  assert_null(strstr(html, "<script"));

  // The embedded images decode to the original PNG bytes.
  unsigned char *imgs[4] = {0};
  size_t lens[4] = {0};
  int n = embedded_images(html, imgs, lens, 4);
  assert_int_equal(n, 2);
  assert_int_equal(lens[0], file_len);
  assert_memory_equal(imgs[0], file_bytes, file_len);
  assert_int_equal(lens[1], mem_len);
  assert_memory_equal(imgs[1], mem, mem_len);
  for (int i = 0; i < n; i++) free(imgs[i]);
  assert_non_null(strstr(html, "width=\"400\" height=\"250\""));

  // Written atomically, byte for byte the rendered page; a bad directory leaves nothing.
  ASSERT_OK(vkp_report_write(r, html_path, &err));
  size_t on_disk_len;
  char *on_disk = slurp(html_path, &on_disk_len);
  assert_int_equal(on_disk_len, html_len);
  assert_memory_equal(on_disk, html, html_len);
  free(on_disk);
  char bad[256];
  vkp_test_dir_path(state, "nope/report.html", bad, sizeof bad);
  assert_int_equal(vkp_report_write(r, bad, &err), VKP_ERR_IO);
  assert_non_null(strstr(err.msg, bad));
  assert_int_equal(count_tmp_files(env->dir), 0);

  free(html);
  free(mem);
  free(file_bytes);
  vkp_report_free(r);
  vkp_report_free(NULL);
  assert_int_equal(vkp_report_add_text(NULL, "x", &err), VKP_ERR_INVALID);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_metrics_write_read), cmocka_unit_test(test_metrics_resume),
      cmocka_unit_test(test_class_stats),        cmocka_unit_test(test_progress_plain),
      cmocka_unit_test(test_progress_tty),       cmocka_unit_test(test_duration_format),
      cmocka_unit_test(test_base64),             cmocka_unit_test(test_report),
  };
  return cmocka_run_group_tests(tests, vkp_test_dir_setup, vkp_test_dir_teardown);
}
