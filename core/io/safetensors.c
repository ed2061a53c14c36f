// safetensors.c — memory-mapped safetensors reader with full header validation, and an atomic
// writer. Format: https://github.com/huggingface/safetensors (8-byte LE header length N, N bytes
// of JSON, data buffer). Every size computation is overflow-checked; bad input is reported as a
// one-line message "<file>: tensor '<name>': <field> ..." and never crashes.
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include "vkp_safetensors.h"
#include "vkp_strbuf.h"
#include "vkp_vec.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vkp_fileio.h"
#include "vkp_json.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vkpeft assumes a little-endian host (safetensors data is little-endian)"
#endif

// Integers in the JSON header are parsed by cJSON as doubles; accept only values that a double
// holds exactly (< 2^53 — 8 PiB, far beyond any real file).
#define ST_MAX_JSON_INT 9007199254740992.0

// ---- small helpers ------------------------------------------------------------------------------

// A printable, bounded copy of an untrusted string for messages: control bytes become '?', long
// strings are cut (at a UTF-8 character boundary) and end in "...".
#define SHOW_MAX 96
typedef struct show_buf {
  char s[SHOW_MAX + 4];
} show_buf;

static const char *show(const char *s, show_buf *b) {
  if (!s) return "(null)";
  size_t n = 0;
  for (; s[n] && n < SHOW_MAX; n++) {
    unsigned char c = (unsigned char)s[n];
    b->s[n] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  if (s[n]) {
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) n--;  // don't split a character
    memcpy(b->s + n, "...", 4);
  } else {
    b->s[n] = '\0';
  }
  return b->s;
}

// Returns the byte offset of the first invalid UTF-8 sequence in s[0..n), or n if valid.
// Rejects overlong forms, surrogates and code points above U+10FFFF.
static size_t utf8_invalid_at(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (n - i < len) return i;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += len;
  }
  return n;
}

static bool utf8_valid(const char *s) {
  size_t n = strlen(s);
  return utf8_invalid_at((const unsigned char *)s, n) == n;
}

// Formats "[d0, d1, ...]" into buf.
static const char *fmt_shape(char *buf, size_t cap, const int64_t *shape, int ndim) {
  size_t n = 0;
  n += (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < ndim && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? ", " : "", shape[i]);
  if (n < cap) snprintf(buf + n, cap - n, "]");
  return buf;
}

// Element count of a shape whose dims are known to be non-negative; false on overflow of size_t.
// A zero dim makes the count zero even if the other dims alone would overflow.
static bool shape_numel(const int64_t *shape, int ndim, size_t *out) {
  for (int i = 0; i < ndim; i++) {
    if (shape[i] == 0) {
      *out = 0;
      return true;
    }
  }
  size_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    uint64_t d = (uint64_t)shape[i];
    if (d > SIZE_MAX || numel > SIZE_MAX / (size_t)d) return false;
    numel *= (size_t)d;
  }
  *out = numel;
  return true;
}

size_t vkp_st_tensor_numel(const vkp_st_tensor *t) {
  size_t n = 0;
  if (!t || !shape_numel(t->shape, t->ndim, &n)) return 0;
  return n;
}

// ---- name index (open addressing over an array of vkp_st_tensor) --------------------------------

typedef struct name_index {
  uint32_t *slots;  // tensor index + 1; 0 = empty
  size_t mask;      // capacity - 1 (capacity is a power of two)
} name_index;

static uint64_t hash_name(const char *s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h ^ (h >> 29);
}

// Allocates an empty index for up to `n` entries (load factor <= 1/2). Returns false on OOM.
static bool index_init(name_index *ix, size_t n) {
  size_t cap = 16;
  while (cap / 2 < n) {
    if (cap > SIZE_MAX / 4) return false;
    cap *= 2;
  }
  ix->slots = calloc(cap, sizeof *ix->slots);
  ix->mask = cap - 1;
  return ix->slots != NULL;
}

// Finds `name`; returns its slot position in *pos (the empty slot where it would go if absent)
// and the tensor, or NULL if absent.
static const vkp_st_tensor *index_find(const name_index *ix, const vkp_st_tensor *arr,
                                       const char *name, size_t *pos) {
  size_t p = (size_t)hash_name(name) & ix->mask;
  while (ix->slots[p]) {
    const vkp_st_tensor *t = &arr[ix->slots[p] - 1];
    if (strcmp(t->name, name) == 0) {
      if (pos) *pos = p;
      return t;
    }
    p = (p + 1) & ix->mask;
  }
  if (pos) *pos = p;
  return NULL;
}

// ---- reader -------------------------------------------------------------------------------------

