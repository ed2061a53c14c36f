// clip_train_data.c — the data of a CLIP training run: pair specs (sources joined with '+'),
// joining pair sets, names adopted across sets, the held-out split by key, transforms with CLIP's
// normalisation, and every caption tokenised once (prompt template applied).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vkp_clip_train.h"
#include "vkp_config.h"

// ---- pair specs ---------------------------------------------------------------------------------

static bool known_set(const char *name) {
  for (int i = 0; vkp_pairs_known_name(i); i++)
    if (!strcmp(vkp_pairs_known_name(i), name)) return true;
  return false;
}

// One source: a folder, a list file or a named set. Reader errors get the config key in front.
static vkp_status load_source(const char *src, const char *key, const vkp_pairs_opts *o, vkp_pairs **out, vkp_error *err) {
  struct stat sb;
  vkp_error e = {0};
  vkp_status st;
  if (stat(src, &sb) == 0) st = S_ISDIR(sb.st_mode) ? vkp_pairs_load_folder(src, NULL, o, out, &e) : vkp_pairs_load_list(src, o, out, &e);
  else if (known_set(src)) st = vkp_pairs_load_named(src, o, out, &e);
  else {
    char names[256] = "";
    for (int i = 0; vkp_pairs_known_name(i); i++) {
      size_t l = strlen(names);
      snprintf(names + l, sizeof names - l, "%s%s", i ? ", " : "", vkp_pairs_known_name(i));
    }
    return vkp_error_set(err, VKP_ERR_NOT_FOUND, "config: %s: '%s' is not a file, a folder or a known pair set (%s)", key, src, names);
  }
  return st ? vkp_error_set(err, st, "config: %s: %s", key, e.msg) : VKP_OK;
}

vkp_status vkp_clip_load_pairs(const char *spec, const char *key, int channels, vkp_alpha_mode alpha, vkp_pairs **out,
                               vkp_error *err) {
  *out = NULL;
  vkp_pairs_opts o = {.channels = channels, .alpha = alpha};
  struct stat sb;
  if (!spec || !*spec) return vkp_error_set(err, VKP_ERR_INVALID, "config: key '%s' must name pair data", key);
  if (!strchr(spec, '+') || stat(spec, &sb) == 0) return load_source(spec, key, &o, out, err);
  char *copy = strdup(spec), *save = NULL;
  if (!copy) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  vkp_status st = VKP_OK;
  for (char *tok = strtok_r(copy, "+", &save); tok && !st; tok = strtok_r(NULL, "+", &save)) {
    vkp_pairs *one = NULL, *joined = NULL;
    st = load_source(tok, key, &o, &one, err);
    if (!st && *out) {
      st = vkp_clip_pairs_concat(*out, one, &joined, err);
      vkp_pairs_free(one);
      vkp_pairs_free(*out);
      *out = joined;
    } else if (!st) {
      *out = one;
    }
  }
  free(copy);
  if (!st && !*out) st = vkp_error_set(err, VKP_ERR_INVALID, "config: key '%s' must name pair data", key);
  if (st) vkp_pairs_free(*out), *out = NULL;
  return st;
}

// ---- joining two sets ---------------------------------------------------------------------------

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *dup_or_null(const char *s, bool *fail) {
  if (!s) return NULL;
  char *d = strdup(s);
  if (!d) *fail = true;
  return d;
}

// The sorted union of a's and b's class names (borrowed pointers); *n their count.
static const char **name_union(const vkp_dataset *a, const vkp_dataset *b, int *n) {
  int na = a->n_classes > 0 ? a->n_classes : 0, nb = b->n_classes > 0 ? b->n_classes : 0, u = 0;
  const char **all = malloc((size_t)(na + nb + 1) * sizeof *all);
  if (!all) return NULL;
  for (int i = 0; i < na; i++) all[u++] = a->class_names[i];
  for (int i = 0; i < nb; i++) all[u++] = b->class_names[i];
  qsort(all, (size_t)u, sizeof *all, cmp_str);
  int k = 0;
  for (int i = 0; i < u; i++)
    if (k == 0 || strcmp(all[k - 1], all[i])) all[k++] = all[i];
  *n = k;
  return all;
}

