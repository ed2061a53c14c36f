// list.c — CSV / JSONL lists of (image path, label).
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cJSON.h>

#include "data_internal.h"
#include "vkp_fileio.h"
#include "vkp_strbuf.h"
#include "vkp_vec.h"
#include "vkp_data.h"

#define LIST_MAX_BYTES (1u << 30)
#define LIST_MAX_CLASS_ID 65536   // as VKP_IDX_MAX_CLASSES

typedef struct row {
  char *path;    // as written in the list
  char *label;   // label text (an integer label is written in decimal)
  int is_int;    // label is a non-negative integer
  long long id;  // its value when is_int
  int line;
  int from_text; // the label was text that may spell a number (CSV; not a JSON string)
} row;

typedef VKP_VEC(row) rows;

static void rows_free(rows *r) {
  for (size_t i = 0; i < (size_t)r->n; i++) {
    free(r->v[i].path);
    free(r->v[i].label);
  }
  free(r->v);
}

static int parse_uint(const char *s, long long *out) {
  if (!*s) return 0;
  long long v = 0;
  for (const char *p = s; *p; p++) {
    if (!isdigit((unsigned char)*p)) return 0;
    v = v * 10 + (*p - '0');
    if (v > (1 << 30)) return 0;
  }
  *out = v;
  return 1;
}

// True for text that reads as a decimal number: [+-]digits[.digits][e[+-]digits].
static int spells_number(const char *s) {
  int digits = 0;
  if (*s == '+' || *s == '-') s++;
  for (; isdigit((unsigned char)*s); s++) digits++;
  if (*s == '.')
    for (s++; isdigit((unsigned char)*s); s++) digits++;
  if (digits && (*s == 'e' || *s == 'E')) {
    s++;
    if (*s == '+' || *s == '-') s++;
    if (!isdigit((unsigned char)*s)) return 0;
    while (isdigit((unsigned char)*s)) s++;
  }
  return digits && !*s;
}

// Takes path and label (frees them on failure).
static vkp_status rows_push(rows *r, char *path, char *label, int line, const char *file,
                            vkp_error *err) {
  if (!path || !label || vkp_vec_reserve(r, (int64_t)r->n + 1)) goto oom;
  row *w = &r->v[r->n++];
  *w = (row){path, label, 0, 0, line, 1};
  w->is_int = parse_uint(label, &w->id);
  return VKP_OK;
oom:
  free(path);
  free(label);
  return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", file);
}

vkp_status vkp_data_read_text(const char *path, char **out, size_t *len, vkp_error *err) {
  VKP_TRY(vkp_file_read_all(path, LIST_MAX_BYTES, out, len, err));
  if (strlen(*out) != *len) {
    free(*out);
    *out = NULL;
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: NUL byte in a text list", path);
  }
  return VKP_OK;
}

// ---- CSV (RFC 4180) -------------------------------------------------------------------------------

#define CSV_MAX_FIELDS VKP_DATA_CSV_MAX_FIELDS

void vkp_data_csv_init(vkp_data_csv *c, const char *text, size_t len) {
  *c = (vkp_data_csv){text, text + len, 1};
  if (len >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB &&
      (unsigned char)text[2] == 0xBF)
    c->p += 3;  // UTF-8 byte-order mark
}

int vkp_data_csv_record(vkp_data_csv *c, char **fields, int *first_line, const char *file,
                        vkp_error *err) {
  // Skip blank lines.
  while (c->p < c->end && (*c->p == '\n' || *c->p == '\r')) {
    if (*c->p == '\n') c->line++;
    c->p++;
  }
  if (c->p >= c->end) return 0;
  *first_line = c->line;
  int nf = 0, rc = VKP_ERR_OOM;
  vkp_strbuf f = {0};
  for (;;) {
    // One field.
    f.len = 0;
    vkp_strbuf_put(&f, "", 0);   // "" for an empty field
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) c->p++;
    if (c->p < c->end && *c->p == '"') {
      c->p++;
      for (;;) {
        if (c->p >= c->end) {
          vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: unterminated quoted field", file,
                        *first_line);
          rc = VKP_ERR_FORMAT;
          goto fail;
        }
        char ch = *c->p++;
        if (ch == '"') {
          if (c->p < c->end && *c->p == '"') c->p++;
          else break;
        }
        if (ch == '\n') c->line++;
        vkp_strbuf_put(&f, &ch, 1);
      }
      while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r')) c->p++;
      if (c->p < c->end && *c->p != ',' && *c->p != '\n') {
        vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: text after a closing quote", file, c->line);
        rc = VKP_ERR_FORMAT;
        goto fail;
      }
    } else {
      const char *start = c->p;
      while (c->p < c->end && *c->p != ',' && *c->p != '\n') c->p++;
      size_t n = (size_t)(c->p - start);
      while (n && (start[n - 1] == ' ' || start[n - 1] == '\t' || start[n - 1] == '\r')) n--;
      vkp_strbuf_put(&f, start, n);
    }
    if (f.oom) goto fail;
    if (nf == CSV_MAX_FIELDS) {
      vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: more than %d fields", file, *first_line,
                    CSV_MAX_FIELDS);
      rc = VKP_ERR_FORMAT;
      goto fail;
    }
    if (!(fields[nf] = strdup(f.p))) goto fail;
    nf++;
    if (c->p < c->end && *c->p == ',') {
      c->p++;
      continue;
    }
    if (c->p < c->end && *c->p == '\n') {
      c->p++;
      c->line++;
    }
    free(f.p);
    return nf;
  }