struct vkp_safetensors {
  char *path;          // owned copy
  unsigned char *map;  // owned read-only mapping of the whole file
  size_t map_size;
  vkp_st_tensor *tensors;  // (count) in header order; names point into `strings`
  size_t count;
  const char **meta;  // (nmeta, 2): key, value pointers into `strings`
  size_t nmeta;
  char *strings;  // owned arena for names and metadata
  name_index index;
};

// Parses a JSON number that must be a non-negative integer. Returns NULL on success or a
// description of the problem.
static const char *json_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v)) return "is not a number";
  double d = v->valuedouble;
  if (!(d >= 0)) return "is negative";
  if (d != floor(d)) return "is not an integer";
  if (d >= ST_MAX_JSON_INT) return "is too large";
  *out = (uint64_t)d;
  return NULL;
}

// Renders an arbitrary JSON value briefly for messages.
static const char *json_brief(const cJSON *v, char *buf, size_t cap) {
  if (cJSON_IsNumber(v)) {
    snprintf(buf, cap, "%.17g", v->valuedouble);
  } else if (cJSON_IsString(v)) {
    show_buf sb;
    snprintf(buf, cap, "\"%s\"", show(v->valuestring, &sb));
  } else {
    snprintf(buf, cap, "%s",
             cJSON_IsArray(v)    ? "an array"
             : cJSON_IsObject(v) ? "an object"
             : cJSON_IsBool(v)   ? "a boolean"
             : cJSON_IsNull(v)   ? "null"
                                 : "invalid");
  }
  return buf;
}

static const char *const unsupported_dtypes[] = {
    "U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64", NULL,
};

typedef struct st_range {
  uint64_t begin, end;  // data_offsets
  size_t idx;           // tensor index
} st_range;

// Validates one header entry and fills t (except name and data), *r.
static vkp_status parse_entry(const char *path, const cJSON *e, uint64_t data_size,
                              vkp_st_tensor *t, st_range *r, vkp_error *err) {
  show_buf nb;
  const char *name = show(e->string, &nb);
  char vb[128];
  if (!cJSON_IsObject(e))
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s': entry is %s, not an object", path,
                         name, json_brief(e, vb, sizeof vb));

  const cJSON *fdtype = NULL, *fshape = NULL, *foffs = NULL;
  for (const cJSON *f = e->child; f; f = f->next) {
    const cJSON **slot = strcmp(f->string, "dtype") == 0          ? &fdtype
                         : strcmp(f->string, "shape") == 0        ? &fshape
                         : strcmp(f->string, "data_offsets") == 0 ? &foffs
                                                                  : NULL;
    show_buf fb;
    if (!slot)
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s': unexpected field '%s'", path,
                           name, show(f->string, &fb));
    if (*slot)
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s': field '%s' appears twice", path,
                           name, f->string);
    *slot = f;
  }
  const char *missing = !fdtype ? "dtype" : !fshape ? "shape" : !foffs ? "data_offsets" : NULL;
  if (missing)
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s': missing field '%s'", path, name,
                         missing);

  // dtype
  if (!cJSON_IsString(fdtype))
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s': dtype is %s, not a string", path,
                         name, json_brief(fdtype, vb, sizeof vb));
  if (vkp_dtype_parse(fdtype->valuestring, &t->dtype) != 0) {
    show_buf db;
    for (int i = 0; unsupported_dtypes[i]; i++) {
      if (strcmp(fdtype->valuestring, unsupported_dtypes[i]) == 0)
        return vkp_error_set(err, VKP_ERR_UNSUPPORTED,
                             "%s: tensor '%s': dtype '%s' is not supported", path, name,
                             unsupported_dtypes[i]);
    }
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name,
                         show(fdtype->valuestring, &db));
  }

  // shape
  if (!cJSON_IsArray(fshape))
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s': shape is %s, not an array", path,
                         name, json_brief(fshape, vb, sizeof vb));
  int ndim = cJSON_GetArraySize(fshape);
  if (ndim > VKP_ST_MAX_DIMS)
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s': shape has %d dims, more than %d",
                         path, name, ndim, VKP_ST_MAX_DIMS);
  t->ndim = ndim;
  int k = 0;
  for (const cJSON *d = fshape->child; d; d = d->next, k++) {
    uint64_t v;
    const char *why = json_uint(d, &v);
    if (why)
      return vkp_error_set(
          err, VKP_ERR_FORMAT,
          "%s: tensor '%s': shape[%d] = %s %s (dims must be non-negative integers)", path, name, k,
          json_brief(d, vb, sizeof vb), why);
    t->shape[k] = (int64_t)v;
  }
  char shb[256];
  size_t numel;
  if (!shape_numel(t->shape, ndim, &numel))
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s': shape %s element count overflows",
                         path, name, fmt_shape(shb, sizeof shb, t->shape, ndim));
  size_t esize = vkp_dtype_size(t->dtype);
  if (numel > SIZE_MAX / esize)
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s': shape %s of %s byte size overflows",
                         path, name, fmt_shape(shb, sizeof shb, t->shape, ndim),
                         vkp_dtype_name(t->dtype));
  t->nbytes = numel * esize;

  // data_offsets
  if (!cJSON_IsArray(foffs) || cJSON_GetArraySize(foffs) != 2)
    return vkp_error_set(err, VKP_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets must be an array of 2 integers", path,
                         name);
  uint64_t off[2];
  k = 0;
  for (const cJSON *d = foffs->child; d; d = d->next, k++) {
    const char *why = json_uint(d, &off[k]);
    if (why)
      return vkp_error_set(
          err, VKP_ERR_FORMAT,
          "%s: tensor '%s': data_offsets[%d] = %s %s (offsets must be non-negative integers)", path,
          name, k, json_brief(d, vb, sizeof vb), why);
  }
  if (off[0] > off[1])
    return vkp_error_set(err, VKP_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] are reversed",
                         path, name, off[0], off[1]);
  if (off[1] > data_size)
    return vkp_error_set(err, VKP_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                         "] end beyond the data buffer of %" PRIu64 " bytes (file truncated?)",
                         path, name, off[0], off[1], data_size);
  if (off[1] - off[0] != (uint64_t)t->nbytes)
    return vkp_error_set(
        err, VKP_ERR_FORMAT,
        "%s: tensor '%s': shape %s of %s needs %zu bytes but data_offsets [%" PRIu64 ", %" PRIu64
        "] span %" PRIu64,
        path, name, fmt_shape(shb, sizeof shb, t->shape, ndim), vkp_dtype_name(t->dtype), t->nbytes,
        off[0], off[1], off[1] - off[0]);
  r->begin = off[0];
  r->end = off[1];
  return VKP_OK;
}