static int32_t name_id(const char **names, int n, const vkp_dataset *ds, int32_t label) {
  if (label < 0) return -1;
  const char *key = ds->class_names[label];
  const char **hit = bsearch(&key, names, (size_t)n, sizeof *names, cmp_str);
  return hit ? (int32_t)(hit - names) : -1;
}

vkp_status vkp_clip_pairs_concat(const vkp_pairs *a, const vkp_pairs *b, vkp_pairs **out, vkp_error *err) {
  *out = NULL;
  const vkp_dataset *da = a->images, *db = b->images;
  if (da->channels != db->channels)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s + %s: the images have %d and %d channels", da->name, db->name,
                         da->channels, db->channels);
  size_t na = da->count, nb = db->count, n = na + nb;
  size_t ca = a->caption_start[na], cb = b->caption_start[nb];
  vkp_pairs *p = calloc(1, sizeof *p);
  vkp_dataset *ds = calloc(1, sizeof *ds);
  int n_names = 0;
  const char **names = name_union(da, db, &n_names);
  bool fail = !p || !ds || !names;
  if (!fail) {
    p->images = ds;
    size_t bytes_a = 0, bytes_b = 0;
    for (size_t i = 0; i < na; i++) bytes_a += (size_t)da->widths[i] * (size_t)da->heights[i] * (size_t)da->channels;
    for (size_t i = 0; i < nb; i++) bytes_b += (size_t)db->widths[i] * (size_t)db->heights[i] * (size_t)db->channels;
    size_t name_len = strlen(da->name) + strlen(db->name) + 2;
    ds->name = malloc(name_len);
    ds->pixels = malloc(bytes_a + bytes_b + 1);
    ds->offsets = malloc((n + 1) * sizeof *ds->offsets);
    ds->widths = malloc((n + 1) * sizeof *ds->widths);
    ds->heights = malloc((n + 1) * sizeof *ds->heights);
    ds->labels = malloc((n + 1) * sizeof *ds->labels);
    ds->paths = calloc(n + 1, sizeof *ds->paths);
    ds->class_names = n_names ? calloc((size_t)n_names, sizeof *ds->class_names) : NULL;
    p->keys = calloc(n + 1, sizeof *p->keys);
    p->caption_start = calloc(n + 1, sizeof *p->caption_start);
    p->captions = calloc(ca + cb + 1, sizeof *p->captions);
    p->repeats = malloc((n + 1) * sizeof *p->repeats);
    fail = !ds->name || !ds->pixels || !ds->offsets || !ds->widths || !ds->heights || !ds->labels || !ds->paths ||
           (n_names && !ds->class_names) || !p->keys || !p->caption_start || !p->captions || !p->repeats;
    if (!fail) {
      snprintf(ds->name, name_len, "%s+%s", da->name, db->name);
      ds->count = n;
      ds->channels = da->channels;
      bool same = da->width && da->width == db->width && da->height == db->height;
      ds->width = same ? da->width : 0;
      ds->height = same ? da->height : 0;
      ds->n_classes = n_names;
      for (int i = 0; i < n_names; i++) ds->class_names[i] = dup_or_null(names[i], &fail);
      size_t off = 0, c = 0;
      for (size_t i = 0; i < n; i++) {
        const vkp_pairs *src = i < na ? a : b;
        const vkp_dataset *sd = src->images;
        size_t j = i < na ? i : i - na;
        ds->offsets[i] = off;
        ds->widths[i] = sd->widths[j];
        ds->heights[i] = sd->heights[j];
        size_t bytes = (size_t)sd->widths[j] * (size_t)sd->heights[j] * (size_t)sd->channels;
        memcpy(ds->pixels + off, vkp_dataset_image(sd, j), bytes);
        off += bytes;
        ds->labels[i] = name_id(names, n_names, sd, sd->labels[j]);
        ds->paths[i] = sd->paths ? dup_or_null(sd->paths[j], &fail) : NULL;
        p->keys[i] = dup_or_null(src->keys[j], &fail);
        p->repeats[i] = src->repeats[j];
        p->caption_start[i] = c;
        for (size_t k = 0; k < vkp_pairs_n_captions(src, j); k++) p->captions[c++] = dup_or_null(vkp_pairs_caption(src, j, k), &fail);
      }
      p->caption_start[n] = c;
    }
  }
  free(names);
  if (fail) {
    if (!p || !p->images) vkp_dataset_free(ds);   // else vkp_pairs_free frees it
    vkp_pairs_free(p);
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory joining %s and %s", da->name, db->name);
  }
  *out = p;
  return VKP_OK;
}