fail:
  if (rc == VKP_ERR_OOM) vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", file);
  free(f.p);
  for (int k = 0; k < nf; k++) free(fields[k]);
  return rc;
}

static int name_in(const char *s, const char *const *set) {
  for (; *set; set++)
    if (strcasecmp(s, *set) == 0) return 1;
  return 0;
}

static const char *const PATH_KEYS[] = {"path", "file", "file_name", "filename", "image", NULL};
static const char *const LABEL_KEYS[] = {"label", "class", "target", NULL};

static vkp_status parse_csv(const char *file, const char *text, size_t len, rows *out,
                            vkp_error *err) {
  vkp_data_csv c;
  vkp_data_csv_init(&c, text, len);
  char *f[CSV_MAX_FIELDS];
  int path_col = 0, label_col = 1, first = 1;
  for (;;) {
    int line = 0;
    int nf = vkp_data_csv_record(&c, f, &line, file, err);
    if (nf <= 0) return (vkp_status)nf;  // the end (VKP_OK) or an error
    vkp_status st = VKP_OK;
    if (first) {
      first = 0;
      int pc = -1, lc = -1;
      for (int k = 0; k < nf; k++) {
        if (pc < 0 && name_in(f[k], PATH_KEYS)) pc = k;
        else if (lc < 0 && name_in(f[k], LABEL_KEYS)) lc = k;
      }
      if (pc >= 0 && lc >= 0) {  // a header row
        path_col = pc;
        label_col = lc;
        for (int k = 0; k < nf; k++) free(f[k]);
        continue;
      }
    }
    int need = (path_col > label_col ? path_col : label_col) + 1;
    if (nf < need) {
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: %d field%s, want path,label", file, line, nf,
                         nf == 1 ? "" : "s");
    } else if (!f[path_col][0] || !f[label_col][0]) {
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: empty %s", file, line,
                         f[path_col][0] ? "label" : "path");
    } else {
      st = rows_push(out, f[path_col], f[label_col], line, file, err);
      f[path_col] = f[label_col] = NULL;
    }
    for (int k = 0; k < nf; k++) free(f[k]);
    if (st != VKP_OK) return st;
  }
}

// ---- JSONL --------------------------------------------------------------------------------------

const cJSON *vkp_data_json_get_any(const cJSON *o, const char *const *keys) {
  for (; *keys; keys++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, *keys);
    if (v) return v;
  }
  return NULL;
}

vkp_status vkp_data_jsonl_each(const char *file, char *text, size_t len,
                               vkp_status (*row)(const cJSON *o, const char *file, int line,
                                                 void *user, vkp_error *err),
                               void *user, vkp_error *err) {
  char *p = text, *end = text + len;
  if (len >= 3 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
      (unsigned char)p[2] == 0xBF)
    p += 3;
  for (int line = 1; p < end; line++) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    char *e = nl ? nl : end;
    size_t n = (size_t)(e - p);
    char *s = p;
    p = nl ? nl + 1 : end;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    while (n && isspace((unsigned char)*s)) s++, n--;
    if (!n) continue;
    const char *parse_end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(s, n, &parse_end, 0);
    if (!o || !cJSON_IsObject(o)) {
      cJSON_Delete(o);
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: not a JSON object", file, line);
    }
    if (parse_end && parse_end < s + n) {
      cJSON_Delete(o);
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: text after the JSON object", file, line);
    }
    vkp_status st = row(o, file, line, user, err);
    cJSON_Delete(o);
    if (st != VKP_OK) return st;
  }
  return VKP_OK;
}

