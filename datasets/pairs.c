// pairs.c — the image–text pair set: building one from a reader's entries, freeing, subsets,
// flattening alpha for RGB consumers, and the loader over it.
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "pairs_internal.h"

// ---- entries -------------------------------------------------------------------------------------

static void entry_release(vkp_pairs_entry *e) {
  free(e->path);
  free(e->key);
  free(e->name);
  vkp_data_free_strings(e->captions.v, (size_t)e->captions.n);
}

void vkp_pairs_entries_free(vkp_pairs_entries *e) {
  for (int32_t i = 0; i < e->n; i++) entry_release(&e->v[i]);
  free(e->v);
  *e = (vkp_pairs_entries){0};
}

void vkp_pairs_entries_pop(vkp_pairs_entries *e) {
  if (e->n > 0) entry_release(&e->v[--e->n]);
}

vkp_pairs_entry *vkp_pairs_entries_add(vkp_pairs_entries *e, char *path, char *key) {
  if (!path || e->n == INT32_MAX || vkp_vec_reserve(e, (int64_t)e->n + 1)) {
    free(path);
    free(key);
    return NULL;
  }
  vkp_pairs_entry *x = &e->v[e->n++];
  *x = (vkp_pairs_entry){.path = path, .key = key, .repeats = 1};
  return x;
}

vkp_status vkp_pairs_entry_caption(vkp_pairs_entry *e, char *caption) {
  if (!caption || vkp_vec_push(&e->captions, caption)) {
    free(caption);
    return VKP_ERR_OOM;
  }
  return VKP_OK;
}

// ---- small text helpers --------------------------------------------------------------------------

char *vkp_pairs_trim(char *s) {
  size_t n = strlen(s), a = 0;
  while (n && isspace((unsigned char)s[n - 1])) n--;
  while (a < n && isspace((unsigned char)s[a])) a++;
  memmove(s, s + a, n - a);
  s[n - a] = '\0';
  return s;
}

void vkp_pairs_lower(char *s) {
  for (unsigned char *p = (unsigned char *)s; *p; p++) {
    if (*p >= 'A' && *p <= 'Z') *p = (unsigned char)(*p + 32);
    else if (*p == 0xC3 && p[1] >= 0x80 && p[1] <= 0x9E && p[1] != 0x97) p[1] += 0x20, p++;
  }
}

// ---- names -> ids --------------------------------------------------------------------------------

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

vkp_status vkp_pairs_name_ids(char *const *names, size_t n, char ***class_names, int *n_classes,
                              int32_t *labels) {
  *class_names = NULL;
  *n_classes = 0;
  char **sorted = malloc((n ? n : 1) * sizeof *sorted);
  if (!sorted) return VKP_ERR_OOM;
  size_t u = 0;
  for (size_t i = 0; i < n; i++)
    if (names[i]) sorted[u++] = names[i];
  qsort(sorted, u, sizeof *sorted, cmp_str);
  size_t k = 0;
  for (size_t i = 0; i < u; i++)
    if (k == 0 || strcmp(sorted[k - 1], sorted[i]) != 0) sorted[k++] = sorted[i];
  char **copy = k ? calloc(k, sizeof *copy) : NULL;
  if (k && !copy) goto oom;
  for (size_t c = 0; c < k; c++)
    if (!(copy[c] = vkp_data_strdup(sorted[c]))) goto oom;
  for (size_t i = 0; i < n; i++) {
    labels[i] = -1;
    if (!names[i]) continue;
    char *const *hit = bsearch(&names[i], sorted, k, sizeof *sorted, cmp_str);
    labels[i] = (int32_t)(hit - sorted);
  }
  free(sorted);
  *class_names = copy;
  *n_classes = (int)k;
  return VKP_OK;
oom:
  vkp_data_free_strings(copy, k);
  free(sorted);
  return VKP_ERR_OOM;
}

// ---- building --------------------------------------------------------------------------------

void vkp_pairs_free(vkp_pairs *p) {
  if (!p) return;
  size_t n = p->images ? p->images->count : 0;
  vkp_data_free_strings(p->keys, n);
  if (p->captions && p->caption_start) vkp_data_free_strings(p->captions, p->caption_start[n]);
  else free(p->captions);
  free(p->caption_start);
  free(p->repeats);
  vkp_dataset_free(p->images);
  free(p);
}

