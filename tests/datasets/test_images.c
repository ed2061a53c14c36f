// test_images.c — image-folder and CSV/JSONL list readers on files written here with
// stb_image_write: grey / RGB / RGBA / BMP inputs, channel conversion and alpha handling against
// hand-computed values, corrupt, truncated and missing images, empty class folders, fixed class
// lists, load-time resizing; files that stb_image 2.27 mishandles (fuzz_image's findings: JPEG
// tables, truncated TGA / PNM, PNG chunks longer than the file, short BMP palettes) and class ids
// out of range.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb/stb_image_write.h>

#include "vkp_data.h"

static char g_dir[256];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
  (void)sb, (void)flag, (void)f;
  return remove(p);
}

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/vkp-test-images-XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return 0;
}

static const char *P(const char *fmt, ...) {
  static char buf[32][512];  // a ring: a result stays valid for 31 more calls
  static int k;
  k = (k + 1) % 32;
  int n = snprintf(buf[k], sizeof buf[k], "%s/", g_dir);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf[k] + n, sizeof buf[k] - (size_t)n, fmt, ap);
  va_end(ap);
  return buf[k];
}

static void mkdirs(const char *path) {
  char tmp[512];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = '\0';
      mkdir(tmp, 0755);
      *p = '/';
    }
  mkdir(tmp, 0755);
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
}

static void png(const char *path, int w, int h, int c, const uint8_t *px) {
  assert_true(stbi_write_png(path, w, h, c, px, w * c) != 0);
}

// The images of the folder fixture, values by hand.
static const uint8_t RGB32[3 * 2 * 3] = {  // 3x2 RGB
    255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 200, 100, 50, 7, 7, 7};
static const uint8_t GREY22[2 * 2] = {0, 85, 170, 255};  // 2x2 grey
static const uint8_t RGBA22[2 * 2 * 4] = {                // 2x2 RGBA
    100, 50, 0, 255, 100, 50, 0, 0, 100, 50, 0, 128, 255, 255, 255, 64};
static const uint8_t BMP23[2 * 3 * 3] = {  // 2x3 RGB (BMP is lossless)
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18};

// root/bird/x.bmp, root/cat/a.png (RGB), root/cat/sub/b.png (grey), root/dog/c.png (RGBA),
// plus files that must be ignored.
static const char *make_fixture(const char *name) {
  mkdirs(P("%s/bird", name));
  mkdirs(P("%s/cat/sub", name));
  mkdirs(P("%s/dog", name));
  mkdirs(P("%s/.hidden", name));
  assert_true(stbi_write_bmp(P("%s/bird/x.bmp", name), 2, 3, 3, BMP23) != 0);
  png(P("%s/cat/a.png", name), 3, 2, 3, RGB32);
  png(P("%s/cat/sub/b.png", name), 2, 2, 1, GREY22);
  png(P("%s/dog/c.PNG", name), 2, 2, 4, RGBA22);
  png(P("%s/.hidden/h.png", name), 2, 2, 1, GREY22);
  png(P("%s/dog/.h.png", name), 2, 2, 1, GREY22);
  write_file(P("%s/dog/notes.txt", name), "not an image", 12);
  write_file(P("%s/README", name), "loose file", 10);
  return P("%s", name);
}

static uint8_t white(unsigned v, unsigned a) { return (uint8_t)((v * a + 255 * (255 - a) + 127) / 255); }
static uint8_t black(unsigned v, unsigned a) { return (uint8_t)((v * a + 127) / 255); }
static uint8_t luma(unsigned r, unsigned g, unsigned b) {
  return (uint8_t)((77 * r + 150 * g + 29 * b + 128) >> 8);
}