static int range_cmp(const void *a, const void *b) {
  const st_range *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int str_ptr_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// Checks that the tensors tile the data buffer exactly: sorted by offset, each begins where the
// previous ended, and the last ends at the end of the buffer (as the reference implementation).
static vkp_status check_layout(const char *path, const vkp_st_tensor *tensors, st_range *ranges,
                               size_t count, uint64_t data_size, vkp_error *err) {
  qsort(ranges, count, sizeof *ranges, range_cmp);
  uint64_t pos = 0;
  const char *prev = NULL;
  uint64_t prev_begin = 0;
  show_buf a, b;
  for (size_t i = 0; i < count; i++) {
    const st_range *r = &ranges[i];
    const char *name = tensors[r->idx].name;
    if (r->begin < pos)
      return vkp_error_set(err, VKP_ERR_FORMAT,
                           "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                           "] overlap tensor '%s' at [%" PRIu64 ", %" PRIu64 "]",
                           path, show(name, &a), r->begin, r->end, show(prev, &b), prev_begin, pos);
    if (r->begin > pos) {
      if (prev)
        return vkp_error_set(err, VKP_ERR_FORMAT,
                             "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                             "] leave a hole: bytes [%" PRIu64 ", %" PRIu64
                             ") after tensor '%s' belong to no tensor",
                             path, show(name, &a), r->begin, r->end, pos, r->begin, show(prev, &b));
      return vkp_error_set(err, VKP_ERR_FORMAT,
                           "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                           "] leave a hole: bytes [0, %" PRIu64 ") belong to no tensor",
                           path, show(name, &a), r->begin, r->end, r->begin);
    }
    prev = name;
    prev_begin = r->begin;
    pos = r->end;
  }
  if (pos != data_size) {
    if (prev)
      return vkp_error_set(err, VKP_ERR_FORMAT,
                           "%s: data bytes [%" PRIu64 ", %" PRIu64
                           ") after the last tensor '%s' belong to no tensor (hole at end)",
                           path, pos, data_size, show(prev, &a));
    return vkp_error_set(err, VKP_ERR_FORMAT,
                         "%s: data buffer has %" PRIu64 " bytes but the header lists no tensors",
                         path, data_size);
  }
  return VKP_OK;
}

