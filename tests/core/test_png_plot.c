// test_png_plot.c — PNG files (libpng round trips, text chunks, atomic writes, errors), the bitmap
// font, tick generation and formatting, and chart rendering checked pixel by pixel.
//
// Expected values are worked out by hand from the definitions (1-2-5 steps, glyph art, the frame's
// linear mapping), not taken from the code under test.
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
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "vkp_fileio.h"
#include "vkp_test.h"
#include "vkp_plot.h"
#include "vkp_png.h"

// ---- helpers ------------------------------------------------------------------------------------


static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

static unsigned char *slurp(const char *path, size_t *n) {
  char *buf = NULL;
  vkp_error err = {0};
  if (vkp_file_read_all(path, 1u << 30, &buf, n, &err) != VKP_OK) fail_msg("%s", err.msg);
  return (unsigned char *)buf;
}

#define ASSERT_OK(expr)                                                                  \
  do {                                                                                   \
    vkp_status st_ = (expr);                                                             \
    if (st_ != VKP_OK) fail_msg("%s -> %s: %s", #expr, vkp_status_name(st_), err.msg);   \
  } while (0)

// |a - b| <= tol in double precision (cmocka 1.1 only compares floats).
#define assert_double_equal(a, b, tol) assert_double_near_((a), (b), (tol), #a, __FILE__, __LINE__)
static void assert_double_near_(double a, double b, double tol, const char *what, const char *file,
                                int line) {
  if (!(fabs(a - b) <= tol)) fail_msg("%s:%d: %s = %.17g, want %.17g (tolerance %g)", file, line,
                                      what, a, b, tol);
}

// Pixel (x, y) of an RGB image as 0xRRGGBB.
static uint32_t px(const vkp_image *img, int x, int y) {
  const uint8_t *p = img->data + (size_t)y * vkp_image_stride(img) + (size_t)x * img->channels;
  return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

static int color_dist(uint32_t a, uint32_t b) {
  int d = 0;
  for (int s = 0; s <= 16; s += 8) d += abs((int)((a >> s) & 255) - (int)((b >> s) & 255));
  return d;
}

// ---- PNG ----------------------------------------------------------------------------------------

static void fill_pattern(vkp_image *img, unsigned seed) {
  size_t stride = vkp_image_stride(img);
  for (int y = 0; y < img->height; y++)
    for (size_t i = 0; i < (size_t)img->width * img->channels; i++)
      img->data[y * stride + i] = (uint8_t)((i * 37u + y * 101u + seed * 13u) ^ (i >> 3));
}

static void test_png_roundtrip(void **state) {
  vkp_error err = {0};
  char path[256];
  // A value with UTF-8 (goes into iTXt), one that is long, and the SD-style "parameters".
  const char *params =
      "a photo of an emoji cat, pixel art\nNegative prompt: blurry\n"
      "Steps: 30, Sampler: Euler a, CFG scale: 7.5, Seed: 1234, Size: 64x64, Model: vkpeft-tiny";
  const vkp_png_text text[3] = {{"parameters", params},
                                {"Comment", "caf\xC3\xA9 \xE2\x86\x92 ok"},
                                {"Software", "vkpeft"}};
  for (int channels = 1; channels <= 4; channels++) {
    vkp_image *img = NULL;
    ASSERT_OK(vkp_image_new(37, 23, channels, &img, &err));
    fill_pattern(img, (unsigned)channels);
    snprintf(path, sizeof path, "%s/rt%d.png", ((vkp_test_dir *)*state)->dir, channels);
    ASSERT_OK(vkp_png_write(path, img, text, 3, &err));

    vkp_image *back = NULL;
    vkp_png_text *tb = NULL;
    int nt = 0;
    ASSERT_OK(vkp_png_read(path, &back, &tb, &nt, &err));
    assert_int_equal(back->width, 37);
    assert_int_equal(back->height, 23);
    assert_int_equal(back->channels, channels);
    assert_int_equal(back->stride, (size_t)37 * channels);
    assert_memory_equal(back->data, img->data, (size_t)37 * 23 * channels);
    assert_int_equal(nt, 3);
    for (int i = 0; i < 3; i++) {
      const char *v = vkp_png_text_find(tb, nt, text[i].key);
      assert_non_null(v);
      assert_string_equal(v, text[i].value);
    }
    assert_null(vkp_png_text_find(tb, nt, "absent"));
    free(tb);
    vkp_image_free(back);
    vkp_image_free(img);
  }
  // No text chunks: *text stays NULL.
  vkp_image *img = NULL, *back = NULL;
  ASSERT_OK(vkp_image_new(3, 2, 3, &img, &err));
  vkp_test_dir_path(state, "plain.png", path, sizeof path);
  ASSERT_OK(vkp_png_write(path, img, NULL, 0, &err));
  vkp_png_text *tb = (vkp_png_text *)1;
  int nt = -1;
  ASSERT_OK(vkp_png_read(path, &back, &tb, &nt, &err));
  assert_null(tb);
  assert_int_equal(nt, 0);
  vkp_image_free(back);
  vkp_image_free(img);
}

// A view with a stride wider than its row writes only the view's pixels.
static void test_png_stride_view(void **state) {
  vkp_error err = {0};
  uint8_t big[4 * 10 * 3];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)i;
  vkp_image view = {2, 4, 3, 30, big + 3 * 3};  // columns 3..4 of a 10-wide RGB image
  char path[256];
  vkp_test_dir_path(state, "view.png", path, sizeof path);
  ASSERT_OK(vkp_png_write(path, &view, NULL, 0, &err));
  vkp_image *back = NULL;
  ASSERT_OK(vkp_png_read(path, &back, NULL, NULL, &err));
  for (int y = 0; y < 4; y++) assert_memory_equal(back->data + y * 6, big + y * 30 + 9, 6);
  vkp_image_free(back);
}

static void test_png_write_errors(void **state) {
  vkp_error err = {0};
  vkp_test_dir *env = *state;
  vkp_image *img = NULL;
  ASSERT_OK(vkp_image_new(64, 64, 3, &img, &err));
  fill_pattern(img, 7);
  char path[256];

  // A missing directory: an I/O error naming the file, and nothing created.
  int before = count_entries(env->dir);
  snprintf(path, sizeof path, "%s/no/such/dir/plot.png", env->dir);
  vkp_status st = vkp_png_write(path, img, NULL, 0, &err);
  assert_int_equal(st, VKP_ERR_IO);
  assert_non_null(strstr(err.msg, path));
  assert_int_equal(count_entries(env->dir), before);

  // An existing file survives a failed write (bad key, bad image, full disk) byte for byte.
  vkp_test_dir_path(state, "keep.png", path, sizeof path);
  ASSERT_OK(vkp_png_write(path, img, NULL, 0, &err));
  size_t n0;
  unsigned char *orig = slurp(path, &n0);
  before = count_entries(env->dir);

  vkp_png_text bad_keys[4] = {{"", "x"}, {" lead", "x"}, {"two  spaces", "x"},
                              {"caf\xC3\xA9", "x"}};
  for (int i = 0; i < 4; i++) {
    st = vkp_png_write(path, img, &bad_keys[i], 1, &err);
    assert_int_equal(st, VKP_ERR_INVALID);
    assert_non_null(strstr(err.msg, path));
  }
  vkp_image bad = *img;
  bad.channels = 5;
  assert_int_equal(vkp_png_write(path, &bad, NULL, 0, &err), VKP_ERR_INVALID);
  bad = *img;
  bad.width = 0;
  assert_int_equal(vkp_png_write(path, &bad, NULL, 0, &err), VKP_ERR_INVALID);

  // Disk full, simulated with a file size limit below the PNG's size.
  vkp_image *noisy = NULL;
  ASSERT_OK(vkp_image_new(256, 256, 3, &noisy, &err));
  uint32_t s = 12345;
  for (size_t i = 0; i < (size_t)256 * 256 * 3; i++) {
    s = s * 1103515245u + 12345u;
    noisy->data[i] = (uint8_t)(s >> 24);
  }
  struct rlimit old_lim, lim;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_lim), 0);
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
  lim = old_lim;
  lim.rlim_cur = 8192;
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
  st = vkp_png_write(path, noisy, NULL, 0, &err);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &old_lim), 0);
  signal(SIGXFSZ, old_handler);
  assert_int_equal(st, VKP_ERR_IO);
  assert_non_null(strstr(err.msg, path));

  size_t n1;
  unsigned char *now = slurp(path, &n1);
  assert_int_equal(n0, n1);
  assert_memory_equal(orig, now, n0);
  assert_int_equal(count_entries(env->dir), before);  // no temporary files left
  free(orig);
  free(now);
  vkp_image_free(noisy);
  vkp_image_free(img);
}

