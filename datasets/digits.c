// digits.c — scikit-learn's bundled 8x8 digits (sklearn/datasets/data/digits.csv.gz).
//
// Each line: 64 pixel values (0..16, row by row) and the label, comma-separated, as numpy's
// loadtxt(..., delimiter=',') reads them (integers or floats). Stored as uint8 round(v * 255 / 16).
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data_internal.h"
#include "vkp_data.h"
#include "vkp_strbuf.h"

#define DIGITS_MAX_BYTES (64u << 20)
#define DIGITS_PIXELS 64

// zlib's gzerror message without the "path: " prefix it adds.
static const char *zmsg(const char *path, const char *m) {
  if (!m) return "unknown error";
  size_t n = strlen(path);
  if (strncmp(m, path, n) == 0 && m[n] == ':' && m[n + 1] == ' ') return m + n + 2;
  return m;
}

static vkp_status read_text(const char *path, char **out, size_t *len, vkp_error *err) {
  *out = NULL;
  FILE *probe = fopen(path, "rb");
  if (!probe) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  fclose(probe);
  gzFile gz = gzopen(path, "rb");  // reads plain files transparently
  if (!gz) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  enum { CHUNK = 1 << 16 };
  char *chunk = malloc(CHUNK);
  vkp_strbuf b = {0};
  vkp_status st = chunk ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", path);
  while (!st) {
    int r = gzread(gz, chunk, CHUNK);
    if (r < 0) {
      int zerr = 0;
      const char *m = gzerror(gz, &zerr);
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: corrupt gzip data (zlib: %s)", path, zmsg(path, m));
      break;
    }
    if (b.len + (size_t)r > DIGITS_MAX_BYTES) {
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: larger than %u bytes", path, DIGITS_MAX_BYTES);
      break;
    }
    vkp_strbuf_put(&b, chunk, (size_t)r);
    if (b.oom) st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", path);
    if (r < CHUNK) {   // the end, or an error
      int zerr = 0;
      const char *m = gzerror(gz, &zerr);
      if (!st && zerr != Z_OK && zerr != Z_STREAM_END)
        st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: truncated or corrupt gzip data (zlib: %s)", path, zmsg(path, m));
      break;
    }
  }
  gzclose(gz);
  free(chunk);
  if (!st && !b.p) vkp_strbuf_put(&b, "", 0);   // an empty file: still a string
  if (!st && b.oom) st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", path);
  if (st != VKP_OK) {
    free(b.p);
    return st;
  }
  *out = b.p;
  *len = b.len;
  return VKP_OK;
}

vkp_status vkp_data_load_digits(const char *path, vkp_dataset **out, vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_data_load_digits: out is NULL");
  *out = NULL;
  if (!path) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_data_load_digits: path is NULL");
  char *text = NULL;
  size_t len = 0;
  VKP_TRY(read_text(path, &text, &len, err));
  // Count data lines (non-blank).
  size_t rows = 0;
  for (char *p = text; *p;) {
    char *nl = strchr(p, '\n');
    char *e = nl ? nl : p + strlen(p);
    for (char *q = p; q < e; q++)
      if (*q != ' ' && *q != '\t' && *q != '\r') {
        rows++;
        break;
      }
    p = nl ? nl + 1 : e;
  }
  vkp_status st = VKP_OK;
  vkp_dataset *ds = NULL;
  if (rows == 0) {
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: no data rows", path);
    goto done;
  }
  if ((st = vkp_dataset_new(rows, 8, 8, 1, 10, &ds, err)) != VKP_OK) goto done;
  free(ds->name);
  if (!(ds->name = vkp_data_strdup(path))) {
    st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", path);
    goto done;
  }
  size_t row = 0;
  int line = 0;
  for (char *p = text; *p && row < rows;) {
    line++;
    char *nl = strchr(p, '\n');
    if (nl) *nl = '\0';
    char *q = p;
    p = nl ? nl + 1 : p + strlen(p);
    while (*q == ' ' || *q == '\t' || *q == '\r') q++;
    if (!*q) continue;
    uint8_t *px = ds->pixels + row * DIGITS_PIXELS;
    for (int k = 0; k <= DIGITS_PIXELS; k++) {
      char *end = NULL;
      errno = 0;
      double v = strtod(q, &end);
      if (end == q || errno) {
        st = vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: field %d is not a number (want 65 per line)",
                           path, line, k + 1);
        goto done;
      }
      q = end;
      while (*q == ' ' || *q == '\t' || *q == '\r') q++;
      if (k < DIGITS_PIXELS) {
        if (*q != ',') {
          st = vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: %d fields, want 65", path, line, k + 1);
          goto done;
        }
        q++;
        if (!(v >= 0 && v <= 16)) {
          st = vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: pixel %d = %g outside 0..16", path, line,
                             k, v);
          goto done;
        }
        px[k] = (uint8_t)lrint(v * 255.0 / 16.0);
      } else {
        if (*q) {
          st = vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: more than 65 fields", path, line);
          goto done;
        }
        if (!(v >= 0 && v <= 9 && v == floor(v))) {
          st = vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: label %g is not a digit 0..9", path, line,
                             v);
          goto done;
        }
        ds->labels[row] = (int32_t)v;
      }
    }
    row++;
  }
  *out = ds;
  ds = NULL;
done:
  vkp_dataset_free(ds);
  free(text);
  return st;
}
