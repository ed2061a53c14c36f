// idx.c — IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed, fully validated.
//
// Layout: 4-byte magic {0, 0, type, ndim}, ndim big-endian uint32 dimensions, then the elements
// in big-endian order. gzip files (magic 1f 8b) are read through zlib, which also checks the CRC
// and length in the gzip trailer. A raw file's size must match the header exactly; a gzip file's
// decompressed data must too (checked while reading, with an allocation bounded by what the
// compressed size can possibly hold, so a lying header cannot make us allocate gigabytes).
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data_internal.h"
#include "vkp_data.h"

typedef struct idx_src {
  const char *path;
  FILE *f;      // raw file
  gzFile gz;    // gzip file
  long long file_size;
  int truncated;  // the gzip stream ended early (zlib: unexpected end of file)
} idx_src;

// zlib's gzerror message without the "path: " prefix it adds.
static const char *zmsg(const idx_src *s, const char *m) {
  if (!m) return "unknown error";
  size_t n = strlen(s->path);
  if (strncmp(m, s->path, n) == 0 && m[n] == ':' && m[n + 1] == ' ') return m + n + 2;
  return m;
}

static const char *type_name(int t) {
  switch (t) {
    case VKP_IDX_U8: return "u8";
    case VKP_IDX_I8: return "i8";
    case VKP_IDX_I16: return "i16";
    case VKP_IDX_I32: return "i32";
    case VKP_IDX_F32: return "f32";
    case VKP_IDX_F64: return "f64";
  }
  return NULL;
}

static size_t type_size(int t) {
  switch (t) {
    case VKP_IDX_U8:
    case VKP_IDX_I8: return 1;
    case VKP_IDX_I16: return 2;
    case VKP_IDX_I32:
    case VKP_IDX_F32: return 4;
    case VKP_IDX_F64: return 8;
  }
  return 0;
}

// Reads up to n bytes; *got = bytes read. Errors: IO (raw read error), FORMAT (corrupt gzip).
static vkp_status src_read(idx_src *s, void *buf, size_t n, size_t *got, vkp_error *err) {
  *got = 0;
  unsigned char *p = buf;
  while (*got < n) {
    size_t want = n - *got;
    if (want > (1u << 30)) want = 1u << 30;
    if (s->f) {
      size_t r = fread(p + *got, 1, want, s->f);
      *got += r;
      if (r < want) {
        if (ferror(s->f))
          return vkp_error_set(err, VKP_ERR_IO, "%s: read error: %s", s->path, strerror(errno));
        return VKP_OK;  // end of file
      }
    } else {
      int r = gzread(s->gz, p + *got, (unsigned)want);
      if (r < 0) {
        int zerr = 0;
        const char *m = gzerror(s->gz, &zerr);
        if (zerr == Z_ERRNO)
          return vkp_error_set(err, VKP_ERR_IO, "%s: read error: %s", s->path, strerror(errno));
        return vkp_error_set(err, VKP_ERR_FORMAT, "%s: corrupt gzip data (zlib: %s)", s->path,
                             zmsg(s, m));
      }
      *got += (size_t)r;
      if ((size_t)r < want) {
        int zerr = 0;
        const char *m = gzerror(s->gz, &zerr);
        if (zerr == Z_BUF_ERROR) s->truncated = 1;  // callers report what is missing
        else if (zerr != Z_OK && zerr != Z_STREAM_END)
          return vkp_error_set(err, VKP_ERR_FORMAT, "%s: corrupt gzip data (zlib: %s)", s->path,
                               zmsg(s, m));
        return VKP_OK;
      }
    }
  }
  return VKP_OK;
}

static void src_close(idx_src *s) {
  if (s->f) fclose(s->f);
  if (s->gz) gzclose(s->gz);
  s->f = NULL;
  s->gz = NULL;
}

static vkp_status src_open(const char *path, idx_src *s, int *is_gz, vkp_error *err) {
  memset(s, 0, sizeof *s);
  s->path = path;
  FILE *f = fopen(path, "rb");
  if (!f) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    fclose(f);
    return vkp_error_set(err, VKP_ERR_IO, "%s: not a regular file", path);
  }
  s->file_size = (long long)sb.st_size;
  unsigned char m[2] = {0, 0};
  size_t r = fread(m, 1, 2, f);
  *is_gz = r == 2 && m[0] == 0x1f && m[1] == 0x8b;
  if (!*is_gz) {
    rewind(f);
    s->f = f;
    return VKP_OK;
  }
  fclose(f);
  s->gz = gzopen(path, "rb");
  if (!s->gz) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  gzbuffer(s->gz, 1u << 17);
  return VKP_OK;
}

static void describe_dims(const vkp_idx *a, char *buf, size_t cap) {
  size_t o = 0;
  buf[0] = '\0';
  for (int d = 0; d < a->ndim && o < cap; d++)
    o += (size_t)snprintf(buf + o, cap - o, d ? " x %u" : "%u", a->dims[d]);
}