// Parses and validates the header JSON (hdr[0..n), NUL-terminated at hdr[n]) into st.
static vkp_status parse_header(vkp_safetensors *st, const char *hdr, size_t n, uint64_t data_size,
                               const unsigned char *data_base, vkp_error *err) {
  const char *path = st->path;
  vkp_status s = VKP_OK;
  st_range *ranges = NULL;
  char where[4200];
  snprintf(where, sizeof where, "%s: header", path);
  cJSON *root = NULL;
  VKP_TRY(vkp_json_parse(hdr, n, where, &root, err));   // one document, nothing after it
  if (!cJSON_IsObject(root)) {
    char vb[64];
    s = vkp_error_set(err, VKP_ERR_FORMAT, "%s: header is %s, not a JSON object", path,
                      json_brief(root, vb, sizeof vb));
    goto free_json;
  }

  // Pass 1: count, size the string arena, validate __metadata__.
  const cJSON *meta = NULL;
  size_t count = 0, nmeta = 0, strbytes = 0;
  for (const cJSON *e = root->child; e; e = e->next) {
    if (strcmp(e->string, "__metadata__") == 0) {
      if (meta) {
        s = vkp_error_set(err, VKP_ERR_FORMAT, "%s: __metadata__ appears twice", path);
        goto free_json;
      }
      meta = e;
      if (!cJSON_IsObject(e)) {
        char vb[64];
        s = vkp_error_set(err, VKP_ERR_FORMAT, "%s: __metadata__ is %s, not an object", path,
                          json_brief(e, vb, sizeof vb));
        goto free_json;
      }
      for (const cJSON *m = e->child; m; m = m->next) {
        if (!cJSON_IsString(m)) {
          char vb[64];
          show_buf kb;
          s = vkp_error_set(err, VKP_ERR_FORMAT, "%s: __metadata__ '%s': value is %s, not a string",
                            path, show(m->string, &kb), json_brief(m, vb, sizeof vb));
          goto free_json;
        }
        strbytes += strlen(m->string) + strlen(m->valuestring) + 2;
        nmeta++;
      }
    } else {
      strbytes += strlen(e->string) + 1;
      count++;
    }
  }
  if (count >= UINT32_MAX) {
    s = vkp_error_set(err, VKP_ERR_FORMAT, "%s: header lists too many tensors (%zu)", path, count);
    goto free_json;
  }

  st->strings = malloc(strbytes + 1);
  st->tensors = calloc(count ? count : 1, sizeof *st->tensors);
  st->meta = calloc(nmeta ? 2 * nmeta : 1, sizeof *st->meta);
  ranges = calloc(count ? count : 1, sizeof *ranges);
  if (!st->strings || !st->tensors || !st->meta || !ranges || !index_init(&st->index, count)) {
    s = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory parsing header", path);
    goto free_ranges;
  }

  // Pass 2: metadata (copied, duplicates rejected) and tensors.
  char *sp = st->strings;
  if (meta) {
    for (const cJSON *m = meta->child; m; m = m->next) {
      size_t kl = strlen(m->string) + 1, vl = strlen(m->valuestring) + 1;
      st->meta[2 * st->nmeta] = memcpy(sp, m->string, kl);
      st->meta[2 * st->nmeta + 1] = memcpy(sp + kl, m->valuestring, vl);
      sp += kl + vl;
      st->nmeta++;
    }
    if (nmeta > 1) {
      const char **keys = malloc(nmeta * sizeof *keys);
      if (!keys) {
        s = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory parsing header", path);
        goto free_ranges;
      }
      for (size_t i = 0; i < nmeta; i++) keys[i] = st->meta[2 * i];
      qsort(keys, nmeta, sizeof *keys, str_ptr_cmp);
      for (size_t i = 1; i < nmeta; i++) {
        if (strcmp(keys[i - 1], keys[i]) == 0) {
          show_buf kb;
          s = vkp_error_set(err, VKP_ERR_FORMAT, "%s: __metadata__ key '%s' appears twice", path,
                            show(keys[i], &kb));
          break;
        }
      }
      free(keys);
      if (s != VKP_OK) goto free_ranges;
    }
  }
  size_t i = 0;
  for (const cJSON *e = root->child; e; e = e->next) {
    if (e == meta) continue;
    vkp_st_tensor *t = &st->tensors[i];
    size_t nl = strlen(e->string) + 1;
    t->name = memcpy(sp, e->string, nl);
    sp += nl;
    size_t pos;
    if (index_find(&st->index, st->tensors, t->name, &pos)) {
      show_buf nb;
      s = vkp_error_set(err, VKP_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", path,
                        show(t->name, &nb));
      goto free_ranges;
    }
    s = parse_entry(path, e, data_size, t, &ranges[i], err);
    if (s != VKP_OK) goto free_ranges;
    ranges[i].idx = i;
    t->data = data_base + ranges[i].begin;
    st->index.slots[pos] = (uint32_t)(i + 1);
    i++;
  }
  st->count = count;
  s = check_layout(path, st->tensors, ranges, count, data_size, err);

free_ranges:
  free(ranges);
free_json:
  cJSON_Delete(root);
  return s;
}

