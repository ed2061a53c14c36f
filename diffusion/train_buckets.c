// train_buckets.c — aspect-ratio bucketing for the diffusion trainer (data.buckets, kohya's
// enable_bucket): the bucket sizes of kohya's make_bucket_resolutions, each image in the bucket of
// the closest aspect ratio (kohya's BucketManager.select_bucket), resized to cover it and cropped;
// one loader per bucket and a seeded order of the epoch's batches over the buckets, so every
// micro-batch has one size and a resumed run draws the same batches. A bucket's last batch may be
// short: it is padded with samples of weight 0 (kohya trains the short batch as it is). Each
// bucket has its own training graph and VAE encoder, swapped into t->tg / t->enc_g when selected.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"
#include "vkp_config.h"
#include "vkp_fileio.h"
#include "vkp_rng.h"
#include "vkp_strbuf.h"

enum { STREAM_BUCKET_ORDER = 0xb0c4, STREAM_BUCKET_LOADER = 0xb1d5 };

// ---- keys ----------------------------------------------------------------------------------------

vkp_status vkp_dtrain_data_keys(vkp_dtrainer *t, vkp_error *err) {
  const cJSON *c = t->cfg;
  vkp_dtrain_data_extra *x = &t->dx;
  vkp_dtrain_shape(t, t->resolution, t->resolution, false);
  VKP_TRY(vkp_config_real(c, "train.prior_loss_weight", 0, 1e6, &x->prior_loss_weight, err));
  x->buckets = vkp_config_bool(c, "data.buckets");
  if (!x->buckets) return VKP_OK;
  long R = t->resolution, steps, mn, mx;
  int multiple = t->factor << (t->unet->cfg.n_blocks - 1);
  if (multiple < 8) multiple = 8;
  VKP_TRY(vkp_config_int(c, "data.bucket_reso_steps", 0, 8192, &steps, err));
  VKP_TRY(vkp_config_int(c, "data.min_bucket_reso", 0, 65536, &mn, err));
  VKP_TRY(vkp_config_int(c, "data.max_bucket_reso", 0, 65536, &mx, err));
  if (steps == 0) steps = multiple;
  if (steps % multiple)
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.bucket_reso_steps' (%ld) must be a multiple of %d (VAE factor %d x UNet downsampling %d, at least 8)",
                         steps, multiple, t->factor, 1 << (t->unet->cfg.n_blocks - 1));
  if (steps > R)
    return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.bucket_reso_steps' (%ld) exceeds data.resolution (%ld)", steps, R);
  if (mn == 0) mn = R / 2 / steps * steps > steps ? R / 2 / steps * steps : steps;   // kohya: 256 at 512
  if (mx == 0) mx = (2 * R + steps - 1) / steps * steps;                            // kohya: 1024 at 512
  if (mn % steps) return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.min_bucket_reso' (%ld) must be a multiple of data.bucket_reso_steps (%ld)", mn, steps);
  if (mx % steps) return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.max_bucket_reso' (%ld) must be a multiple of data.bucket_reso_steps (%ld)", mx, steps);
  if (mn > mx) return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.min_bucket_reso' (%ld) exceeds data.max_bucket_reso (%ld): no bucket fits", mn, mx);
  if (mx < R) return vkp_error_set(err, VKP_ERR_INVALID, "config: key 'data.max_bucket_reso' (%ld) must be at least data.resolution (%ld)", mx, R);
  x->min_reso = mn, x->max_reso = mx, x->reso_steps = steps;
  return VKP_OK;
}

// ---- bucket sizes and assignment (kohya's model_util / train_util) -------------------------------------

static void add_reso(int *out, int *n, int cap, int w, int h) {
  for (int i = 0; i < *n; i++)
    if (out[2 * i] == w && out[2 * i + 1] == h) return;
  if (*n < cap) out[2 * *n] = w, out[2 * *n + 1] = h, (*n)++;
}

static int cmp_reso(const void *a, const void *b) {
  const int *p = a, *q = b;
  return p[0] != q[0] ? (p[0] > q[0]) - (p[0] < q[0]) : (p[1] > q[1]) - (p[1] < q[1]);
}

int vkp_dtrain_bucket_resos(int resolution, int min, int max, int steps, int *out, int cap) {
  const long area = (long)resolution * resolution;
  int n = 0, side = (int)((long)sqrt((double)area) / steps) * steps;
  add_reso(out, &n, cap, side, side);
  for (int w = min; w <= max; w += steps) {
    long h = area / w / steps * steps;
    if (h > max) h = max;
    if (h >= min) add_reso(out, &n, cap, w, (int)h), add_reso(out, &n, cap, (int)h, w);
  }
  qsort(out, (size_t)n, 2 * sizeof *out, cmp_reso);
  return n;
}

