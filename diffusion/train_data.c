// train_data.c — the diffusion trainer's data: image–caption pairs (vkp_pairs specs), caption files
// without an image, the validation split, the loader, caption processing (kohya's caption
// dropout, tag shuffling with keep_tokens, a trigger word) and the VAE's input pixels.
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "train_internal.h"
#include "train_pixels.h"
#include "vkp_clip_train.h"
#include "vkp_config.h"
#include "vkp_rng.h"

// ---- caption files without an image (kohya folders) ----------------------------------------------

static const char *const IMAGE_EXTS[] = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tga", ".ppm", ".pgm", ".pnm", ".webp", ".avif", NULL};

static bool has_image(const char *dir, const char *file, size_t stem) {
  char path[4200];
  struct stat sb;
  for (int i = 0; IMAGE_EXTS[i]; i++) {
    for (int upper = 0; upper < 2; upper++) {
      char ext[8];
      snprintf(ext, sizeof ext, "%s", IMAGE_EXTS[i]);
      for (char *e = ext; upper && *e; e++) *e = (char)toupper((unsigned char)*e);
      snprintf(path, sizeof path, "%s/%.*s%s", dir, (int)stem, file, ext);
      if (!stat(path, &sb) && S_ISREG(sb.st_mode)) return true;
    }
  }
  return false;
}

// The first `.txt` file of dir whose image is missing; recurse into kohya's N_name folders (depth 0).
static vkp_status orphans_in(const char *dir, int depth, const char *key, vkp_error *err) {
  DIR *d = opendir(dir);
  if (!d) return VKP_OK;   // the reader reports unreadable folders
  vkp_status st = VKP_OK;
  struct dirent *e;
  while (!st && (e = readdir(d))) {
    const char *n = e->d_name, *dot = strrchr(n, '.');
    if (n[0] == '.') continue;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, n);
    struct stat sb;
    if (stat(path, &sb)) continue;
    if (S_ISDIR(sb.st_mode) && depth == 0 && isdigit((unsigned char)n[0])) st = orphans_in(path, 1, key, err);
    else if (S_ISREG(sb.st_mode) && dot && !strcasecmp(dot, ".txt") && !has_image(dir, n, (size_t)(dot - n)))
      st = vkp_error_set(err, VKP_ERR_FORMAT, "config: %s: %s: caption file without an image (want %.*s.png, .jpg, ... beside it)", key,
                         path, (int)(dot - n), n);
  }
  closedir(d);
  return st;
}

// Every folder source of a spec ('+'-joined) checked for orphan caption files.
static vkp_status check_orphans(const char *spec, const char *key, vkp_error *err) {
  char *copy = strdup(spec), *save = NULL;
  if (!copy) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  struct stat sb;
  vkp_status st = VKP_OK;
  if (!stat(spec, &sb) && S_ISDIR(sb.st_mode)) st = orphans_in(spec, 0, key, err);
  else if (stat(spec, &sb))
    for (char *tok = strtok_r(copy, "+", &save); tok && !st; tok = strtok_r(NULL, "+", &save))
      if (!stat(tok, &sb) && S_ISDIR(sb.st_mode)) st = orphans_in(tok, 0, key, err);
  free(copy);
  return st;
}

// ---- the data of a run ------------------------------------------------------------------------------

static vkp_status load_pairs(vkp_dtrainer *t, const char *key, vkp_pairs **out, vkp_error *err) {
  const char *spec = vkp_config_string(t->cfg, key);
  VKP_TRY(check_orphans(spec, key, err));
  return vkp_clip_load_pairs(spec, key, 4, t->alpha, out, err);   // RGBA: alpha is the loss mask
}

// The loader's transform: the random crop (and flip) of data.crop "random", else a 1x1 stand-in
// (the cached latents are used; the loader only gives the order and the captions).
static vkp_data_transform loader_transform(const vkp_dtrainer *t) {
  if (!t->random_crop) return (vkp_data_transform){.out_w = 1, .out_h = 1, .out_channels = 4};
  return (vkp_data_transform){.out_w = t->resolution, .out_h = t->resolution, .out_channels = 4,
                              .crop = VKP_CROP_RANDOM_RESIZED, .scale_min = (float)t->crop_scale, .scale_max = 1,
                              .ratio_min = 1, .ratio_max = 1, .hflip = (float)t->hflip};
}