static void test_folder_rgb(void **state) {
  (void)state;
  const char *root = make_fixture("f1");
  vkp_dataset *ds = NULL;
  vkp_error e;
  vkp_status st = vkp_data_load_folder(root, NULL, &ds, &e);
  if (st != VKP_OK) fail_msg("%s", e.msg);
  assert_int_equal(ds->count, 4);
  assert_int_equal(ds->n_classes, 3);
  assert_string_equal(ds->class_names[0], "bird");
  assert_string_equal(ds->class_names[1], "cat");
  assert_string_equal(ds->class_names[2], "dog");
  assert_int_equal(ds->channels, 3);  // auto: some image has colour
  assert_int_equal(ds->width, 0);     // sizes differ
  int want_labels[] = {0, 1, 1, 2};
  int want_w[] = {2, 3, 2, 2}, want_h[] = {3, 2, 2, 2};
  for (int i = 0; i < 4; i++) {
    assert_int_equal(ds->labels[i], want_labels[i]);
    assert_int_equal(ds->widths[i], want_w[i]);
    assert_int_equal(ds->heights[i], want_h[i]);
  }
  assert_non_null(strstr(ds->paths[1], "cat/a.png"));
  assert_non_null(strstr(ds->paths[2], "cat/sub/b.png"));
  assert_memory_equal(vkp_dataset_image(ds, 0), BMP23, sizeof BMP23);
  assert_memory_equal(vkp_dataset_image(ds, 1), RGB32, sizeof RGB32);
  const uint8_t *g = vkp_dataset_image(ds, 2);
  for (int p = 0; p < 4; p++)
    for (int k = 0; k < 3; k++) assert_int_equal(g[3 * p + k], GREY22[p]);  // replicated
  const uint8_t *d = vkp_dataset_image(ds, 3);
  for (int p = 0; p < 4; p++)
    for (int k = 0; k < 3; k++) assert_int_equal(d[3 * p + k], white(RGBA22[4 * p + k], RGBA22[4 * p + 3]));
  // By hand: a fully transparent pixel is white; 100 at alpha 128 over white:
  // (100 * 128 + 255 * 127) / 255 = 177.2 -> 177.
  assert_int_equal(d[3], 255);
  assert_int_equal(d[6], 177);
  vkp_dataset_free(ds);
}

static void test_folder_channels_alpha(void **state) {
  (void)state;
  const char *root = make_fixture("f2");
  vkp_dataset *ds = NULL;
  vkp_error e;
  // Grey: the luma.
  vkp_data_load_opts o = {.channels = 1};
  assert_int_equal(vkp_data_load_folder(root, &o, &ds, &e), VKP_OK);
  assert_int_equal(ds->channels, 1);
  const uint8_t *a = vkp_dataset_image(ds, 1);
  for (int p = 0; p < 6; p++)
    assert_int_equal(a[p], luma(RGB32[3 * p], RGB32[3 * p + 1], RGB32[3 * p + 2]));
  assert_int_equal(a[0], 77);  // pure red: (77 * 255 + 128) >> 8
  assert_memory_equal(vkp_dataset_image(ds, 2), GREY22, 4);  // grey stays exact
  vkp_dataset_free(ds);
  // RGBA kept; grey and RGB get alpha 255.
  o = (vkp_data_load_opts){.channels = 4};
  assert_int_equal(vkp_data_load_folder(root, &o, &ds, &e), VKP_OK);
  assert_memory_equal(vkp_dataset_image(ds, 3), RGBA22, sizeof RGBA22);
  assert_int_equal(vkp_dataset_image(ds, 2)[3], 255);
  assert_int_equal(vkp_dataset_image(ds, 2)[4], 85);
  vkp_dataset_free(ds);
  // Black background and dropped alpha.
  o = (vkp_data_load_opts){.channels = 3, .alpha = VKP_ALPHA_BLACK};
  assert_int_equal(vkp_data_load_folder(root, &o, &ds, &e), VKP_OK);
  const uint8_t *d = vkp_dataset_image(ds, 3);
  for (int p = 0; p < 4; p++)
    for (int k = 0; k < 3; k++) assert_int_equal(d[3 * p + k], black(RGBA22[4 * p + k], RGBA22[4 * p + 3]));
  assert_int_equal(d[3], 0);
  assert_int_equal(d[6], 50);  // 100 * 128 / 255 = 50.2
  vkp_dataset_free(ds);
  o = (vkp_data_load_opts){.channels = 3, .alpha = VKP_ALPHA_DROP};
  assert_int_equal(vkp_data_load_folder(root, &o, &ds, &e), VKP_OK);
  d = vkp_dataset_image(ds, 3);
  for (int p = 0; p < 4; p++)
    for (int k = 0; k < 3; k++) assert_int_equal(d[3 * p + k], RGBA22[4 * p + k]);
  vkp_dataset_free(ds);
  // Auto channels on grey-only data is 1.
  mkdirs(P("g/one"));
  png(P("g/one/a.png"), 2, 2, 1, GREY22);
  png(P("g/one/b.png"), 2, 2, 2, (uint8_t[]){9, 255, 8, 0, 7, 10, 6, 255});  // grey + alpha
  assert_int_equal(vkp_data_load_folder(P("g"), NULL, &ds, &e), VKP_OK);
  assert_int_equal(ds->channels, 1);
  assert_int_equal(ds->width, 2);
  assert_int_equal(vkp_dataset_image(ds, 1)[0], 9);
  assert_int_equal(vkp_dataset_image(ds, 1)[1], 255);  // transparent on white
  assert_int_equal(vkp_dataset_image(ds, 1)[2], white(7, 10));
  vkp_dataset_free(ds);
  o = (vkp_data_load_opts){.channels = 2};
  assert_int_equal(vkp_data_load_folder(root, &o, &ds, &e), VKP_ERR_INVALID);
}

