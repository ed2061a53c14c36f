// train_cache.c — VAE encoding of training images and the latent cache folder:
//   <cache_dir>/<settings hash>/<image hash>.safetensors  {"mean", "std": (V, C, h, w), "mask": (V, h, w)}
// settings: the VAE's weights and config files (path, size, mtime), the resolution, the alpha mode,
// the number of variants V (2: the flipped image too), and a bucket's size (data.buckets: resized to
// cover, center-cropped; one folder per bucket); image: its path, size and mtime. A file
// is written atomically once and read by every later run with the same settings.
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train_internal.h"
#include "vkp_config.h"
#include "vkp_fileio.h"
#include "vkp_safetensors.h"

// ---- hashing (FNV-1a 64) ------------------------------------------------------------------------------

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

// A file's identity: its resolved path, size and modification time (missing: the path only).
static uint64_t hash_file(uint64_t h, const char *path) {
  char real[PATH_MAX];
  const char *p = realpath(path, real) ? real : path;
  h = fnv(h, p, strlen(p) + 1);
  struct stat sb;
  if (!stat(p, &sb)) {
    int64_t v[3] = {(int64_t)sb.st_size, (int64_t)sb.st_mtim.tv_sec, (int64_t)sb.st_mtim.tv_nsec};
    h = fnv(h, v, sizeof v);
  }
  return h;
}

static uint64_t settings_hash(const vkp_dtrainer *t, int variants) {
  const char *dir = vkp_config_string(t->cfg, "model.pretrained"), *vae = vkp_config_string(t->cfg, "model.vae");
  char path[1200];
  uint64_t h = fnv(0xcbf29ce484222325ull, "vkpeft-latents-v1", 17);
  static const char *const files[] = {"config.json", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    if (vae) snprintf(path, sizeof path, "%s/%s", vae, files[i]);   // model.vae replaces the pipeline's vae/
    else snprintf(path, sizeof path, "%s/vae/%s", dir, files[i]);
    h = hash_file(h, path);
  }
  int32_t v[3] = {t->resolution, (int32_t)t->alpha, variants};
  h = fnv(h, v, sizeof v);
  if (t->dx.cover) {   // a bucket's size (resized to cover, center-cropped): its own folder
    int32_t b[3] = {t->dx.px_w, t->dx.px_h, 0x62756b74};
    h = fnv(h, b, sizeof b);
  }
  return h;
}

// The cache folder of these settings (data.cache_dir, else the user's cache).
static void cache_folder(const vkp_dtrainer *t, int variants, char *out, size_t cap) {
  const char *base = vkp_config_string(t->cfg, "data.cache_dir"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  char def[1100];
  if (!base) {
    if (xdg && *xdg) snprintf(def, sizeof def, "%s/vkpeft/latents", xdg);
    else snprintf(def, sizeof def, "%s/.cache/vkpeft/latents", home && *home ? home : "/tmp");
    base = def;
  }
  snprintf(out, cap, "%s/%016llx", base, (unsigned long long)settings_hash(t, variants));
}

// ---- encoding ------------------------------------------------------------------------------------------

static vkp_status build_encoder(vkp_dtrainer *t, vkp_error *err) {
  const vkp_vae_config *vc = &t->vae->cfg;
  if (vc->in_channels != 3) return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "the VAE takes %d channels; training feeds RGB", vc->in_channels);
  size_t R = (size_t)t->resolution, f = (size_t)t->factor;   // buffers for data.resolution², the largest area (buckets)
  size_t item = (size_t)t->latent_c * (R / f) * (R / f);
  if (!t->enc_in) t->enc_in = calloc(VKP_DTRAIN_ENCODE_BATCH * 3 * R * R, sizeof(float));
  if (!t->enc_mu) t->enc_mu = calloc(VKP_DTRAIN_ENCODE_BATCH * item, sizeof(float));
  if (!t->enc_lv) t->enc_lv = calloc(VKP_DTRAIN_ENCODE_BATCH * item, sizeof(float));
  if (!t->enc_in || !t->enc_mu || !t->enc_lv) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  VKP_TRY(vkp_graph_new(t->ctx, &t->enc_g));
  t->enc_x = vkp_tensor_input(t->enc_g, "image", VKP_DTYPE_F32, 4, (int64_t[]){VKP_DTRAIN_ENCODE_BATCH, 3, t->dx.px_h, t->dx.px_w});
  vkp_status st = vkp_vae_encode(t->vae, t->enc_g, t->enc_x, &t->enc_mean, &t->enc_logvar);
  if (!st) vkp_graph_output(t->enc_g, t->enc_mean), vkp_graph_output(t->enc_g, t->enc_logvar);
  if (!st) st = vkp_graph_compile(t->enc_g);
  if (st) return vkp_error_set(err, st, "building the VAE encoder: %s", vkp_graph_status(t->enc_g) ? vkp_graph_error(t->enc_g) : vkp_ctx_error(t->ctx));
  return VKP_OK;
}