vkp_status vkp_dtrain_load_data(vkp_dtrainer *t, vkp_error *err) {
  const cJSON *c = t->cfg;
  VKP_TRY(load_pairs(t, "data.train", &t->train, err));
  double frac;
  long split_seed;
  VKP_TRY(vkp_config_real(c, "data.val_fraction", 0, 0.9, &frac, err));
  VKP_TRY(vkp_config_int(c, "data.split_seed", 0, 1l << 40, &split_seed, err));
  size_t n = vkp_pairs_count(t->train);
  if (vkp_config_string(c, "data.val")) {
    VKP_TRY(load_pairs(t, "data.val", &t->val, err));
    t->n_val = vkp_pairs_count(t->val);
  } else if (frac > 0) {
    VKP_TRY(vkp_pairs_split(t->train, frac, (uint64_t)split_seed, &t->train_idx, &t->n_train, &t->val_idx, &t->n_val, err));
  } else {   // validation at fixed triples of the first training images
    t->n_val = t->k.val_limit > 0 && (size_t)t->k.val_limit < n ? (size_t)t->k.val_limit : n;
  }
  if (!t->train_idx) {
    t->n_train = n;
    if (!(t->train_idx = malloc(n * sizeof *t->train_idx))) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    for (size_t i = 0; i < n; i++) t->train_idx[i] = i;
  }
  if (!t->val_idx && t->n_val) {
    if (!(t->val_idx = malloc(t->n_val * sizeof *t->val_idx))) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    for (size_t i = 0; i < t->n_val; i++) t->val_idx[i] = i;
  }
  if (t->k.val_limit > 0 && t->n_val > (size_t)t->k.val_limit) t->n_val = (size_t)t->k.val_limit;
  if (t->n_train == 0) return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.train': no training images (data.val_fraction %g)", frac);
  vkp_pairs *reg = NULL;   // regularisation images join the training set (train_reg.c)
  if (vkp_config_string(c, "data.reg")) VKP_TRY(load_pairs(t, "data.reg", &reg, err));
  VKP_TRY(vkp_dtrain_add_reg(t, reg, err));
  if (t->dx.buckets) return vkp_dtrain_buckets_make(t, err);   // a loader per bucket (train_buckets.c)
  vkp_data_transform tf = loader_transform(t);
  vkp_loader_opts lo = {.batch_size = (int)t->k.batch, .shuffle = true, .drop_last = true, .seed = t->k.seed,
                        .n_workers = (int)vkp_config_number(c, "data.workers"), .indices = t->train_idx,
                        .n_indices = t->n_train, .first_caption = t->first_caption};
  if (t->ck) lo.start_epoch = t->ck->state.loader_epoch, lo.start_step = t->ck->state.loader_step;
  VKP_TRY(vkp_pairs_loader_new(t->train, &tf, &lo, &t->loader, err));
  size_t per_epoch = vkp_loader_epoch_samples(t->loader);
  if ((size_t)t->k.batch > per_epoch)
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'train.batch_size' (%ld) is larger than an epoch of the training set (%zu images with repeats)",
                         t->k.batch, per_epoch);
  return VKP_OK;
}

// ---- captions ---------------------------------------------------------------------------------------

// Appends s (n bytes) to the growing string *buf.
static bool append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
  if (*len + n + 1 > *cap) {
    size_t nc = (*len + n + 1) * 2;
    char *b = realloc(*buf, nc);
    if (!b) return false;
    *buf = b, *cap = nc;
  }
  memcpy(*buf + *len, s, n);
  *len += n;
  (*buf)[*len] = '\0';
  return true;
}

char *vkp_dtrain_caption(const vkp_dtrainer *t, const char *caption, uint64_t key, bool augment, vkp_error *err) {
  return vkp_dtrain_caption_with(t, caption, t->trigger, key, augment, err);
}