vkp_status vkp_idx_read(const char *path, vkp_idx *out, vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_idx_read: out is NULL");
  memset(out, 0, sizeof *out);
  if (!path) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_idx_read: path is NULL");
  idx_src s;
  int gz = 0;
  VKP_TRY(src_open(path, &s, &gz, err));
  vkp_status st;
  unsigned char hdr[4 + 4 * VKP_IDX_MAX_DIMS];
  size_t got = 0;
  if ((st = src_read(&s, hdr, 4, &got, err)) != VKP_OK) goto fail;
  if (got < 4) {
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: truncated IDX file: %zu bytes, no complete header",
                       path, got);
    goto fail;
  }
  if (hdr[0] != 0 || hdr[1] != 0 || !type_name(hdr[2]) || hdr[3] < 1 || hdr[3] > VKP_IDX_MAX_DIMS) {
    st = vkp_error_set(err, VKP_ERR_FORMAT,
                       "%s: not an IDX file (magic %02x %02x %02x %02x; want 00 00 <type 08/09/0b/"
                       "0c/0d/0e> <1..%d dims>)",
                       path, hdr[0], hdr[1], hdr[2], hdr[3], VKP_IDX_MAX_DIMS);
    goto fail;
  }
  out->type = hdr[2];
  out->ndim = hdr[3];
  size_t dim_bytes = 4 * (size_t)out->ndim;
  if ((st = src_read(&s, hdr + 4, dim_bytes, &got, err)) != VKP_OK) goto fail;
  if (got < dim_bytes) {
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: truncated IDX header (%d dimensions declared)",
                       path, out->ndim);
    goto fail;
  }
  size_t esz = type_size(out->type), count = 1;
  for (int d = 0; d < out->ndim; d++) {
    const unsigned char *p = hdr + 4 + 4 * d;
    out->dims[d] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (out->dims[d] && count > SIZE_MAX / esz / out->dims[d]) {
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: IDX dimensions overflow", path);
      goto fail;
    }
    count *= out->dims[d];
  }
  char dims[160];
  describe_dims(out, dims, sizeof dims);
  size_t nbytes = count * esz, header = 4 + dim_bytes;
  if (!gz) {
    // In unsigned arithmetic: a header may declare 2^63 bytes and more (fuzz_idx: the signed
    // difference below overflowed).
    uint64_t want = nbytes > UINT64_MAX - header ? UINT64_MAX : (uint64_t)header + nbytes;
    if ((uint64_t)s.file_size < want) {
      st = vkp_error_set(err, VKP_ERR_FORMAT,
                         "%s: truncated IDX file: header declares %s %s (%zu bytes of data), "
                         "file holds %lld",
                         path, dims, type_name(out->type), nbytes,
                         s.file_size > (long long)header ? s.file_size - (long long)header : 0);
      goto fail;
    }
    if ((uint64_t)s.file_size > want) {
      st = vkp_error_set(err, VKP_ERR_FORMAT,
                         "%s: %llu bytes of trailing data after the %s %s declared by the header",
                         path, (unsigned long long)((uint64_t)s.file_size - want), dims, type_name(out->type));
      goto fail;
    }
  } else if ((double)nbytes > 1040.0 * (double)s.file_size + 65536.0) {
    // DEFLATE cannot expand by more than ~1032:1, so the file cannot hold this much data.
    st = vkp_error_set(err, VKP_ERR_FORMAT,
                       "%s: truncated IDX file: header declares %s %s (%zu bytes of data), more "
                       "than %lld compressed bytes can hold",
                       path, dims, type_name(out->type), nbytes, s.file_size);
    goto fail;
  }
  out->data = malloc(nbytes ? nbytes : 1);
  if (!out->data) {
    st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory for %zu bytes", path, nbytes);
    goto fail;
  }
  out->nbytes = nbytes;
  if ((st = src_read(&s, out->data, nbytes, &got, err)) != VKP_OK) goto fail;
  if (got < nbytes) {
    st = vkp_error_set(err, VKP_ERR_FORMAT,
                       "%s: truncated IDX file: header declares %s %s (%zu bytes of data), %s "
                       "holds %zu",
                       path, dims, type_name(out->type), nbytes,
                       gz ? "decompressed data" : "file", got);
    goto fail;
  }
  unsigned char extra;
  if ((st = src_read(&s, &extra, 1, &got, err)) != VKP_OK) goto fail;  // also checks gzip CRC
  if (got) {
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: trailing data after the %s %s declared by the header",
                       path, dims, type_name(out->type));
    goto fail;
  }
  if (s.truncated) {
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: truncated gzip file (its trailer is missing)", path);
    goto fail;
  }
  src_close(&s);
  // Big-endian -> host order.
  unsigned char *b = out->data;
  if (esz > 1) {
    const uint16_t probe = 1;
    if (*(const unsigned char *)&probe == 1)
      for (size_t i = 0; i < count; i++) {
        unsigned char *e = b + i * esz;
        for (size_t k = 0; k < esz / 2; k++) {
          unsigned char t = e[k];
          e[k] = e[esz - 1 - k];
          e[esz - 1 - k] = t;
        }
      }
  }
  return VKP_OK;