// The bucket (index into resos) of a w x h image: its own size when that is a bucket, else the
// first of the closest aspect ratio; *rw x *rh: the image resized to cover it; *ar_err: bucket − image aspect.
static int select_bucket(const int *resos, int n, int w, int h, int *rw, int *rh, double *ar_err) {
  double ar = (double)w / h;
  int k = -1;
  for (int i = 0; i < n && k < 0; i++)
    if (resos[2 * i] == w && resos[2 * i + 1] == h) k = i;
  for (int i = 0; k < 0 && i < n; i++) {
    int best = 0;
    for (int j = 1; j < n; j++)
      if (fabs((double)resos[2 * j] / resos[2 * j + 1] - ar) < fabs((double)resos[2 * best] / resos[2 * best + 1] - ar)) best = j;
    k = best;
  }
  double bw = resos[2 * k], bh = resos[2 * k + 1], scale = ar > bw / bh ? bh / h : bw / w;
  *rw = (int)(w * scale + 0.5), *rh = (int)(h * scale + 0.5);
  if (*rw < (int)bw) *rw = (int)bw;   // float slack: never below the bucket
  if (*rh < (int)bh) *rh = (int)bh;
  *ar_err = bw / bh - ar;
  return k;
}

// ---- batches -------------------------------------------------------------------------------------------

static vkp_data_transform bucket_transform(const vkp_dtrainer *t, const vkp_dtrain_bucket *b) {
  if (!t->random_crop) return (vkp_data_transform){.out_w = 1, .out_h = 1, .out_channels = 4};
  float ratio = (float)b->width / (float)b->height;   // RandomResizedCrop at the bucket's aspect ratio
  return (vkp_data_transform){.out_w = b->width, .out_h = b->height, .out_channels = 4, .crop = VKP_CROP_RANDOM_RESIZED,
                              .scale_min = (float)t->crop_scale, .scale_max = 1, .ratio_min = ratio, .ratio_max = ratio,
                              .hflip = (float)t->hflip};
}

// The order of epoch e's batches: bucket k batches[k] times, shuffled by (seed, e).
static void order_for(vkp_dtrainer *t, int64_t e) {
  vkp_dtrain_data_extra *x = &t->dx;
  if (x->order_epoch == e) return;
  size_t n = 0;
  for (int k = 0; k < x->n; k++)
    for (int64_t j = 0; j < x->b[k].batches; j++) x->order[n++] = k;
  vkp_rng r = vkp_rng_new(vkp_rng_key(t->k.seed ^ STREAM_BUCKET_ORDER, (uint64_t)e, 0));
  vkp_rng_shuffle(&r, x->order, n, sizeof *x->order, n);
  x->order_epoch = e;
}

// The bucket histogram as kohya's bucket_info: {"buckets": {"0": {"resolution": [w, h], "count": n}, ...},
// "mean_img_ar_error": e}.
static char *bucket_info_json(const vkp_dtrain_data_extra *x) {
  vkp_strbuf s = {0};
  char f[40];
  vkp_strbuf_puts(&s, "{\"buckets\": {");
  for (int k = 0; k < x->n; k++)
    vkp_strbuf_printf(&s, "%s\"%d\": {\"resolution\": [%d, %d], \"count\": %lld}", k ? ", " : "", k, x->b[k].width, x->b[k].height,
                      (long long)x->b[k].samples);
  vkp_dtrain_py_float(x->mean_ar_error, f, sizeof f);
  vkp_strbuf_printf(&s, "}, \"mean_img_ar_error\": %s}", f);
  if (s.oom) free(s.p), s.p = NULL;
  return s.p;
}