vkp_status vkp_safetensors_open(const char *path, vkp_safetensors **out, vkp_error *err) {
  if (out) *out = NULL;
  if (!path || !out)
    return vkp_error_set(err, VKP_ERR_INVALID, "safetensors open: path and out are required");

  vkp_status s = VKP_OK;
  vkp_safetensors *st = calloc(1, sizeof *st);
  if (!st || !(st->path = strdup(path))) {
    free(st);
    return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", path);
  }

  // O_NONBLOCK: opening a FIFO must not hang; it is rejected below as not a regular file.
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    s = vkp_error_set(err, VKP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    goto free_st;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    s = vkp_error_set(err, VKP_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    goto close_fd;
  }
  if (!S_ISREG(sb.st_mode)) {
    s = vkp_error_set(err, VKP_ERR_IO, "%s: not a regular file", path);
    goto close_fd;
  }
  if (sb.st_size < 8) {
    s = vkp_error_set(err, VKP_ERR_FORMAT,
                      "%s: file is %jd bytes, too short for the 8-byte header length", path,
                      (intmax_t)sb.st_size);
    goto close_fd;
  }
  if ((uintmax_t)sb.st_size > SIZE_MAX) {
    s = vkp_error_set(err, VKP_ERR_IO, "%s: file too large to map", path);
    goto close_fd;
  }
  size_t size = (size_t)sb.st_size;
  void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) {
    s = vkp_error_set(err, VKP_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    goto close_fd;
  }
  close(fd);
  fd = -1;
  st->map = map;
  st->map_size = size;

  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | st->map[i];
  if (hlen > VKP_ST_MAX_HEADER) {
    s = vkp_error_set(err, VKP_ERR_FORMAT,
                      "%s: header length %" PRIu64 " exceeds the limit of %u bytes", path, hlen,
                      VKP_ST_MAX_HEADER);
    goto free_st;
  }
  if (hlen > size - 8) {
    s = vkp_error_set(err, VKP_ERR_FORMAT,
                      "%s: header length %" PRIu64
                      " exceeds the %zu bytes after the length field "
                      "(file truncated?)",
                      path, hlen, size - 8);
    goto free_st;
  }
  const unsigned char *hdr = st->map + 8;
  size_t n = (size_t)hlen;
  const void *nul = memchr(hdr, 0, n);
  if (nul) {
    s = vkp_error_set(err, VKP_ERR_FORMAT, "%s: header contains a NUL byte at byte %zu", path,
                      (size_t)((const unsigned char *)nul - hdr));
    goto free_st;
  }
  size_t bad = utf8_invalid_at(hdr, n);
  if (bad != n) {
    s = vkp_error_set(err, VKP_ERR_FORMAT, "%s: header is not valid UTF-8 (at byte %zu)", path,
                      bad);
    goto free_st;
  }
  // cJSON gets a NUL-terminated private copy: the mapping has no terminator of its own.
  char *copy = malloc(n + 1);
  if (!copy) {
    s = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory for a %zu-byte header", path, n);
    goto free_st;
  }
  memcpy(copy, hdr, n);
  copy[n] = '\0';
  s = parse_header(st, copy, n, (uint64_t)(size - 8 - n), hdr + n, err);
  free(copy);
  if (s != VKP_OK) goto free_st;

  *out = st;
  return VKP_OK;

close_fd:
  if (fd >= 0) close(fd);
free_st:
  vkp_safetensors_free(st);
  return s;
}

void vkp_safetensors_free(vkp_safetensors *st) {
  if (!st) return;
  if (st->map) munmap(st->map, st->map_size);
  free(st->index.slots);
  free(st->tensors);
  free(st->meta);
  free(st->strings);
  free(st->path);
  free(st);
}

size_t vkp_safetensors_count(const vkp_safetensors *st) { return st ? st->count : 0; }

const vkp_st_tensor *vkp_safetensors_at(const vkp_safetensors *st, size_t i) {
  if (!st || i >= st->count) return NULL;
  return &st->tensors[i];
}

const vkp_st_tensor *vkp_safetensors_find(const vkp_safetensors *st, const char *name) {
  if (!st || !name || !st->index.slots) return NULL;
  return index_find(&st->index, st->tensors, name, NULL);
}

const char *vkp_safetensors_metadata(const vkp_safetensors *st, const char *key) {
  if (!st || !key) return NULL;
  for (size_t i = 0; i < st->nmeta; i++) {
    if (strcmp(st->meta[2 * i], key) == 0) return st->meta[2 * i + 1];
  }
  return NULL;
}

size_t vkp_safetensors_metadata_count(const vkp_safetensors *st) { return st ? st->nmeta : 0; }

const char *vkp_safetensors_metadata_at(const vkp_safetensors *st, size_t i, const char **value) {
  if (!st || i >= st->nmeta) {
    if (value) *value = NULL;
    return NULL;
  }
  if (value) *value = st->meta[2 * i + 1];
  return st->meta[2 * i];
}

const char *vkp_safetensors_path(const vkp_safetensors *st) { return st ? st->path : NULL; }

vkp_status vkp_safetensors_read_f32(const vkp_safetensors *st, const char *name, float *dst,
                                    size_t n, vkp_error *err) {
  if (!st || !name)
    return vkp_error_set(err, VKP_ERR_INVALID, "safetensors read: file and name are required");
  show_buf nb;
  const vkp_st_tensor *t = vkp_safetensors_find(st, name);
  if (!t)
    return vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: tensor '%s' not found", st->path,
                         show(name, &nb));
  size_t numel = vkp_st_tensor_numel(t);
  if (numel != n) {
    char shb[256];
    return vkp_error_set(err, VKP_ERR_SHAPE,
                         "%s: tensor '%s': shape %s has %zu elements, expected %zu", st->path,
                         show(name, &nb), fmt_shape(shb, sizeof shb, t->shape, t->ndim), numel, n);
  }
  if (!dst && n > 0)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: tensor '%s': destination is NULL", st->path,
                         show(name, &nb));
  if (n > 0) vkp_convert_to_f32(t->dtype, t->data, dst, n);
  return VKP_OK;
}

