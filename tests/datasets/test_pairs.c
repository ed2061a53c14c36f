// test_pairs.c — image–text pairs: kohya caption folders with N_name repeats, CSV / JSONL lists
// with quoting and several captions, every error path (missing caption file, unreadable image,
// missing CSV field, a JSONL line that is not JSON, empty sets, a PNG declaring 16384^2), the
// real Debian sets (counts computed here from the package files, independently of the readers),
// Noto/EmojiOne pairing by code points, key splits, alpha flattening, and the loader's
// repeats and caption draws.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include "vkp_fileio.h"
#include "vkp_pairs.h"
#include "vkp_test.h"

// ---- helpers -------------------------------------------------------------------------------------

static const char *P(void **state, const char *fmt, ...) {
  static char buf[16][600];  // a ring: a result stays valid for 15 more calls
  static int k;
  k = (k + 1) % 16;
  char rel[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(rel, sizeof rel, fmt, ap);
  va_end(ap);
  return vkp_test_dir_path(state, rel, buf[k], sizeof buf[k]);
}

static void mkdirs(const char *path) { assert_int_equal(vkp_dir_create(path, NULL), VKP_OK); }

static void write_text(const char *path, const char *text) {
  const void *chunk = text;
  size_t len = strlen(text);
  assert_int_equal(vkp_file_write_atomic(path, &chunk, &len, 1, NULL), VKP_OK);
}

// A 4x3 RGB image whose first pixel is (v, 2v, 3v) and whose left and right halves differ.
static void png_rgb(const char *path, int v) {
  uint8_t px[4 * 3 * 3];
  for (int i = 0; i < 12; i++) {
    int x = i % 4;
    px[3 * i] = (uint8_t)(i == 0 ? v : x < 2 ? 10 : 240);
    px[3 * i + 1] = (uint8_t)(i == 0 ? 2 * v : 50);
    px[3 * i + 2] = (uint8_t)(i == 0 ? 3 * v : 90);
  }
  assert_true(stbi_write_png(path, 4, 3, 3, px, 4 * 3) != 0);
}

// Every warning a reader gave, one per line.
typedef struct warnings {
  int n;
  char all[4096];
} warnings;

static void on_warn(void *user, const char *msg) {
  warnings *w = user;
  size_t used = strlen(w->all);
  snprintf(w->all + used, sizeof w->all - used, "%s\n", msg);
  w->n++;
}

// Index of the image with key `key`, or -1.
static long find_key(const vkp_pairs *p, const char *key) {
  for (size_t i = 0; i < vkp_pairs_count(p); i++)
    if (strcmp(p->keys[i], key) == 0) return (long)i;
  return -1;
}

// Index of the image whose first caption is `cap`, or -1.
static long find_caption(const vkp_pairs *p, const char *cap) {
  for (size_t i = 0; i < vkp_pairs_count(p); i++)
    if (strcmp(vkp_pairs_caption(p, i, 0), cap) == 0) return (long)i;
  return -1;
}

// Index of the image with `cap` among its captions, or -1.
static long find_any_caption(const vkp_pairs *p, const char *cap) {
  for (size_t i = 0; i < vkp_pairs_count(p); i++)
    for (size_t k = 0; k < vkp_pairs_n_captions(p, i); k++)
      if (strcmp(vkp_pairs_caption(p, i, k), cap) == 0) return (long)i;
  return -1;
}

#define ASSERT_OK(expr, err)                                                         \
  do {                                                                               \
    vkp_status st_ = (expr);                                                         \
    if (st_ != VKP_OK) fail_msg("%s -> %s: %s", #expr, vkp_status_name(st_), (err).msg); \
  } while (0)

// Asserts that expr fails with `status` and a message containing every given fragment.
static void expect_error(vkp_status got, vkp_status want, const vkp_error *err, const char *a,
                         const char *b) {
  if (got != want || (a && !strstr(err->msg, a)) || (b && !strstr(err->msg, b)))
    fail_msg("want %s with '%s' and '%s', got %s: %s", vkp_status_name(want), a ? a : "",
             b ? b : "", vkp_status_name(got), err->msg);
  assert_null(strchr(err->msg, '\n'));
}

// ---- kohya folders -------------------------------------------------------------------------------

// root/10_sks dog/{a,b}.png, root/2_cat/c.png, root/d.png, with captions; an ignored folder, a
// nested folder kohya does not search, and a stray file.
static void make_kohya(void **state) {
  mkdirs(P(state, "root/10_sks dog/sub"));
  mkdirs(P(state, "root/2_cat"));
  mkdirs(P(state, "root/notrepeat"));
  png_rgb(P(state, "root/10_sks dog/a.png"), 1);
  write_text(P(state, "root/10_sks dog/a.txt"), "a photo of sks dog\n\n  second caption  \r\n");
  png_rgb(P(state, "root/10_sks dog/b.png"), 2);
  write_text(P(state, "root/10_sks dog/b.txt"), "\xEF\xBB\xBF" "b, with a BOM");
  png_rgb(P(state, "root/10_sks dog/sub/f.png"), 9);  // not searched (kohya: no recursion)
  png_rgb(P(state, "root/2_cat/c.png"), 3);
  write_text(P(state, "root/2_cat/c.txt"), "a cat");
  write_text(P(state, "root/2_cat/c.caption"), "a cat, kohya's default extension");
  png_rgb(P(state, "root/d.png"), 4);
  write_text(P(state, "root/d.txt"), "flat image d");
  png_rgb(P(state, "root/notrepeat/e.png"), 5);
  write_text(P(state, "root/notrepeat/e.txt"), "ignored");
  write_text(P(state, "root/readme.md"), "not an image");
}

static void test_folder_kohya(void **state) {
  make_kohya(state);
  warnings w = {0};
  vkp_pairs_opts o = {.warn = on_warn, .warn_user = &w};
  vkp_error err = {0};
  vkp_pairs *p = NULL;
  ASSERT_OK(vkp_pairs_load_folder(P(state, "root"), NULL, &o, &p, &err), err);
  assert_int_equal(vkp_pairs_count(p), 4);
  assert_int_equal(w.n, 1);  // notrepeat/
  assert_non_null(strstr(w.all, "notrepeat"));
  const char *keys[] = {"10_sks dog/a", "10_sks dog/b", "2_cat/c", "d"};
  const int32_t reps[] = {10, 10, 2, 1};
  const char *names[] = {"sks dog", "sks dog", "cat", NULL};
  for (int i = 0; i < 4; i++) {
    assert_string_equal(p->keys[i], keys[i]);
    assert_int_equal(p->repeats[i], reps[i]);
    if (names[i]) assert_string_equal(vkp_pairs_name(p, (size_t)i), names[i]);
    else assert_null(vkp_pairs_name(p, (size_t)i));
  }
  assert_int_equal(p->images->n_classes, 2);  // "cat", "sks dog"
  assert_string_equal(p->images->class_names[0], "cat");
  // One caption per non-empty line, trimmed; the BOM skipped.
  assert_int_equal(vkp_pairs_n_captions(p, 0), 2);
  assert_string_equal(vkp_pairs_caption(p, 0, 0), "a photo of sks dog");
  assert_string_equal(vkp_pairs_caption(p, 0, 1), "second caption");
  assert_string_equal(vkp_pairs_caption(p, 1, 0), "b, with a BOM");
  assert_string_equal(vkp_pairs_caption(p, 2, 0), "a cat");
  assert_string_equal(vkp_pairs_caption(p, 3, 0), "flat image d");
  // RGBA by default, alpha 255 for an RGB file; pixels as written.
  assert_int_equal(p->images->channels, 4);
  assert_int_equal(p->images->width, 4);
  assert_int_equal(p->images->height, 3);
  const uint8_t *px = vkp_dataset_image(p->images, 2);
  assert_int_equal(px[0], 3);
  assert_int_equal(px[1], 6);
  assert_int_equal(px[2], 9);
  assert_int_equal(px[3], 255);
  vkp_pairs_free(p);

  // Another caption extension (kohya's default ".caption"): only c has one.
  o.skip_bad = true;
  w = (warnings){0};
  ASSERT_OK(vkp_pairs_load_folder(P(state, "root"), "caption", &o, &p, &err), err);
  assert_int_equal(vkp_pairs_count(p), 1);
  assert_string_equal(vkp_pairs_caption(p, 0, 0), "a cat, kohya's default extension");
  assert_int_equal(w.n, 4);  // notrepeat/, and a, b, d without .caption files
  assert_non_null(strstr(w.all, "10_sks dog/a.png: caption file missing"));
  assert_non_null(strstr(w.all, "10_sks dog/b.png: caption file missing"));
  assert_non_null(strstr(w.all, "root/d.png: caption file missing (want"));
  vkp_pairs_free(p);
  vkp_pairs_free(NULL);
}

// The loader honours repeats (each image repeats[i] times an epoch, each copy its own
// augmentation) and draws captions per copy; batches do not depend on the worker count.
static void test_loader_repeats_captions(void **state) {
  make_kohya(state);
  vkp_pairs_opts o = {.warn = on_warn, .warn_user = &(warnings){0}};
  vkp_error err = {0};
  vkp_pairs *p = NULL;
  ASSERT_OK(vkp_pairs_load_folder(P(state, "root"), NULL, &o, &p, &err), err);
  vkp_data_transform t = {.out_w = 4, .out_h = 3, .hflip = 0.5f};
  for (int first = 0; first < 2; first++) {
    vkp_loader_opts lo = {.batch_size = 5, .shuffle = true, .seed = 11, .first_caption = first};
    vkp_loader *l = NULL, *l2 = NULL;
    ASSERT_OK(vkp_pairs_loader_new(p, &t, &lo, &l, &err), err);
    lo.n_workers = 2;
    ASSERT_OK(vkp_pairs_loader_new(p, &t, &lo, &l2, &err), err);
    assert_int_equal(vkp_loader_epoch_samples(l), 23);  // 10 + 10 + 2 + 1
    assert_int_equal(vkp_loader_steps_per_epoch(l), 5);
    int count[4] = {0}, cap_used[2] = {0}, flips[2] = {0};
    for (int s = 0; s < 5; s++) {
      vkp_batch b, b2;
      ASSERT_OK(vkp_loader_next(l, &b, &err), err);
      assert_non_null(b.captions);
      size_t per = (size_t)b.channels * b.height * b.width;
      float *keep = malloc((size_t)b.n * per * sizeof *keep);
      size_t caps[5], idx[5];
      memcpy(keep, b.pixels, (size_t)b.n * per * sizeof *keep);
      memcpy(caps, b.captions, (size_t)b.n * sizeof *caps);
      memcpy(idx, b.indices, (size_t)b.n * sizeof *idx);
      ASSERT_OK(vkp_loader_next(l2, &b2, &err), err);
      assert_int_equal(b2.n, b.n);
      assert_memory_equal(b2.indices, idx, (size_t)b.n * sizeof *idx);
      assert_memory_equal(b2.captions, caps, (size_t)b.n * sizeof *caps);
      assert_memory_equal(b2.pixels, keep, (size_t)b.n * per * sizeof *keep);
      for (int k = 0; k < b.n; k++) {
        size_t i = b.indices[k];
        count[i]++;
        assert_true(b.captions[k] >= p->caption_start[i] &&
                    b.captions[k] < p->caption_start[i + 1]);
        if (i == 0) {
          cap_used[b.captions[k] - p->caption_start[0]]++;
          // Channel 0 of pixel (0, 0): 1/255 unflipped (the marker pixel), 10/255 flipped.
          flips[keep[k * per] > 5.0f / 255]++;
        }
      }
      free(keep);
    }
    assert_int_equal(count[0], 10);
    assert_int_equal(count[1], 10);
    assert_int_equal(count[2], 2);
    assert_int_equal(count[3], 1);
    if (first) {
      assert_int_equal(cap_used[1], 0);
    } else {
      assert_true(cap_used[0] > 0 && cap_used[1] > 0);  // both lines of a.txt drawn
    }
    assert_true(flips[0] > 0 && flips[1] > 0);  // copies are augmented independently
    vkp_loader_free(l);
    vkp_loader_free(l2);
  }
  // A subset keeps repeats and captions.
  size_t pick[] = {3, 0};
  vkp_pairs *s = NULL;
  ASSERT_OK(vkp_pairs_subset(p, pick, 2, &s, &err), err);
  assert_int_equal(vkp_pairs_count(s), 2);
  assert_string_equal(s->keys[0], "d");
  assert_int_equal(s->repeats[1], 10);
  assert_int_equal(vkp_pairs_n_captions(s, 1), 2);
  assert_string_equal(vkp_pairs_caption(s, 1, 1), "second caption");
  assert_string_equal(vkp_pairs_name(s, 1), "sks dog");
  vkp_pairs_free(s);
  vkp_pairs_free(p);
}

// ---- CSV / JSONL lists ---------------------------------------------------------------------------

static void test_lists(void **state) {
  mkdirs(P(state, "img"));
  for (int i = 0; i < 3; i++) png_rgb(P(state, "img/%d.png", i), 10 + i);
  // A header in another column order; quoting: commas, doubled quotes, a line break; two rows of
  // one image are one image with two captions; a name column.
  write_text(P(state, "list.csv"),
             "name,file_name,text\n"
             "alpha,img/0.png,\"a red, green thing\"\n"
             "\n"
             "beta,img/1.png,\"she said \"\"hi\"\"\"\n"
             "alpha,img/0.png,\"two\n lines\"\n"
             ",img/2.png,  plain caption  \n");
  vkp_error err = {0};
  vkp_pairs *p = NULL;
  ASSERT_OK(vkp_pairs_load_list(P(state, "list.csv"), NULL, &p, &err), err);
  assert_int_equal(vkp_pairs_count(p), 3);
  assert_int_equal(vkp_pairs_n_captions(p, 0), 2);
  assert_string_equal(vkp_pairs_caption(p, 0, 0), "a red, green thing");
  assert_string_equal(vkp_pairs_caption(p, 0, 1), "two\n lines");
  assert_string_equal(vkp_pairs_caption(p, 1, 0), "she said \"hi\"");
  assert_string_equal(vkp_pairs_caption(p, 2, 0), "plain caption");
  assert_string_equal(p->keys[0], "alpha");  // the name is the key
  assert_string_equal(p->keys[2], "img/2.png");  // no name: the path as written
  assert_string_equal(vkp_pairs_name(p, 1), "beta");
  assert_null(vkp_pairs_name(p, 2));
  assert_int_equal(vkp_dataset_image(p->images, 1)[0], 11);
  vkp_pairs_free(p);

  // No header: path, caption.
  write_text(P(state, "plain.csv"), "img/2.png,second\nimg/1.png,first\n");
  ASSERT_OK(vkp_pairs_load_list(P(state, "plain.csv"), NULL, &p, &err), err);
  assert_int_equal(vkp_pairs_count(p), 2);
  assert_string_equal(vkp_pairs_caption(p, 0, 0), "second");
  assert_int_equal(p->images->n_classes, 0);
  vkp_pairs_free(p);

  // JSONL: HF imagefolder's file_name + text, and the other key spellings; caption arrays.
  char abs_line[700];
  snprintf(abs_line, sizeof abs_line,
           "{\"image\": \"%s\", \"caption\": [\"x\", \" y \"], \"label\": 7}\n",
           P(state, "img/2.png"));
  char jsonl[1200];
  snprintf(jsonl, sizeof jsonl,
           "{\"file_name\": \"img/0.png\", \"text\": \"zero \\\"quoted\\\", with comma\"}\n"
           "\n"
           "{\"path\": \"img/1.png\", \"caption\": \"one\", \"name\": \"uno\"}\n%s",
           abs_line);
  write_text(P(state, "metadata.jsonl"), jsonl);
  ASSERT_OK(vkp_pairs_load_list(P(state, "metadata.jsonl"), NULL, &p, &err), err);
  assert_int_equal(vkp_pairs_count(p), 3);
  assert_string_equal(vkp_pairs_caption(p, 0, 0), "zero \"quoted\", with comma");
  assert_string_equal(vkp_pairs_name(p, 1), "uno");
  assert_int_equal(vkp_pairs_n_captions(p, 2), 2);
  assert_string_equal(vkp_pairs_caption(p, 2, 1), "y");
  assert_string_equal(vkp_pairs_name(p, 2), "7");
  assert_int_equal(vkp_dataset_image(p->images, 2)[0], 12);  // an absolute path
  vkp_pairs_free(p);
}

// ---- errors --------------------------------------------------------------------------------------

// A PNG whose header declares w x h (RGBA) followed by a tiny IDAT: stbi_info accepts it, a
// decoder would allocate w * h * 4 bytes.
static void png_declaring(const char *path, uint32_t w, uint32_t h) {
  uint8_t b[8 + 25 + 12 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  uint8_t *q = b + 8;
  const uint8_t ihdr[] = {0, 0, 0, 13, 'I', 'H', 'D', 'R', (uint8_t)(w >> 24), (uint8_t)(w >> 16),
                          (uint8_t)(w >> 8), (uint8_t)w, (uint8_t)(h >> 24), (uint8_t)(h >> 16),
                          (uint8_t)(h >> 8), (uint8_t)h, 8, 6, 0, 0, 0, 0, 0, 0, 0};
  memcpy(q, ihdr, sizeof ihdr);
  q += sizeof ihdr;
  const uint8_t idat[] = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0, 0, 0, 0};
  memcpy(q, idat, sizeof idat);
  q += sizeof idat;
  const uint8_t iend[] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
  memcpy(q, iend, sizeof iend);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fwrite(b, 1, sizeof b, f);
  fclose(f);
}

static void test_errors(void **state) {
  vkp_error err = {0};
  vkp_pairs *p = (vkp_pairs *)1;
  warnings w = {0};
  vkp_pairs_opts quiet = {.warn = on_warn, .warn_user = &w};

  // A caption file missing beside an image; with skip_bad it is left out with a warning.
  mkdirs(P(state, "nocap/1_x"));
  png_rgb(P(state, "nocap/1_x/has.png"), 1);
  write_text(P(state, "nocap/1_x/has.txt"), "has a caption");
  png_rgb(P(state, "nocap/1_x/lonely.png"), 2);
  expect_error(vkp_pairs_load_folder(P(state, "nocap"), NULL, &quiet, &p, &err), VKP_ERR_FORMAT,
               &err, "lonely.png", "caption file missing");
  assert_null(p);
  vkp_pairs_opts skip = quiet;
  skip.skip_bad = true;
  ASSERT_OK(vkp_pairs_load_folder(P(state, "nocap"), NULL, &skip, &p, &err), err);
  assert_int_equal(vkp_pairs_count(p), 1);
  assert_non_null(strstr(w.all, "lonely.png"));
  vkp_pairs_free(p);

  // An empty caption file.
  mkdirs(P(state, "emptycap"));
  png_rgb(P(state, "emptycap/a.png"), 1);
  write_text(P(state, "emptycap/a.txt"), " \n\n");
  expect_error(vkp_pairs_load_folder(P(state, "emptycap"), NULL, &quiet, &p, &err),
               VKP_ERR_FORMAT, &err, "a.txt", "empty caption file");

  // An unreadable (corrupt) image.
  mkdirs(P(state, "corrupt"));
  write_text(P(state, "corrupt/bad.png"), "this is not a PNG at all");
  write_text(P(state, "corrupt/bad.txt"), "bad");
  expect_error(vkp_pairs_load_folder(P(state, "corrupt"), NULL, &quiet, &p, &err), VKP_ERR_FORMAT,
               &err, "bad.png", "corrupt");
  // skip_bad leaves it out and keeps every other image with its own captions.
  png_rgb(P(state, "corrupt/a.png"), 7);
  write_text(P(state, "corrupt/a.txt"), "a");
  png_rgb(P(state, "corrupt/c.png"), 8);
  write_text(P(state, "corrupt/c.txt"), "c");
  w = (warnings){0};
  ASSERT_OK(vkp_pairs_load_folder(P(state, "corrupt"), NULL, &skip, &p, &err), err);
  assert_int_equal(vkp_pairs_count(p), 2);
  assert_int_equal(w.n, 1);
  assert_non_null(strstr(w.all, "bad.png"));
  assert_string_equal(vkp_pairs_caption(p, 1, 0), "c");
  assert_string_equal(p->keys[1], "c");
  assert_int_equal(vkp_dataset_image(p->images, 1)[0], 8);
  vkp_pairs_free(p);

  // A PNG declaring 16384 x 16384 is refused from its header, before any decoding.
  mkdirs(P(state, "bomb"));
  png_declaring(P(state, "bomb/huge.png"), 16384, 16384);
  write_text(P(state, "bomb/huge.txt"), "a bomb");
  int w0, h0, c0;
  assert_true(stbi_info(P(state, "bomb/huge.png"), &w0, &h0, &c0));  // the header is valid
  assert_int_equal(w0, 16384);
  expect_error(vkp_pairs_load_folder(P(state, "bomb"), NULL, &quiet, &p, &err), VKP_ERR_FORMAT,
               &err, "huge.png", "16384x16384");
  assert_non_null(strstr(err.msg, "not decoded"));
  assert_non_null(strstr(err.msg, "VKPEFT_MAX_IMAGE_PIXELS"));   // says how to raise the limit

  // Bad lists, each with the status and the "file:line: what" expected.
  png_rgb(P(state, "ok.png"), 1);
  static const struct {
    const char *file, *text;
    vkp_status status;
    const char *where, *what;
  } lists[] = {
      // an image named by a list is missing
      {"missing.csv", "path,caption\nnowhere.png,a ghost\n", VKP_ERR_IO, "nowhere.png",
       "cannot open"},
      // CSV: a missing field, an empty field, an unterminated quote
      {"short.csv", "path,caption\nok.png,fine\nok.png\n", VKP_ERR_FORMAT, "short.csv:3:",
       "1 field"},
      {"emptyfield.csv", "ok.png,\"\"\n", VKP_ERR_FORMAT, "emptyfield.csv:1:", "empty caption"},
      {"quote.csv", "ok.png,\"never closed\n", VKP_ERR_FORMAT, "quote.csv:1:", "unterminated"},
      // JSONL: a line that is not JSON, a line without a caption, trailing text
      {"bad.jsonl", "{\"file_name\": \"ok.png\", \"text\": \"fine\"}\n{oops\n", VKP_ERR_FORMAT,
       "bad.jsonl:2:", "not a JSON object"},
      {"nocap.jsonl", "\n\n{\"file_name\": \"ok.png\"}\n", VKP_ERR_FORMAT, "nocap.jsonl:3:",
       "\"text\""},
      {"trail.jsonl", "{\"file_name\": \"ok.png\", \"text\": \"a\"} extra\n", VKP_ERR_FORMAT,
       "trail.jsonl:1:", "after the JSON object"},
      // a name that is a number too large for an integer (a cast with undefined behaviour before)
      {"bigname.jsonl", "{\"file_name\": \"ok.png\", \"text\": \"a\", \"name\": 1e300}\n", VKP_ERR_FORMAT,
       "bigname.jsonl:1:", "must be a string"},
      // one image named two ways
      {"twonames.csv", "path,caption,name\nok.png,a,x\nok.png,b,y\n", VKP_ERR_FORMAT,
       "twonames.csv:3:", "named 'y'"},
      // an empty list
      {"empty.csv", "path,caption\n", VKP_ERR_FORMAT, "empty.csv", "no entries"},
  };
  for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
    write_text(P(state, "%s", lists[i].file), lists[i].text);
    expect_error(vkp_pairs_load_list(P(state, "%s", lists[i].file), &quiet, &p, &err),
                 lists[i].status, &err, lists[i].where, lists[i].what);
  }

  // Empty sets: a folder with nothing captioned, a missing folder.
  mkdirs(P(state, "nothing"));
  expect_error(vkp_pairs_load_folder(P(state, "nothing"), NULL, &quiet, &p, &err), VKP_ERR_FORMAT,
               &err, "nothing", "no images with captions");
  expect_error(vkp_pairs_load_folder(P(state, "absent"), NULL, &quiet, &p, &err), VKP_ERR_IO, &err,
               "absent", NULL);
  expect_error(vkp_pairs_load_list(P(state, "absent.csv"), &quiet, &p, &err), VKP_ERR_IO, &err,
               "absent.csv", NULL);

  // Bad options and names.
  vkp_pairs_opts grey = {.channels = 1};
  expect_error(vkp_pairs_load_list(P(state, "short.csv"), &grey, &p, &err), VKP_ERR_INVALID, &err,
               "channels 1", NULL);
  expect_error(vkp_pairs_load_named("emoji-klingon", NULL, &p, &err), VKP_ERR_NOT_FOUND, &err,
               "emoji-klingon", "emoji-noto");
  vkp_pairs_files f;
  expect_error(vkp_pairs_locate(NULL, &f, &err), VKP_ERR_NOT_FOUND, &err, "unknown", NULL);
}

// ---- the real Debian sets ------------------------------------------------------------------------

#define NOTO_DIR "/usr/share/rubygems-integration/all/gems/tanuki_emoji-0.6.0"
#define GEMOJI_DIR "/usr/share/rubygems-integration/all/gems/gemojione-3.3.0"

// Loads a named set or fails with the reader's message (which says what to install).
static vkp_pairs *load_named(const char *name, vkp_pairs_files *files) {
  vkp_error err = {0};
  vkp_pairs *p = NULL;
  vkp_status st = vkp_pairs_locate(name, files, &err);
  if (st != VKP_OK) fail_msg("%s (scripts/setup installs it)", err.msg);
  st = vkp_pairs_load_named(name, NULL, &p, &err);
  if (st != VKP_OK) fail_msg("%s: %s", name, err.msg);
  return p;
}

typedef struct strset {
  char **v;
  size_t n, cap;
} strset;

static void strset_add(strset *s, const char *x) {
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 256;
    s->v = realloc(s->v, s->cap * sizeof *s->v);
    assert_non_null(s->v);
  }
  s->v[s->n++] = strdup(x);
}