// One JSONL object of a labelled list -> a row of out (user).
static vkp_status label_row(const cJSON *o, const char *file, int line, void *user,
                            vkp_error *err) {
  rows *out = user;
  const cJSON *jp = vkp_data_json_get_any(o, PATH_KEYS);
  const cJSON *jl = vkp_data_json_get_any(o, LABEL_KEYS);
  char num[32];
  if (!cJSON_IsString(jp) || !jp->valuestring[0])
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: no \"path\" string", file, line);
  if (cJSON_IsString(jl) && jl->valuestring[0]) {
    VKP_TRY(rows_push(out, vkp_data_strdup(jp->valuestring), vkp_data_strdup(jl->valuestring),
                      line, file, err));
    out->v[out->n - 1].is_int = 0;  // a string label is always a name
    out->v[out->n - 1].from_text = 0;
    return VKP_OK;
  }
  if (cJSON_IsNumber(jl) && jl->valuedouble >= 0 && jl->valuedouble <= (1 << 30) &&
      jl->valuedouble == (double)(long long)jl->valuedouble) {
    snprintf(num, sizeof num, "%lld", (long long)jl->valuedouble);
    return rows_push(out, vkp_data_strdup(jp->valuestring), vkp_data_strdup(num), line, file,
                     err);
  }
  return vkp_error_set(err, VKP_ERR_FORMAT,
                       "%s:%d: \"label\" must be a class name or a non-negative integer", file,
                       line);
}

static vkp_status parse_jsonl(const char *file, char *text, size_t len, rows *out, vkp_error *err) {
  return vkp_data_jsonl_each(file, text, len, label_row, out, err);
}

// ---- labels -> class ids ------------------------------------------------------------------------

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static vkp_status assign_ids(const char *file, rows *r, const vkp_data_load_opts *opts,
                             int32_t *ids, char ***names_out, int *n_out, vkp_error *err) {
  char **names = NULL;
  int K = 0;
  if (opts->class_names) {
    K = opts->n_class_names;
    if (K < 1) return vkp_error_set(err, VKP_ERR_INVALID, "%s: empty class list", file);
    if (!(names = calloc((size_t)K, sizeof *names))) goto oom;
    for (int c = 0; c < K; c++)
      if (!(names[c] = vkp_data_strdup(opts->class_names[c] ? opts->class_names[c] : ""))) goto oom;
    for (size_t i = 0; i < (size_t)r->n; i++) {
      int id = -1;
      for (int c = 0; c < K && id < 0; c++)
        if (strcmp(names[c], r->v[i].label) == 0) id = c;
      if (id < 0 && r->v[i].is_int && r->v[i].id < K) id = (int)r->v[i].id;
      if (id < 0) {
        vkp_data_free_strings(names, (size_t)K);
        return vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: label '%s' is not one of the %d classes",
                             file, r->v[i].line, r->v[i].label, K);
      }
      ids[i] = id;
    }
  } else {
    // Labels are all class ids (non-negative integers) or all class names: a list that mixes them
    // (`3` and `cat`) or holds a number that is no class id (`-1`, `1.5`) is refused, never read as
    // names (which would renumber every class).
    int all_int = 1;
    long long maxid = -1;
    const row *first_int = NULL, *first_name = NULL;
    for (size_t i = 0; i < (size_t)r->n; i++) {
      const row *w = &r->v[i];
      all_int &= w->is_int;
      if (w->is_int && w->id > maxid) maxid = w->id;
      if (w->is_int && !first_int) first_int = w;
      if (!w->is_int && !first_name) first_name = w;
      if (!w->is_int && w->from_text && spells_number(w->label))
        return vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: label '%s' is a number but not a class id (a non-negative integer)",
                             file, w->line, w->label);
    }
    if (first_int && first_name) {
      const row *late = first_int->line > first_name->line ? first_int : first_name;
      const row *early = late == first_int ? first_name : first_int;
      return vkp_error_set(err, VKP_ERR_FORMAT,
                           "%s:%d: label '%s' is a class %s, but line %d's '%s' is a class %s: use ids or names, not both",
                           file, late->line, late->label, late == first_int ? "id" : "name", early->line, early->label,
                           early == first_int ? "id" : "name");
    }
    if (all_int) {
      // One short line may name a class id: ids make that many classes (names for all of them,
      // a head that wide), so they are limited as IDX labels are (fuzz_list: a 27-byte list
      // labelled 550000 took seconds and half a million names).
      if (maxid >= LIST_MAX_CLASS_ID)
        return vkp_error_set(err, VKP_ERR_FORMAT, "%s: label %lld is too large for a class id (at most %d)", file,
                             maxid, LIST_MAX_CLASS_ID - 1);
      K = (int)maxid + 1;
      if (!(names = vkp_data_numbered_names(K))) goto oom;
      for (size_t i = 0; i < (size_t)r->n; i++) ids[i] = (int32_t)r->v[i].id;
    } else {
      char **sorted = malloc(r->n * sizeof *sorted);
      if (!sorted) goto oom;
      for (size_t i = 0; i < (size_t)r->n; i++) sorted[i] = r->v[i].label;
      qsort(sorted, r->n, sizeof *sorted, cmp_str);
      size_t u = 0;
      for (size_t i = 0; i < (size_t)r->n; i++)
        if (u == 0 || strcmp(sorted[u - 1], sorted[i]) != 0) sorted[u++] = sorted[i];
      if (u > (1 << 20)) {
        free(sorted);
        return vkp_error_set(err, VKP_ERR_FORMAT, "%s: %zu distinct labels", file, u);
      }
      K = (int)u;
      names = calloc(u, sizeof *names);
      if (!names) {
        free(sorted);
        goto oom;
      }
      for (size_t c = 0; c < u; c++)
        if (!(names[c] = vkp_data_strdup(sorted[c]))) {
          free(sorted);
          goto oom;
        }
      for (size_t i = 0; i < (size_t)r->n; i++) {
        char *key = r->v[i].label;
        char **hit = bsearch(&key, sorted, u, sizeof *sorted, cmp_str);
        ids[i] = (int32_t)(hit - sorted);
      }
      free(sorted);
    }
  }
  *names_out = names;
  *n_out = K;
  return VKP_OK;