// ---- writer -------------------------------------------------------------------------------------

struct vkp_safetensors_writer {
  VKP_VEC(vkp_st_tensor) t;   // in insertion order; name and data are owned (malloc) copies
  VKP_VEC(char *) meta;       // (pairs): owned key, value copies
  name_index index;
};

vkp_status vkp_safetensors_writer_new(vkp_safetensors_writer **out, vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "safetensors writer: out is required");
  *out = NULL;
  vkp_safetensors_writer *w = calloc(1, sizeof *w);
  if (!w || !index_init(&w->index, 0)) {
    free(w);
    return vkp_error_set(err, VKP_ERR_OOM, "safetensors writer: out of memory");
  }
  *out = w;
  return VKP_OK;
}

void vkp_safetensors_writer_free(vkp_safetensors_writer *w) {
  if (!w) return;
  for (size_t i = 0; i < (size_t)w->t.n; i++) {
    free((char *)w->t.v[i].name);
    free((void *)w->t.v[i].data);
  }
  for (size_t i = 0; i < (size_t)w->meta.n; i++) free(w->meta.v[i]);
  free(w->meta.v);
  free(w->t.v);
  free(w->index.slots);
  free(w);
}

// Validates name, dtype and shape for writer_add; on success sets *nbytes.
static vkp_status writer_check(vkp_safetensors_writer *w, const char *name, vkp_dtype dtype,
                               int ndim, const int64_t *shape, size_t *nbytes, vkp_error *err) {
  show_buf nb;
  if (!w || !name || !name[0])
    return vkp_error_set(err, VKP_ERR_INVALID, "safetensors writer: tensor name is empty");
  if (!utf8_valid(name))
    return vkp_error_set(err, VKP_ERR_INVALID, "safetensors writer: tensor '%s': name is not UTF-8",
                         show(name, &nb));
  if (strcmp(name, "__metadata__") == 0)
    return vkp_error_set(err, VKP_ERR_INVALID,
                         "safetensors writer: '__metadata__' is reserved, not a tensor name");
  if ((unsigned)dtype >= VKP_DTYPE_COUNT)
    return vkp_error_set(err, VKP_ERR_INVALID, "safetensors writer: tensor '%s': invalid dtype %d",
                         show(name, &nb), (int)dtype);
  if (ndim < 0 || ndim > VKP_ST_MAX_DIMS || (ndim > 0 && !shape))
    return vkp_error_set(err, VKP_ERR_INVALID,
                         "safetensors writer: tensor '%s': ndim %d outside 0..%d", show(name, &nb),
                         ndim, VKP_ST_MAX_DIMS);
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return vkp_error_set(err, VKP_ERR_INVALID,
                           "safetensors writer: tensor '%s': shape[%d] = %" PRId64 " is negative",
                           show(name, &nb), i, shape[i]);
  }
  size_t numel;
  if (!shape_numel(shape, ndim, &numel) || numel > SIZE_MAX / vkp_dtype_size(dtype))
    return vkp_error_set(err, VKP_ERR_INVALID, "safetensors writer: tensor '%s': size overflows",
                         show(name, &nb));
  *nbytes = numel * vkp_dtype_size(dtype);
  if (index_find(&w->index, w->t.v, name, NULL))
    return vkp_error_set(err, VKP_ERR_INVALID, "safetensors writer: tensor '%s' added twice",
                         show(name, &nb));
  return VKP_OK;
}