static int cmp_strp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int strset_has(const strset *s, const char *x) {  // s sorted
  return bsearch(&x, s->v, s->n, sizeof *s->v, cmp_strp) != NULL;
}

static void strset_free(strset *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i]);
  free(s->v);
}

// Keys of the emoji that emoji-test.txt names and the Noto folder has a PNG for, computed here
// with sscanf and access(): Noto's files are emoji_u<hex>_<hex>.png without FE0F, flags XY.png.
static void noto_expected(const char *txt, const char *dir, strset *keys) {
  FILE *f = fopen(txt, "r");
  assert_non_null(f);
  char line[1024];
  strset files = {0};  // "file\tkey" of every line with a PNG, in file order
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#' || !strchr(line, ';')) continue;
    unsigned cp[16];
    int n = 0, off = 0, used;
    while (n < 16 && sscanf(line + off, " %x%n", &cp[n], &used) == 1) off += used, n++;
    char file[256], key[256];
    size_t o = 0, k = 0;
    if (n == 2 && cp[0] >= 0x1F1E6 && cp[0] <= 0x1F1FF && cp[1] >= 0x1F1E6 && cp[1] <= 0x1F1FF) {
      snprintf(file, sizeof file, "%c%c.png", 'A' + cp[0] - 0x1F1E6, 'A' + cp[1] - 0x1F1E6);
    } else {
      o = (size_t)snprintf(file, sizeof file, "emoji_u");
      for (int i = 0, first = 1; i < n; i++) {
        if (cp[i] == 0xFE0F) continue;
        o += (size_t)snprintf(file + o, sizeof file - o, first ? "%04x" : "_%04x", cp[i]);
        first = 0;
      }
      snprintf(file + o, sizeof file - o, ".png");
    }
    key[0] = '\0';
    for (int i = 0; i < n; i++)
      if (cp[i] != 0xFE0F && cp[i] != 0x200D)
        k += (size_t)snprintf(key + k, sizeof key - k, k ? "-%x" : "%x", cp[i]);
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (access(path, R_OK) != 0) continue;
    snprintf(path, sizeof path, "%s\t%s", file, key);
    strset_add(&files, path);
  }
  fclose(f);
  // One key per file (less qualified lines name the same file with the same key).
  qsort(files.v, files.n, sizeof *files.v, cmp_strp);
  for (size_t i = 0; i < files.n; i++) {
    char *tab = strchr(files.v[i], '\t');
    size_t fl = (size_t)(tab - files.v[i]);
    if (i > 0 && strncmp(files.v[i], files.v[i - 1], fl + 1) == 0) continue;
    strset_add(keys, tab + 1);
  }
  strset_free(&files);
  qsort(keys->v, keys->n, sizeof *keys->v, cmp_strp);
}