// ---- captions -----------------------------------------------------------------------------------

char *vkp_clip_apply_template(const char *tmpl, const char *caption) {
  const char *at = tmpl ? strstr(tmpl, "{}") : NULL;
  size_t n = strlen(caption) + (tmpl ? strlen(tmpl) : 0) + 1;
  char *text = malloc(n);
  if (text && at) snprintf(text, n, "%.*s%s%s", (int)(at - tmpl), tmpl, caption, at + 2);
  else if (text) snprintf(text, n, "%s", caption);
  return text;
}

// ids (captions of p, T): every caption of p, template applied.
static vkp_status tokenize_all(const vkp_clip_tokenizer *tok, const char *tmpl, const vkp_pairs *p, int T, int32_t **out,
                               vkp_error *err) {
  size_t n = p->caption_start[vkp_pairs_count(p)];
  vkp_clip_tokenizer_info info;
  vkp_clip_tokenizer_get_info(tok, &info);
  *out = malloc((n ? n : 1) * (size_t)T * sizeof **out);
  if (!*out) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory for %zu captions", n);
  for (size_t i = 0; i < n; i++) {
    char *text = vkp_clip_apply_template(tmpl, p->captions[i]);
    vkp_status st = text ? vkp_clip_tokenize(tok, text, T, info.default_pad, *out + i * (size_t)T, NULL, NULL) : VKP_ERR_OOM;
    free(text);
    if (st) return vkp_error_set(err, st, "tokenizing the caption '%s' failed", p->captions[i]);
  }
  return VKP_OK;
}

// Each image's first caption, template applied (count of p strings, free with free_texts).
static vkp_status first_texts(const char *tmpl, const vkp_pairs *p, char ***out, vkp_error *err) {
  size_t n = vkp_pairs_count(p);
  *out = calloc(n + 1, sizeof **out);
  for (size_t i = 0; *out && i < n; i++)
    if (!((*out)[i] = vkp_clip_apply_template(tmpl, vkp_pairs_caption(p, i, 0)))) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  return *out ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
}

static void free_texts(char **t) {
  for (size_t i = 0; t && t[i]; i++) free(t[i]);
  free(t);
}

// ---- the run's data -----------------------------------------------------------------------------

static vkp_status parse_alpha(const cJSON *cfg, vkp_alpha_mode *out, vkp_error *err) {
  const char *a = vkp_config_string(cfg, "data.alpha");
  if (a && !strcmp(a, "white")) *out = VKP_ALPHA_WHITE;
  else if (a && !strcmp(a, "black")) *out = VKP_ALPHA_BLACK;
  else if (a && !strcmp(a, "drop")) *out = VKP_ALPHA_DROP;
  else return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.alpha' must be \"white\", \"black\" or \"drop\"");
  return VKP_OK;
}

// data.image_mean / image_std: `channels` numbers (std > 0), or one for all channels.
static vkp_status read_norm(const cJSON *cfg, const char *key, int channels, bool positive, float *out, vkp_error *err) {
  const cJSON *v = vkp_config_get(cfg, key);
  int n = cJSON_GetArraySize(v);
  if (!cJSON_IsArray(v) || (n != channels && n != 1))
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key '%s' must be a list of %d numbers", key, channels);
  for (int c = 0; c < channels; c++) {
    const cJSON *x = cJSON_GetArrayItem(v, n == 1 ? 0 : c);
    if (!cJSON_IsNumber(x) || (positive && !(x->valuedouble > 0)))
      return vkp_error_set(err, VKP_ERR_INVALID, "config: key '%s' must be a list of %d numbers%s", key, channels,
                           positive ? " > 0" : "");
    out[c] = (float)x->valuedouble;
  }
  return VKP_OK;
}

