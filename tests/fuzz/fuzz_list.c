// fuzz_list.c — libFuzzer target: the CSV / JSONL image lists on arbitrary text: labelled lists
// (datasets/list.c: RFC 4180 quoting, header rows, JSONL objects, labels as ids or names, a fixed
// class list) and image–caption lists (datasets/pairs_list.c: several captions, names, rows of one
// image grouped), each loaded through to the decoded images. The input is written as the list file
// (list.csv, list.jsonl or list.txt, by the input's size) in a scratch folder holding a.png (RGBA
// 2x2), c.png (RGB 2x2), g.png (grey 3x1) and bad.png (not an image).
//
// Paths in the list may name any file: this program links with -Wl,--wrap=fopen so the decoder
// only ever opens regular files inside the scratch folder (anything else reads as missing), and the
// fuzzer cannot make it block on a FIFO, read /dev/zero forever or wander through the disk.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"
#include "vkp_data.h"
#include "vkp_pairs.h"
#include "vkp_png.h"

FILE *__real_fopen(const char *path, const char *mode);

// Reads (the decoder's) are confined; writes pass (libFuzzer saves its corpus and findings with fopen).
FILE *__wrap_fopen(const char *path, const char *mode) {
  if (strpbrk(mode, "wa+")) return __real_fopen(path, mode);
  const char *dir = fuzz_dir();
  size_t n = strlen(dir);
  struct stat sb;
  if (strncmp(path, dir, n) || path[n] != '/' || strstr(path + n, "/..") || lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    errno = ENOENT;
    return NULL;
  }
  return __real_fopen(path, mode);
}

static void put_png(const char *name, int w, int h, int c) {
  vkp_image *img = NULL;
  vkp_error err;
  uint8_t *png = NULL;
  size_t len = 0;
  char path[600];
  if (vkp_image_new(w, h, c, &img, &err)) abort();
  for (int i = 0; i < w * h * c; i++) img->data[i] = (uint8_t)(37 * i + 11);
  if (vkp_png_encode(img, NULL, 0, &png, &len, &err)) abort();
  fuzz_dir_file(name, png, len, path, sizeof path);
  free(png);
  vkp_image_free(img);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  setenv("VKPEFT_MAX_IMAGE_PIXELS", "65536", 1);
  char path[600];
  put_png("a.png", 2, 2, 4);
  put_png("c.png", 2, 2, 3);
  put_png("g.png", 3, 1, 1);
  fuzz_dir_file("bad.png", "not a png", 9, path, sizeof path);
  return 0;
}

static void quiet(void *user, const char *msg) { (void)user, (void)msg; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const lists[3] = {"list.csv", "list.jsonl", "list.txt"};
  char path[600];
  fuzz_dir_file(lists[size % 3], data, size, path, sizeof path);
  vkp_error err;
  // Labelled list; with a fixed class list on every other input.
  static const char *const classes[] = {"cat", "dog", "0"};
  vkp_data_load_opts o = {.n_threads = 1, .skip_bad = size / 3 % 2, .channels = size / 6 % 2 ? 0 : 3, .warn = quiet};
  if (size / 12 % 2) o.class_names = classes, o.n_class_names = 3;
  vkp_dataset *ds = NULL;
  if (vkp_data_load_list(path, &o, &ds, &err) == VKP_OK) {
    if (!ds->count || ds->n_classes < 1) abort();
    for (size_t i = 0; i < ds->count; i++)
      if (ds->labels[i] < 0 || ds->labels[i] >= ds->n_classes || !ds->paths[i]) abort();
    for (int c = 0; c < ds->n_classes; c++)
      if (!ds->class_names[c]) abort();
    vkp_dataset_free(ds);
  } else if (ds) {
    abort();
  }
  // Image–caption list.
  vkp_pairs_opts po = {.n_threads = 1, .skip_bad = size / 3 % 2, .channels = size / 6 % 2 ? 3 : 4, .warn = quiet};
  vkp_pairs *p = NULL;
  if (vkp_pairs_load_list(path, &po, &p, &err) == VKP_OK) {
    for (size_t i = 0; i < vkp_pairs_count(p); i++) {
      if (vkp_pairs_n_captions(p, i) < 1 || !p->keys[i] || p->repeats[i] < 1) abort();
      for (size_t k = 0; k < vkp_pairs_n_captions(p, i); k++)
        if (!vkp_pairs_caption(p, i, k)[0]) abort();
      if (p->images->labels[i] >= p->images->n_classes) abort();
      (void)vkp_pairs_name(p, i);
    }
    vkp_pairs_free(p);
  } else if (p) {
    abort();
  }
  fuzz_dir_file(lists[size % 3], NULL, (size_t)-1, path, sizeof path);
  return 0;
}