// Keys of gemojione's index entries, normalised like the Noto ones.
static void emojione_expected(const char *index, strset *keys) {
  FILE *f = fopen(index, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = malloc((size_t)n + 1);
  assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
  text[n] = '\0';
  fclose(f);
  cJSON *root = cJSON_Parse(text);
  free(text);
  assert_non_null(root);
  const cJSON *it;
  cJSON_ArrayForEach(it, root) {
    const char *u = cJSON_GetObjectItem(it, "unicode")->valuestring;
    char key[256];
    size_t k = 0;
    for (const char *s = u; *s;) {
      char *end;
      unsigned long v = strtoul(s, &end, 16);
      if (v != 0xFE0F && v != 0x200D)
        k += (size_t)snprintf(key + k, sizeof key - k, k ? "-%lx" : "%lx", v);
      s = *end == '-' ? end + 1 : end;
    }
    strset_add(keys, key);
  }
  cJSON_Delete(root);
  qsort(keys->v, keys->n, sizeof *keys->v, cmp_strp);
}

// The distinct real files of the size x size PNGs under dir (links followed), counted here.
static void icons_walk(const char *dir, int size, strset *reals) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat sb;
    if (stat(p, &sb) != 0) continue;
    if (S_ISDIR(sb.st_mode)) {
      icons_walk(p, size, reals);
      continue;
    }
    size_t l = strlen(e->d_name);
    if (l < 4 || strcasecmp(e->d_name + l - 4, ".png") != 0) continue;
    int w, h, c;
    char real[PATH_MAX];
    assert_non_null(realpath(p, real));
    if (stbi_info(real, &w, &h, &c) && w == size && h == size) strset_add(reals, real);
  }
  closedir(d);
}

