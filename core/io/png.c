// png.c — vkp_image allocation and PNG encode/decode with libpng; atomic PNG file writes.
//
// libpng reports errors by longjmp. Each libpng session runs in a helper (encode_session,
// decode_session) whose only state lives in a struct owned by the caller, so nothing that changes
// after setjmp is a local of the function that called setjmp (no volatile juggling), and every
// allocation is released by the caller whatever way the session ended.
#include "vkp_png.h"

#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_fileio.h"
#include "vkp_strbuf.h"

// ---- images -------------------------------------------------------------------------------------

vkp_status vkp_image_new(int width, int height, int channels, vkp_image **out, vkp_error *err) {
  if (out) *out = NULL;
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "image: NULL output");
  if (width < 1 || height < 1 || width > VKP_IMAGE_MAX_SIDE || height > VKP_IMAGE_MAX_SIDE)
    return vkp_error_set(err, VKP_ERR_INVALID, "image: size %dx%d out of range (1..%d)", width,
                         height, VKP_IMAGE_MAX_SIDE);
  if (channels < 1 || channels > 4)
    return vkp_error_set(err, VKP_ERR_INVALID, "image: %d channels (1..4 allowed)", channels);
  size_t stride = (size_t)width * (size_t)channels;
  if ((size_t)height > (SIZE_MAX - sizeof(vkp_image) - 16) / stride)
    return vkp_error_set(err, VKP_ERR_OOM, "image: %dx%dx%d is too large", width, height,
                         channels);
  // One block: the struct, then the pixels (16-byte aligned).
  size_t head = (sizeof(vkp_image) + 15) & ~(size_t)15;
  unsigned char *block = calloc(1, head + stride * (size_t)height);
  if (!block)
    return vkp_error_set(err, VKP_ERR_OOM, "image: out of memory for %dx%dx%d", width, height,
                         channels);
  vkp_image *img = (vkp_image *)block;
  img->width = width;
  img->height = height;
  img->channels = channels;
  img->stride = stride;
  img->data = block + head;
  *out = img;
  return VKP_OK;
}

void vkp_image_free(vkp_image *img) { free(img); }

size_t vkp_image_stride(const vkp_image *img) {
  return img->stride ? img->stride : (size_t)img->width * (size_t)img->channels;
}

static vkp_status check_image(const vkp_image *img, const char *what, vkp_error *err) {
  if (!img || !img->data) return vkp_error_set(err, VKP_ERR_INVALID, "%s: no image", what);
  if (img->width < 1 || img->height < 1 || img->width > VKP_IMAGE_MAX_SIDE ||
      img->height > VKP_IMAGE_MAX_SIDE)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: image size %dx%d out of range", what,
                         img->width, img->height);
  if (img->channels < 1 || img->channels > 4)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: image has %d channels (1..4 allowed)", what,
                         img->channels);
  if (img->stride && img->stride < (size_t)img->width * (size_t)img->channels)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: image stride %zu < width * channels", what,
                         img->stride);
  return VKP_OK;
}

// A text key PNG accepts (1-79 Latin-1 characters; we allow printable ASCII) that readers will
// recognise: no leading, trailing or consecutive spaces.
static int key_ok(const char *k) {
  size_t n = strlen(k);
  if (n < 1 || n > 79 || k[0] == ' ' || k[n - 1] == ' ') return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)k[i];
    if (c < 32 || c > 126) return 0;
    if (c == ' ' && k[i + 1] == ' ') return 0;
  }
  return 1;
}

static int is_ascii(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s >= 0x80) return 0;
  return 1;
}

// ---- libpng plumbing ----------------------------------------------------------------------------

typedef struct png_session {
  jmp_buf jmp;
  char msg[256];  // libpng's error message
  int oom;        // an allocation of ours failed inside a callback
} png_session;

static void on_png_error(png_structp png, png_const_charp msg) {
  png_session *s = png_get_error_ptr(png);
  snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "unknown libpng error");
  longjmp(s->jmp, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;  // warnings (e.g. a bad CRC in an ancillary chunk) are not errors for us
}

// ---- encode -------------------------------------------------------------------------------------

typedef struct encode_state {
  png_session sess;
  const vkp_image *img;
  png_text *chunks;  // (n_text)
  int n_text;
  vkp_strbuf out;   // the encoded bytes (binary; the strbuf's NUL after them is not part of it)
} encode_state;

static void on_write(png_structp png, png_bytep data, png_size_t n) {
  encode_state *e = png_get_io_ptr(png);
  vkp_strbuf_put(&e->out, (const char *)data, n);
  if (e->out.oom) {
    e->sess.oom = 1;
    png_error(png, "out of memory");
  }
}

