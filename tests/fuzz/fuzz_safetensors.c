// fuzz_safetensors.c — libFuzzer target: vkp_safetensors_open on arbitrary bytes (header JSON,
// dtypes, shapes, offsets, metadata), then every accessor on whatever opened.
// Build and run: scripts/fuzz (cmake -DVKPEFT_FUZZ=ON with clang).
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "vkp_safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  // The reader maps a file: give it one in memory (memfd), reached by its /proc path.
  const char *path = fuzz_memfile(0, data, size);
  if (!path) return 0;
  vkp_safetensors *st = NULL;
  vkp_error err;
  if (vkp_safetensors_open(path, &st, &err) != VKP_OK) return 0;
  for (size_t i = 0; i < vkp_safetensors_count(st); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(st, i);
    if (vkp_safetensors_find(st, t->name) == NULL) abort();   // every listed name is found
    size_t n = vkp_st_tensor_numel(t);
    if (n <= (1u << 20)) {
      float *f = malloc((n ? n : 1) * sizeof *f);
      if (f) (void)vkp_safetensors_read_f32(st, t->name, f, n, &err);
      free(f);
    }
  }
  for (size_t i = 0; i < vkp_safetensors_metadata_count(st); i++) {
    const char *v, *k = vkp_safetensors_metadata_at(st, i, &v);
    if (!k || !v) abort();
  }
  vkp_safetensors_free(st);
  return 0;
}