fail:
  src_close(&s);
  vkp_idx_release(out);
  return st;
}

void vkp_idx_release(vkp_idx *a) {
  if (!a) return;
  free(a->data);
  memset(a, 0, sizeof *a);
}

static int64_t label_at(const vkp_idx *l, size_t i) {
  switch (l->type) {
    case VKP_IDX_U8: return ((const uint8_t *)l->data)[i];
    case VKP_IDX_I8: return ((const int8_t *)l->data)[i];
    case VKP_IDX_I16: return ((const int16_t *)l->data)[i];
    case VKP_IDX_I32: return ((const int32_t *)l->data)[i];
  }
  return -1;
}

#define VKP_IDX_MAX_CLASSES 65536

vkp_status vkp_data_load_idx(const char *images_path, const char *labels_path,
                             const char *const *class_names, int n_class_names, vkp_dataset **out,
                             vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_data_load_idx: out is NULL");
  *out = NULL;
  vkp_idx im, lb;
  VKP_TRY(vkp_idx_read(images_path, &im, err));
  vkp_status st = vkp_idx_read(labels_path, &lb, err);
  if (st != VKP_OK) {
    vkp_idx_release(&im);
    return st;
  }
  vkp_dataset *ds = NULL;
  int channels = im.ndim == 4 ? (int)im.dims[3] : 1;
  if (im.type != VKP_IDX_U8 || (im.ndim != 3 && im.ndim != 4) ||
      (channels != 1 && channels != 3 && channels != 4) || im.dims[1] == 0 || im.dims[2] == 0 ||
      im.dims[1] > INT32_MAX || im.dims[2] > INT32_MAX) {
    char dims[160];
    describe_dims(&im, dims, sizeof dims);
    st = vkp_error_set(err, VKP_ERR_FORMAT,
                       "%s: not an image IDX file: %s %s (want u8 count x rows x cols [x 1/3/4])",
                       images_path, dims, type_name(im.type));
    goto done;
  }
  if (lb.ndim != 1 || !(lb.type == VKP_IDX_U8 || lb.type == VKP_IDX_I8 || lb.type == VKP_IDX_I16 ||
                        lb.type == VKP_IDX_I32)) {
    char dims[160];
    describe_dims(&lb, dims, sizeof dims);
    st = vkp_error_set(err, VKP_ERR_FORMAT,
                       "%s: not a label IDX file: %s %s (want one dimension of integers)",
                       labels_path, dims, type_name(lb.type));
    goto done;
  }
  if (lb.dims[0] != im.dims[0]) {
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: %u labels for the %u images of %s", labels_path,
                       lb.dims[0], im.dims[0], images_path);
    goto done;
  }
  size_t n = im.dims[0];
  int64_t maxl = -1;
  for (size_t i = 0; i < n; i++) {
    int64_t v = label_at(&lb, i);
    int64_t limit = class_names ? n_class_names : VKP_IDX_MAX_CLASSES;
    if (v < 0 || v >= limit) {
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: label %lld of image %zu outside [0, %lld)",
                         labels_path, (long long)v, i, (long long)limit);
      goto done;
    }
    if (v > maxl) maxl = v;
  }
  int K = class_names ? n_class_names : (int)(maxl + 1);
  if (K < 1) K = 1;
  char name[VKP_DATA_PATH_MAX];
  snprintf(name, sizeof name, "%s", images_path);
  if (!(ds = vkp_data_alloc(name, n, 0, K, 0))) goto oom;
  if (class_names && (st = vkp_dataset_set_class_names(ds, class_names, K, err)) != VKP_OK)
    goto done;
  ds->channels = channels;
  ds->height = (int)im.dims[1];
  ds->width = (int)im.dims[2];
  size_t per = (size_t)ds->width * (size_t)ds->height * (size_t)channels;
  for (size_t i = 0; i < n; i++) {
    ds->labels[i] = (int32_t)label_at(&lb, i);
    ds->offsets[i] = i * per;
    ds->widths[i] = ds->width;
    ds->heights[i] = ds->height;
  }
  free(ds->pixels);
  ds->pixels = im.data;  // taken over
  im.data = NULL;
  *out = ds;
  ds = NULL;
  goto done;
oom:
  st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", images_path);
done:
  vkp_dataset_free(ds);
  vkp_idx_release(&im);
  vkp_idx_release(&lb);
  return st;
}