// The alpha plane a (px_h x px_w), area-averaged over each latent pixel's f x f block (torch's interpolate "area").
static void area_mask(const vkp_dtrainer *t, const float *a, float *mask) {
  const int f = t->factor, h = t->latent_h, w = t->latent_w;
  const size_t R = (size_t)t->dx.px_w;   // row stride
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double s = 0;
      for (int dy = 0; dy < f; dy++)
        for (int dx = 0; dx < f; dx++) s += a[(size_t)(y * f + dy) * R + (size_t)(x * f + dx)];
      mask[y * w + x] = (float)(s / (f * f));
    }
}

vkp_status vkp_dtrain_encode(vkp_dtrainer *t, const float *px, int n, float *mean, float *std, float *mask, vkp_error *err) {
  if (!t->enc_g) VKP_TRY(build_encoder(t, err));
  const size_t hw = (size_t)t->dx.px_w * t->dx.px_h, item = (size_t)t->latent_c * t->latent_h * t->latent_w;
  const size_t mi = (size_t)t->latent_h * t->latent_w, E = VKP_DTRAIN_ENCODE_BATCH;
  for (int done = 0; done < n; done += (int)E) {
    int m = n - done < (int)E ? n - done : (int)E;
    for (int k = 0; k < m; k++) memcpy(t->enc_in + (size_t)k * 3 * hw, px + (size_t)(done + k) * 4 * hw, 3 * hw * sizeof(float));
    float *lv = t->enc_lv;
    vkp_status st = vkp_graph_set_input(t->enc_g, t->enc_x, t->enc_in, E * 3 * hw * sizeof(float));
    if (!st) st = vkp_graph_run(t->enc_g);
    if (!st) st = vkp_graph_read(t->enc_g, t->enc_mean, t->enc_mu, E * item * sizeof(float));
    if (!st) st = vkp_graph_read(t->enc_g, t->enc_logvar, lv, E * item * sizeof(float));
    if (st) return vkp_error_set(err, st, "encoding images with the VAE: %s", vkp_ctx_error(t->ctx));
    memcpy(mean + (size_t)done * item, t->enc_mu, (size_t)m * item * sizeof(float));
    for (size_t i = 0; i < (size_t)m * item; i++) std[(size_t)done * item + i] = expf(0.5f * lv[i]);
    for (int k = 0; k < m; k++) area_mask(t, px + (size_t)(done + k) * 4 * hw + 3 * hw, mask + (size_t)(done + k) * mi);
  }
  return VKP_OK;
}

// Mirrors a (planes, H, W) array left to right in place.
static void flip_planes(float *v, int planes, int H, int W) {
  for (int p = 0; p < planes; p++)
    for (int y = 0; y < H; y++) {
      float *row = v + ((size_t)p * H + y) * W;
      for (int x = 0; x < W / 2; x++) {
        float tmp = row[x];
        row[x] = row[W - 1 - x], row[W - 1 - x] = tmp;
      }
    }
}

static void image_file(const char *folder, const vkp_pairs *p, size_t i, char *out, size_t cap) {
  const char *src = p->images->paths && p->images->paths[i] ? p->images->paths[i] : p->keys[i];
  uint64_t h = hash_file(0xcbf29ce484222325ull, src);
  snprintf(out, cap, "%s/%016llx.safetensors", folder, (unsigned long long)h);
}

// Reads a cache file into slot `slot`; false when it is missing or does not fit (then re-encoded).
static bool read_cached(const char *path, size_t slot, vkp_latent_store *s) {
  vkp_safetensors *sf = NULL;
  if (vkp_safetensors_open(path, &sf, NULL)) return false;
  size_t k = slot * (size_t)s->variants, V = (size_t)s->variants;
  bool ok = !vkp_safetensors_read_f32(sf, "mean", s->mean + k * s->item, V * s->item, NULL) &&
            !vkp_safetensors_read_f32(sf, "std", s->std + k * s->item, V * s->item, NULL) &&
            !vkp_safetensors_read_f32(sf, "mask", s->mask + k * s->mask_item, V * s->mask_item, NULL);
  vkp_safetensors_free(sf);
  return ok;
}

