// vkp_png.h — 8-bit images in memory and PNG files (libpng) with text chunks.
//
// Images that a run writes (plots, sample grids, generated images) are vkp_image values: 8-bit
// grey, grey+alpha, RGB or RGBA pixels, row-major. PNG files are written atomically (encoded in
// memory, then vkp_file_write_atomic: temp file, fsync, rename), so a crash or a bad path never
// leaves a half-written PNG where a good one was. Text chunks carry key/value pairs; generated
// images store their generation settings under the key "parameters", as other Stable Diffusion
// tools (A1111, ComfyUI readers) expect.
#ifndef VKP_PNG_H
#define VKP_PNG_H

#include <stddef.h>
#include <stdint.h>

#include "vkp_status.h"

// An 8-bit image. As returned by vkp_image_new / vkp_png_read it owns its pixels (one allocation
// with the struct; free with vkp_image_free). A caller may also fill one in by hand as a *view* of
// pixels it owns (e.g. to pass to vkp_png_write or vkp_plot_image_grid); views are never freed.
typedef struct vkp_image {
  int width, height;  // pixels, >= 1
  int channels;       // 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
  size_t stride;      // bytes from one row to the next; 0 means width * channels
  uint8_t *data;      // (height, stride) samples, channels interleaved
} vkp_image;

// Largest width or height accepted (libpng's default limit).
#define VKP_IMAGE_MAX_SIDE 1000000

// Allocates a zero-filled (black, transparent) image with stride = width * channels.
// Errors: VKP_ERR_INVALID (size or channels out of range), VKP_ERR_OOM.
vkp_status vkp_image_new(int width, int height, int channels, vkp_image **out, vkp_error *err);
// Frees an image from vkp_image_new / vkp_png_read / a plot function; NULL is a no-op.
void vkp_image_free(vkp_image *img);
// Bytes per row of img (stride, or width * channels when stride is 0).
size_t vkp_image_stride(const vkp_image *img);

// One text chunk: key (1-79 printable ASCII characters, no leading, trailing or double spaces)
// and value (UTF-8). Pure-ASCII values are written as tEXt, others as (uncompressed) iTXt.
typedef struct vkp_png_text {
  const char *key;
  const char *value;
} vkp_png_text;

// Encodes img as a PNG in memory: *out is a new buffer (caller frees with free()) of *out_len
// bytes. `text` may be NULL when n_text is 0.
// Errors: VKP_ERR_INVALID (bad image or text key), VKP_ERR_OOM, VKP_ERR_FORMAT (libpng error).
vkp_status vkp_png_encode(const vkp_image *img, const vkp_png_text *text, int n_text,
                          uint8_t **out, size_t *out_len, vkp_error *err);

// Writes img to `path` as a PNG, atomically: an existing file is replaced only once the new one is
// complete on disk, and is left untouched on any error. Errors name the file:
// VKP_ERR_INVALID, VKP_ERR_OOM, VKP_ERR_IO (missing directory, permission, disk full).
vkp_status vkp_png_write(const char *path, const vkp_image *img, const vkp_png_text *text,
                         int n_text, vkp_error *err);

// ---- the decoding limit ------------------------------------------------------------------------------
// Every image reader (PNG here, the data sets' stb_image decoder, `vkpeft predict`) checks the
// size an image *declares* before decoding it: a small file may declare 16384 x 16384 pixels and
// cost gigabytes per decoding thread. The limit is 64 megapixels (and a side of at most
// max(16384, sqrt(limit)) pixels); the environment variable VKPEFT_MAX_IMAGE_PIXELS (a pixel
// count) raises or lowers it.
#define VKP_IMAGE_MAX_PIXELS_DEFAULT ((size_t)1 << 26)
// The limit in effect (VKPEFT_MAX_IMAGE_PIXELS when set to a positive integer, else the default).
size_t vkp_image_max_pixels(void);
// VKP_OK when a width x height image is within the limit; else VKP_ERR_FORMAT with a message that
// names `what`, the declared size, the limit and how to raise it.
vkp_status vkp_image_check_size(const char *what, int64_t width, int64_t height, vkp_error *err);

// Decodes a PNG held in memory; `name` is used in error messages (NULL = "PNG data").
// Any PNG is converted to 8 bits per sample: palettes become RGB, a tRNS chunk becomes an alpha
// channel, 16-bit samples are reduced, low-bit grey is expanded. *out: new image (vkp_image_free).
// If text is non-NULL, *text receives every tEXt/zTXt/iTXt chunk (before and after the image
// data) as one allocation holding the array and its strings (free(*text) frees all; NULL when
// there are none) and *n_text their count.
// Errors: VKP_ERR_FORMAT (not a PNG, corrupt, over the decoding limit), VKP_ERR_OOM.
vkp_status vkp_png_decode(const void *data, size_t len, const char *name, vkp_image **out,
                          vkp_png_text **text, int *n_text, vkp_error *err);

// Reads the PNG file at `path` (see vkp_png_decode). Errors: VKP_ERR_IO (cannot read),
// VKP_ERR_FORMAT, VKP_ERR_OOM; messages name the file.
vkp_status vkp_png_read(const char *path, vkp_image **out, vkp_png_text **text, int *n_text,
                        vkp_error *err);

// Value of the first text chunk named `key` in text[0..n_text), or NULL.
const char *vkp_png_text_find(const vkp_png_text *text, int n_text, const char *key);

#endif
