// dataset.c — the in-memory dataset: construction, class names, subsets, statistics, splits.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data_internal.h"
#include "vkp_data.h"

char *vkp_data_strdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

void vkp_data_free_strings(char **s, size_t n) {
  if (!s) return;
  for (size_t i = 0; i < n; i++) free(s[i]);
  free(s);
}

char **vkp_data_numbered_names(int n) {
  char **names = calloc((size_t)(n > 0 ? n : 1), sizeof *names);
  if (!names) return NULL;
  for (int i = 0; i < n; i++) {
    char buf[16];
    snprintf(buf, sizeof buf, "%d", i);
    if (!(names[i] = vkp_data_strdup(buf))) {
      vkp_data_free_strings(names, (size_t)n);
      return NULL;
    }
  }
  return names;
}

vkp_dataset *vkp_data_alloc(const char *name, size_t count, size_t pixel_bytes, int n_classes,
                             int with_paths) {
  vkp_dataset *ds = calloc(1, sizeof *ds);
  if (!ds) return NULL;
  size_t c1 = count ? count : 1;
  ds->count = count;
  ds->n_classes = n_classes;
  ds->name = vkp_data_strdup(name ? name : "");
  ds->labels = calloc(c1, sizeof *ds->labels);
  ds->offsets = calloc(c1, sizeof *ds->offsets);
  ds->widths = calloc(c1, sizeof *ds->widths);
  ds->heights = calloc(c1, sizeof *ds->heights);
  ds->pixels = calloc(pixel_bytes ? pixel_bytes : 1, 1);
  if (with_paths) ds->paths = calloc(c1, sizeof *ds->paths);
  if (n_classes > 0) ds->class_names = vkp_data_numbered_names(n_classes);
  if (!ds->name || !ds->labels || !ds->offsets || !ds->widths || !ds->heights || !ds->pixels ||
      (with_paths && !ds->paths) || (n_classes > 0 && !ds->class_names)) {
    vkp_dataset_free(ds);
    return NULL;
  }
  return ds;
}

void vkp_dataset_free(vkp_dataset *ds) {
  if (!ds) return;
  free(ds->name);
  vkp_data_free_strings(ds->class_names, (size_t)(ds->n_classes > 0 ? ds->n_classes : 0));
  vkp_data_free_strings(ds->paths, ds->count);
  free(ds->labels);
  free(ds->pixels);
  free(ds->offsets);
  free(ds->widths);
  free(ds->heights);
  free(ds);
}

vkp_status vkp_dataset_new(size_t count, int width, int height, int channels, int n_classes,
                           vkp_dataset **out, vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_dataset_new: out is NULL");
  *out = NULL;
  if (width <= 0 || height <= 0 || (channels != 1 && channels != 3 && channels != 4) ||
      n_classes < 1)
    return vkp_error_set(err, VKP_ERR_INVALID,
                         "vkp_dataset_new: bad size %dx%dx%d or class count %d", width, height,
                         channels, n_classes);
  size_t per = (size_t)width * (size_t)height * (size_t)channels;
  if (count && per > SIZE_MAX / count)
    return vkp_error_set(err, VKP_ERR_OOM, "vkp_dataset_new: %zu images of %zu bytes overflow",
                         count, per);
  vkp_dataset *ds = vkp_data_alloc("memory", count, per * count, n_classes, 0);
  if (!ds) return vkp_error_set(err, VKP_ERR_OOM, "vkp_dataset_new: out of memory");
  ds->channels = channels;
  ds->width = width;
  ds->height = height;
  for (size_t i = 0; i < count; i++) {
    ds->offsets[i] = i * per;
    ds->widths[i] = width;
    ds->heights[i] = height;
  }
  *out = ds;
  return VKP_OK;
}

vkp_status vkp_dataset_set_class_names(vkp_dataset *ds, const char *const *names, int n,
                                       vkp_error *err) {
  if (!ds || !names || n != ds->n_classes)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: %d class names given for %d classes",
                         ds && ds->name ? ds->name : "dataset", n, ds ? ds->n_classes : 0);
  char **copy = calloc((size_t)n, sizeof *copy);
  if (!copy) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", ds->name);
  for (int i = 0; i < n; i++) {
    if (!names[i] || !(copy[i] = vkp_data_strdup(names[i]))) {
      vkp_data_free_strings(copy, (size_t)n);
      return names[i] ? vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", ds->name)
                      : vkp_error_set(err, VKP_ERR_INVALID, "%s: class name %d is NULL",
                                      ds->name, i);
    }
  }
  vkp_data_free_strings(ds->class_names, (size_t)ds->n_classes);
  ds->class_names = copy;
  return VKP_OK;
}