typedef struct warn_log {
  int n;
  char last[512];
} warn_log;

static void on_warn(void *user, const char *msg) {
  warn_log *w = user;
  w->n++;
  snprintf(w->last, sizeof w->last, "%s", msg);
}

static void expect_err(vkp_status st, const vkp_error *e, vkp_status want, const char *frag1,
                       const char *frag2) {
  if (st != want)
    fail_msg("status %s, want %s (%s)", vkp_status_name(st), vkp_status_name(want), e->msg);
  if (frag1 && !strstr(e->msg, frag1)) fail_msg("message '%s' lacks '%s'", e->msg, frag1);
  if (frag2 && !strstr(e->msg, frag2)) fail_msg("message '%s' lacks '%s'", e->msg, frag2);
}

static void test_folder_bad_inputs(void **state) {
  (void)state;
  vkp_dataset *ds = NULL;
  vkp_error e;
  warn_log w = {0};
  vkp_data_load_opts skip = {.skip_bad = true, .warn = on_warn, .warn_user = &w};
  // Missing root, root without class folders.
  expect_err(vkp_data_load_folder(P("missing"), NULL, &ds, &e), &e, VKP_ERR_IO, "missing", NULL);
  mkdirs(P("flat"));
  png(P("flat/a.png"), 2, 2, 1, GREY22);
  expect_err(vkp_data_load_folder(P("flat"), NULL, &ds, &e), &e, VKP_ERR_FORMAT, "no class", NULL);

  // An empty class folder: error, or an empty class with skip_bad.
  const char *root = make_fixture("f3");
  mkdirs(P("f3/eel"));
  write_file(P("f3/eel/readme.txt"), "x", 1);
  expect_err(vkp_data_load_folder(root, NULL, &ds, &e), &e, VKP_ERR_FORMAT, "f3/eel", "no images");
  assert_null(ds);
  // A class folder with nothing in it at all (no entries to sort: UBSan's qsort(NULL, 0) check).
  const char *root5 = make_fixture("f3v");
  mkdirs(P("f3v/void"));
  expect_err(vkp_data_load_folder(root5, NULL, &ds, &e), &e, VKP_ERR_FORMAT, "f3v/void", "no images");
  assert_null(ds);
  assert_int_equal(vkp_data_load_folder(root, &skip, &ds, &e), VKP_OK);
  assert_int_equal(w.n, 1);
  assert_non_null(strstr(w.last, "eel"));
  assert_int_equal(ds->n_classes, 4);
  assert_int_equal(ds->count, 4);
  assert_string_equal(ds->class_names[3], "eel");
  vkp_dataset_free(ds);

  // A corrupt PNG (garbage) fails in the header pass; a truncated PNG (good header, data cut)
  // fails while decoding. Both name the file; with skip_bad both are skipped and the images
  // after them keep their pixels (the buffer is compacted).
  root = make_fixture("f4");
  static const char garbage[] = "\x89PNG\r\n\x1a\n this is not a png";
  write_file(P("f4/cat/a0-garbage.png"), garbage, sizeof garbage - 1);
  {
    uint8_t px[16 * 16];
    for (int i = 0; i < 256; i++) px[i] = (uint8_t)(i * 37);
    png(P("f4/cat/a1-truncated.png"), 16, 16, 1, px);
    struct stat sb;
    assert_int_equal(stat(P("f4/cat/a1-truncated.png"), &sb), 0);
    assert_int_equal(truncate(P("f4/cat/a1-truncated.png"), sb.st_size / 2), 0);
  }
  expect_err(vkp_data_load_folder(root, NULL, &ds, &e), &e, VKP_ERR_FORMAT, "a0-garbage.png",
             "corrupt");
  remove(P("f4/cat/a0-garbage.png"));
  expect_err(vkp_data_load_folder(root, NULL, &ds, &e), &e, VKP_ERR_FORMAT, "a1-truncated.png",
             "corrupt");
  write_file(P("f4/cat/a0-garbage.png"), "GIF89a", 6);
  w.n = 0;
  assert_int_equal(vkp_data_load_folder(root, &skip, &ds, &e), VKP_OK);
  assert_int_equal(w.n, 2);
  assert_int_equal(ds->count, 4);
  assert_memory_equal(vkp_dataset_image(ds, 0), BMP23, sizeof BMP23);
  assert_memory_equal(vkp_dataset_image(ds, 1), RGB32, sizeof RGB32);
  assert_int_equal(vkp_dataset_image(ds, 2)[3], GREY22[1]);
  assert_int_equal(vkp_dataset_image(ds, 3)[3], 255);
  assert_non_null(strstr(ds->paths[3], "dog/c.PNG"));
  vkp_dataset_free(ds);

  // A fixed class list: ids from the list; a folder outside it is an error.
  root = make_fixture("f5");
  const char *names[] = {"ant", "bird", "cat", "dog"};
  vkp_data_load_opts fixed = {.class_names = names, .n_class_names = 4};
  assert_int_equal(vkp_data_load_folder(root, &fixed, &ds, &e), VKP_OK);
  assert_int_equal(ds->n_classes, 4);
  assert_int_equal(ds->labels[0], 1);
  assert_int_equal(ds->labels[3], 3);
  assert_string_equal(ds->class_names[0], "ant");
  vkp_dataset_free(ds);
  fixed.n_class_names = 3;
  expect_err(vkp_data_load_folder(root, &fixed, &ds, &e), &e, VKP_ERR_FORMAT, "'dog'", "class list");

  // A JPEG whose Huffman table (DHT) counts 272 symbols: stb_image 2.27 writes past its 257-entry
  // table (found by fuzz_image); it is refused before stb_image reads it.
  root = make_fixture("f6");
  static const unsigned char dht[] = {0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x13, 0x00, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                                      0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0xFF, 0xD9};
  write_file(P("f6/cat/huffman.jpg"), dht, sizeof dht);
  expect_err(vkp_data_load_folder(root, NULL, &ds, &e), &e, VKP_ERR_FORMAT, "huffman.jpg", "Huffman table of more than 256");
  // The same after fill bytes (0xFF) before the start marker, which stb_image skips.
  unsigned char filled[3 + sizeof dht] = {0xFF, 0xFF, 0xFF};
  memcpy(filled + 3, dht, sizeof dht);
  write_file(P("f6/cat/huffman.jpg"), filled, sizeof filled);
  expect_err(vkp_data_load_folder(root, NULL, &ds, &e), &e, VKP_ERR_FORMAT, "huffman.jpg", "Huffman table of more than 256");
  // A baseline JPEG whose scan uses Huffman tables it never defines, and one whose frame has three
  // components but whose only scan codes the first: stb_image 2.27 decodes both from uninitialised
  // memory (fuzz_image saw one file give different pixels on every decode). Both are refused.
  unsigned char jpg[200];
  size_t n = 0;
  static const unsigned char soi_dqt[] = {0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x43, 0x00};
  memcpy(jpg, soi_dqt, sizeof soi_dqt), n = sizeof soi_dqt;
  memset(jpg + n, 1, 64), n += 64;   // quantization table 0: all ones
  static const unsigned char sof1[] = {0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x08, 0x00, 0x08, 0x01, 0x01, 0x11, 0x00};
  static const unsigned char sos[] = {0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x00, 0x00, 0xFF, 0xD9};
  memcpy(jpg + n, sof1, sizeof sof1), memcpy(jpg + n + sizeof sof1, sos, sizeof sos);
  remove(P("f6/cat/huffman.jpg"));
  write_file(P("f6/cat/notables.jpg"), jpg, n + sizeof sof1 + sizeof sos);
  expect_err(vkp_data_load_folder(root, NULL, &ds, &e), &e, VKP_ERR_FORMAT, "notables.jpg", "uses a table the file does not define");
  remove(P("f6/cat/notables.jpg"));
  // A baseline scan whose spectral selection reads 0..0 but whose AC table is undefined: stb_image
  // decodes all 64 coefficients of a baseline block with the AC table anyway (fuzz_image: the same
  // 485-byte file decoded twice gave different pixels; valgrind shows the uninitialised fast-AC table).
  static const unsigned char dc_only[] = {0xFF, 0xC4, 0x00, 0x14, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00};
  static const unsigned char sos_dc[] = {0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xD9};
  memcpy(jpg + n, sof1, sizeof sof1), memcpy(jpg + n + sizeof sof1, dc_only, sizeof dc_only);
  memcpy(jpg + n + sizeof sof1 + sizeof dc_only, sos_dc, sizeof sos_dc);
  write_file(P("f6/cat/noac.jpg"), jpg, n + sizeof sof1 + sizeof dc_only + sizeof sos_dc);
  expect_err(vkp_data_load_folder(root, NULL, &ds, &e), &e, VKP_ERR_FORMAT, "noac.jpg", "uses a table the file does not define");
  remove(P("f6/cat/noac.jpg"));
  static const unsigned char sof3[] = {0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x08, 0x00, 0x08, 0x03,
                                       0x01, 0x11, 0x00, 0x02, 0x11, 0x00, 0x03, 0x11, 0x00};
  static const unsigned char dht2[] = {0xFF, 0xC4, 0x00, 0x26, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00,
                                       0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00};
  memcpy(jpg + n, sof3, sizeof sof3), memcpy(jpg + n + sizeof sof3, dht2, sizeof dht2);
  memcpy(jpg + n + sizeof sof3 + sizeof dht2, sos, sizeof sos);
  write_file(P("f6/cat/onecomp.jpg"), jpg, n + sizeof sof3 + sizeof dht2 + sizeof sos);
  expect_err(vkp_data_load_folder(root, NULL, &ds, &e), &e, VKP_ERR_FORMAT, "onecomp.jpg", "component that no scan codes");
  remove(P("f6/cat/onecomp.jpg"));
  // A TGA (uncompressed, 2 x 1025 pixels) and a PPM (4 x 4) cut short: stb_image 2.27 left the
  // missing rows unwritten (uninitialised pixels; fuzz_image found the TGA). Both are refused.
  static const unsigned char tga[] = {0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 4, 24, 0, 1, 2, 3, 4, 5, 6};
  write_file(P("f6/cat/short.tga"), tga, sizeof tga);
  expect_err(vkp_data_load_folder(root, NULL, &ds, &e), &e, VKP_ERR_FORMAT, "short.tga", "truncated TGA");
  write_file(P("f6/cat/short.tga"), tga, 17);   // even the header cut short (stb_image reads zeros)
  expect_err(vkp_data_load_folder(root, NULL, &ds, &e), &e, VKP_ERR_FORMAT, "short.tga", "truncated TGA");
  remove(P("f6/cat/short.tga"));
  static const char ppm[] = "P6 # a comment\n4 4\n255\n0123456789";
  write_file(P("f6/cat/short.ppm"), ppm, sizeof ppm - 1);
  expect_err(vkp_data_load_folder(root, NULL, &ds, &e), &e, VKP_ERR_FORMAT, "short.ppm", "truncated PNM");
  remove(P("f6/cat/short.ppm"));
  static const char pgm[] = "P5\n4 4\n\xff\x01\x02";   // no maxval at all (stb_image reads 0): data from the 0xff
  write_file(P("f6/cat/nomax.pgm"), pgm, sizeof pgm - 1);
  expect_err(vkp_data_load_folder(root, NULL, &ds, &e), &e, VKP_ERR_FORMAT, "nomax.pgm", "truncated PNM");
  remove(P("f6/cat/nomax.pgm"));
  // A 16-bit PGM (maxval 4298), 4 x 1 grey samples of two bytes: stb_image 2.27 converts it to the
  // 4 channels the loader asks for with its 8-bit routine and then reads that buffer as 16-bit (a
  // heap overflow under ASan; fuzz_image). 16-bit PNM files are refused.
  static const char pgm16[] = "P5\n4 1\n4298\n\x10\x01\x10\x02\x10\x03\x10\x04";
  write_file(P("f6/cat/wide.pgm"), pgm16, sizeof pgm16 - 1);
  expect_err(vkp_data_load_folder(root, NULL, &ds, &e), &e, VKP_ERR_FORMAT, "wide.pgm", "16-bit PNM");
  remove(P("f6/cat/wide.pgm"));
  // A 2x2 PNG whose IDAT chunk declares 973 MB: stb_image allocated that before reading (fuzz_image:
  // seconds per decode under ASan). Chunks longer than the file are refused first.
  uint8_t px[4] = {1, 2, 3, 4};
  png(P("f6/cat/long.png"), 2, 2, 1, px);
  FILE *f = fopen(P("f6/cat/long.png"), "r+b");
  assert_non_null(f);
  assert_int_equal(fseek(f, 33, SEEK_SET), 0);   // signature 8 + IHDR 25: the IDAT's length
  assert_int_equal(fwrite("\x3a\x00\x00\x15", 1, 4, f), 4);
  fclose(f);
  expect_err(vkp_data_load_folder(root, NULL, &ds, &e), &e, VKP_ERR_FORMAT, "long.png", "PNG chunk longer than the file");
  remove(P("f6/cat/long.png"));
  // An 8-bit BMP with a palette of 16 colours: its pixels may index colours 16..255, which
  // stb_image 2.27 never sets (fuzz_image: uninitialised stack memory as pixels). Refused.
  unsigned char bmp[14 + 40 + 16 * 4 + 8] = {'B', 'M', sizeof bmp, 0, 0, 0, 0, 0, 0, 0, 14 + 40 + 64, 0, 0, 0,
                                              40, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 8, 0};
  bmp[14 + 32] = 16;   // colours used
  bmp[14 + 40 + 64] = 200;   // a pixel indexing colour 200
  write_file(P("f6/cat/palette.bmp"), bmp, sizeof bmp);
  expect_err(vkp_data_load_folder(root, NULL, &ds, &e), &e, VKP_ERR_FORMAT, "palette.bmp", "palette has fewer colours");
}