static void test_png_read_errors(void **state) {
  vkp_error err = {0};
  char path[256], bad[256];
  vkp_image *img = NULL, *back = NULL;
  ASSERT_OK(vkp_image_new(40, 30, 4, &img, &err));
  fill_pattern(img, 3);
  vkp_test_dir_path(state, "src.png", path, sizeof path);
  ASSERT_OK(vkp_png_write(path, img, NULL, 0, &err));
  size_t n;
  unsigned char *bytes = slurp(path, &n);

  // Not a PNG.
  vkp_test_dir_path(state, "text.png", bad, sizeof bad);
  FILE *f = fopen(bad, "wb");
  assert_non_null(f);
  fputs("hello, this is not an image", f);
  fclose(f);
  assert_int_equal(vkp_png_read(bad, &back, NULL, NULL, &err), VKP_ERR_FORMAT);
  assert_non_null(strstr(err.msg, bad));
  assert_null(back);

  // Truncated in the image data.
  vkp_test_dir_path(state, "trunc.png", bad, sizeof bad);
  f = fopen(bad, "wb");
  assert_non_null(f);
  fwrite(bytes, 1, n / 2, f);
  fclose(f);
  assert_int_equal(vkp_png_read(bad, &back, NULL, NULL, &err), VKP_ERR_FORMAT);
  assert_non_null(strstr(err.msg, bad));
  assert_null(back);

  // A flipped byte in IHDR (CRC mismatch in a critical chunk).
  bytes[17] ^= 0x40;
  assert_int_equal(vkp_png_decode(bytes, n, "mem", &back, NULL, NULL, &err), VKP_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "mem"));

  // Missing file.
  vkp_test_dir_path(state, "absent.png", bad, sizeof bad);
  assert_int_equal(vkp_png_read(bad, &back, NULL, NULL, &err), VKP_ERR_IO);
  assert_non_null(strstr(err.msg, bad));
  free(bytes);
  vkp_image_free(img);
}