static size_t icons_expected(const char *dir, int size) {
  strset reals = {0};
  icons_walk(dir, size, &reals);
  qsort(reals.v, reals.n, sizeof *reals.v, cmp_strp);
  size_t u = 0;
  for (size_t i = 0; i < reals.n; i++) u += i == 0 || strcmp(reals.v[i], reals.v[i - 1]) != 0;
  strset_free(&reals);
  return u;
}

static void test_emoji_sets(void **state) {
  (void)state;
  vkp_pairs_files fn, fe;
  vkp_pairs *noto = load_named("emoji-noto", &fn);
  vkp_pairs *one = load_named("emoji-emojione", &fe);
  assert_string_equal(fn.images, NOTO_DIR "/app/assets/images/tanuki_emoji");
  assert_string_equal(fn.names, NOTO_DIR "/vendor/unicode/emoji-test.txt");
  assert_string_equal(fe.images, GEMOJI_DIR "/assets/png");
  assert_string_equal(fe.names, GEMOJI_DIR "/config/index.json");

  // Counts, computed here from the package files, and as observed on Debian 12 (ruby-tanuki-emoji
  // 0.6.0: 1,794 PNGs of which 1,784 are named by emoji-test.txt 13.1; ruby-gemojione 3.3.0:
  // 1,794 index entries).
  strset kn = {0}, ke = {0};
  noto_expected(fn.names, fn.images, &kn);
  emojione_expected(fe.names, &ke);
  assert_int_equal(vkp_pairs_count(noto), kn.n);
  assert_int_equal(vkp_pairs_count(one), ke.n);
  assert_int_equal(kn.n, 1784);
  assert_int_equal(ke.n, 1794);
  for (size_t i = 0; i < vkp_pairs_count(noto); i++) assert_true(strset_has(&kn, noto->keys[i]));
  for (size_t i = 0; i < vkp_pairs_count(one); i++) assert_true(strset_has(&ke, one->keys[i]));
  // Sizes: RGBA at the set's size (Noto's 128x128 flags resized to 72x72).
  assert_int_equal(noto->images->channels, 4);
  assert_int_equal(noto->images->width, 72);
  assert_int_equal(noto->images->height, 72);
  assert_int_equal(one->images->width, 64);
  assert_int_equal(one->images->channels, 4);
  assert_string_equal(noto->images->name, "emoji-noto");
  assert_int_equal(one->images->n_classes, 1792);  // two names used twice (one cut at 50 chars)
  // Names, lower-cased, are the captions and the classes (every Noto name is distinct).
  long g = find_key(noto, "1f603");
  assert_true(g >= 0);
  assert_string_equal(vkp_pairs_caption(noto, (size_t)g, 0), "grinning face with big eyes");
  assert_string_equal(vkp_pairs_name(noto, (size_t)g), "grinning face with big eyes");
  assert_int_equal(noto->images->n_classes, 1784);
  assert_true(find_caption(noto, "ok hand") >= 0);              // "OK hand"
  assert_true(find_caption(noto, "flag: åland islands") >= 0);  // "flag: Åland Islands"
  assert_true(find_key(noto, "1f1e6-1f1fd") >= 0);              // AX.png
  assert_true(find_key(noto, "1f468-1f468-1f466") >= 0);        // a ZWJ family
  long h = find_key(one, "1f603");
  assert_string_equal(vkp_pairs_caption(one, (size_t)h, 0), "smiling face with open mouth");
  // Transparent corners, opaque centre: alpha is kept.
  const uint8_t *px = vkp_dataset_image(noto->images, (size_t)g);
  assert_int_equal(px[3], 0);
  assert_int_equal(px[(36 * 72 + 36) * 4 + 3], 255);

  // Pairing by code points: every named Noto emoji has its EmojiOne drawing.
  size_t expect_shared = 0;
  for (size_t i = 0; i < kn.n; i++) expect_shared += strset_has(&ke, kn.v[i]);
  assert_int_equal(expect_shared, 1784);
  size_t *ia = NULL, *ib = NULL, n = 0;
  vkp_error err = {0};
  ASSERT_OK(vkp_pairs_match(noto, one, &ia, &ib, &n, &err), err);
  assert_int_equal(n, expect_shared);
  for (size_t k = 0; k < n; k++) {
    assert_string_equal(noto->keys[ia[k]], one->keys[ib[k]]);
    if (k) assert_true(ia[k] > ia[k - 1]);
  }
  // Names alone would pair only 673 (and some wrongly: EmojiOne's "grinning face with smiling
  // eyes" is U+1F601, Noto's U+1F604), hence the keys and vkp_pairs_adopt_names.
  size_t same_name = 0;
  for (size_t k = 0; k < n; k++)
    same_name += strcmp(vkp_pairs_name(noto, ia[k]), vkp_pairs_name(one, ib[k])) == 0;
  assert_int_equal(same_name, 673);

  // Held-out keys agree across the two styles; no key on both sides.
  size_t *tn, *vn, *te, *ve, ntn, nvn, nte, nve;
  ASSERT_OK(vkp_pairs_split(noto, 0.1, 5, &tn, &ntn, &vn, &nvn, &err), err);
  ASSERT_OK(vkp_pairs_split(one, 0.1, 5, &te, &nte, &ve, &nve, &err), err);
  assert_int_equal(ntn + nvn, 1784);
  assert_true(nvn > 1784 / 20 && nvn < 1784 * 3 / 20);  // 10 % on average
  unsigned char *val_n = calloc(vkp_pairs_count(noto), 1), *val_e = calloc(vkp_pairs_count(one), 1);
  for (size_t k = 0; k < nvn; k++) val_n[vn[k]] = 1;
  for (size_t k = 0; k < nve; k++) val_e[ve[k]] = 1;
  for (size_t k = 0; k < n; k++) assert_int_equal(val_n[ia[k]], val_e[ib[k]]);
  free(val_n);
  free(val_e);
  free(tn), free(vn), free(te), free(ve);

  // EmojiOne with Noto's names: the shared emoji take them, the 10 others keep theirs.
  ASSERT_OK(vkp_pairs_adopt_names(one, noto, &err), err);
  assert_string_equal(vkp_pairs_caption(one, (size_t)h, 0), "grinning face with big eyes");
  assert_string_equal(vkp_pairs_name(one, (size_t)h), "grinning face with big eyes");
  size_t named_alike = 0;
  for (size_t k = 0; k < n; k++)
    named_alike += strcmp(vkp_pairs_name(noto, ia[k]), vkp_pairs_name(one, ib[k])) == 0;
  assert_int_equal(named_alike, n);
  assert_int_equal(one->images->n_classes, 1794);
  free(ia);
  free(ib);
  strset_free(&kn);
  strset_free(&ke);
  vkp_pairs_free(noto);
  vkp_pairs_free(one);
}