static vkp_status transforms(const cJSON *cfg, int size, int channels, vkp_clip_data *d, vkp_error *err) {
  vkp_data_transform t = {.out_w = size, .out_h = size, .out_channels = channels, .fill = 255.0f};
  const char *crop = vkp_config_string(cfg, "data.crop");
  if (crop && !strcmp(crop, "center")) t.crop = VKP_CROP_CENTER, t.resize_short = size;
  else if (crop && !strcmp(crop, "resize")) t.crop = VKP_CROP_NONE;
  else return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.crop' must be \"center\" or \"resize\"");
  VKP_TRY(read_norm(cfg, "data.image_mean", channels, false, t.mean, err));
  VKP_TRY(read_norm(cfg, "data.image_std", channels, true, t.std, err));
  d->eval_tf = d->train_tf = t;
  double hflip, scale_min;
  VKP_TRY(vkp_config_real(cfg, "data.augment.hflip", 0, 1, &hflip, err));
  VKP_TRY(vkp_config_real(cfg, "data.augment.scale_min", 0.01, 1, &scale_min, err));
  d->train_tf.hflip = (float)hflip;
  if (vkp_config_bool(cfg, "data.augment.random_resized_crop")) {
    d->train_tf.crop = VKP_CROP_RANDOM_RESIZED;
    d->train_tf.scale_min = (float)scale_min, d->train_tf.scale_max = 1.0f;
  }
  VKP_TRY(vkp_data_transform_check(&d->train_tf, 3, err));
  return vkp_data_transform_check(&d->eval_tf, 3, err);
}

static int cmp_size(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return x < y ? -1 : x > y;
}

// Keeps `limit` of the training images: those with the smallest hash of (seed, index), in order.
static void limit_train(vkp_clip_data *d, long limit, uint64_t seed) {
  if (limit <= 0 || (size_t)limit >= d->n_train) return;
  size_t n = d->n_train;
  uint64_t *h = malloc(n * sizeof *h);
  if (!h) return;
  for (size_t i = 0; i < n; i++) h[i] = vkp_data_sample_key(seed, -1, d->train_idx[i]);
  for (size_t k = 0; k < (size_t)limit; k++) {   // partial selection sort: limit is small
    size_t best = k;
    for (size_t i = k + 1; i < n; i++)
      if (h[i] < h[best]) best = i;
    uint64_t th = h[k];
    size_t ti = d->train_idx[k];
    h[k] = h[best], d->train_idx[k] = d->train_idx[best];
    h[best] = th, d->train_idx[best] = ti;
  }
  free(h);
  d->n_train = (size_t)limit;
  qsort(d->train_idx, d->n_train, sizeof *d->train_idx, cmp_size);
}

// linear_probe: val/test labels re-expressed as the training set's name ids (-1: a name training
// never saw, or none).
static void remap_names(const vkp_pairs *train, vkp_pairs *other) {
  if (!other || other == train) return;
  vkp_dataset *o = other->images;
  for (size_t i = 0; i < o->count; i++)
    o->labels[i] = o->labels[i] >= 0 ? vkp_dataset_find_class(train->images, o->class_names[o->labels[i]]) : -1;
}

static vkp_status load_optional(const cJSON *cfg, const char *key, vkp_alpha_mode alpha, const vkp_pairs *names,
                                vkp_pairs **out, vkp_error *err) {
  const char *spec = vkp_config_string(cfg, key);
  *out = NULL;
  if (!spec) return VKP_OK;
  VKP_TRY(vkp_clip_load_pairs(spec, key, 3, alpha, out, err));
  return names ? vkp_pairs_adopt_names(*out, names, err) : VKP_OK;
}

