// fuzz_idx.c — libFuzzer target: the IDX reader (datasets/idx.c) on arbitrary bytes, raw and gzip
// (magic, element type, dimensions, sizes that lie about the data, corrupt or truncated gzip), and
// the image + label pair loader vkp_data_load_idx. The input is the image file; when it holds the
// separator "IDX|LABELS" the rest is the label file (else the label file is the same bytes).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "vkp_data.h"

static size_t type_size(int t) { return t == VKP_IDX_U8 || t == VKP_IDX_I8 ? 1 : t == VKP_IDX_I16 ? 2 : t == VKP_IDX_F64 ? 8 : 4; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_part parts[2];
  int n = fuzz_split(data, size, "IDX|LABELS", parts, 2);
  const char *images = fuzz_memfile(0, parts[0].p, parts[0].n);
  const char *labels = n > 1 ? fuzz_memfile(1, parts[1].p, parts[1].n) : images;
  if (!images || !labels) return 0;
  vkp_error err;
  vkp_idx a;
  if (vkp_idx_read(images, &a, &err) == VKP_OK) {
    size_t count = 1;
    for (int d = 0; d < a.ndim; d++) count *= a.dims[d];
    if (a.ndim < 1 || a.ndim > VKP_IDX_MAX_DIMS || a.nbytes != count * type_size(a.type) || (a.nbytes && !a.data)) abort();
    vkp_idx_release(&a);
  } else if (a.data || a.nbytes) {
    abort();   // on error *out is zeroed
  }
  static const char *const names[] = {"zero", "one", "two"};
  vkp_dataset *ds = NULL;
  if (vkp_data_load_idx(images, labels, size & 1 ? names : NULL, size & 1 ? 3 : 0, &ds, &err) == VKP_OK) {
    for (size_t i = 0; i < ds->count; i++)
      if (ds->labels[i] < 0 || ds->labels[i] >= ds->n_classes) abort();
    volatile uint8_t last = 0;   // the last pixel is inside the buffer (ASan checks the read)
    if (ds->count) last = vkp_dataset_image(ds, ds->count - 1)[(size_t)ds->width * (size_t)ds->height * (size_t)ds->channels - 1];
    (void)last;
    vkp_dataset_free(ds);
  } else if (ds) {
    abort();
  }
  return 0;
}