// Appends a tensor whose data buffer (owned, nbytes) is already prepared; takes ownership of
// data on success and on failure.
static vkp_status writer_append(vkp_safetensors_writer *w, const char *name, vkp_dtype dtype,
                                int ndim, const int64_t *shape, void *data, size_t nbytes,
                                vkp_error *err) {
  show_buf nb;
  if (vkp_vec_reserve(&w->t, (int64_t)w->t.n + 1)) goto oom;
  if ((size_t)(w->t.n + 1) * 2 > w->index.mask + 1) {  // grow and rehash the index
    name_index nix;
    if (!index_init(&nix, 2 * (size_t)(w->t.n + 1))) goto oom;
    for (size_t i = 0; i < (size_t)w->t.n; i++) {
      size_t pos;
      index_find(&nix, w->t.v, w->t.v[i].name, &pos);
      nix.slots[pos] = (uint32_t)(i + 1);
    }
    free(w->index.slots);
    w->index = nix;
  }
  char *name_copy = strdup(name);
  if (!name_copy) goto oom;
  vkp_st_tensor *t = &w->t.v[w->t.n];
  memset(t, 0, sizeof *t);
  t->name = name_copy;
  t->dtype = dtype;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  t->data = data;
  t->nbytes = nbytes;
  size_t pos;
  index_find(&w->index, w->t.v, name, &pos);
  w->index.slots[pos] = (uint32_t)(w->t.n + 1);
  w->t.n++;
  return VKP_OK;

oom:
  free(data);
  return vkp_error_set(err, VKP_ERR_OOM, "safetensors writer: tensor '%s': out of memory",
                       show(name, &nb));
}

vkp_status vkp_safetensors_writer_add(vkp_safetensors_writer *w, const char *name, vkp_dtype dtype,
                                      int ndim, const int64_t *shape, const void *data,
                                      vkp_error *err) {
  size_t nbytes = 0;
  VKP_TRY(writer_check(w, name, dtype, ndim, shape, &nbytes, err));
  show_buf nb;
  if (!data && nbytes > 0)
    return vkp_error_set(err, VKP_ERR_INVALID, "safetensors writer: tensor '%s': data is NULL",
                         show(name, &nb));
  void *copy = malloc(nbytes ? nbytes : 1);
  if (!copy)
    return vkp_error_set(err, VKP_ERR_OOM, "safetensors writer: tensor '%s': out of memory",
                         show(name, &nb));
  if (nbytes) memcpy(copy, data, nbytes);
  return writer_append(w, name, dtype, ndim, shape, copy, nbytes, err);
}

vkp_status vkp_safetensors_writer_add_f32(vkp_safetensors_writer *w, const char *name,
                                          vkp_dtype store_dtype, int ndim, const int64_t *shape,
                                          const float *data, vkp_error *err) {
  show_buf nb;
  if (store_dtype != VKP_DTYPE_F32 && store_dtype != VKP_DTYPE_F16 && store_dtype != VKP_DTYPE_BF16)
    return vkp_error_set(err, VKP_ERR_INVALID,
                         "safetensors writer: tensor '%s': store dtype %s is not F32, F16 or BF16",
                         show(name, &nb), vkp_dtype_name(store_dtype));
  size_t nbytes = 0;
  VKP_TRY(writer_check(w, name, store_dtype, ndim, shape, &nbytes, err));
  if (!data && nbytes > 0)
    return vkp_error_set(err, VKP_ERR_INVALID, "safetensors writer: tensor '%s': data is NULL",
                         show(name, &nb));
  void *copy = malloc(nbytes ? nbytes : 1);
  if (!copy)
    return vkp_error_set(err, VKP_ERR_OOM, "safetensors writer: tensor '%s': out of memory",
                         show(name, &nb));
  if (nbytes) vkp_convert_from_f32(store_dtype, data, copy, nbytes / vkp_dtype_size(store_dtype));
  return writer_append(w, name, store_dtype, ndim, shape, copy, nbytes, err);
}

