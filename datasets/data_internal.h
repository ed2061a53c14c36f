// data_internal.h — helpers shared by the datasets/ sources (not installed, not public).
#ifndef VKP_DATA_INTERNAL_H
#define VKP_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "vkp_data.h"
#include "vkp_rng.h"
#include "vkp_vec.h"

// ---- deterministic random numbers: core's vkp_rng, one stream per key ---------------------------
// Key streams: distinct constants so (seed, epoch) for the order, (seed, class) for the split and
// (seed, epoch, index) for augmentation never produce related streams (vkp_rng_key).
#define VKP_DATA_STREAM_ORDER 0x6f72646572ull  // "order"
#define VKP_DATA_STREAM_SPLIT 0x73706c6974ull  // "split"
#define VKP_DATA_STREAM_AUG 0x617567ull        // "aug"
#define VKP_DATA_STREAM_REPEAT 0x726570ull     // "rep": copies of a repeated sample
#define VKP_DATA_STREAM_CAPTION 0x636170ull    // "cap": a sample's caption draw

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

// ---- folders (folder.c) --------------------------------------------------------------------------

typedef VKP_VEC(char *) vkp_data_strings;  // owned strings

// Appends the non-hidden entry names of dir (not starting with '.') to names, sorted (strcmp).
// Errors: VKP_ERR_IO (cannot open the folder), VKP_ERR_OOM.
vkp_status vkp_data_list_dir(const char *dir, vkp_data_strings *names, vkp_error *err);
// dir + "/" + name (no doubled '/') as a new string; NULL on OOM.
char *vkp_data_path_join(const char *dir, const char *name);
// Whether a file name has an image extension: .png .jpg .jpeg .bmp .gif .tga .ppm .pgm .pnm, any
// case.
int vkp_data_is_image_name(const char *name);

// ---- file-image decoding (folder and list readers) ----------------------------------------------

// Decodes n image files into a new dataset. paths (n strings) and names (n_classes strings) are
// taken over (freed by this function whether it succeeds or not); labels is copied.
// `what` names the source in messages and becomes ds->name.
vkp_status vkp_data_decode_files(const char *what, char **paths, const int32_t *labels, size_t n,
                                  char **names, int n_classes, const vkp_data_load_opts *opts,
                                  vkp_dataset **out, vkp_error *err);

// vkp_data_batch_fill with one transform key per sample (keys[k] for idx[k]).
vkp_status vkp_data_batch_fill_keys(const vkp_dataset *ds, const vkp_data_transform *t,
                                    const size_t *idx, const uint64_t *keys, size_t n,
                                    float *pixels, int32_t *labels, vkp_error *err);

// RGBA pixels -> `channels` (1, 3, 4) with the alpha mode (see vkp_alpha_mode; 4 copies).
void vkp_data_convert_rgba(const uint8_t *rgba, size_t npix, int channels, vkp_alpha_mode mode,
                           uint8_t *out);

// Emits a warning through opts->warn or stderr.
void vkp_data_warn(const vkp_data_load_opts *opts, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// ---- text lists (list.c): CSV records and JSONL objects --------------------------------------

// Reads a whole text file (at most 1 GiB) into a new NUL-terminated buffer (free()).
// Errors: VKP_ERR_IO, VKP_ERR_FORMAT (too large, a NUL byte), VKP_ERR_OOM.
vkp_status vkp_data_read_text(const char *path, char **out, size_t *len, vkp_error *err);

#define VKP_DATA_CSV_MAX_FIELDS 64

typedef struct vkp_data_csv {
  const char *p, *end;
  int line;  // current line (1-based)
} vkp_data_csv;

// A CSV reader over text[0..len) (a UTF-8 byte-order mark is skipped).
void vkp_data_csv_init(vkp_data_csv *c, const char *text, size_t len);
// Parses one RFC 4180 record into fields (new strings; at most VKP_DATA_CSV_MAX_FIELDS), skipping
// blank lines; *first_line gets the record's line. Returns the field count, 0 (VKP_OK) at the end,
// or a negative vkp_status: VKP_ERR_FORMAT (a syntax error; the message names file:line) or
// VKP_ERR_OOM; on errors no field is left allocated.
int vkp_data_csv_record(vkp_data_csv *c, char **fields, int *first_line, const char *file,
                        vkp_error *err);

// Whether a list is JSONL: a .jsonl/.ndjson/.json extension or a first non-blank character '{'.
int vkp_data_list_is_jsonl(const char *path, const char *text);

struct cJSON;

// Calls row(object, file, line, user, err) for the JSON object on each non-blank line of JSONL text
// (modified in place; a UTF-8 byte-order mark skipped), stopping at the first failure.
// Errors: VKP_ERR_FORMAT ("file:line: not a JSON object", "... text after the JSON object"), or
// row's.
vkp_status vkp_data_jsonl_each(const char *file, char *text, size_t len,
                               vkp_status (*row)(const struct cJSON *o, const char *file,
                                                 int line, void *user, vkp_error *err),
                               void *user, vkp_error *err);
// The value of the first of `keys` (NULL-terminated) that object o has, or NULL.
const struct cJSON *vkp_data_json_get_any(const struct cJSON *o, const char *const *keys);

// A path from a list file: `p` itself when absolute, else relative to the list's folder. New
// string, NULL on OOM.
char *vkp_data_list_path(const char *list_path, const char *p);

// ---- resampling ----------------------------------------------------------------------------------

// Resizes an HWC uint8 image (sw x sh x c) to (dw x dh x c) with a separable triangle filter whose
// support widens with the downscale factor (antialiased bilinear, as PIL / torchvision
// antialias=True); equals plain bilinear when enlarging. tmp holds dw * sh * c floats.
void vkp_data_resize_u8(const uint8_t *src, int sw, int sh, int c, uint8_t *dst, int dw, int dh,
                         float *tmp);

// Number of worker threads for n_threads (0 = auto).
int vkp_data_thread_count(int n_threads, size_t work_items);

#endif