oom:
  vkp_data_free_strings(names, (size_t)K);
  return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", file);
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcasecmp(s + a - b, suffix) == 0;
}

int vkp_data_list_is_jsonl(const char *path, const char *text) {
  const char *q = text;
  while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n') q++;
  if ((unsigned char)q[0] == 0xEF && (unsigned char)q[1] == 0xBB && (unsigned char)q[2] == 0xBF)
    q += 3;
  return ends_with(path, ".jsonl") || ends_with(path, ".ndjson") || ends_with(path, ".json") ||
         *q == '{';
}

char *vkp_data_list_path(const char *list_path, const char *p) {
  const char *slash = strrchr(list_path, '/');
  size_t dirlen = slash ? (size_t)(slash - list_path) + 1 : 0;
  size_t pl = strlen(p), pre = p[0] == '/' ? 0 : dirlen;
  char *out = malloc(pre + pl + 1);
  if (!out) return NULL;
  memcpy(out, list_path, pre);
  memcpy(out + pre, p, pl + 1);
  return out;
}

vkp_status vkp_data_load_list(const char *list_path, const vkp_data_load_opts *opts,
                              vkp_dataset **out, vkp_error *err) {
  static const vkp_data_load_opts defaults = {0};
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_data_load_list: out is NULL");
  *out = NULL;
  if (!list_path) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_data_load_list: path is NULL");
  if (!opts) opts = &defaults;
  char *text = NULL, **paths = NULL, **names = NULL;
  size_t len = 0;
  rows r = {0};
  int32_t *ids = NULL;
  int K = 0;
  vkp_status st = vkp_data_read_text(list_path, &text, &len, err);
  if (st != VKP_OK) return st;
  int jsonl = vkp_data_list_is_jsonl(list_path, text);
  st = jsonl ? parse_jsonl(list_path, text, len, &r, err) : parse_csv(list_path, text, len, &r, err);
  if (st != VKP_OK) goto done;
  if (r.n == 0) {
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: no entries", list_path);
    goto done;
  }
  if (!(ids = malloc(r.n * sizeof *ids)) || !(paths = calloc(r.n, sizeof *paths))) goto oom;
  if ((st = assign_ids(list_path, &r, opts, ids, &names, &K, err)) != VKP_OK) goto done;
  // Paths relative to the list's folder.
  for (size_t i = 0; i < (size_t)r.n; i++)
    if (!(paths[i] = vkp_data_list_path(list_path, r.v[i].path))) goto oom;
  st = vkp_data_decode_files(list_path, paths, ids, r.n, names, K, opts, out, err);
  paths = NULL;  // taken over
  names = NULL;
  goto done;
oom:
  st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", list_path);
done:
  vkp_data_free_strings(paths, r.n);
  vkp_data_free_strings(names, (size_t)K);
  free(ids);
  rows_free(&r);
  free(text);
  return st;
}