vkp_status vkp_safetensors_writer_set_metadata(vkp_safetensors_writer *w, const char *key,
                                               const char *value, vkp_error *err) {
  if (!w || !key || !value)
    return vkp_error_set(err, VKP_ERR_INVALID,
                         "safetensors writer: metadata key and value required");
  show_buf kb;
  if (!utf8_valid(key) || !utf8_valid(value))
    return vkp_error_set(err, VKP_ERR_INVALID, "safetensors writer: metadata '%s' is not UTF-8",
                         show(key, &kb));
  char *v = strdup(value);
  if (!v) goto oom;
  for (size_t i = 0; i < (size_t)w->meta.n / 2; i++) {
    if (strcmp(w->meta.v[2 * i], key) == 0) {
      free(w->meta.v[2 * i + 1]);
      w->meta.v[2 * i + 1] = v;
      return VKP_OK;
    }
  }
  if (vkp_vec_reserve(&w->meta, (int64_t)w->meta.n + 2)) goto free_v;
  char *k = strdup(key);
  if (!k) goto free_v;
  w->meta.v[w->meta.n++] = k;
  w->meta.v[w->meta.n++] = v;
  return VKP_OK;

free_v:
  free(v);
oom:
  return vkp_error_set(err, VKP_ERR_OOM, "safetensors writer: metadata '%s': out of memory",
                       show(key, &kb));
}

vkp_status vkp_safetensors_writer_save(vkp_safetensors_writer *w, const char *path,
                                       vkp_error *err) {
  if (!w || !path || !path[0])
    return vkp_error_set(err, VKP_ERR_INVALID, "safetensors save: writer and path are required");
  vkp_status s = VKP_OK;
  vkp_strbuf b = {0};
  char num[64];
  int nchunks = 0;
  const void **chunks = NULL;
  size_t *sizes = NULL;

  vkp_strbuf_puts(&b, "{");
  if (w->meta.n / 2 > 0) {
    vkp_strbuf_puts(&b, "\"__metadata__\":{");
    for (size_t i = 0; i < (size_t)w->meta.n / 2; i++) {
      if (i) vkp_strbuf_puts(&b, ",");
      vkp_strbuf_json_string(&b, w->meta.v[2 * i]);
      vkp_strbuf_puts(&b, ":");
      vkp_strbuf_json_string(&b, w->meta.v[2 * i + 1]);
    }
    vkp_strbuf_puts(&b, "}");
  }
  uint64_t off = 0;
  for (size_t i = 0; i < (size_t)w->t.n; i++) {
    const vkp_st_tensor *t = &w->t.v[i];
    if (i || w->meta.n / 2) vkp_strbuf_puts(&b, ",");
    vkp_strbuf_json_string(&b, t->name);
    vkp_strbuf_puts(&b, ":{\"dtype\":\"");
    vkp_strbuf_puts(&b, vkp_dtype_name(t->dtype));
    vkp_strbuf_puts(&b, "\",\"shape\":[");
    for (int d = 0; d < t->ndim; d++) {
      snprintf(num, sizeof num, "%s%" PRId64, d ? "," : "", t->shape[d]);
      vkp_strbuf_puts(&b, num);
    }
    if ((uint64_t)t->nbytes > UINT64_MAX - off) {
      s = vkp_error_set(err, VKP_ERR_INVALID, "%s: total tensor size overflows", path);
      goto free_chunks;
    }
    snprintf(num, sizeof num, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off,
             off + (uint64_t)t->nbytes);
    vkp_strbuf_puts(&b, num);
    off += t->nbytes;
  }
  vkp_strbuf_puts(&b, "}");
  while (!b.oom && b.len % 8 != 0) vkp_strbuf_puts(&b, " ");  // data buffer starts 8-byte aligned
  if (b.oom) {
    s = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory building the header", path);
    goto free_chunks;
  }
  if (b.len > VKP_ST_MAX_HEADER) {
    s = vkp_error_set(err, VKP_ERR_INVALID,
                      "%s: header would be %zu bytes, over the %u-byte limit of readers", path, b.len,
                      VKP_ST_MAX_HEADER);
    goto free_chunks;
  }

  unsigned char len_le[8];
  for (int i = 0; i < 8; i++) len_le[i] = (unsigned char)((uint64_t)b.len >> (8 * i));
  if (w->t.n > INT32_MAX - 2) {
    s = vkp_error_set(err, VKP_ERR_INVALID, "%s: too many tensors", path);
    goto free_chunks;
  }
  nchunks = (int)w->t.n + 2;
  chunks = malloc((size_t)nchunks * sizeof *chunks);
  sizes = malloc((size_t)nchunks * sizeof *sizes);
  if (!chunks || !sizes) {
    s = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", path);
    goto free_chunks;
  }
  chunks[0] = len_le;
  sizes[0] = sizeof len_le;
  chunks[1] = b.p;
  sizes[1] = b.len;
  for (size_t i = 0; i < (size_t)w->t.n; i++) {
    chunks[i + 2] = w->t.v[i].data;
    sizes[i + 2] = w->t.v[i].nbytes;
  }
  s = vkp_file_write_atomic(path, chunks, sizes, nchunks, err);

free_chunks:
  free(chunks);
  free(sizes);
  free(b.p);
  return s;
}