vkp_status vkp_clip_data_load(const cJSON *cfg, const vkp_clip_tokenizer *tok, int image_size, int channels,
                              int seq_len, bool need_names, vkp_clip_data *d, vkp_error *err) {
  memset(d, 0, sizeof *d);
  d->seq_len = seq_len;
  vkp_alpha_mode alpha = VKP_ALPHA_WHITE;
  long split_seed, limit;
  double val_fraction;
  const char *tmpl = vkp_config_string(cfg, "data.template");
  vkp_pairs *names = NULL;
  vkp_status st = parse_alpha(cfg, &alpha, err);
  if (!st) st = vkp_config_int(cfg, "data.split_seed", 0, 1l << 40, &split_seed, err);
  if (!st) st = vkp_config_int(cfg, "data.limit_train", 0, 1l << 40, &limit, err);
  if (!st) st = vkp_config_real(cfg, "data.val_fraction", 0, 0.9, &val_fraction, err);
  if (!st && (!tmpl || !strstr(tmpl, "{}")))
    st = vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.template' must contain {} (where the caption goes)");
  if (!st) st = transforms(cfg, image_size, channels, d, err);
  if (!st) st = vkp_clip_load_pairs(vkp_config_string(cfg, "data.train"), "data.train", 3, alpha, &d->train, err);
  if (!st) st = load_optional(cfg, "data.names_from", alpha, NULL, &names, err);
  if (!st && names) st = vkp_pairs_adopt_names(d->train, names, err);
  if (!st) st = load_optional(cfg, "data.val", alpha, names, &d->val, err);
  if (!st) st = load_optional(cfg, "data.test", alpha, names, &d->test, err);
  vkp_pairs_free(names);
  if (!st && !d->val && val_fraction > 0) {
    st = vkp_pairs_split(d->train, val_fraction, (uint64_t)split_seed, &d->train_idx, &d->n_train, &d->val_idx, &d->n_val, err);
  } else if (!st) {
    d->n_train = vkp_pairs_count(d->train);
    d->n_val = d->val ? vkp_pairs_count(d->val) : 0;
    d->train_idx = malloc((d->n_train + 1) * sizeof *d->train_idx);
    d->val_idx = malloc((d->n_val + 1) * sizeof *d->val_idx);
    if (!d->train_idx || !d->val_idx) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    for (size_t i = 0; !st && i < d->n_train; i++) d->train_idx[i] = i;
    for (size_t i = 0; !st && i < d->n_val; i++) d->val_idx[i] = i;
  }
  if (!st) limit_train(d, limit, (uint64_t)split_seed);
  if (!st && d->n_train == 0)
    st = vkp_error_set(err, VKP_ERR_INVALID, "config: data.train: no training pairs in '%s'", vkp_config_string(cfg, "data.train"));
  if (!st && need_names) {
    d->n_classes = d->train->images->n_classes;
    for (size_t k = 0; k < d->n_train && !st; k++)
      if (d->train->images->labels[d->train_idx[k]] < 0)
        st = vkp_error_set(err, VKP_ERR_INVALID, "config: data.train: image %s has no name (train.objective \"linear_probe\" "
                           "needs a name per image: a list's name column, kohya's N_name folders or a named set)",
                           d->train->images->paths && d->train->images->paths[d->train_idx[k]] ? d->train->images->paths[d->train_idx[k]] : "?");
    if (!st && d->n_classes < 2)
      st = vkp_error_set(err, VKP_ERR_INVALID, "config: data.train: train.objective \"linear_probe\" needs 2 names or more, found %d", d->n_classes);
    remap_names(d->train, d->val);
    remap_names(d->train, d->test);
  }
  if (!st) st = tokenize_all(tok, tmpl, d->train, seq_len, &d->train_ids, err);
  if (!st) st = first_texts(tmpl, d->val ? d->val : d->train, &d->val_texts, err);
  if (!st && d->test) st = first_texts(tmpl, d->test, &d->test_texts, err);
  if (st) vkp_clip_data_free(d);
  return st;
}

void vkp_clip_data_free(vkp_clip_data *d) {
  vkp_pairs_free(d->train);
  vkp_pairs_free(d->val);
  vkp_pairs_free(d->test);
  free(d->train_idx);
  free(d->val_idx);
  free(d->train_ids);
  free_texts(d->val_texts);
  free_texts(d->test_texts);
  memset(d, 0, sizeof *d);
}