// ---- font and text ------------------------------------------------------------------------------

static int count_ink(const vkp_glyph *g) {
  int n = 0;
  for (int r = 0; r < 11 && g->rows[r]; r++)
    for (const char *c = g->rows[r]; *c; c++) n += *c == '#';
  return n;
}

// The decoding limit: a PNG whose header declares 16384 x 16384 (a few hundred bytes on disk) is
// refused before any pixel memory is allocated, saying how to raise the limit; the limit follows
// VKPEFT_MAX_IMAGE_PIXELS.
static void test_png_decode_limit(void **state) {
  (void)state;
  vkp_image *img = NULL;
  vkp_error err = {0};
  ASSERT_OK(vkp_image_new(32, 32, 3, &img, &err));
  uint8_t *png = NULL;
  size_t len = 0;
  ASSERT_OK(vkp_png_encode(img, NULL, 0, &png, &len, &err));
  vkp_image_free(img);
  unsetenv("VKPEFT_MAX_IMAGE_PIXELS");
  ASSERT_OK(vkp_png_decode(png, len, "small.png", &img, NULL, NULL, &err));
  vkp_image_free(img);
  // IHDR right after the signature: length, "IHDR", width, height, ..., CRC over type + data.
  unsigned char *b = png;
  assert_memory_equal(b + 12, "IHDR", 4);
  const unsigned char side[4] = {0, 0, 0x40, 0};   // 16384, big-endian
  memcpy(b + 16, side, 4);
  memcpy(b + 20, side, 4);
  uint32_t crc = (uint32_t)crc32(crc32(0, NULL, 0), b + 12, 17);
  const unsigned char crc_be[4] = {(unsigned char)(crc >> 24), (unsigned char)(crc >> 16), (unsigned char)(crc >> 8),
                                   (unsigned char)crc};
  memcpy(b + 29, crc_be, 4);
  // A chunk that declares more bytes than the file has (2 GB of tEXt in a small file: libpng
  // allocates the declared length first) is refused before libpng sees it (a fuzzer finding).
  unsigned char *text2g = malloc(len + 12);
  memcpy(text2g, b, 33);
  memcpy(text2g + 33, "\x7a\x00\x00\x00tEXtparameters", 18);
  vkp_status st = vkp_png_decode(text2g, 51, "text.png", &img, NULL, NULL, &err);
  assert_int_equal(st, VKP_ERR_FORMAT);
  if (!strstr(err.msg, "chunk 'tEXt' at byte 33 declares 2046820352 bytes")) fail_msg("message: %s", err.msg);
  free(text2g);
  st = vkp_png_decode(png, len, "bomb.png", &img, NULL, NULL, &err);
  assert_int_equal(st, VKP_ERR_FORMAT);
  assert_null(img);
  if (!strstr(err.msg, "bomb.png") || !strstr(err.msg, "16384x16384") || !strstr(err.msg, "VKPEFT_MAX_IMAGE_PIXELS"))
    fail_msg("message: %s", err.msg);
  free(png);
  // A lower limit refuses a small image; a bad value of the variable means the default.
  ASSERT_OK(vkp_image_new(32, 32, 3, &img, &err));
  ASSERT_OK(vkp_png_encode(img, NULL, 0, &png, &len, &err));
  vkp_image_free(img);
  img = NULL;
  setenv("VKPEFT_MAX_IMAGE_PIXELS", "1000", 1);
  assert_int_equal(vkp_png_decode(png, len, "small.png", &img, NULL, NULL, &err), VKP_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "32x32"));
  assert_non_null(strstr(err.msg, "limit of 1000 pixels"));
  setenv("VKPEFT_MAX_IMAGE_PIXELS", "lots", 1);
  assert_int_equal(vkp_image_max_pixels(), VKP_IMAGE_MAX_PIXELS_DEFAULT);
  ASSERT_OK(vkp_png_decode(png, len, "small.png", &img, NULL, NULL, &err));
  vkp_image_free(img);
  unsetenv("VKPEFT_MAX_IMAGE_PIXELS");
  free(png);
}

