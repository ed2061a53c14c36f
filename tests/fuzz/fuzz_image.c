// fuzz_image.c — libFuzzer target: the data sets' image decoder (datasets/decode.c: stb_image for
// PNG, JPEG, BMP, GIF, TGA, PNM) on arbitrary bytes, through vkp_data_decode_files as the folder and
// list readers call it: the header pass with the decoding limit (VKPEFT_MAX_IMAGE_PIXELS), then the
// pixels, channel conversion (1, 3, 4, alpha modes) and the load-time resize. The options follow
// from the input's size, so every input is tried under one of them.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "fuzz_util.h"

// Images up to 65536 pixels are decoded (fast inputs; larger declared sizes take the refusal path).
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  setenv("VKPEFT_MAX_IMAGE_PIXELS", "65536", 1);
  return 0;
}

static void quiet(void *user, const char *msg) { (void)user, (void)msg; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *file = fuzz_memfile(0, data, size);
  if (!file) return 0;
  static const int channels[4] = {0, 1, 3, 4};
  vkp_data_load_opts o = {.channels = channels[size % 4], .alpha = (vkp_alpha_mode)(size / 4 % 3), .n_threads = 1,
                          .skip_bad = size / 12 % 2, .warn = quiet};
  if (size / 24 % 2) o.width = 5, o.height = 3;
  char **paths = malloc(2 * sizeof *paths), **names = malloc(sizeof *names);
  if (!paths || !names || !(paths[0] = strdup(file)) || !(paths[1] = strdup(file)) || !(names[0] = strdup("c"))) abort();
  int32_t labels[2] = {0, 0};
  vkp_dataset *ds = NULL;
  vkp_error err;
  // The same file twice: both decodes must agree and land in their own place.
  if (vkp_data_decode_files("fuzz", paths, labels, 2, names, 1, &o, &ds, &err) == VKP_OK) {
    if (ds->count != 2 || ds->widths[0] <= 0 || ds->heights[0] <= 0 || (o.width && (ds->width != 5 || ds->height != 3)))
      abort();
    if (ds->channels != (o.channels ? o.channels : ds->channels) || (ds->channels != 1 && ds->channels != 3 && ds->channels != 4))
      abort();
    size_t bytes = (size_t)ds->widths[0] * (size_t)ds->heights[0] * (size_t)ds->channels;
    if (memcmp(vkp_dataset_image(ds, 0), vkp_dataset_image(ds, 1), bytes)) abort();
    vkp_dataset_free(ds);
  } else if (ds) {
    abort();
  }
  return 0;
}