int vkp_dataset_find_class(const vkp_dataset *ds, const char *name) {
  if (!ds || !name) return -1;
  for (int i = 0; i < ds->n_classes; i++)
    if (strcmp(ds->class_names[i], name) == 0) return i;
  return -1;
}

static size_t image_bytes(const vkp_dataset *ds, size_t i) {
  return (size_t)ds->widths[i] * (size_t)ds->heights[i] * (size_t)ds->channels;
}

vkp_status vkp_dataset_subset(const vkp_dataset *ds, const size_t *idx, size_t n,
                              vkp_dataset **out, vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_dataset_subset: out is NULL");
  *out = NULL;
  if (!ds || (n && !idx))
    return vkp_error_set(err, VKP_ERR_INVALID, "vkp_dataset_subset: NULL dataset or indices");
  size_t total = 0;
  for (size_t k = 0; k < n; k++) {
    if (idx[k] >= ds->count)
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: subset index %zu out of range (%zu images)",
                           ds->name, idx[k], ds->count);
    total += image_bytes(ds, idx[k]);
  }
  vkp_dataset *s = vkp_data_alloc(ds->name, n, total, 0, ds->paths != NULL);
  if (!s) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory for a subset", ds->name);
  s->channels = ds->channels;
  s->width = ds->width;
  s->height = ds->height;
  s->n_classes = ds->n_classes;
  s->class_names = calloc((size_t)ds->n_classes, sizeof *s->class_names);
  if (!s->class_names) goto fail_oom;
  for (int c = 0; c < ds->n_classes; c++)
    if (!(s->class_names[c] = vkp_data_strdup(ds->class_names[c]))) goto fail_oom;
  size_t off = 0;
  for (size_t k = 0; k < n; k++) {
    size_t i = idx[k], b = image_bytes(ds, i);
    memcpy(s->pixels + off, vkp_dataset_image(ds, i), b);
    s->offsets[k] = off;
    s->widths[k] = ds->widths[i];
    s->heights[k] = ds->heights[i];
    s->labels[k] = ds->labels[i];
    if (ds->paths && ds->paths[i] && !(s->paths[k] = vkp_data_strdup(ds->paths[i])))
      goto fail_oom;
    off += b;
  }
  *out = s;
  return VKP_OK;
fail_oom:
  vkp_dataset_free(s);
  return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory for a subset", ds->name);
}

vkp_status vkp_dataset_mean_std(const vkp_dataset *ds, const size_t *idx, size_t n, float *mean,
                                float *std, vkp_error *err) {
  if (!ds || !mean || !std)
    return vkp_error_set(err, VKP_ERR_INVALID, "vkp_dataset_mean_std: NULL argument");
  if (!idx) n = ds->count;
  if (n == 0)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: mean/std of an empty selection", ds->name);
  int C = ds->channels;
  // Exact integer sums: 255^2 * 2^40 pixels still fits in 64 bits.
  uint64_t sum[4] = {0}, sq[4] = {0}, npix = 0;
  for (size_t k = 0; k < n; k++) {
    size_t i = idx ? idx[k] : k;
    if (i >= ds->count)
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: index %zu out of range (%zu images)",
                           ds->name, i, ds->count);
    const uint8_t *p = vkp_dataset_image(ds, i);
    size_t np = (size_t)ds->widths[i] * (size_t)ds->heights[i];
    for (size_t q = 0; q < np; q++)
      for (int c = 0; c < C; c++) {
        uint64_t v = p[q * (size_t)C + (size_t)c];
        sum[c] += v;
        sq[c] += v * v;
      }
    npix += np;
  }
  for (int c = 0; c < C; c++) {
    double m = (double)sum[c] / (double)npix;
    double var = (double)sq[c] / (double)npix - m * m;
    mean[c] = (float)(m / 255.0);
    std[c] = (float)(sqrt(var > 0 ? var : 0) / 255.0);
  }
  return VKP_OK;
}