static vkp_status write_cached(const vkp_dtrainer *t, const char *path, const char *src, size_t slot, const vkp_latent_store *s,
                               vkp_error *err) {
  vkp_safetensors_writer *w = NULL;
  VKP_TRY(vkp_safetensors_writer_new(&w, err));
  size_t k = slot * (size_t)s->variants;
  int64_t lshape[4] = {s->variants, t->latent_c, t->latent_h, t->latent_w}, mshape[3] = {s->variants, t->latent_h, t->latent_w};
  vkp_status st = vkp_safetensors_writer_add_f32(w, "mean", VKP_DTYPE_F32, 4, lshape, s->mean + k * s->item, err);
  if (!st) st = vkp_safetensors_writer_add_f32(w, "std", VKP_DTYPE_F32, 4, lshape, s->std + k * s->item, err);
  if (!st) st = vkp_safetensors_writer_add_f32(w, "mask", VKP_DTYPE_F32, 3, mshape, s->mask + k * s->mask_item, err);
  if (!st) st = vkp_safetensors_writer_set_metadata(w, "image", src, err);
  if (!st) st = vkp_safetensors_writer_save(w, path, err);
  vkp_safetensors_writer_free(w);
  return st;
}

vkp_status vkp_dtrain_latents(vkp_dtrainer *t, const vkp_pairs *p, const size_t *idx, size_t n, int variants,
                              vkp_latent_store *s, vkp_error *err) {
  s->n = n, s->variants = variants;
  s->item = (size_t)t->latent_c * t->latent_h * t->latent_w, s->mask_item = (size_t)t->latent_h * t->latent_w;
  size_t slots = n * (size_t)variants;
  s->mean = malloc(slots * s->item * sizeof(float));
  s->std = malloc(slots * s->item * sizeof(float));
  s->mask = malloc(slots * s->mask_item * sizeof(float));
  if (!s->mean || !s->std || !s->mask) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory (latents of %zu images)", n);
  char folder[1200], path[1300];
  cache_folder(t, variants, folder, sizeof folder);
  if (t->cache_latents) VKP_TRY(vkp_dir_create(folder, err));
  // Images not in the cache are encoded VKP_DTRAIN_ENCODE_BATCH variants at a time.
  const size_t V = (size_t)variants, per = VKP_DTRAIN_ENCODE_BATCH / V, hw = (size_t)t->dx.px_w * t->dx.px_h;
  size_t pending[VKP_DTRAIN_ENCODE_BATCH], np = 0;
  for (size_t j = 0; j <= n; j++) {
    size_t i = idx && j < n ? idx[j] : j;
    if (j < n) {
      image_file(folder, p, i, path, sizeof path);
      if (t->cache_latents && read_cached(path, j, s)) {
        t->latents_reused++;
        continue;
      }
      pending[np++] = j;
    }
    if (np == 0 || (np < per && j < n)) continue;
    for (size_t q = 0; q < np; q++) {   // the pending images' variants, then one encode
      size_t ii = idx ? idx[pending[q]] : pending[q];
      float *px = t->pix + q * V * 4 * hw;
      VKP_TRY(vkp_dtrain_pixels(t, p, ii, px, err));
      if (V == 2) memcpy(px + 4 * hw, px, 4 * hw * sizeof(float)), flip_planes(px + 4 * hw, 4, t->dx.px_h, t->dx.px_w);
    }
    const size_t C = t->enc_cap;
    VKP_TRY(vkp_dtrain_encode(t, t->pix, (int)(np * V), t->scratch, t->scratch + C * s->item, t->scratch + 2 * C * s->item, err));
    for (size_t q = 0; q < np; q++) {
      size_t k = pending[q] * V, ii = idx ? idx[pending[q]] : pending[q];
      memcpy(s->mean + k * s->item, t->scratch + q * V * s->item, V * s->item * sizeof(float));
      memcpy(s->std + k * s->item, t->scratch + (C + q * V) * s->item, V * s->item * sizeof(float));
      memcpy(s->mask + k * s->mask_item, t->scratch + 2 * C * s->item + q * V * s->mask_item,
             V * s->mask_item * sizeof(float));
      t->latents_encoded++;
      const char *src = p->images->paths && p->images->paths[ii] ? p->images->paths[ii] : p->keys[ii];
      image_file(folder, p, ii, path, sizeof path);
      if (t->cache_latents) VKP_TRY(write_cached(t, path, src, pending[q], s, err));
    }
    np = 0;
  }
  return VKP_OK;
}

void vkp_latent_store_free(vkp_latent_store *s) {
  free(s->mean), free(s->std), free(s->mask);
  memset(s, 0, sizeof *s);
}