static void test_icon_sets(void **state) {
  (void)state;
  static const struct {
    const char *name, *dir;
    int size;
    size_t observed;  // images, distinct names and captions in Debian 12's packages
    int names;
    size_t captions;
  } sets[] = {
      {"icons-paper", "/usr/share/icons/Paper/48x48", 48, 2226, 2203, 2226},
      {"icons-oxygen", "/usr/share/icons/oxygen/base/48x48", 48, 1137, 1134, 1409},
      {"icons-tango", "/usr/share/icons/Tango/32x32", 32, 214, 214, 843},
  };
  for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++) {
    vkp_pairs_files f;
    vkp_pairs *p = load_named(sets[s].name, &f);
    assert_string_equal(f.images, sets[s].dir);
    size_t want = icons_expected(sets[s].dir, sets[s].size);
    assert_int_equal(vkp_pairs_count(p), want);
    assert_int_equal(want, sets[s].observed);
    assert_int_equal(p->images->n_classes, sets[s].names);
    assert_int_equal(p->caption_start[vkp_pairs_count(p)], sets[s].captions);
    assert_int_equal(p->images->width, sets[s].size);
    assert_int_equal(p->images->height, sets[s].size);
    assert_int_equal(p->images->channels, 4);
    long t = find_caption(p, "user trash");
    assert_true(t >= 0);
    assert_string_equal(p->keys[t], "user trash");
    if (s == 0) assert_true(find_caption(p, "folder music") >= 0);
    if (s == 1) {  // Oxygen's folder-music.png links to folder-sound.png: an alias caption
      long m = find_any_caption(p, "folder music");
      assert_true(m >= 0);
      assert_string_equal(vkp_pairs_caption(p, (size_t)m, 0), "folder sound");
    }
    if (s == 2) assert_int_equal(find_any_caption(p, "emptytrash"), t);  // emptytrash.png links
                                                                         // to user-trash.png
    vkp_pairs_free(p);
  }
  // Two themes pair by icon name.
  vkp_pairs_files f;
  vkp_pairs *paper = load_named("icons-paper", &f), *tango = load_named("icons-tango", &f);
  size_t *ia, *ib, n;
  vkp_error err = {0};
  ASSERT_OK(vkp_pairs_match(tango, paper, &ia, &ib, &n, &err), err);
  assert_true(n > 50);
  free(ia);
  free(ib);
  vkp_pairs_free(paper);
  vkp_pairs_free(tango);
}