char *vkp_dtrain_caption_with(const vkp_dtrainer *t, const char *caption, const char *trigger, uint64_t key, bool augment,
                              vkp_error *err) {
  vkp_rng r = vkp_rng_new(key);
  size_t len = 0, cap = 0;
  char *out = NULL;
  bool ok = append(&out, &len, &cap, "", 0);
  if (!ok) {
    vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    return NULL;
  }
  if (augment && t->caption_dropout > 0 && vkp_rng_uniform(&r) < t->caption_dropout) return out;   // "" (kohya drops all)
  if (trigger && *trigger) ok = append(&out, &len, &cap, trigger, strlen(trigger));
  // Tags: comma-separated, trimmed; all but the first keep_tokens shuffled.
  size_t cap_tags = 1;
  for (const char *p = caption; *p; p++) cap_tags += *p == ',';
  const char **tags = malloc(cap_tags * sizeof *tags);
  size_t *tlen = malloc(cap_tags * sizeof *tlen), *order = malloc(cap_tags * sizeof *order), nt = 0;
  ok = ok && tags && tlen && order;
  for (const char *p = caption; ok && *p;) {
    const char *e = strchr(p, ',');
    if (!e) e = p + strlen(p);
    const char *a = p, *b = e;
    while (a < b && isspace((unsigned char)*a)) a++;
    while (b > a && isspace((unsigned char)b[-1])) b--;
    if (b > a) tags[nt] = a, tlen[nt++] = (size_t)(b - a);
    p = *e ? e + 1 : e;
  }
  for (size_t i = 0; ok && i < nt; i++) order[i] = i;
  size_t k = (size_t)t->keep_tokens;
  if (ok && augment && t->shuffle_captions && nt > k) vkp_rng_shuffle(&r, order + k, nt - k, sizeof *order, nt - k);
  for (size_t i = 0; ok && i < nt; i++) {
    if (len) ok = append(&out, &len, &cap, ", ", 2);
    if (ok) ok = append(&out, &len, &cap, tags[order[i]], tlen[order[i]]);
  }
  free(tags), free(tlen), free(order);
  if (!ok) {
    free(out);
    vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    return NULL;
  }
  return out;
}

// ---- pixels -----------------------------------------------------------------------------------------

// finish_pixels on a (4, hw) array.
static void finish_planes(size_t hw, vkp_alpha_mode alpha, float *px) {
  const float *a = px + 3 * hw;
  for (int c = 0; c < 3; c++) {
    float *v = px + (size_t)c * hw;
    for (size_t i = 0; i < hw; i++) {
      float x = alpha == VKP_ALPHA_WHITE ? v[i] * a[i] + (1 - a[i]) : alpha == VKP_ALPHA_BLACK ? v[i] * a[i] : v[i];
      v[i] = 2 * x - 1;
    }
  }
}

void vkp_diffusion_finish_pixels(int resolution, vkp_alpha_mode alpha, float *px) {
  finish_planes((size_t)resolution * (size_t)resolution, alpha, px);
}

vkp_status vkp_diffusion_pixels(const vkp_pairs *p, size_t i, int resolution, vkp_alpha_mode alpha, float *out, vkp_error *err) {
  const vkp_dataset *ds = p->images;
  vkp_data_transform tf = {.out_w = resolution, .out_h = resolution, .out_channels = 4, .crop = VKP_CROP_CENTER,
                           .resize_short = resolution};
  VKP_TRY(vkp_data_transform_apply(&tf, vkp_dataset_image(ds, i), ds->widths[i], ds->heights[i], ds->channels, 0, out, err));
  vkp_diffusion_finish_pixels(resolution, alpha, out);
  return VKP_OK;
}

void vkp_dtrain_finish_pixels(const vkp_dtrainer *t, float *px) { finish_planes((size_t)t->dx.px_w * (size_t)t->dx.px_h, t->alpha, px); }

// A bucket's pixels (kohya's trim_and_resize_if_required): image i resized to its cover size
// (dx.resized), the central px_w x px_h window of that.
static vkp_status cover_pixels(const vkp_dtrainer *t, const vkp_pairs *p, size_t i, float *out, vkp_error *err) {
  const vkp_dataset *ds = p->images;
  const int rw = t->dx.resized[2 * i], rh = t->dx.resized[2 * i + 1], W = t->dx.px_w, H = t->dx.px_h;
  float *full = malloc((size_t)4 * rw * rh * sizeof *full);
  if (!full) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  vkp_data_transform tf = {.out_w = rw, .out_h = rh, .out_channels = 4, .crop = VKP_CROP_NONE};
  vkp_status st = vkp_data_transform_apply(&tf, vkp_dataset_image(ds, i), ds->widths[i], ds->heights[i], ds->channels, 0, full, err);
  const int left = (rw - W) / 2, top = (rh - H) / 2;
  for (int c = 0; !st && c < 4; c++)
    for (int y = 0; y < H; y++)
      memcpy(out + ((size_t)c * H + y) * W, full + ((size_t)c * rh + top + y) * rw + left, (size_t)W * sizeof *out);
  free(full);
  if (!st) vkp_dtrain_finish_pixels(t, out);
  return st;
}

vkp_status vkp_dtrain_pixels(const vkp_dtrainer *t, const vkp_pairs *p, size_t i, float *out, vkp_error *err) {
  if (t->dx.cover) return cover_pixels(t, p, i, out, err);
  return vkp_diffusion_pixels(p, i, t->resolution, t->alpha, out, err);
}