static void test_font(void **state) {
  (void)state;
  // Every printable ASCII character has its own glyph whose rows are all equally wide and fit in
  // the 11-row cell; digits share one width.
  for (uint32_t c = 32; c < 127; c++) {
    const vkp_glyph *g = vkp_font_glyph(c);
    assert_int_equal(g->codepoint, c);
    size_t w = strlen(g->rows[0]);
    int rows = 0;
    for (int r = 0; r < 11 && g->rows[r]; r++, rows++) assert_int_equal(strlen(g->rows[r]), w);
    assert_true(g->top + rows <= 11);
    if (c >= '0' && c <= '9') assert_int_equal(w, 5);
    if (c != ' ') assert_true(count_ink(g) > 0);
  }
  assert_int_equal(vkp_font_glyph(0x2192)->codepoint, 0x2192);     // →
  assert_int_equal(vkp_font_glyph(0x1F600)->codepoint, 0xFFFD);    // unknown -> box
  // No glyph of their own: the closest ASCII one (accents dropped, typographic quotes straight).
  const uint32_t fb[][2] = {{0xE9, 'e'}, {0xC0, 'A'}, {0xFF, 'y'}, {0xDF, 's'}, {0xF1, 'n'}, {0x2019, '\''},
                            {0x201C, '"'}, {0x2013, '-'}};
  for (size_t i = 0; i < sizeof fb / sizeof fb[0]; i++) assert_ptr_equal(vkp_font_glyph(fb[i][0]), vkp_font_glyph(fb[i][1]));
  assert_int_equal(vkp_font_glyph(0xD7)->codepoint, 0xD7);          // × keeps its own glyph

  // "Hi": H is 5 wide, i 1 wide, 1 px between: 7 x 11. Ink: H = 8 rows x 2 + 5, i = 8.
  int w, h;
  vkp_text_size("Hi", 1, false, &w, &h);
  assert_int_equal(w, 7);
  assert_int_equal(h, 11);
  vkp_text_size("Hi", 2, false, &w, &h);
  assert_int_equal(w, 14);
  assert_int_equal(h, 22);
  vkp_text_size("Hi\nHi", 1, false, &w, &h);
  assert_int_equal(h, 2 * VKP_FONT_LINE - 2);
  vkp_text_size("Hi", 1, true, &w, &h);  // bold: each glyph one pixel wider
  assert_int_equal(w, 9);

  vkp_error err = {0};
  vkp_image *img = NULL;
  ASSERT_OK(vkp_image_new(20, 14, 3, &img, &err));
  memset(img->data, 255, img->stride * 14);
  vkp_image_draw_text(img, 2, 1, "Hi", VKP_RGB(0x000000), 1, false);
  int ink = 0;
  for (int y = 0; y < 14; y++)
    for (int x = 0; x < 20; x++) {
      uint32_t p = px(img, x, y);
      assert_true(p == 0x000000 || p == 0xFFFFFF);  // crisp at 1x
      ink += p == 0;
    }
  assert_int_equal(ink, 21 + 8);
  // The H's crossbar is row 4 of the glyph: pixels x = 2..6 at y = 1 + 4.
  for (int x = 2; x <= 6; x++) assert_int_equal(px(img, x, 5), 0);
  vkp_image_free(img);
}

// ---- ticks --------------------------------------------------------------------------------------

static void assert_ticks(double lo, double hi, int max, const double *want, int n_want,
                         double want_step) {
  double t[64], step = -1;
  int n = vkp_plot_ticks(lo, hi, max, t, 64, &step);
  if (n != n_want) fail_msg("ticks [%g, %g] max %d: %d ticks, want %d", lo, hi, max, n, n_want);
  assert_double_equal(step, want_step, want_step * 1e-12);
  for (int i = 0; i < n; i++) assert_double_equal(t[i], want[i], fabs(want_step) * 1e-9);
}