static void on_flush(png_structp png) { (void)png; }

// Runs libpng; returns 0 on success, 1 when libpng reported an error (message in e->sess).
static int encode_session(encode_state *e) {
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, &e->sess, on_png_error, on_png_warning);
  if (!png) {
    e->sess.oom = 1;
    return 1;
  }
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(e->sess.jmp)) {
    if (!info) e->sess.oom = 1;
    png_destroy_write_struct(&png, &info);
    return 1;
  }
  static const int color_types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                     PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
  const vkp_image *img = e->img;
  png_set_write_fn(png, e, on_write, on_flush);
  png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8,
               color_types[img->channels], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (e->n_text > 0) png_set_text(png, info, e->chunks, e->n_text);
  png_write_info(png, info);  // text chunks go before the image data
  size_t stride = vkp_image_stride(img);
  for (int y = 0; y < img->height; y++) png_write_row(png, img->data + (size_t)y * stride);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  return 0;
}

vkp_status vkp_png_encode(const vkp_image *img, const vkp_png_text *text, int n_text,
                          uint8_t **out, size_t *out_len, vkp_error *err) {
  if (out) *out = NULL;
  if (out_len) *out_len = 0;
  if (!out || !out_len) return vkp_error_set(err, VKP_ERR_INVALID, "PNG encode: NULL output");
  VKP_TRY(check_image(img, "PNG encode", err));
  if (n_text < 0 || (n_text > 0 && !text))
    return vkp_error_set(err, VKP_ERR_INVALID, "PNG encode: bad text list");
  for (int i = 0; i < n_text; i++) {
    if (!text[i].key || !key_ok(text[i].key))
      return vkp_error_set(err, VKP_ERR_INVALID,
                           "PNG text key \"%.100s\" is invalid (1-79 printable ASCII characters, "
                           "no leading, trailing or double spaces)",
                           text[i].key ? text[i].key : "(null)");
    if (!text[i].value)
      return vkp_error_set(err, VKP_ERR_INVALID, "PNG text \"%s\": NULL value", text[i].key);
  }

  encode_state e;
  memset(&e, 0, sizeof e);
  e.img = img;
  e.n_text = n_text;
  if (n_text > 0) {
    e.chunks = calloc((size_t)n_text, sizeof *e.chunks);
    if (!e.chunks) return vkp_error_set(err, VKP_ERR_OOM, "PNG encode: out of memory");
  }
  for (int i = 0; i < n_text; i++) {
    png_text *c = &e.chunks[i];
    c->key = (png_charp)text[i].key;
    c->text = (png_charp)text[i].value;
    if (is_ascii(text[i].value)) {
      c->compression = PNG_TEXT_COMPRESSION_NONE;
      c->text_length = strlen(text[i].value);
    } else {
      c->compression = PNG_ITXT_COMPRESSION_NONE;
      c->lang = (png_charp) "";
      c->lang_key = (png_charp) "";
      c->itxt_length = strlen(text[i].value);
    }
  }
  vkp_status st = VKP_OK;
  if (encode_session(&e) != 0) {
    st = e.sess.oom ? vkp_error_set(err, VKP_ERR_OOM, "PNG encode: out of memory")
                    : vkp_error_set(err, VKP_ERR_FORMAT, "PNG encode: %s", e.sess.msg);
    free(e.out.p);
  } else {
    *out = (uint8_t *)e.out.p;
    *out_len = e.out.len;
  }
  free(e.chunks);
  return st;
}

vkp_status vkp_png_write(const char *path, const vkp_image *img, const vkp_png_text *text,
                         int n_text, vkp_error *err) {
  if (!path || !path[0]) return vkp_error_set(err, VKP_ERR_INVALID, "PNG write: empty path");
  uint8_t *bytes = NULL;
  size_t len = 0;
  vkp_status st = vkp_png_encode(img, text, n_text, &bytes, &len, err);
  if (st != VKP_OK) {
    // Prefix the file name to the encoder's message.
    if (err) {
      char msg[VKP_ERROR_MSG_MAX];
      snprintf(msg, sizeof msg, "%s", err->msg);
      vkp_error_set(err, st, "%s: %s", path, msg);
    }
    return st;
  }
  const void *chunks[1] = {bytes};
  size_t sizes[1] = {len};
  st = vkp_file_write_atomic(path, chunks, sizes, 1, err);
  free(bytes);
  return st;
}