// ---- splits, flattening --------------------------------------------------------------------------

static void test_split(void **state) {
  // 40 images, 20 names (keys) of two images each.
  mkdirs(P(state, "s"));
  char csv[4096] = "path,caption,name\n";
  for (int i = 0; i < 40; i++) {
    png_rgb(P(state, "s/%02d.png", i), i);
    size_t o = strlen(csv);
    snprintf(csv + o, sizeof csv - o, "s/%02d.png,image %d,name%02d\n", i, i, i / 2);
  }
  write_text(P(state, "s.csv"), csv);
  vkp_error err = {0};
  vkp_pairs *p = NULL;
  ASSERT_OK(vkp_pairs_load_list(P(state, "s.csv"), NULL, &p, &err), err);
  assert_int_equal(vkp_pairs_count(p), 40);
  size_t *t1, *v1, *t2, *v2, nt1, nv1, nt2, nv2;
  ASSERT_OK(vkp_pairs_split(p, 0.25, 42, &t1, &nt1, &v1, &nv1, &err), err);
  ASSERT_OK(vkp_pairs_split(p, 0.25, 42, &t2, &nt2, &v2, &nv2, &err), err);
  // Deterministic, disjoint, covering, ascending, and by key.
  assert_int_equal(nt1, nt2);
  assert_int_equal(nv1, nv2);
  assert_memory_equal(t1, t2, nt1 * sizeof *t1);
  assert_memory_equal(v1, v2, nv1 * sizeof *v1);
  assert_int_equal(nt1 + nv1, 40);
  assert_true(nv1 > 0 && nt1 > 0);
  unsigned char side[40];
  memset(side, 2, sizeof side);
  for (size_t k = 0; k < nt1; k++) side[t1[k]] = 0, assert_true(k == 0 || t1[k] > t1[k - 1]);
  for (size_t k = 0; k < nv1; k++) side[v1[k]] = 1, assert_true(k == 0 || v1[k] > v1[k - 1]);
  for (int i = 0; i < 40; i += 2) {
    assert_true(side[i] != 2);
    assert_int_equal(side[i], side[i + 1]);  // one name, one side
  }
  free(t2), free(v2);
  // Another seed, another split.
  ASSERT_OK(vkp_pairs_split(p, 0.25, 43, &t2, &nt2, &v2, &nv2, &err), err);
  assert_true(nv1 != nv2 || memcmp(v1, v2, nv1 * sizeof *v1) != 0);
  free(t1), free(v1), free(t2), free(v2);
  // Edges: 0 and 1; a tiny fraction still holds one key out; bad fractions.
  ASSERT_OK(vkp_pairs_split(p, 0.0, 1, &t1, &nt1, &v1, &nv1, &err), err);
  assert_int_equal(nt1, 40);
  assert_null(v1);
  free(t1);
  ASSERT_OK(vkp_pairs_split(p, 1.0, 1, &t1, &nt1, &v1, &nv1, &err), err);
  assert_int_equal(nv1, 40);
  assert_null(t1);
  free(v1);
  ASSERT_OK(vkp_pairs_split(p, 1e-9, 1, &t1, &nt1, &v1, &nv1, &err), err);
  assert_int_equal(nv1, 2);  // one key, both its images
  assert_int_equal(v1[0] % 2, 0);
  assert_int_equal(v1[1], v1[0] + 1);
  free(t1), free(v1);
  ASSERT_OK(vkp_pairs_split(p, 1 - 1e-9, 1, &t1, &nt1, &v1, &nv1, &err), err);
  assert_int_equal(nt1, 2);
  free(t1), free(v1);
  expect_error(vkp_pairs_split(p, 1.5, 1, &t1, &nt1, &v1, &nv1, &err), VKP_ERR_INVALID, &err,
               "1.5", NULL);
  vkp_pairs_free(p);
}