static void test_ticks(void **state) {
  (void)state;
  assert_ticks(0, 1, 6, (double[]){0, 0.2, 0.4, 0.6, 0.8, 1.0}, 6, 0.2);
  assert_ticks(0, 1, 11, (double[]){0, .1, .2, .3, .4, .5, .6, .7, .8, .9, 1}, 11, 0.1);
  assert_ticks(0, 7.3, 8, (double[]){0, 1, 2, 3, 4, 5, 6, 7}, 8, 1);
  assert_ticks(0, 7.3, 7, (double[]){0, 2, 4, 6}, 4, 2);
  assert_ticks(-3, 27, 7, (double[]){0, 5, 10, 15, 20, 25}, 6, 5);
  assert_ticks(0.0013, 0.0042, 6, (double[]){0.0015, 0.002, 0.0025, 0.003, 0.0035, 0.004}, 6, 5e-4);
  assert_ticks(0.0013, 0.0042, 5, (double[]){0.002, 0.003, 0.004}, 3, 0.001);
  assert_ticks(1, 1000, 10, (double[]){100, 200, 300, 400, 500, 600, 700, 800, 900, 1000}, 10, 100);
  assert_ticks(1, 1000, 9, (double[]){200, 400, 600, 800, 1000}, 5, 200);
  assert_ticks(-0.5, 0.5, 5, (double[]){-0.4, -0.2, 0, 0.2, 0.4}, 5, 0.2);
  assert_ticks(0, 12000, 8, (double[]){0, 2000, 4000, 6000, 8000, 10000, 12000}, 7, 2000);
  double t[8];
  assert_int_equal(vkp_plot_ticks(1, 1, 5, t, 8, NULL), 0);
  assert_int_equal(vkp_plot_ticks(2, 1, 5, t, 8, NULL), 0);
  assert_int_equal(vkp_plot_ticks(0, INFINITY, 5, t, 8, NULL), 0);

  // Property check over many ranges: step in {1,2,5} x 10^k, at most max ticks, evenly spaced
  // multiples of the step inside the range, and the smallest such step.
  uint32_t s = 99;
  for (int it = 0; it < 5000; it++) {
    s = s * 1664525u + 1013904223u;
    double lo = ((s >> 8) / 16777216.0 - 0.5) * pow(10, (int)(s % 13) - 6);
    s = s * 1664525u + 1013904223u;
    double hi = lo + (s >> 8) / 16777216.0 * pow(10, (int)(s % 11) - 5) + 1e-12;
    int max = 2 + (int)(s % 12);
    double tk[64], step;
    int n = vkp_plot_ticks(lo, hi, max, tk, 64, &step);
    assert_true(n >= 1 && n <= max);
    double m = step / pow(10, floor(log10(step) + 1e-12));
    assert_true(fabs(m - 1) < 1e-9 || fabs(m - 2) < 1e-9 || fabs(m - 5) < 1e-9 ||
                fabs(m - 10) < 1e-9);
    for (int i = 0; i < n; i++) {
      assert_true(tk[i] >= lo - step * 1e-6 && tk[i] <= hi + step * 1e-6);
      double k = tk[i] / step;
      assert_true(fabs(k - round(k)) < 1e-6 + fabs(k) * 1e-14);
      if (i) assert_double_equal(tk[i] - tk[i - 1], step, step * 1e-6 + fabs(tk[i]) * 4e-16);
    }
    // The smallest such step: the next smaller 1-2-5 step would give more than max ticks.
    double smaller = fabs(m - 1) < 1e-9 || fabs(m - 10) < 1e-9 ? step / 2 : fabs(m - 2) < 1e-9 ? step / 2 : step * 2 / 5;
    double fits = floor(hi / smaller + 1e-9) - ceil(lo / smaller - 1e-9) + 1;
    if (fits <= max) fail_msg("[%g, %g] max %d: step %g, but %g gives %g ticks", lo, hi, max, step, smaller, fits);
  }
}

static void test_log_ticks(void **state) {
  (void)state;
  double t[32];
  int n = vkp_plot_log_ticks(1e-5, 1e-1, 8, t, 32);
  assert_int_equal(n, 5);
  for (int i = 0; i < 5; i++) assert_double_equal(t[i], pow(10, -5 + i), 1e-18);
  n = vkp_plot_log_ticks(1e2, 1e9, 4, t, 32);  // every second decade
  assert_int_equal(n, 4);
  assert_double_equal(t[0], 1e2, 1e-6);
  assert_double_equal(t[3], 1e8, 1);
  n = vkp_plot_log_ticks(0.15, 3, 8, t, 32);  // narrow: 1-2-5
  assert_int_equal(n, 4);
  assert_double_equal(t[0], 0.2, 1e-12);
  assert_double_equal(t[1], 0.5, 1e-12);
  assert_double_equal(t[2], 1, 1e-12);
  assert_double_equal(t[3], 2, 1e-12);
  assert_int_equal(vkp_plot_log_ticks(0, 10, 5, t, 32), 0);
}