// ---- decode -------------------------------------------------------------------------------------

typedef struct decode_state {
  png_session sess;
  const unsigned char *src;
  size_t len, pos;
  vkp_image *img;        // result (owned here until handed out)
  png_bytep *rows;       // (height) row pointers into img
  vkp_png_text *text;    // result text block
  int n_text;
  int want_text;
  const char *name;      // for messages
  vkp_error limit;       // set when the declared size is over the decoding limit
} decode_state;

static void on_read(png_structp png, png_bytep data, png_size_t n) {
  decode_state *d = png_get_io_ptr(png);
  if (n > d->len - d->pos) png_error(png, "file is truncated");
  memcpy(data, d->src + d->pos, n);
  d->pos += n;
}

// Copies every text chunk seen in `infos` into one allocation (array, then strings).
static int collect_text(png_structp png, png_infop *infos, int n_infos, decode_state *d) {
  size_t bytes = 0;
  int count = 0;
  for (int k = 0; k < n_infos; k++) {
    png_textp t = NULL;
    int n = png_get_text(png, infos[k], &t, NULL);
    for (int i = 0; i < n; i++) {
      size_t vlen = t[i].compression > 0 ? t[i].itxt_length : t[i].text_length;
      bytes += strlen(t[i].key) + 1 + vlen + 1;
      count++;
    }
  }
  if (count == 0) return 0;
  vkp_png_text *block = malloc((size_t)count * sizeof *block + bytes);
  if (!block) return -1;
  char *p = (char *)(block + count);
  int j = 0;
  for (int k = 0; k < n_infos; k++) {
    png_textp t = NULL;
    int n = png_get_text(png, infos[k], &t, NULL);
    for (int i = 0; i < n; i++, j++) {
      size_t klen = strlen(t[i].key);
      size_t vlen = t[i].compression > 0 ? t[i].itxt_length : t[i].text_length;
      memcpy(p, t[i].key, klen + 1);
      block[j].key = p;
      p += klen + 1;
      if (vlen) memcpy(p, t[i].text, vlen);
      p[vlen] = '\0';
      block[j].value = p;
      p += vlen + 1;
    }
  }
  d->text = block;
  d->n_text = count;
  return 0;
}

static int decode_session(decode_state *d) {
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, &d->sess, on_png_error, on_png_warning);
  if (!png) {
    d->sess.oom = 1;
    return 1;
  }
  png_infop info = png_create_info_struct(png);
  png_infop end = info ? png_create_info_struct(png) : NULL;
  if (!info || !end || setjmp(d->sess.jmp)) {
    if (!info || !end) d->sess.oom = 1;
    png_destroy_read_struct(&png, &info, &end);
    return 1;
  }
  png_set_read_fn(png, d, on_read);
  // Decompressed text chunks and their number are capped (libpng's recommended limits);
  // declared chunk lengths were checked against the data by check_chunks.
  png_set_chunk_malloc_max(png, 8000000);
  png_set_chunk_cache_max(png, 1000);
  png_read_info(png, info);
  png_uint_32 w = 0, h = 0;
  int depth = 0, color = 0, interlace = 0;
  png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, NULL, NULL);
  if (vkp_image_check_size(d->name, w, h, &d->limit) != VKP_OK) png_error(png, "over the decoding limit");
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (depth == 16) png_set_scale_16(png);
  if (interlace != PNG_INTERLACE_NONE) png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int channels = png_get_channels(png, info);
  if (vkp_image_new((int)w, (int)h, channels, &d->img, NULL) != VKP_OK) {
    d->sess.oom = 1;
    png_error(png, "out of memory");
  }
  if (png_get_rowbytes(png, info) != d->img->stride) png_error(png, "unexpected row size");
  d->rows = malloc((size_t)h * sizeof *d->rows);
  if (!d->rows) {
    d->sess.oom = 1;
    png_error(png, "out of memory");
  }
  for (png_uint_32 y = 0; y < h; y++) d->rows[y] = d->img->data + (size_t)y * d->img->stride;
  png_read_image(png, d->rows);
  png_read_end(png, end);
  if (d->want_text) {
    png_infop infos[2] = {info, end};
    if (collect_text(png, infos, 2, d) != 0) {
      d->sess.oom = 1;
      png_error(png, "out of memory");
    }
  }
  png_destroy_read_struct(&png, &info, &end);
  return 0;
}