static void test_folder_resize_at_load(void **state) {
  (void)state;
  vkp_dataset *ds = NULL;
  vkp_error e;
  // A constant image stays constant at any size; a 12-row image of alternating black and white
  // rows shrunk 3x is smoothed (antialiased) instead of aliasing to pure black or white.
  mkdirs(P("rs/a"));
  uint8_t c[5 * 7 * 3], stripes[4 * 12];
  for (int i = 0; i < 5 * 7; i++) c[3 * i] = 40, c[3 * i + 1] = 140, c[3 * i + 2] = 240;
  for (int y = 0; y < 12; y++)
    for (int x = 0; x < 4; x++) stripes[y * 4 + x] = (uint8_t)(y % 2 ? 255 : 0);
  png(P("rs/a/const.png"), 5, 7, 3, c);
  png(P("rs/a/stripes.png"), 4, 12, 1, stripes);
  vkp_data_load_opts o = {.width = 4, .height = 4};
  assert_int_equal(vkp_data_load_folder(P("rs"), &o, &ds, &e), VKP_OK);
  assert_int_equal(ds->width, 4);
  assert_int_equal(ds->height, 4);
  assert_int_equal(ds->channels, 3);
  const uint8_t *a = vkp_dataset_image(ds, 0), *s = vkp_dataset_image(ds, 1);
  for (int p = 0; p < 16; p++) {
    assert_int_equal(a[3 * p], 40);
    assert_int_equal(a[3 * p + 1], 140);
    assert_int_equal(a[3 * p + 2], 240);
  }
  for (int y = 1; y < 3; y++) {  // interior rows: weights 1/3, 2/3, 1, 2/3, 1/3 over 5 rows
    int v = s[(y * 4 + 1) * 3];
    assert_true(v >= 105 && v <= 150);
  }
  vkp_dataset_free(ds);
  // Enlarging equals the transform's bilinear resize (same half-pixel convention), rounded.
  mkdirs(P("up/a"));
  png(P("up/a/x.png"), 3, 2, 3, RGB32);
  o = (vkp_data_load_opts){.width = 7, .height = 5};
  assert_int_equal(vkp_data_load_folder(P("up"), &o, &ds, &e), VKP_OK);
  vkp_data_transform t = {.out_w = 7, .out_h = 5};
  float out[3 * 5 * 7];
  assert_int_equal(vkp_data_transform_apply(&t, RGB32, 3, 2, 3, 0, out, &e), VKP_OK);
  const uint8_t *u = vkp_dataset_image(ds, 0);
  for (int y = 0; y < 5; y++)
    for (int x = 0; x < 7; x++)
      for (int k = 0; k < 3; k++) {
        float want = out[(k * 5 + y) * 7 + x] * 255.0f;
        int got = u[(y * 7 + x) * 3 + k];
        if (got < want - 0.51f || got > want + 0.51f)
          fail_msg("(%d,%d,%d): %d vs %.3f", x, y, k, got, (double)want);
      }
  vkp_dataset_free(ds);
  o = (vkp_data_load_opts){.width = 7};
  assert_int_equal(vkp_data_load_folder(P("up"), &o, &ds, &e), VKP_ERR_INVALID);
}