static void test_tick_format(void **state) {
  (void)state;
  char b[32];
  struct {
    double v, step, ref;
    const char *want;
  } cases[] = {
      {0, 0.2, 1, "0"},          {0.25, 0.05, 1, "0.25"},    {0.4, 0.2, 1, "0.4"},
      {3, 0.5, 3, "3.0"},        {1000, 200, 1000, "1000"},  {20000, 5000, 40000, "20k"},
      {12500, 2500, 15000, "12.5k"}, {2e6, 1e6, 8e6, "2M"},    {2.5e-4, 5e-5, 3e-4, "2.5e-4"},
      {1e-4, 5e-5, 3e-4, "1e-4"}, {-0.4, 0.2, 0.4, "-0.4"},  {1e5, 1e5, 1e5, "100k"},
      {1e-5, 1e-5, 1e-5, "1e-5"}, {0.01, 0.01, 0.01, "0.01"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    vkp_plot_format_tick(cases[i].v, cases[i].step, cases[i].ref, b, sizeof b);
    if (strcmp(b, cases[i].want))
      fail_msg("format(%g, step %g, ref %g) = \"%s\", want \"%s\"", cases[i].v, cases[i].step,
               cases[i].ref, b, cases[i].want);
  }
}

static void test_smooth_ema(void **state) {
  (void)state;
  double y[6] = {2, 2, 2, NAN, 2, 2}, out[6];
  vkp_plot_smooth_ema(y, 6, 0.9, out);  // debiased: a constant stays constant
  for (int i = 0; i < 6; i++) {
    if (i == 3)
      assert_true(isnan(out[i]));
    else
      assert_double_equal(out[i], 2, 1e-12);
  }
  double z[3] = {1, 0, 0};
  vkp_plot_smooth_ema(z, 3, 0.5, out);
  // last: 0.5, 0.25, 0.125; debias by 1 - 0.5^k: 0.5/0.5, 0.25/0.75, 0.125/0.875
  assert_double_equal(out[0], 1, 1e-12);
  assert_double_equal(out[1], 1.0 / 3, 1e-12);
  assert_double_equal(out[2], 1.0 / 7, 1e-12);
}

// ---- charts -------------------------------------------------------------------------------------

// The row a y value lands on, from the frame's definition (linear map of [y_min, y_max] onto
// [bottom, top]).
static double expect_row(const vkp_plot_frame *f, double y) {
  double t = f->log_y ? (log10(y) - log10(f->y_min)) / (log10(f->y_max) - log10(f->y_min))
                      : (y - f->y_min) / (f->y_max - f->y_min);
  return f->bottom - t * (f->bottom - f->top);
}

// In column x, the row whose colour is nearest to want; *dist its distance.
static int nearest_row(const vkp_image *img, int x, int y0, int y1, uint32_t want, int *dist) {
  int best = -1, bd = 1 << 30;
  for (int y = y0; y < y1; y++) {
    int d = color_dist(px(img, x, y), want);
    if (d < bd) {
      bd = d;
      best = y;
    }
  }
  *dist = bd;
  return best;
}

static void test_line_chart_pixels(void **state) {
  vkp_error err = {0};
  double x[2] = {0, 10}, y[2] = {0.5, 0.5};
  vkp_plot_series s = {.x = x, .y = y, .n = 2, .color = VKP_RGB(0xD62728), .line_width = 2};
  vkp_line_chart c = {.title = "Flat line",
                      .x = {.label = "step", .min = 0, .max = 10},
                      .y = {.label = "value", .min = 0, .max = 1},
                      .series = &s,
                      .n_series = 1};
  vkp_image *img = NULL;
  vkp_plot_frame f;
  ASSERT_OK(vkp_plot_line(&c, &img, &f, &err));
  assert_int_equal(img->width, 800);
  assert_int_equal(img->height, 500);
  assert_int_equal(img->channels, 3);
  // The frame is inside the image, leaves room for labels, and holds the fixed ranges.
  assert_true(f.left > 30 && f.right < 800 && f.left < f.right);
  assert_true(f.top > 20 && f.bottom < 480 && f.top < f.bottom);
  assert_double_equal(f.y_min, 0, 0);
  assert_double_equal(f.y_max, 1, 0);
  assert_double_equal(f.x_min, 0, 0);
  assert_double_equal(f.x_max, 10, 0);

  double yc = expect_row(&f, 0.5);
  for (int k = 1; k <= 3; k++) {
    int xcol = (int)(f.left + (f.right - f.left) * k / 4.0);
    int d, row = nearest_row(img, xcol, (int)f.top, (int)f.bottom, 0xD62728, &d);
    if (d > 30 || fabs(row + 0.5 - yc) > 1.0)
      fail_msg("column %d: nearest red at row %d (distance %d), line centre %.2f", xcol, row, d, yc);
    // 2 px wide: nothing red three rows away.
    assert_true(color_dist(px(img, xcol, (int)floor(yc) + 3), 0xD62728) > 200);
    assert_true(color_dist(px(img, xcol, (int)floor(yc) - 4), 0xD62728) > 200);
  }

  // Round trip through a PNG file: a valid PNG of the requested size with the same pixels.
  char path[256];
  vkp_test_dir_path(state, "line.png", path, sizeof path);
  const vkp_png_text meta = {"Title", "Flat line"};
  ASSERT_OK(vkp_png_write(path, img, &meta, 1, &err));
  vkp_image *back = NULL;
  ASSERT_OK(vkp_png_read(path, &back, NULL, NULL, &err));
  assert_int_equal(back->width, 800);
  assert_int_equal(back->height, 500);
  assert_memory_equal(back->data, img->data, (size_t)800 * 500 * 3);
  vkp_image_free(back);
  vkp_image_free(img);

  // A custom size and a log y axis: 10 on [1, 100] is half-way up.
  double y2[2] = {10, 10};
  vkp_plot_series s2 = {.x = x, .y = y2, .n = 2, .color = VKP_RGB(0x1F77B4)};
  vkp_line_chart c2 = {.width = 640, .height = 360, .x = {.min = 0, .max = 10},
                       .y = {.min = 1, .max = 100, .log = true}, .series = &s2, .n_series = 1,
                       .legend = VKP_LEGEND_NONE};
  ASSERT_OK(vkp_plot_line(&c2, &img, &f, &err));
  assert_int_equal(img->width, 640);
  assert_int_equal(img->height, 360);
  yc = expect_row(&f, 10);
  assert_double_equal(yc, (f.top + f.bottom) / 2, 1e-9);
  int xcol = (int)((f.left + f.right) / 2), d;
  int row = nearest_row(img, xcol, (int)f.top, (int)f.bottom, 0x1F77B4, &d);
  assert_true(d <= 30);
  assert_true(fabs(row + 0.5 - yc) <= 1.0);
  vkp_image_free(img);
}

static void test_line_chart_auto_and_errors(void **state) {
  (void)state;
  vkp_error err = {0};
  // Automatic ranges cover the data; gaps (NaN), empty series and many points are fine.
  enum { N = 5000 };
  double *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *sm = malloc(N * sizeof *sm);
  assert_non_null(x);
  assert_non_null(y);
  assert_non_null(sm);
  for (int i = 0; i < N; i++) {
    x[i] = i;
    y[i] = 2.0 * exp(-i / 900.0) + 0.1 + 0.05 * sin(i * 0.7);
  }
  y[100] = NAN;
  vkp_plot_smooth_ema(y, N, 0.95, sm);
  vkp_plot_series s[3] = {{.label = "loss", .x = x, .y = y, .n = N, .opacity = 0.3f},
                          {.label = "smoothed", .x = x, .y = sm, .n = N},
                          {.label = "empty", .n = 0}};
  vkp_line_chart c = {.title = "Loss", .x = {.label = "step"}, .y = {.label = "loss", .log = true},
                      .series = s, .n_series = 3};
  vkp_image *img = NULL;
  vkp_plot_frame f;
  ASSERT_OK(vkp_plot_line(&c, &img, &f, &err));
  assert_true(f.y_min > 0 && f.y_min < 0.1 + 0.05 * -1 + 0.01);
  assert_true(f.y_max > 2.05);
  assert_true(f.x_min <= 0 && f.x_max >= N - 1);
  vkp_image_free(img);

  // Errors.
  vkp_line_chart bad = c;
  bad.y.min = 0;
  bad.y.max = 1;  // log axis starting at 0
  assert_int_equal(vkp_plot_line(&bad, &img, NULL, &err), VKP_ERR_INVALID);
  assert_null(img);
  vkp_plot_series nos = {.n = 3};
  bad = (vkp_line_chart){.series = &nos, .n_series = 1};
  assert_int_equal(vkp_plot_line(&bad, &img, NULL, &err), VKP_ERR_INVALID);
  bad = (vkp_line_chart){.width = 50, .height = 20};
  assert_int_equal(vkp_plot_line(&bad, &img, NULL, &err), VKP_ERR_INVALID);
  // No series at all: an empty frame.
  bad = (vkp_line_chart){.title = "nothing yet"};
  ASSERT_OK(vkp_plot_line(&bad, &img, NULL, &err));
  vkp_image_free(img);
  free(x);
  free(y);
  free(sm);
}

static bool has_color(const vkp_image *img, uint32_t want, int tol) {
  for (int y = 0; y < img->height; y++)
    for (int x = 0; x < img->width; x++)
      if (color_dist(px(img, x, y), want) <= tol) return true;
  return false;
}

static void test_other_charts(void **state) {
  vkp_error err = {0};
  vkp_image *img = NULL;
  char path[256];

  // Scatter on a log x axis: each point's colour is at its computed position.
  vkp_scatter_point pts[3] = {{1e4, 0.87, "BitFit", VKP_RGB(0xD62728)},
                              {2e5, 0.91, "LoRA r=8", VKP_RGB(0x2CA02C)},
                              {8e6, 0.93, "Full", VKP_RGB(0x9467BD)}};
  vkp_scatter_chart sc = {.title = "Accuracy vs parameters", .x = {.label = "params", .log = true},
                          .y = {.label = "accuracy"}, .points = pts, .n_points = 3};
  vkp_plot_frame f;
  ASSERT_OK(vkp_plot_scatter(&sc, &img, &f, &err));
  assert_true(f.log_x);
  for (int i = 0; i < 3; i++) {
    double cx = f.left + (log10(pts[i].x) - log10(f.x_min)) / (log10(f.x_max) - log10(f.x_min)) *
                             (f.right - f.left);
    double cy = expect_row(&f, pts[i].y);
    uint32_t want = pts[i].color & 0xFFFFFF;
    uint32_t got = px(img, (int)floor(cx), (int)floor(cy));
    if (color_dist(got, want) > 40) fail_msg("point %d: %06x at centre, want %06x", i, got, want);
  }
  vkp_test_dir_path(state, "scatter.png", path, sizeof path);
  ASSERT_OK(vkp_png_write(path, img, NULL, 0, &err));
  vkp_image_free(img);

  // Confusion matrix: a perfect class gets the darkest shade, an empty row no dark cells.
  const char *names[3] = {"cat", "dog", "bird"};
  int64_t cm[9] = {50, 0, 0, 5, 40, 5, 0, 0, 0};
  vkp_confusion_chart cc = {.n_classes = 3, .class_names = names, .counts = cm};
  ASSERT_OK(vkp_plot_confusion(&cc, &img, &err));
  assert_true(img->width >= 200 && img->height >= 200);
  assert_true(has_color(img, 0x08306B, 0));
  vkp_test_dir_path(state, "confusion.png", path, sizeof path);
  ASSERT_OK(vkp_png_write(path, img, NULL, 0, &err));
  vkp_image_free(img);
  cc.n_classes = 0;
  assert_int_equal(vkp_plot_confusion(&cc, &img, &err), VKP_ERR_INVALID);
  int64_t neg[1] = {-1};
  cc = (vkp_confusion_chart){.n_classes = 1, .counts = neg};
  assert_int_equal(vkp_plot_confusion(&cc, &img, &err), VKP_ERR_INVALID);

  // Bars.
  const char *labs[3] = {"LoRA", "BitFit", "Full fine-tuning"};
  double vals[3] = {91.2, 87.0, 93.1};
  uint32_t cols[3] = {VKP_RGB(0x2CA02C), 0, 0};
  vkp_bar_chart bc = {.title = "Accuracy", .value_label = "%", .labels = labs, .values = vals,
                      .colors = cols, .n = 3, .value_format = "%.1f%%"};
  ASSERT_OK(vkp_plot_bars(&bc, &img, &err));
  assert_int_equal(img->width, 800);
  assert_true(has_color(img, 0x2CA02C, 40));
  vkp_image_free(img);
  bc.n = 0;
  assert_int_equal(vkp_plot_bars(&bc, &img, &err), VKP_ERR_INVALID);
}

static void test_image_grid(void **state) {
  vkp_error err = {0};
  // Five 8x8 tiles: pure green RGB, grey, RGBA half transparent red; auto scale = 8 (64 px).
  uint8_t green[8 * 8 * 3], grey[8 * 8], rgba[8 * 8 * 4];
  for (int i = 0; i < 64; i++) {
    green[3 * i] = 0;
    green[3 * i + 1] = 200;
    green[3 * i + 2] = 0;
    grey[i] = 40;
    rgba[4 * i] = 255;
    rgba[4 * i + 1] = 0;
    rgba[4 * i + 2] = 0;
    rgba[4 * i + 3] = 128;
  }
  vkp_image tiles[5] = {{8, 8, 3, 0, green}, {8, 8, 1, 0, grey}, {8, 8, 4, 0, rgba},
                        {8, 8, 3, 0, green}, {8, 8, 1, 0, grey}};
  const char *caps[5] = {"Sandal\xE2\x86\x92Sneaker", NULL, "two\nlines",
                         "a caption much too long to fit under a small tile", "ok"};
  uint32_t capcol[5] = {VKP_RGB(0xC0392B), 0, 0, 0, 0};
  vkp_image_grid g = {.title = "Samples", .images = tiles, .captions = caps,
                      .caption_colors = capcol, .n = 5};
  vkp_image *img = NULL;
  ASSERT_OK(vkp_plot_image_grid(&g, &img, &err));
  int n_green = 0, n_grey = 0, n_pink = 0;
  for (int y = 0; y < img->height; y++)
    for (int x = 0; x < img->width; x++) {
      uint32_t p = px(img, x, y);
      n_green += p == 0x00C800;
      n_grey += p == 0x282828;
      n_pink += color_dist(p, 0xFF7F7F) <= 3;  // 50% red over white
    }
  assert_int_equal(n_green, 2 * 64 * 64);
  assert_int_equal(n_grey, 2 * 64 * 64);
  assert_int_equal(n_pink, 64 * 64);
  assert_true(has_color(img, 0xC0392B, 0));  // the red caption
  char path[256];
  vkp_test_dir_path(state, "grid.png", path, sizeof path);
  ASSERT_OK(vkp_png_write(path, img, NULL, 0, &err));
  vkp_image_free(img);

  g.scale = 2;
  g.cols = 5;
  ASSERT_OK(vkp_plot_image_grid(&g, &img, &err));
  n_green = 0;
  for (int y = 0; y < img->height; y++)
    for (int x = 0; x < img->width; x++) n_green += px(img, x, y) == 0x00C800;
  assert_int_equal(n_green, 2 * 16 * 16);
  vkp_image_free(img);

  vkp_image broken = {8, 8, 3, 0, NULL};
  g = (vkp_image_grid){.images = &broken, .n = 1};
  assert_int_equal(vkp_plot_image_grid(&g, &img, &err), VKP_ERR_INVALID);
  g.n = 0;
  assert_int_equal(vkp_plot_image_grid(&g, &img, &err), VKP_ERR_INVALID);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_png_roundtrip),      cmocka_unit_test(test_png_stride_view),
      cmocka_unit_test(test_png_write_errors),   cmocka_unit_test(test_png_read_errors),
      cmocka_unit_test(test_png_decode_limit),
      cmocka_unit_test(test_font),               cmocka_unit_test(test_ticks),
      cmocka_unit_test(test_log_ticks),          cmocka_unit_test(test_tick_format),
      cmocka_unit_test(test_smooth_ema),         cmocka_unit_test(test_line_chart_pixels),
      cmocka_unit_test(test_line_chart_auto_and_errors), cmocka_unit_test(test_other_charts),
      cmocka_unit_test(test_image_grid),
  };
  return cmocka_run_group_tests(tests, vkp_test_dir_setup, vkp_test_dir_teardown);
}
