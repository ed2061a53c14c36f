// vkp_safetensors.h — safetensors files (https://github.com/huggingface/safetensors):
// a memory-mapped, fully validated reader and an atomic writer.
//
// File layout: 8-byte little-endian header length N, N bytes of JSON header, then the data buffer.
// The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets are
// relative to the data buffer) plus an optional "__metadata__" object of string -> string.
//
// The reader checks every field before handing out a pointer: known dtype, shape of non-negative
// integers (at most VKP_ST_MAX_DIMS), overflow-free sizes, offsets inside the buffer, size equal to
// shape x dtype size, and tensors that cover the data buffer exactly (no overlaps, no holes, no
// trailing bytes). Any violation is VKP_ERR_FORMAT with a one-line message naming the file, the
// tensor and the field.
#ifndef VKP_SAFETENSORS_H
#define VKP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "vkp_dtype.h"
#include "vkp_status.h"

#define VKP_ST_MAX_DIMS 8
#define VKP_ST_MAX_HEADER 100000000u  // header length cap, as in the reference implementation

// ---- reader -------------------------------------------------------------------------------------

// An open safetensors file: the mapping and the parsed header. Immutable after open, so it may be
// read from several threads at once. The file is mapped read-only and privately; if another
// process truncates it while it is mapped, touching the data faults (SIGBUS), as with any mmap.
typedef struct vkp_safetensors vkp_safetensors;

typedef struct vkp_st_tensor {
  const char *name;  // owned by the vkp_safetensors
  vkp_dtype dtype;
  int ndim;                        // 0 for a scalar
  int64_t shape[VKP_ST_MAX_DIMS];  // (shape[0], ..., shape[ndim-1]); unused dims are 0
  const void *data;                // points into the mapping; little-endian; aligned only as the
                                   // file is (vkp writers align the data buffer to 8 bytes)
  size_t nbytes;                   // product(shape) * vkp_dtype_size(dtype)
} vkp_st_tensor;

// Opens and validates `path`. On success *out owns the mapping (free with vkp_safetensors_free).
// Errors: VKP_ERR_IO (cannot open/map, not a regular file), VKP_ERR_FORMAT (any header or layout
// violation), VKP_ERR_UNSUPPORTED (a valid safetensors dtype this library does not handle, e.g.
// F8_E4M3), VKP_ERR_OOM. On error *out is NULL.
vkp_status vkp_safetensors_open(const char *path, vkp_safetensors **out, vkp_error *err);
void vkp_safetensors_free(vkp_safetensors *st);

size_t vkp_safetensors_count(const vkp_safetensors *st);
// The i-th tensor in header order (the order of the JSON keys); NULL if i >= count.
const vkp_st_tensor *vkp_safetensors_at(const vkp_safetensors *st, size_t i);
// Looks a tensor up by exact name in O(1) (hash index); NULL if absent.
const vkp_st_tensor *vkp_safetensors_find(const vkp_safetensors *st, const char *name);
// A "__metadata__" value, or NULL if absent. Owned by st.
const char *vkp_safetensors_metadata(const vkp_safetensors *st, const char *key);
// Number of "__metadata__" entries and the i-th (key, value) pair in header order (NULL if out of
// range); for tools that copy or print all metadata.
size_t vkp_safetensors_metadata_count(const vkp_safetensors *st);
const char *vkp_safetensors_metadata_at(const vkp_safetensors *st, size_t i, const char **value);
// The path the file was opened with. Owned by st.
const char *vkp_safetensors_path(const vkp_safetensors *st);

// Number of elements of a tensor (1 for a scalar).
size_t vkp_st_tensor_numel(const vkp_st_tensor *t);

// Reads tensor `name` converted to f32 into dst, which holds exactly n floats.
// Errors: VKP_ERR_NOT_FOUND (no such tensor), VKP_ERR_SHAPE (element count != n; the message
// gives the tensor's shape and n), VKP_ERR_INVALID (dst NULL).
vkp_status vkp_safetensors_read_f32(const vkp_safetensors *st, const char *name, float *dst,
                                    size_t n, vkp_error *err);

// ---- writer -------------------------------------------------------------------------------------

// Accumulates tensors (copies) and metadata, then writes them in one atomic save. Tensors are
// written in insertion order; the header lists "__metadata__" first, then tensors in insertion
// order; the header is padded with spaces so the data buffer starts at a multiple of 8 bytes.
typedef struct vkp_safetensors_writer vkp_safetensors_writer;

vkp_status vkp_safetensors_writer_new(vkp_safetensors_writer **out, vkp_error *err);
void vkp_safetensors_writer_free(vkp_safetensors_writer *w);

// Adds a tensor; copies name, shape and data (product(shape) * vkp_dtype_size(dtype) bytes, in
// little-endian element order). data may be NULL only for a tensor with zero elements.
// Errors: VKP_ERR_INVALID (empty or non-UTF-8 name, the name "__metadata__", a duplicate name,
// ndim outside 0..8, negative dim, size overflow, bad dtype), VKP_ERR_OOM.
vkp_status vkp_safetensors_writer_add(vkp_safetensors_writer *w, const char *name, vkp_dtype dtype,
                                      int ndim, const int64_t *shape, const void *data,
                                      vkp_error *err);
// As writer_add, from f32 data converted to store_dtype (F32, F16 or BF16; round to nearest even).
vkp_status vkp_safetensors_writer_add_f32(vkp_safetensors_writer *w, const char *name,
                                          vkp_dtype store_dtype, int ndim, const int64_t *shape,
                                          const float *data, vkp_error *err);
// Sets a "__metadata__" entry (both strings copied, must be UTF-8); setting a key again replaces
// its value.
vkp_status vkp_safetensors_writer_set_metadata(vkp_safetensors_writer *w, const char *key,
                                               const char *value, vkp_error *err);
// ---- a config.json against its checkpoint, before allocating ----------------------------------
// Model loaders list the tensors whose shapes follow from the config's sizes (embeddings, the first
// and last layer of each stack, ...) and check them against the file's header first, so a config
// that does not describe its checkpoint (or declares absurd sizes) is an error naming the file, the
// tensor, both shapes and the config keys, not gigabytes allocated and then a mismatch.
typedef struct vkp_st_expect {
  char name[192];    // the tensor's name in the file
  int ndim;          // at most 4
  int64_t shape[4];  // what the config implies
  char keys[192];    // the config keys it follows from, for the message: "hidden_size 32, num_channels 3"
} vkp_st_expect;
// Fills *e (name from printf-style name_fmt).
void vkp_st_expect_set(vkp_st_expect *e, const char *keys, int ndim, const int64_t *shape, const char *name_fmt, ...)
    __attribute__((format(printf, 5, 6)));
// The first of want[0..n) that is missing from st (VKP_ERR_FORMAT) or has another shape
// (VKP_ERR_SHAPE): "PATH: tensor 'T' is (32, 4, 3, 3), but CONFIG (block_out_channels[0] 8192)
// needs (8192, 4, 3, 3)".
vkp_status vkp_safetensors_expect(const vkp_safetensors *st, const char *path, const char *config_path,
                                  const vkp_st_expect *want, int n, vkp_error *err);

// Writes the file atomically (see vkp_file_write_atomic): an existing file at `path` stays
// intact on any failure. The writer is unchanged and may be saved again.
vkp_status vkp_safetensors_writer_save(vkp_safetensors_writer *w, const char *path, vkp_error *err);

#endif