static void test_list_csv_jsonl(void **state) {
  (void)state;
  make_fixture("l1");
  vkp_dataset *ds = NULL;
  vkp_error e;
  // CSV with a header, class names, a quoted path holding a comma, CRLF line ends, blank lines.
  mkdirs(P("l1/odd, name"));
  png(P("l1/odd, name/q.png"), 2, 2, 1, GREY22);
  const char *csv =
      "path,label\r\n"
      "dog/c.PNG,dog\r\n"
      "\r\n"
      "\"odd, name/q.png\",\"cat\"\r\n"
      "cat/a.png, cat\n"
      "bird/x.bmp,bird\n";
  write_file(P("l1/list.csv"), csv, strlen(csv));
  vkp_status st = vkp_data_load_list(P("l1/list.csv"), NULL, &ds, &e);
  if (st != VKP_OK) fail_msg("%s", e.msg);
  assert_int_equal(ds->count, 4);
  assert_int_equal(ds->n_classes, 3);
  assert_string_equal(ds->class_names[0], "bird");  // sorted names
  assert_int_equal(ds->labels[0], 2);
  assert_int_equal(ds->labels[1], 1);
  assert_int_equal(ds->labels[2], 1);
  assert_int_equal(ds->labels[3], 0);
  assert_int_equal(ds->channels, 3);
  assert_memory_equal(vkp_dataset_image(ds, 2), RGB32, sizeof RGB32);
  assert_memory_equal(vkp_dataset_image(ds, 3), BMP23, sizeof BMP23);
  vkp_dataset_free(ds);

  // Columns in another order, integer labels: ids are the integers.
  const char *csv2 = "label,file_name\n5,cat/a.png\n0,bird/x.bmp\n";
  write_file(P("l1/ints.csv"), csv2, strlen(csv2));
  assert_int_equal(vkp_data_load_list(P("l1/ints.csv"), NULL, &ds, &e), VKP_OK);
  assert_int_equal(ds->n_classes, 6);
  assert_int_equal(ds->labels[0], 5);
  assert_string_equal(ds->class_names[5], "5");
  vkp_dataset_free(ds);

  // JSONL with absolute and relative paths, integer and string labels under a class list.
  char jsonl[2048];
  snprintf(jsonl, sizeof jsonl,
           "{\"path\": \"%s\", \"label\": 2}\n"
           "\n"
           "{\"file_name\": \"cat/sub/b.png\", \"label\": \"cat\"}\n",
           P("l1/dog/c.PNG"));
  write_file(P("l1/list.jsonl"), jsonl, strlen(jsonl));
  const char *names[] = {"bird", "cat", "dog"};
  vkp_data_load_opts fixed = {.class_names = names, .n_class_names = 3, .channels = 1};
  assert_int_equal(vkp_data_load_list(P("l1/list.jsonl"), &fixed, &ds, &e), VKP_OK);
  assert_int_equal(ds->count, 2);
  assert_int_equal(ds->labels[0], 2);
  assert_int_equal(ds->labels[1], 1);
  assert_int_equal(ds->channels, 1);
  assert_memory_equal(vkp_dataset_image(ds, 1), GREY22, 4);
  vkp_dataset_free(ds);

  // Errors name the file and line.
  const char *bad1 = "path,label\na.png\n";
  write_file(P("l1/bad1.csv"), bad1, strlen(bad1));
  expect_err(vkp_data_load_list(P("l1/bad1.csv"), NULL, &ds, &e), &e, VKP_ERR_FORMAT, "bad1.csv:2",
             NULL);
  const char *bad2 = "cat/a.png,cat\n\"unterminated,cat\n";
  write_file(P("l1/bad2.csv"), bad2, strlen(bad2));
  expect_err(vkp_data_load_list(P("l1/bad2.csv"), NULL, &ds, &e), &e, VKP_ERR_FORMAT, "bad2.csv:2",
             "unterminated");
  const char *bad3 = "{\"path\": \"cat/a.png\", \"label\": \"cat\"}\n{\"path\": 3}\n";
  write_file(P("l1/bad3.jsonl"), bad3, strlen(bad3));
  expect_err(vkp_data_load_list(P("l1/bad3.jsonl"), NULL, &ds, &e), &e, VKP_ERR_FORMAT,
             "bad3.jsonl:2", NULL);
  const char *bad4 = "{\"path\": \"cat/a.png\", \"label\": -1}\n";
  write_file(P("l1/bad4.jsonl"), bad4, strlen(bad4));
  expect_err(vkp_data_load_list(P("l1/bad4.jsonl"), NULL, &ds, &e), &e, VKP_ERR_FORMAT,
             "bad4.jsonl:1", "label");
  const char *bad5 = "cat/a.png,cat\nmissing.png,cat\n";
  write_file(P("l1/bad5.csv"), bad5, strlen(bad5));
  expect_err(vkp_data_load_list(P("l1/bad5.csv"), NULL, &ds, &e), &e, VKP_ERR_IO, "missing.png",
             NULL);
  const char *bad6 = "cat/a.png,cat\nbird/x.bmp,bird\n";
  write_file(P("l1/bad6.csv"), bad6, strlen(bad6));
  fixed.n_class_names = 1;
  expect_err(vkp_data_load_list(P("l1/bad6.csv"), &fixed, &ds, &e), &e, VKP_ERR_FORMAT,
             "bad6.csv:1", "'cat'");
  // Labels are all class ids or all class names: a number that is no id, or a mix, is refused
  // (it used to turn every label into a name and renumber the classes).
  static const struct { const char *file, *text, *where, *what; } mixed[] = {
      {"l1/neg.csv", "cat/a.png,0\nbird/x.bmp,-1\n", "neg.csv:2", "'-1' is a number but not a class id"},
      {"l1/frac.csv", "cat/a.png,1.5\nbird/x.bmp,0\n", "frac.csv:1", "'1.5' is a number but not a class id"},
      {"l1/mix.csv", "cat/a.png,1\nbird/x.bmp,cat\n", "mix.csv:2", "'cat' is a class name, but line 1's '1' is a class id"},
      {"l1/mix2.csv", "cat/a.png,cat\nbird/x.bmp,2\n", "mix2.csv:2", "'2' is a class id, but line 1's 'cat'"},
      {"l1/mix.jsonl", "{\"path\": \"cat/a.png\", \"label\": 1}\n{\"path\": \"bird/x.bmp\", \"label\": \"cat\"}\n",
       "mix.jsonl:2", "use ids or names"},
      // a class id that makes 65537 classes from one line (fuzz_list: 550000 took seconds)
      {"l1/huge.csv", "cat/a.png,65536\n", "huge.csv", "label 65536 is too large for a class id (at most 65535)"},
  };
  for (size_t i = 0; i < sizeof mixed / sizeof *mixed; i++) {
    write_file(P(mixed[i].file), mixed[i].text, strlen(mixed[i].text));
    expect_err(vkp_data_load_list(P(mixed[i].file), NULL, &ds, &e), &e, VKP_ERR_FORMAT, mixed[i].where, mixed[i].what);
  }
  // Names that merely contain digits stay names.
  const char *named = "cat/a.png,class-1\nbird/x.bmp,2b\n";
  write_file(P("l1/named.csv"), named, strlen(named));
  assert_int_equal(vkp_data_load_list(P("l1/named.csv"), NULL, &ds, &e), VKP_OK);
  assert_int_equal(ds->n_classes, 2);
  assert_string_equal(ds->class_names[0], "2b");
  vkp_dataset_free(ds);
  ds = NULL;
  write_file(P("l1/empty.csv"), "path,label\n", 11);
  expect_err(vkp_data_load_list(P("l1/empty.csv"), NULL, &ds, &e), &e, VKP_ERR_FORMAT, "no entries",
             NULL);
  expect_err(vkp_data_load_list(P("l1/none.csv"), NULL, &ds, &e), &e, VKP_ERR_IO, "none.csv", NULL);
  assert_null(ds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_folder_rgb),        cmocka_unit_test(test_folder_channels_alpha),
      cmocka_unit_test(test_folder_bad_inputs), cmocka_unit_test(test_folder_resize_at_load),
      cmocka_unit_test(test_list_csv_jsonl),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
