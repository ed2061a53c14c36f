// pairs_list.c — CSV / JSONL lists of (image path, caption[, name]); rows naming the same image
// are one image with several captions.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cJSON.h>

#include "pairs_internal.h"

typedef struct prow {
  char *path;     // as written
  char *caption;  // trimmed, non-empty
  char *name;     // or NULL
  int line;
  size_t order;   // row number
} prow;

typedef VKP_VEC(prow) prows;

static void prows_free(prows *r) {
  for (int32_t i = 0; i < r->n; i++) {
    free(r->v[i].path);
    free(r->v[i].caption);
    free(r->v[i].name);
  }
  free(r->v);
}

// Takes the strings (frees them on failure). An empty name is no name.
static vkp_status prows_push(prows *r, char *path, char *caption, char *name, int line,
                             const char *file, vkp_error *err) {
  if (name && !*vkp_pairs_trim(name)) {
    free(name);
    name = NULL;
  }
  if (!path || !caption || r->n == INT32_MAX || vkp_vec_reserve(r, (int64_t)r->n + 1)) {
    free(path);
    free(caption);
    free(name);
    return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", file);
  }
  r->v[r->n] = (prow){path, caption, name, line, (size_t)r->n};
  r->n++;
  return VKP_OK;
}

static const char *const PATH_COLS[] = {"path", "file", "file_name", "filename", "image", NULL};
static const char *const CAPTION_COLS[] = {"caption", "text", NULL};
static const char *const NAME_COLS[] = {"name", "label", "class", NULL};

static int col_of(char *const *f, int nf, const char *const *names) {
  for (int k = 0; k < nf; k++)
    for (const char *const *n = names; *n; n++)
      if (strcasecmp(f[k], *n) == 0) return k;
  return -1;
}

static vkp_status parse_csv(const char *file, const char *text, size_t len, prows *out,
                            vkp_error *err) {
  vkp_data_csv c;
  vkp_data_csv_init(&c, text, len);
  char *f[VKP_DATA_CSV_MAX_FIELDS];
  int pc = 0, cc = 1, nc = 2, first = 1;
  for (;;) {
    int line = 0;
    int nf = vkp_data_csv_record(&c, f, &line, file, err);
    if (nf <= 0) return (vkp_status)nf;  // the end (VKP_OK) or an error
    if (first) {
      first = 0;
      int hp = col_of(f, nf, PATH_COLS), hc = col_of(f, nf, CAPTION_COLS);
      if (hp >= 0 && hc >= 0) {  // a header row
        pc = hp;
        cc = hc;
        nc = col_of(f, nf, NAME_COLS);
        for (int k = 0; k < nf; k++) free(f[k]);
        continue;
      }
    }
    vkp_status st = VKP_OK;
    int need = (pc > cc ? pc : cc) + 1;
    if (nf < need) {
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: %d field%s, want path,caption", file, line,
                         nf, nf == 1 ? "" : "s");
    } else if (!*vkp_pairs_trim(f[pc]) || !*vkp_pairs_trim(f[cc])) {
      st = vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: empty %s", file, line,
                         f[pc][0] ? "caption" : "path");
    } else {
      char *name = nc >= 0 && nc < nf ? f[nc] : NULL;
      st = prows_push(out, f[pc], f[cc], name, line, file, err);
      f[pc] = f[cc] = NULL;
      if (name) f[nc] = NULL;
    }
    for (int k = 0; k < nf; k++) free(f[k]);
    if (st != VKP_OK) return st;
  }
}

static const char *const PATH_KEYS[] = {"file_name", "path", "image", "file", NULL};
static const char *const CAPTION_KEYS[] = {"text", "caption", NULL};

// A non-empty string after trimming, as a new string; NULL otherwise (or on OOM: *oom set).
static char *json_text(const cJSON *v, int *oom) {
  if (!cJSON_IsString(v)) return NULL;
  char *s = vkp_data_strdup(v->valuestring);
  if (!s) {
    *oom = 1;
    return NULL;
  }
  if (!*vkp_pairs_trim(s)) {
    free(s);
    return NULL;
  }
  return s;
}

