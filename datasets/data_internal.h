// data_internal.h — helpers shared by the datasets/ sources (not installed, not public).
#ifndef VKP_DATA_INTERNAL_H
#define VKP_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "vkp_data.h"

// ---- deterministic random numbers (splitmix64) -------------------------------------------------

static inline uint64_t vkp_data_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

typedef struct vkp_data_rng {
  uint64_t s;
} vkp_data_rng;

static inline uint64_t vkp_data_rng_next(vkp_data_rng *r) {
  r->s += 0x9e3779b97f4a7c15ull;
  return vkp_data_mix64(r->s);
}
// Uniform in [0, 1) with 53 random bits.
static inline double vkp_data_rng_uniform(vkp_data_rng *r) {
  return (double)(vkp_data_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}
// Uniform integer in [0, n) (n >= 1; bias below 2^-53 * n).
static inline size_t vkp_data_rng_below(vkp_data_rng *r, size_t n) {
  size_t k = (size_t)(vkp_data_rng_uniform(r) * (double)n);
  return k < n ? k : n - 1;
}

// Key streams: distinct constants so (seed, epoch) for the order and (seed, epoch, index) for
// augmentation never produce related streams.
#define VKP_DATA_STREAM_ORDER 0x6f72646572ull  // "order"
#define VKP_DATA_STREAM_SPLIT 0x73706c6974ull  // "split"

// ---- dataset construction ------------------------------------------------------------------------

// Allocates an empty dataset shell: name copied, arrays for `count` images (labels, offsets,
// widths, heights; paths when with_paths), `pixel_bytes` of pixels (zeroed), n_classes names
// "0".."n-1". Returns NULL on OOM.
vkp_dataset *vkp_data_alloc(const char *name, size_t count, size_t pixel_bytes, int n_classes,
                             int with_paths);
// Frees an array of n strings and the array.
void vkp_data_free_strings(char **s, size_t n);
// strdup that returns NULL for NULL.
char *vkp_data_strdup(const char *s);
// "0", "1", ... names for n classes (new array), NULL on OOM.
char **vkp_data_numbered_names(int n);

// ---- file-image decoding (folder and list readers) ----------------------------------------------

// Decodes n image files into a new dataset. paths (n strings) and names (n_classes strings) are
// taken over (freed by this function whether it succeeds or not); labels is copied.
// `what` names the source in messages and becomes ds->name.
vkp_status vkp_data_decode_files(const char *what, char **paths, const int32_t *labels, size_t n,
                                  char **names, int n_classes, const vkp_data_load_opts *opts,
                                  vkp_dataset **out, vkp_error *err);

// Emits a warning through opts->warn or stderr.
void vkp_data_warn(const vkp_data_load_opts *opts, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// ---- resampling ----------------------------------------------------------------------------------

// Resizes an HWC uint8 image (sw x sh x c) to (dw x dh x c) with a separable triangle filter whose
// support widens with the downscale factor (antialiased bilinear, as PIL / torchvision
// antialias=True); equals plain bilinear when enlarging. tmp holds dw * sh * c floats.
void vkp_data_resize_u8(const uint8_t *src, int sw, int sh, int c, uint8_t *dst, int dw, int dh,
                         float *tmp);

// Number of worker threads for n_threads (0 = auto).
int vkp_data_thread_count(int n_threads, size_t work_items);

#endif