// An empty shell for `count` images around ds (taken over): arrays allocated, zeroed.
static vkp_pairs *pairs_shell(vkp_dataset *ds, size_t n_captions) {
  vkp_pairs *p = calloc(1, sizeof *p);
  if (!p) {
    vkp_dataset_free(ds);
    return NULL;
  }
  p->images = ds;
  size_t n = ds->count;
  p->keys = calloc(n ? n : 1, sizeof *p->keys);
  p->caption_start = calloc(n + 1, sizeof *p->caption_start);
  p->captions = calloc(n_captions ? n_captions : 1, sizeof *p->captions);
  p->repeats = calloc(n ? n : 1, sizeof *p->repeats);
  if (!p->keys || !p->caption_start || !p->captions || !p->repeats) {
    free(p->caption_start);  // captions not counted yet: free the arrays only
    p->caption_start = NULL;
    vkp_pairs_free(p);
    return NULL;
  }
  return p;
}

vkp_status vkp_pairs_load_opts(const char *what, const vkp_pairs_opts *opts,
                               vkp_data_load_opts *lo, vkp_error *err) {
  static const vkp_pairs_opts defaults = {0};
  if (!opts) opts = &defaults;
  if (opts->channels != 0 && opts->channels != 3 && opts->channels != 4)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: channels %d (want 3 or 4; 0 = 4)", what,
                         opts->channels);
  *lo = (vkp_data_load_opts){.channels = opts->channels ? opts->channels : 4,
                             .alpha = opts->alpha,
                             .width = opts->width,
                             .height = opts->height,
                             .skip_bad = opts->skip_bad,
                             .n_threads = opts->n_threads,
                             .warn = opts->warn,
                             .warn_user = opts->warn_user};
  return VKP_OK;
}

vkp_status vkp_pairs_build(const char *what, vkp_pairs_entries *e, const vkp_pairs_opts *opts,
                           vkp_pairs **out, vkp_error *err) {
  *out = NULL;
  vkp_data_load_opts lo;
  vkp_dataset *ds = NULL;
  vkp_pairs *p = NULL;
  char **names = NULL;
  vkp_status st = vkp_pairs_load_opts(what, opts, &lo, err);
  if (st != VKP_OK) goto done;
  size_t n = (size_t)e->n;
  char **paths = calloc(n ? n : 1, sizeof *paths);
  int32_t *which = malloc((n ? n : 1) * sizeof *which);
  if (!paths || !which) {
    free(paths);
    free(which);
    goto oom;
  }
  for (size_t i = 0; i < n; i++) {
    paths[i] = e->v[i].path;  // moved
    e->v[i].path = NULL;
    which[i] = (int32_t)i;    // the label carries the entry through decoding
  }
  st = vkp_data_decode_files(what, paths, which, n, NULL, 0, &lo, &ds, err);  // frees paths
  free(which);
  if (st != VKP_OK) goto done;
  size_t m = ds->count, n_caps = 0;
  for (size_t k = 0; k < m; k++) n_caps += (size_t)e->v[ds->labels[k]].captions.n;
  if (!(names = calloc(m ? m : 1, sizeof *names))) goto oom;
  for (size_t k = 0; k < m; k++) names[k] = e->v[ds->labels[k]].name;  // borrowed
  char **class_names = NULL;
  int n_classes = 0;
  int32_t *entry_of = malloc((m ? m : 1) * sizeof *entry_of);
  if (!entry_of) goto oom;
  memcpy(entry_of, ds->labels, m * sizeof *entry_of);
  if (vkp_pairs_name_ids(names, m, &class_names, &n_classes, ds->labels) != VKP_OK) {
    memcpy(ds->labels, entry_of, m * sizeof *entry_of);
    free(entry_of);
    goto oom;
  }
  ds->class_names = class_names;
  ds->n_classes = n_classes;
  if (!(p = pairs_shell(ds, n_caps))) {
    ds = NULL;
    free(entry_of);
    goto oom;
  }
  ds = NULL;
  size_t c = 0;
  for (size_t k = 0; k < m; k++) {
    vkp_pairs_entry *x = &e->v[entry_of[k]];
    p->keys[k] = x->key ? x->key : vkp_data_strdup(p->images->paths[k]);
    x->key = NULL;
    if (!p->keys[k]) {
      p->caption_start[m] = c;  // what vkp_pairs_free frees
      free(entry_of);
      goto oom;
    }
    p->repeats[k] = x->repeats;
    p->caption_start[k] = c;
    for (int32_t j = 0; j < x->captions.n; j++) {
      p->captions[c++] = x->captions.v[j];
      x->captions.v[j] = NULL;
    }
    p->caption_start[k + 1] = c;
  }
  free(entry_of);
  *out = p;
  p = NULL;
  goto done;
oom:
  st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", what);
done:
  free(names);
  vkp_pairs_free(p);
  vkp_dataset_free(ds);
  vkp_pairs_entries_free(e);
  return st;
}