vkp_status vkp_dtrain_buckets_make(vkp_dtrainer *t, vkp_error *err) {
  vkp_dtrain_data_extra *x = &t->dx;
  const vkp_dataset *ds = t->train->images;
  const size_t N = ds->count;
  enum { CAP = 512 };
  int resos[2 * CAP], *id = NULL;
  int nr = vkp_dtrain_bucket_resos(t->resolution, (int)x->min_reso, (int)x->max_reso, (int)x->reso_steps, resos, CAP);
  x->bucket_of = malloc(N * sizeof *x->bucket_of);
  x->slot_of = calloc(N, sizeof *x->slot_of);
  x->resized = calloc(2 * N, sizeof *x->resized);
  id = malloc((size_t)nr * sizeof *id);
  if (!x->bucket_of || !x->slot_of || !x->resized || !id) {
    free(id);
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  for (size_t i = 0; i < N; i++) x->bucket_of[i] = -1;
  for (int k = 0; k < nr; k++) id[k] = -1;
  double ar_sum = 0;
  for (size_t j = 0; j < t->n_train; j++) {   // kohya: sizes, then the buckets used, in size order
    size_t i = t->train_idx[j];
    double e;
    x->bucket_of[i] = select_bucket(resos, nr, ds->widths[i], ds->heights[i], &x->resized[2 * i], &x->resized[2 * i + 1], &e);
    id[x->bucket_of[i]] = 0;
    ar_sum += fabs(e);
  }
  x->mean_ar_error = t->n_train ? ar_sum / (double)t->n_train : 0;
  for (int k = 0; k < nr; k++)
    if (!id[k]) id[k] = x->n++;
  x->b = calloc((size_t)x->n + 1, sizeof *x->b);
  if (!x->b) {
    free(id);
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  for (int k = 0; k < nr; k++)
    if (id[k] >= 0) x->b[id[k]].width = resos[2 * k], x->b[id[k]].height = resos[2 * k + 1];
  free(id);
  x->b[x->n].width = x->b[x->n].height = t->resolution;
  x->cur = x->n;
  for (size_t j = 0; j < t->n_train; j++) {
    size_t i = t->train_idx[j];
    int w = resos[2 * x->bucket_of[i]], h = resos[2 * x->bucket_of[i] + 1], k = 0;
    while (x->b[k].width != w || x->b[k].height != h) k++;
    x->bucket_of[i] = k;   // from an index into resos to the bucket's id
    vkp_dtrain_bucket *b = &x->b[k];
    size_t *grown = realloc(b->images, (b->n_images + 1) * sizeof *grown);
    if (!grown) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    b->images = grown;
    x->slot_of[i] = b->n_images;
    b->images[b->n_images++] = i;
    b->samples += t->train->repeats[i];
  }
  x->steps_per_epoch = 0;
  for (int k = 0; k < x->n; k++) {
    vkp_dtrain_bucket *b = &x->b[k];
    b->batches = (b->samples + t->k.batch - 1) / t->k.batch;
    x->steps_per_epoch += b->batches;
    vkp_data_transform tf = bucket_transform(t, b);
    vkp_loader_opts lo = {.batch_size = (int)t->k.batch, .shuffle = true, .drop_last = false,
                          .seed = vkp_rng_key(t->k.seed ^ STREAM_BUCKET_LOADER, (uint64_t)k, 0),
                          .n_workers = (int)vkp_config_number(t->cfg, "data.workers"), .indices = b->images,
                          .n_indices = b->n_images, .first_caption = t->first_caption};
    VKP_TRY(vkp_pairs_loader_new(t->train, &tf, &lo, &b->loader, err));
  }
  if (!(x->order = malloc((size_t)x->steps_per_epoch * sizeof *x->order))) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  x->order_epoch = -1;
  if (t->ck) {   // resume: the epoch's batches before pos were drawn; each loader continues after its own
    x->epoch = t->ck->state.loader_epoch, x->pos = t->ck->state.loader_step;
    order_for(t, x->epoch);
    for (int k = 0; k < x->n; k++) {
      int64_t used = 0;
      for (int64_t j = 0; j < x->pos && j < x->steps_per_epoch; j++) used += x->order[j] == k;
      VKP_TRY(used < x->b[k].batches ? vkp_loader_seek(x->b[k].loader, x->epoch, used, err) : vkp_loader_seek(x->b[k].loader, x->epoch + 1, 0, err));
    }
  }
  if (!(x->bucket_info = bucket_info_json(x))) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  if (!t->quiet) {
    printf("vkpeft train: aspect-ratio buckets (images with repeats):");
    for (int k = 0; k < x->n; k++) printf(" %dx%d: %lld%s", x->b[k].width, x->b[k].height, (long long)x->b[k].samples, k + 1 < x->n ? "," : "");
    printf("; mean aspect-ratio error %.4f\n", x->mean_ar_error);
  }
  return VKP_OK;
}

vkp_status vkp_dtrain_buckets_latents(vkp_dtrainer *t, int variants, vkp_error *err) {
  vkp_dtrain_data_extra *x = &t->dx;
  for (int k = 0; k < x->n && !t->random_crop; k++) {   // random crops are encoded in the step
    VKP_TRY(vkp_dtrain_bucket_select(t, k, err));
    VKP_TRY(vkp_dtrain_latents(t, t->train, x->b[k].images, x->b[k].n_images, variants, &x->b[k].lat, err));
  }
  VKP_TRY(vkp_dtrain_bucket_select(t, x->n, err));
  for (int k = 0; k < x->n && !t->random_crop; k++) vkp_graph_free(x->b[k].enc_g), x->b[k].enc_g = NULL;   // done with them
  return VKP_OK;
}

void vkp_dtrain_shape(vkp_dtrainer *t, int w, int h, bool cover) {
  t->dx.px_w = w, t->dx.px_h = h, t->dx.cover = cover;
  t->latent_w = w / t->factor, t->latent_h = h / t->factor;
}

vkp_status vkp_dtrain_bucket_select(vkp_dtrainer *t, int k, vkp_error *err) {
  vkp_dtrain_data_extra *x = &t->dx;
  vkp_dtrain_bucket *b = &x->b[k];
  if (k != x->cur) {
    vkp_dtrain_bucket *o = &x->b[x->cur];
    o->tg = t->tg, o->enc_g = t->enc_g, o->enc_x = t->enc_x, o->enc_mean = t->enc_mean, o->enc_logvar = t->enc_logvar;
    t->tg = b->tg, t->enc_g = b->enc_g, t->enc_x = b->enc_x, t->enc_mean = b->enc_mean, t->enc_logvar = b->enc_logvar;
    b->tg = (vkp_loss_graph){0}, b->enc_g = NULL;
    x->cur = k;
  }
  vkp_dtrain_shape(t, b->width, b->height, k < x->n);
  if (!t->tg.g && t->o.opt && k < x->n) VKP_TRY(vkp_dtrain_build_graph(t, &t->tg, (int)t->k.batch, true, err));
  return VKP_OK;
}

vkp_status vkp_dtrain_next_batch(vkp_dtrainer *t, vkp_batch *out, vkp_error *err) {
  vkp_dtrain_data_extra *x = &t->dx;
  if (!x->buckets) {
    VKP_TRY(vkp_loader_next(t->loader, out, err));
  } else {
    if (x->pos >= x->steps_per_epoch) x->epoch++, x->pos = 0;
    order_for(t, x->epoch);
    int k = x->order[x->pos++];
    VKP_TRY(vkp_dtrain_bucket_select(t, k, err));
    VKP_TRY(vkp_loader_next(x->b[k].loader, out, err));
  }
  x->last_n = out->n;
  return VKP_OK;
}

void vkp_dtrain_tell(const vkp_dtrainer *t, int64_t *epoch, int64_t *step) {
  const vkp_dtrain_data_extra *x = &t->dx;
  if (!x->buckets) return vkp_loader_tell(t->loader, epoch, step);
  bool wrap = x->pos >= x->steps_per_epoch;
  *epoch = x->epoch + wrap, *step = wrap ? 0 : x->pos;
}

int64_t vkp_dtrain_steps_per_epoch(const vkp_dtrainer *t) {
  return t->dx.buckets ? t->dx.steps_per_epoch : vkp_loader_steps_per_epoch(t->loader);
}

size_t vkp_dtrain_epoch_samples(const vkp_dtrainer *t) {
  if (!t->dx.buckets) return vkp_loader_epoch_samples(t->loader);
  size_t n = 0;
  for (int k = 0; k < t->dx.n; k++) n += (size_t)t->dx.b[k].samples;
  return n;
}

vkp_status vkp_dtrain_write_bucket_info(vkp_dtrainer *t, vkp_error *err) {
  if (!t->dx.bucket_info) return VKP_OK;
  char path[1200];
  snprintf(path, sizeof path, "%s/buckets.json", t->dir);
  const void *chunk[2] = {t->dx.bucket_info, "\n"};
  size_t len[2] = {strlen(t->dx.bucket_info), 1};
  return vkp_file_write_atomic(path, chunk, len, 2, err);
}

uint64_t vkp_dtrain_arena_bytes(const vkp_dtrainer *t) {
  uint64_t n = t->tg.g ? vkp_graph_get_stats(t->tg.g).arena_bytes : 0;
  for (int k = 0; k < t->dx.n; k++)
    if (t->dx.b[k].tg.g) n += vkp_graph_get_stats(t->dx.b[k].tg.g).arena_bytes;
  return n;
}

void vkp_dtrain_data_extra_free(vkp_dtrainer *t) {
  vkp_dtrain_data_extra *x = &t->dx;
  for (int k = 0; x->b && k <= x->n; k++) {
    vkp_dtrain_bucket *b = &x->b[k];
    vkp_graph_free(b->tg.g);
    vkp_graph_free(b->enc_g);
    vkp_loader_free(b->loader);
    vkp_latent_store_free(&b->lat);
    free(b->images);
  }
  free(x->b), free(x->bucket_of), free(x->slot_of), free(x->resized), free(x->order), free(x->sample_w);
  free(x->dataset_dirs), free(x->reg_dataset_dirs), free(x->tag_frequency), free(x->bucket_info);
  memset(x, 0, sizeof *x);
}