vkp_status vkp_dataset_split(const vkp_dataset *ds, double val_fraction, uint64_t seed,
                             bool stratified, size_t **train, size_t *n_train, size_t **val,
                             size_t *n_val, vkp_error *err) {
  if (!ds || !train || !n_train || !val || !n_val)
    return vkp_error_set(err, VKP_ERR_INVALID, "vkp_dataset_split: NULL argument");
  *train = *val = NULL;
  *n_train = *n_val = 0;
  if (!(val_fraction >= 0.0 && val_fraction <= 1.0))
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: validation fraction %g outside [0, 1]",
                         ds->name, val_fraction);
  size_t N = ds->count, nv = (size_t)llround(val_fraction * (double)N);
  if (nv > N) nv = N;
  int K = ds->n_classes;
  size_t *order = malloc((N ? N : 1) * sizeof *order);
  size_t *cstart = calloc((size_t)K + 1, sizeof *cstart);  // class c: order[cstart[c]..cstart[c+1])
  size_t *take = calloc((size_t)K + 1, sizeof *take);
  double *rem = calloc((size_t)K + 1, sizeof *rem);
  char *is_val = calloc(N ? N : 1, 1);
  vkp_status st = VKP_OK;
  if (!order || !cstart || !take || !rem || !is_val) {
    st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory for a split", ds->name);
    goto done;
  }
  if (!stratified || K < 1) {
    for (size_t i = 0; i < N; i++) order[i] = i;
    vkp_rng r = vkp_rng_new(vkp_rng_key(seed, VKP_DATA_STREAM_SPLIT, UINT64_MAX));
    vkp_rng_shuffle(&r, order, N, sizeof *order, N);
    for (size_t k = 0; k < nv; k++) is_val[order[k]] = 1;
  } else {
    // Group indices by class (counting sort, ascending within a class).
    for (size_t i = 0; i < N; i++) {
      int32_t c = ds->labels[i];
      if (c < 0 || c >= K) {
        st = vkp_error_set(err, VKP_ERR_INVALID, "%s: image %zu has label %d outside [0, %d)",
                           ds->name, i, (int)c, K);
        goto done;
      }
      cstart[c + 1]++;
    }
    for (int c = 0; c < K; c++) cstart[c + 1] += cstart[c];
    size_t *fill = take;  // reuse as a cursor, reset below
    for (int c = 0; c <= K; c++) fill[c] = cstart[c];
    for (size_t i = 0; i < N; i++) order[fill[ds->labels[i]]++] = i;
    // Largest-remainder allocation of nv over the classes.
    size_t given = 0;
    for (int c = 0; c < K; c++) {
      double want = val_fraction * (double)(cstart[c + 1] - cstart[c]);
      take[c] = (size_t)floor(want);
      rem[c] = want - floor(want);
      given += take[c];
    }
    while (given < nv) {
      int best = -1;
      for (int c = 0; c < K; c++)
        if (take[c] < cstart[c + 1] - cstart[c] && (best < 0 || rem[c] > rem[best])) best = c;
      if (best < 0) break;
      take[best]++;
      rem[best] = -1.0;
      given++;
    }
    for (int c = 0; c < K; c++) {
      vkp_rng r = vkp_rng_new(vkp_rng_key(seed, VKP_DATA_STREAM_SPLIT, (uint64_t)c));
      size_t *v = order + cstart[c], m = cstart[c + 1] - cstart[c];
      vkp_rng_shuffle(&r, v, m, sizeof *v, m);
      for (size_t k = 0; k < take[c]; k++) is_val[v[k]] = 1;
    }
    nv = given;
  }
  size_t nt = N - nv;
  size_t *tr = nt ? malloc(nt * sizeof *tr) : NULL, *va = nv ? malloc(nv * sizeof *va) : NULL;
  if ((nt && !tr) || (nv && !va)) {
    free(tr);
    free(va);
    st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory for a split", ds->name);
    goto done;
  }
  size_t a = 0, b = 0;
  for (size_t i = 0; i < N; i++) {
    if (is_val[i]) va[b++] = i;
    else tr[a++] = i;
  }
  *train = tr;
  *n_train = nt;
  *val = va;
  *n_val = nv;
done:
  free(order);
  free(cstart);
  free(take);
  free(rem);
  free(is_val);
  return st;
}

void vkp_data_warn(const vkp_data_load_opts *opts, const char *fmt, ...) {
  char msg[VKP_ERROR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (opts && opts->warn) opts->warn(opts->warn_user, msg);
  else fprintf(stderr, "vkpeft: warning: %s\n", msg);
}

int vkp_data_thread_count(int n_threads, size_t work_items) {
  int n = n_threads;
  if (n <= 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    n = cpus > 0 ? (int)cpus : 1;
    if (n > 8) n = 8;
  }
  if ((size_t)n > work_items) n = work_items ? (int)work_items : 1;
  return n < 1 ? 1 : n;
}