// ---- subsets, flattening -------------------------------------------------------------------------

vkp_status vkp_pairs_subset(const vkp_pairs *p, const size_t *idx, size_t n, vkp_pairs **out,
                            vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_subset: out is NULL");
  *out = NULL;
  if (!p || (n && !idx))
    return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_subset: NULL pairs or indices");
  vkp_dataset *ds = NULL;
  VKP_TRY(vkp_dataset_subset(p->images, idx, n, &ds, err));  // checks the indices
  size_t n_caps = 0;
  for (size_t k = 0; k < n; k++) n_caps += vkp_pairs_n_captions(p, idx[k]);
  vkp_pairs *s = pairs_shell(ds, n_caps);
  if (!s) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory for a subset", p->images->name);
  size_t c = 0;
  for (size_t k = 0; k < n; k++) {
    size_t i = idx[k];
    s->repeats[k] = p->repeats[i];
    s->caption_start[k] = c;
    s->caption_start[k + 1] = c;  // counts only what was copied, for vkp_pairs_free
    if (!(s->keys[k] = vkp_data_strdup(p->keys[i]))) goto oom;
    for (size_t j = 0; j < vkp_pairs_n_captions(p, i); j++) {
      if (!(s->captions[c] = vkp_data_strdup(vkp_pairs_caption(p, i, j)))) goto oom;
      s->caption_start[k + 1] = ++c;
    }
  }
  *out = s;
  return VKP_OK;
oom:
  s->caption_start[n] = c;  // captions [0, c) are set: what vkp_pairs_free frees
  vkp_pairs_free(s);
  return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory for a subset", p->images->name);
}

void vkp_data_rgba_to_rgb(const uint8_t *rgba, size_t npix, vkp_alpha_mode mode, uint8_t *rgb) {
  vkp_data_convert_rgba(rgba, npix, 3, mode, rgb);
}

void vkp_data_alpha_to_rgb(const uint8_t *px, size_t npix, int channels, vkp_alpha_mode mode, uint8_t *rgb) {
  if (channels == 4) {
    vkp_data_convert_rgba(px, npix, 3, mode, rgb);
    return;
  }
  for (size_t k = 0; k < npix; k++) {
    uint8_t rgba[4] = {px[2 * k], px[2 * k], px[2 * k], px[2 * k + 1]};
    vkp_data_convert_rgba(rgba, 1, 3, mode, rgb + 3 * k);
  }
}

vkp_status vkp_pairs_flatten(const vkp_pairs *p, vkp_alpha_mode mode, vkp_pairs **out,
                             vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_flatten: out is NULL");
  *out = NULL;
  if (!p || (p->images->channels != 3 && p->images->channels != 4))
    return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_flatten: want 3- or 4-channel images");
  size_t n = vkp_pairs_count(p);
  size_t *all = malloc((n ? n : 1) * sizeof *all);
  if (!all) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", p->images->name);
  for (size_t i = 0; i < n; i++) all[i] = i;
  vkp_pairs *f = NULL;
  vkp_status st = vkp_pairs_subset(p, all, n, &f, err);
  free(all);
  if (st != VKP_OK || p->images->channels == 3) {
    *out = f;
    return st;
  }
  vkp_dataset *ds = f->images;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += (size_t)ds->widths[i] * (size_t)ds->heights[i] * 3;
  uint8_t *px = malloc(total ? total : 1);
  if (!px) {
    vkp_pairs_free(f);
    return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", p->images->name);
  }
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    size_t npix = (size_t)ds->widths[i] * (size_t)ds->heights[i];
    vkp_data_rgba_to_rgb(vkp_dataset_image(ds, i), npix, mode, px + off);
    ds->offsets[i] = off;
    off += 3 * npix;
  }
  free(ds->pixels);
  ds->pixels = px;
  ds->channels = 3;
  *out = f;
  return VKP_OK;
}

// ---- loader --------------------------------------------------------------------------------------

vkp_status vkp_pairs_loader_new(const vkp_pairs *p, const vkp_data_transform *t,
                                const vkp_loader_opts *opts, vkp_loader **out, vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_loader_new: out is NULL");
  *out = NULL;
  if (!p || !opts)
    return vkp_error_set(err, VKP_ERR_INVALID, "vkp_pairs_loader_new: NULL pairs or options");
  vkp_loader_opts o = *opts;
  o.repeats = p->repeats;
  o.caption_start = p->caption_start;
  return vkp_loader_new(p->images, t, &o, out, err);
}