static void test_flatten_alpha(void **state) {
  // One RGBA image with four alpha levels.
  const uint8_t rgba[4 * 4] = {200, 100, 0, 255, 200, 100, 0, 128, 200, 100, 0, 0, 0, 0, 0, 64};
  mkdirs(P(state, "a"));
  assert_true(stbi_write_png(P(state, "a/x.png"), 4, 1, 4, rgba, 16) != 0);
  write_text(P(state, "a/x.txt"), "x");
  vkp_error err = {0};
  vkp_pairs *p = NULL, *flat = NULL, *rgb = NULL;
  ASSERT_OK(vkp_pairs_load_folder(P(state, "a"), NULL, NULL, &p, &err), err);
  assert_memory_equal(vkp_dataset_image(p->images, 0), rgba, 16);  // alpha kept
  ASSERT_OK(vkp_pairs_flatten(p, VKP_ALPHA_WHITE, &flat, &err), err);
  uint8_t want[12];
  for (int i = 0; i < 4; i++)
    for (int c = 0; c < 3; c++) {
      unsigned v = rgba[4 * i + c], a = rgba[4 * i + 3];
      want[3 * i + c] = (uint8_t)((v * a + 255 * (255 - a) + 127) / 255);
    }
  assert_int_equal(flat->images->channels, 3);
  assert_memory_equal(vkp_dataset_image(flat->images, 0), want, 12);
  assert_int_equal(want[6], 255);  // transparent -> white
  uint8_t direct[12];
  vkp_data_rgba_to_rgb(rgba, 4, VKP_ALPHA_WHITE, direct);
  assert_memory_equal(direct, want, 12);
  assert_string_equal(vkp_pairs_caption(flat, 0, 0), "x");
  // Loading with channels 3 composites the same way.
  vkp_pairs_opts o = {.channels = 3};
  ASSERT_OK(vkp_pairs_load_folder(P(state, "a"), NULL, &o, &rgb, &err), err);
  assert_memory_equal(vkp_dataset_image(rgb->images, 0), want, 12);
  vkp_pairs_free(p);
  vkp_pairs_free(flat);
  vkp_pairs_free(rgb);
}