// One JSONL object -> rows of out (user), one per caption.
static vkp_status jsonl_row(const cJSON *o, const char *file, int line, void *user,
                            vkp_error *err) {
  prows *out = user;
  int oom = 0;
  const cJSON *jp = vkp_data_json_get_any(o, PATH_KEYS);
  const cJSON *jc = vkp_data_json_get_any(o, CAPTION_KEYS);
  const cJSON *jn = vkp_data_json_get_any(o, NAME_COLS);
  if (!cJSON_IsString(jp) || !jp->valuestring[0])
    return vkp_error_set(err, VKP_ERR_FORMAT,
                         "%s:%d: no \"file_name\" (or \"path\", \"image\", \"file\") string", file,
                         line);
  char num[32];
  const char *name = NULL;
  if (cJSON_IsString(jn)) name = jn->valuestring;
  else if (cJSON_IsNumber(jn) && fabs(jn->valuedouble) <= 9007199254740992.0 &&   // 2^53: the cast is defined
           jn->valuedouble == (double)(long long)jn->valuedouble)
    name = (snprintf(num, sizeof num, "%lld", (long long)jn->valuedouble), num);
  else if (jn && !cJSON_IsNull(jn))
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: \"%s\" must be a string", file, line,
                         jn->string);
  int n_caps = cJSON_IsArray(jc) ? cJSON_GetArraySize(jc) : 1;
  for (int k = 0; k < n_caps; k++) {
    const cJSON *cv = cJSON_IsArray(jc) ? cJSON_GetArrayItem(jc, k) : jc;
    char *cap = json_text(cv, &oom);
    if (!cap && !oom)
      return vkp_error_set(err, VKP_ERR_FORMAT,
                           "%s:%d: no \"text\" (or \"caption\"): want a non-empty string or an "
                           "array of them",
                           file, line);
    char *nm = name ? vkp_data_strdup(name) : NULL;
    VKP_TRY(prows_push(out, vkp_data_strdup(jp->valuestring), cap, nm, line, file, err));
    if (name && !nm) oom = 1;
    if (oom) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", file);
  }
  if (n_caps == 0)
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: empty caption list", file, line);
  return VKP_OK;
}

static vkp_status parse_jsonl(const char *file, char *text, size_t len, prows *out,
                              vkp_error *err) {
  return vkp_data_jsonl_each(file, text, len, jsonl_row, out, err);
}

static int cmp_path_order(const void *a, const void *b) {
  const prow *x = a, *y = b;
  int c = strcmp(x->path, y->path);
  return c ? c : (x->order > y->order) - (x->order < y->order);
}

static int cmp_order(const void *a, const void *b) {
  const prow *x = a, *y = b;
  return (x->order > y->order) - (x->order < y->order);
}

// Rows -> entries: rows of one path become one image (at its first row's place) with every
// row's caption. The rows are reordered and their strings taken.
static vkp_status group_rows(const char *file, prows *r, vkp_pairs_entries *out, vkp_error *err) {
  size_t n = (size_t)r->n;
  qsort(r->v, n, sizeof *r->v, cmp_path_order);
  // Mark each group's first row as its leader; the others take its order for the final sort,
  // keeping their own after it (order * n + offset fits: n < 2^31).
  size_t lead = 0;  // the group leader's row number
  for (size_t i = 0, g = 0; i < n; i++) {
    if (i == 0 || strcmp(r->v[i].path, r->v[g].path) != 0) g = i, lead = r->v[i].order;
    else if ((r->v[i].name || r->v[g].name) &&
             (!r->v[i].name || !r->v[g].name || strcmp(r->v[i].name, r->v[g].name) != 0))
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: %s is named '%s' here but '%s' on line %d",
                           file, r->v[i].line, r->v[i].path, r->v[i].name ? r->v[i].name : "",
                           r->v[g].name ? r->v[g].name : "", r->v[g].line);
    r->v[i].order = lead * n + (i - g);
  }
  qsort(r->v, n, sizeof *r->v, cmp_order);
  for (size_t i = 0; i < n; i++) {
    prow *w = &r->v[i];
    if (i == 0 || strcmp(w->path, r->v[i - 1].path) != 0) {
      char *key = vkp_data_strdup(w->name ? w->name : w->path);
      vkp_pairs_entry *e = vkp_pairs_entries_add(out, vkp_data_list_path(file, w->path), key);
      if (!e || (w->name && !(e->name = vkp_data_strdup(w->name))))
        return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", file);
    }
    if (vkp_pairs_entry_caption(&out->v[out->n - 1], w->caption) != VKP_OK) {
      w->caption = NULL;
      return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", file);
    }
    w->caption = NULL;
  }
  return VKP_OK;
}

vkp_status vkp_pairs_load_list(const char *list_path, const vkp_pairs_opts *opts,
                               vkp_pairs **out, vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_load_list: out is NULL");
  *out = NULL;
  if (!list_path) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_load_list: path is NULL");
  vkp_data_load_opts lo;
  VKP_TRY(vkp_pairs_load_opts(list_path, opts, &lo, err));
  char *text = NULL;
  size_t len = 0;
  prows r = {0};
  vkp_pairs_entries entries = {0};
  VKP_TRY(vkp_data_read_text(list_path, &text, &len, err));
  vkp_status st = vkp_data_list_is_jsonl(list_path, text)
                      ? parse_jsonl(list_path, text, len, &r, err)
                      : parse_csv(list_path, text, len, &r, err);
  free(text);
  if (st == VKP_OK && r.n == 0)
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: no entries", list_path);
  if (st == VKP_OK) st = group_rows(list_path, &r, &entries, err);
  prows_free(&r);
  if (st != VKP_OK) {
    vkp_pairs_entries_free(&entries);
    return st;
  }
  return vkp_pairs_build(list_path, &entries, opts, out, err);
}