size_t vkp_image_max_pixels(void) {
  const char *e = getenv("VKPEFT_MAX_IMAGE_PIXELS");
  char *end;
  unsigned long long v = e && *e ? strtoull(e, &end, 10) : 0;
  return v > 0 && !*end && v <= SIZE_MAX ? (size_t)v : VKP_IMAGE_MAX_PIXELS_DEFAULT;
}

vkp_status vkp_image_check_size(const char *what, int64_t width, int64_t height, vkp_error *err) {
  size_t limit = vkp_image_max_pixels();
  double side = fmax(16384.0, floor(sqrt((double)limit)));
  if (width > 0 && height > 0 && (double)width * (double)height <= (double)limit && width <= side && height <= side)
    return VKP_OK;
  return vkp_error_set(err, VKP_ERR_FORMAT,
                       "%s: the image declares %lldx%lld pixels, over the decoding limit of %zu pixels and %.0f a side "
                       "(not decoded; set VKPEFT_MAX_IMAGE_PIXELS to raise it)",
                       what ? what : "image", (long long)width, (long long)height, limit, side);
}

// Walks the chunk list before libpng sees it: libpng allocates a chunk's declared length before
// reading it, so a 200-byte file declaring a 2 GB tEXt chunk would cost 2 GB first.
static vkp_status check_chunks(const unsigned char *b, size_t len, const char *name, vkp_error *err) {
  for (size_t p = 8; p + 8 <= len;) {
    uint32_t n = (uint32_t)b[p] << 24 | (uint32_t)b[p + 1] << 16 | (uint32_t)b[p + 2] << 8 | b[p + 3];
    const unsigned char *type = b + p + 4;
    char shown[20];
    int printable = 1;
    for (int k = 0; k < 4; k++) printable &= (type[k] >= 'A' && type[k] <= 'Z') || (type[k] >= 'a' && type[k] <= 'z');
    if (printable) snprintf(shown, sizeof shown, "%.4s", (const char *)type);
    else snprintf(shown, sizeof shown, "%02x%02x%02x%02x", type[0], type[1], type[2], type[3]);
    if (n > 0x7fffffffu || n > len - p - 8 || len - p - 8 - n < 4)
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s: corrupt PNG: chunk '%s' at byte %zu declares %u bytes, only %zu remain",
                           name, shown, p, n, len - p - 8);
    if (!memcmp(type, "IEND", 4)) break;
    p += 12 + (size_t)n;
  }
  return VKP_OK;
}

vkp_status vkp_png_decode(const void *data, size_t len, const char *name, vkp_image **out,
                          vkp_png_text **text, int *n_text, vkp_error *err) {
  if (!name) name = "PNG data";
  if (out) *out = NULL;
  if (text) *text = NULL;
  if (n_text) *n_text = 0;
  if (!out || (text && !n_text))
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: PNG decode: NULL output", name);
  if (!data || len < 8 || png_sig_cmp((png_const_bytep)data, 0, 8) != 0)
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: not a PNG file (bad signature)", name);
  VKP_TRY(check_chunks(data, len, name, err));

  decode_state d;
  memset(&d, 0, sizeof d);
  d.src = data;
  d.len = len;
  d.want_text = text != NULL;
  d.name = name;
  vkp_status st = VKP_OK;
  if (decode_session(&d) != 0) {
    st = d.limit.status ? vkp_error_set(err, d.limit.status, "%s", d.limit.msg)
         : d.sess.oom ? vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory decoding PNG", name)
                    : vkp_error_set(err, VKP_ERR_FORMAT, "%s: corrupt PNG: %s", name, d.sess.msg);
    vkp_image_free(d.img);
    free(d.text);
  } else {
    *out = d.img;
    if (text) {
      *text = d.text;
      *n_text = d.n_text;
    }
  }
  free(d.rows);
  return st;
}

vkp_status vkp_png_read(const char *path, vkp_image **out, vkp_png_text **text, int *n_text,
                        vkp_error *err) {
  if (out) *out = NULL;
  if (text) *text = NULL;
  if (n_text) *n_text = 0;
  if (!path) return vkp_error_set(err, VKP_ERR_INVALID, "PNG read: NULL path");
  char *bytes = NULL;
  size_t len = 0;
  VKP_TRY(vkp_file_read_all(path, (size_t)1 << 31, &bytes, &len, err));
  vkp_status st = vkp_png_decode(bytes, len, path, out, text, n_text, err);
  free(bytes);
  return st;
}

const char *vkp_png_text_find(const vkp_png_text *text, int n_text, const char *key) {
  for (int i = 0; text && key && i < n_text; i++)
    if (strcmp(text[i].key, key) == 0) return text[i].value;
  return NULL;
}