// $VKPEFT_DATA_DIR/<name>/ comes before the packages: a tiny Noto set and a tiny icon theme.
static void test_data_dir_override(void **state) {
  uint8_t px[32 * 32 * 4];
  memset(px, 200, sizeof px);
  mkdirs(P(state, "data/emoji-noto"));
  assert_true(stbi_write_png(P(state, "data/emoji-noto/emoji_u1f600.png"), 32, 32, 4, px, 128));
  assert_true(stbi_write_png(P(state, "data/emoji-noto/FR.png"), 32, 32, 4, px, 128));
  write_text(P(state, "data/emoji-noto/emoji-test.txt"),
             "# group: Smileys\n"
             "1F600 ; fully-qualified # \xF0\x9F\x98\x80 E1.0 Grinning Face\n"
             "1F1EB 1F1F7 ; fully-qualified # x E0.6 flag: France\n"
             "1F601 ; fully-qualified # x E0.6 beaming face\n");
  mkdirs(P(state, "data/icons-tango/places"));
  assert_true(
      stbi_write_png(P(state, "data/icons-tango/places/go_home-now.png"), 32, 32, 4, px, 128));
  assert_true(stbi_write_png(P(state, "data/icons-tango/places/strip.png"), 32, 8, 4, px, 128));
  char *old = getenv("VKPEFT_DATA_DIR") ? strdup(getenv("VKPEFT_DATA_DIR")) : NULL;
  setenv("VKPEFT_DATA_DIR", P(state, "data"), 1);
  vkp_error err = {0};
  vkp_pairs *p = NULL;
  vkp_status st = vkp_pairs_load_named("emoji-noto", NULL, &p, &err);
  vkp_pairs *icons = NULL;
  vkp_status st2 = vkp_pairs_load_named("icons-tango", NULL, &icons, &err);
  if (old) setenv("VKPEFT_DATA_DIR", old, 1);
  else unsetenv("VKPEFT_DATA_DIR");
  free(old);
  ASSERT_OK(st, err);
  ASSERT_OK(st2, err);
  assert_int_equal(vkp_pairs_count(p), 2);
  assert_string_equal(vkp_pairs_caption(p, 0, 0), "grinning face");
  assert_string_equal(p->keys[1], "1f1eb-1f1f7");
  assert_string_equal(vkp_pairs_caption(p, 1, 0), "flag: france");
  assert_int_equal(p->images->width, 72);  // resized to the set's size
  assert_int_equal(vkp_pairs_count(icons), 1);  // the 32x8 strip left out
  assert_string_equal(vkp_pairs_caption(icons, 0, 0), "go home now");
  vkp_pairs_free(p);
  vkp_pairs_free(icons);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_folder_kohya, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_loader_repeats_captions, vkp_test_dir_setup,
                                      vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_lists, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_errors, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_split, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_flatten_alpha, vkp_test_dir_setup,
                                      vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_data_dir_override, vkp_test_dir_setup,
                                      vkp_test_dir_teardown),
      cmocka_unit_test(test_emoji_sets),
      cmocka_unit_test(test_icon_sets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
