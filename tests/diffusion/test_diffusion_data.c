// test_diffusion_data.c — the diffusion trainer's data features on the tiny pipeline of
// train_fixture.h (resolution 16, VAE factor 2):
//   (a) aspect-ratio buckets: every image's bucket and cover size against a float64 reference of
//       kohya's make_bucket_resolutions + select_bucket written here, the histogram (kohya's
//       bucket_info JSON), every micro-batch of one bucket (its latent shape, padding of weight 0),
//       each image drawn `repeats` times an epoch, the objective of a padded batch in float64, one
//       latent-cache folder per bucket holding latents of the bucket's shape;
//   (b) --resume with buckets (and regularisation images, random crops) continues bit for bit;
//   (c) regularisation images: kohya's repeats rule (as many reg samples as training samples),
//       the loss factor train.prior_loss_weight (0.5 and 0) in the objective against float64;
//   (d) a run's reg_share / loss_reg metrics over one epoch, buckets.json, and kohya's metadata
//       (ss_bucket_info, ss_dataset_dirs, ss_reg_dataset_dirs, ss_tag_frequency, ...) by value;
//   (e) bucket settings that cannot work: exit status 2 naming the key.
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vkp_cli_run.h"
#include "vkp_config.h"
#include "vkp_diffusion_train.h"
#include "vkp_fileio.h"
#include "vkp_metrics.h"
#include "vkp_png.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"
#include "train_internal.h"
#include "train_fixture.h"

static char ar_dir[400], reg_dir[400], reg3_dir[400];

// The images of ar/2_ar: sizes with aspect ratios 1, 2 (a tie between two buckets), 3 (a bucket's
// own size), 3.33, 0.3, 0.3.
#define N_AR 6
static const int AR_W[N_AR] = {16, 32, 24, 40, 12, 9}, AR_H[N_AR] = {16, 16, 8, 12, 40, 30};
#define N_REG 5

static void write_image(const char *dir, const char *stem, int w, int h, int seed, const char *caption) {
  vkp_image *img = NULL;
  vkp_error err = {0};
  char path[600];
  if (vkp_image_new(w, h, 4, &img, &err)) fail_msg("%s", err.msg);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t *px = img->data + ((size_t)y * w + x) * 4;
      for (int c = 0; c < 3; c++) px[c] = (uint8_t)(RGB[seed % 3][c] + ((x * 3 + y * 5 + c + seed) % 7) * 3);
      px[3] = (uint8_t)(128 + ((x + y + seed) % 2) * 127);
    }
  snprintf(path, sizeof path, "%s/%s.png", dir, stem);
  if (vkp_png_write(path, img, NULL, 0, &err)) fail_msg("%s", err.msg);
  vkp_image_free(img);
  snprintf(path, sizeof path, "%s/%s.txt", dir, stem);
  write_text(path, caption);
}

static int setup_group(void **state) {
  if (make_fixture(state)) return -1;
  vkp_error err = {0};
  char d[500], stem[32], cap[96];
  snprintf(ar_dir, sizeof ar_dir, "%s/ar", tmp_root);
  snprintf(reg_dir, sizeof reg_dir, "%s/reg", tmp_root);
  snprintf(reg3_dir, sizeof reg3_dir, "%s/reg3", tmp_root);
  snprintf(d, sizeof d, "%s/2_ar", ar_dir);
  if (vkp_dir_create(d, &err)) fail_msg("%s", err.msg);
  for (int i = 0; i < N_AR; i++) {
    snprintf(stem, sizeof stem, "img_%d", i);
    snprintf(cap, sizeof cap, "%s, %s, flat icon\n", COLORS[i % 3], i % 2 ? "square" : "circle");
    write_image(d, stem, AR_W[i], AR_H[i], i, cap);
  }
  const char *reg_sub[2] = {"1_cls", "3_cls"}, *reg_root[2] = {reg_dir, reg3_dir};
  for (int r = 0; r < 2; r++) {
    snprintf(d, sizeof d, "%s/%s", reg_root[r], reg_sub[r]);
    if (vkp_dir_create(d, &err)) fail_msg("%s", err.msg);
    for (int i = 0; i < N_REG; i++) {
      snprintf(stem, sizeof stem, "reg_%d", i);
      write_image(d, stem, 16, 16, 10 + i, "A Shape, plain");
    }
  }
  return 0;
}

// ---- the float64 reference of kohya's bucket rule ---------------------------------------------------------

typedef struct ref_reso {
  int w, h;
} ref_reso;

// make_bucket_resolutions(max_reso=(R, R), min, max, divisible): a set of (w, h), sorted.
static int ref_resos(int R, int mn, int mx, int div, ref_reso *out) {
  ref_reso all[256];
  int n = 0;
  double area = (double)R * R;
  int side = (int)floor(sqrt(area) / div) * div;
  all[n++] = (ref_reso){side, side};
  for (int w = mn; w <= mx; w += div) {
    int h = (int)floor(floor(area / w) / div) * div;
    if (h > mx) h = mx;
    if (h >= mn) all[n++] = (ref_reso){w, h}, all[n++] = (ref_reso){h, w};
  }
  int m = 0;   // set(), then sorted()
  for (int i = 0; i < n; i++) {
    bool dup = false;
    for (int j = 0; j < m; j++) dup |= out[j].w == all[i].w && out[j].h == all[i].h;
    if (dup) continue;
    int k = m++;
    while (k > 0 && (out[k - 1].w > all[i].w || (out[k - 1].w == all[i].w && out[k - 1].h > all[i].h))) out[k] = out[k - 1], k--;
    out[k] = all[i];
  }
  return m;
}

// select_bucket without upscale limits: the size itself if predefined, else np.argmin of |ar errors|.
static ref_reso ref_select(const ref_reso *r, int n, int w, int h, int *rw, int *rh, double *ar_err) {
  double ar = (double)w / (double)h;
  int k = -1;
  for (int i = 0; i < n; i++)
    if (r[i].w == w && r[i].h == h) k = i;
  if (k < 0) {
    double best = INFINITY;
    for (int i = 0; i < n; i++) {
      double e = fabs((double)r[i].w / r[i].h - ar);
      if (e < best) best = e, k = i;
    }
  }
  double rar = (double)r[k].w / r[k].h, scale = ar > rar ? (double)r[k].h / h : (double)r[k].w / w;
  *rw = (int)(w * scale + 0.5), *rh = (int)(h * scale + 0.5);
  *ar_err = rar - ar;
  return r[k];
}

// The image index of `path` ("…/img_3.png" -> 3, "…/reg_1.png" -> N_AR + 1).
static int image_of(const char *path) {
  const char *b = strrchr(path, '/');
  b = b ? b + 1 : path;
  return !strncmp(b, "img_", 4) ? atoi(b + 4) : N_AR + atoi(b + 4);
}

static ref_reso bucket_of_image(int i) {
  ref_reso r[64];
  int n = ref_resos(RES, 8, 32, 8, r), rw, rh;
  double e;
  return i < N_AR ? ref_select(r, n, AR_W[i], AR_H[i], &rw, &rh, &e) : (ref_reso){16, 16};
}

static cJSON *data_config(const char *dir, const char *const *extra, int n_extra) {
  char d[500], c[500];
  snprintf(d, sizeof d, "data.train=%s", ar_dir);
  snprintf(c, sizeof c, "data.cache_dir=%s/cache_%s", tmp_root, strrchr(dir, '/') + 1);
  const char *sets[24] = {d, c, "train.batch_size=3", "train.lr=0.01"};
  memcpy(sets + 4, extra, (size_t)n_extra * sizeof *sets);
  return config(dir, sets, n_extra + 4);
}

static vkp_diffusion_trainer *new_trainer(const char *tag, const char *const *extra, int n_extra, cJSON **cfg) {
  char dir[400];
  out_path(tag, dir, sizeof dir);
  *cfg = data_config(dir, extra, n_extra);
  vkp_diffusion_trainer *t = NULL;
  vkp_error err = {0};
  if (vkp_diffusion_trainer_new(vkp_test_ctx(), *cfg, NULL, true, &t, &err)) fail_msg("%s: %s", tag, err.msg);
  return t;
}

// The objective of the recorded batch in float64: mean over the n samples (padding excluded) of
// sample weight · min-SNR weight · mean over (C, h, w) of mask · (pred − target)².
static double ref_objective(const vkp_diffusion_batch_record *rec) {
  const size_t hw = (size_t)rec->height * rec->width, item = hw * rec->channels;
  double sum = 0;
  for (int s = 0; s < rec->n_images; s++) {
    double se = 0;
    for (size_t i = 0; i < item; i++) {
      double d = (double)rec->pred[s * item + i] - rec->target[s * item + i];
      se += rec->mask[s * hw + i % hw] * d * d;
    }
    sum += (double)rec->sample_weight[s] * rec->snr_weight[s] * se / (double)item;
  }
  return sum / rec->n_images;
}

static void expect_close(const char *what, double got, double want, double rel) {
  if (!(fabs(got - want) <= rel * fabs(want) + 1e-12)) fail_msg("%s: %.9g, float64 reference %.9g", what, got, want);
}

// ---- (a) buckets ---------------------------------------------------------------------------------------------

// One cache folder per bucket (plus data.resolution² for validation), each file's latents of its bucket's shape.
static void check_cache_folders(const char *cache, int buckets) {
  DIR *d = opendir(cache);
  if (!d) fail_msg("no cache folder %s", cache);
  struct dirent *e;
  int folders = 0, bucket_folders = 0;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char sub[800];
    snprintf(sub, sizeof sub, "%.500s/%.255s", cache, e->d_name);
    DIR *f = opendir(sub);
    if (!f) continue;
    folders++;
    struct dirent *g;
    int w = -1, h = -1, files = 0;
    bool square_val = false;
    while ((g = readdir(f))) {
      if (!strstr(g->d_name, ".safetensors")) continue;
      char p[1024];
      snprintf(p, sizeof p, "%.700s/%.256s", sub, g->d_name);
      vkp_safetensors *st = NULL;
      vkp_error err = {0};
      if (vkp_safetensors_open(p, &st, &err)) fail_msg("%s", err.msg);
      const vkp_st_tensor *mean = vkp_safetensors_find(st, "mean");
      int img = image_of(vkp_safetensors_metadata(st, "image"));
      ref_reso b = bucket_of_image(img);
      int lw = (int)mean->shape[3] * 2, lh = (int)mean->shape[2] * 2;
      if (files++ && (lw != w || lh != h)) fail_msg("%s holds latents of two sizes", sub);
      w = lw, h = lh;
      if (lw == 16 && lh == 16 && (b.w != 16 || b.h != 16)) square_val = true;   // validation: every image at 16²
      else if (b.w != lw || b.h != lh) fail_msg("%s: image %d has %dx%d latents (x2), its bucket is %dx%d", p, img, lw, lh, b.w, b.h);
      vkp_safetensors_free(st);
    }
    closedir(f);
    bucket_folders += !square_val && files > 0;
  }
  closedir(d);
  printf("  latent cache: %d folders (%d buckets + data.resolution² validation latents)\n", folders, bucket_folders);
  assert_int_equal(bucket_folders, buckets);
  assert_int_equal(folders, buckets + 1);
}

static void test_buckets(void **state) {
  (void)state;
  cJSON *cfg;
  vkp_diffusion_trainer *t = new_trainer("buckets", (const char *const[]){"data.buckets=true", "train.max_steps=12"}, 2, &cfg);
  const vkp_dtrain_data_extra *x = &t->dx;
  // kohya's sizes at 16² with the scaled defaults 8 / 32 / 8 (256 / 1024 / 64 at 512²)
  assert_int_equal(x->min_reso, 8), assert_int_equal(x->max_reso, 32), assert_int_equal(x->reso_steps, 8);
  ref_reso r[64];
  int nr = ref_resos(RES, 8, 32, 8, r), got[128];
  assert_int_equal(vkp_dtrain_bucket_resos(RES, 8, 32, 8, got, 64), nr);
  for (int k = 0; k < nr; k++) assert_true(got[2 * k] == r[k].w && got[2 * k + 1] == r[k].h);
  // every image against the reference; literal spot checks of the tie (ar 2: 16x16 before 24x8) and a cover size
  double err_sum = 0;
  int64_t count[64] = {0};
  for (int i = 0; i < N_AR; i++) {
    int rw, rh;
    double e;
    ref_reso b = ref_select(r, nr, AR_W[i], AR_H[i], &rw, &rh, &e);
    const vkp_dtrain_bucket *tb = &x->b[x->bucket_of[i]];
    if (tb->width != b.w || tb->height != b.h || x->resized[2 * i] != rw || x->resized[2 * i + 1] != rh)
      fail_msg("image %dx%d: bucket %dx%d cover %dx%d, reference %dx%d cover %dx%d", AR_W[i], AR_H[i], tb->width, tb->height,
               x->resized[2 * i], x->resized[2 * i + 1], b.w, b.h, rw, rh);
    err_sum += fabs(e);
    for (int k = 0; k < nr; k++) count[k] += r[k].w == b.w && r[k].h == b.h ? 2 : 0;   // folder 2_ar: 2 repeats
  }
  assert_true(x->b[x->bucket_of[1]].width == 16 && x->b[x->bucket_of[1]].height == 16);
  assert_true(x->resized[6] == 27 && x->resized[7] == 8);   // 40x12 covers 24x8 at 27x8
  // the histogram, as kohya's bucket_info
  char want[512] = "{\"buckets\": {", f[40];
  int id = 0;
  for (int k = 0; k < nr; k++)
    if (count[k]) {
      size_t l = strlen(want);
      snprintf(want + l, sizeof want - l, "%s\"%d\": {\"resolution\": [%d, %d], \"count\": %lld}", id ? ", " : "", id, r[k].w, r[k].h,
               (long long)count[k]);
      id++;
    }
  vkp_dtrain_py_float(err_sum / N_AR, f, sizeof f);
  snprintf(want + strlen(want), sizeof want - strlen(want), "}, \"mean_img_ar_error\": %s}", f);
  if (strcmp(x->bucket_info, want)) fail_msg("bucket_info\n  %s\nwant\n  %s", x->bucket_info, want);
  assert_int_equal(x->n, id);
  int64_t steps = 0;
  for (int k = 0; k < nr; k++) steps += (count[k] + 2) / 3;
  assert_int_equal(x->steps_per_epoch, steps);
  printf("  %d buckets: %s\n", x->n, x->bucket_info);
  // two epochs of micro-batches: one bucket each, padding weighs 0, each image twice an epoch
  vkp_diffusion_trainer_record(t, true);
  int seen[2][N_AR] = {{0}}, padded = 0;
  double loss;
  vkp_error err = {0};
  for (int64_t s = 0; s < 2 * steps; s++) {
    if (vkp_diffusion_trainer_step(t, &loss, &err)) fail_msg("%s", err.msg);
    const vkp_diffusion_batch_record *rec = vkp_diffusion_trainer_last_batch(t);
    assert_int_equal(rec->n, 3);
    assert_true(rec->n_images >= 1 && rec->n_images <= 3);
    for (int k = 0; k < rec->n; k++) {
      if (k >= rec->n_images) {
        assert_true(rec->sample_weight[k] == 0);
        continue;
      }
      ref_reso b = bucket_of_image((int)rec->images[k]);
      if (b.w != 2 * rec->width || b.h != 2 * rec->height)
        fail_msg("step %lld: image %zu (bucket %dx%d) in a %dx%d batch", (long long)s, rec->images[k], b.w, b.h, 2 * rec->width, 2 * rec->height);
      seen[s / steps][rec->images[k]]++;
      assert_true(rec->sample_weight[k] == 1);
    }
    if (rec->n_images < rec->n) {
      padded++;
      expect_close("padded batch objective", rec->loss, ref_objective(rec), 1e-4);
    }
  }
  for (int e = 0; e < 2; e++)
    for (int i = 0; i < N_AR; i++)
      if (seen[e][i] != 2) fail_msg("epoch %d: image %d drawn %d times, want 2 (its repeats)", e, i, seen[e][i]);
  printf("  %lld micro-batches: one bucket each, %d padded (objective = float64 over the images), every image twice an epoch\n",
         (long long)(2 * steps), padded);
  assert_true(padded > 0);
  vkp_diffusion_trainer_free(t);
  cJSON_Delete(cfg);
  char cache[500];
  snprintf(cache, sizeof cache, "%s/cache_buckets", tmp_root);
  check_cache_folders(cache, id);
}

// ---- (b) resume with buckets -------------------------------------------------------------------------------

// 2n steps in one run and n + n resumed: the same adapter bit for bit and the same losses.
static void resume_case(const char *tag, const char *const *extra, int n_extra, int n) {
  char full[400], part[400], a[600], b[600], steps[48], stop[48], name[64];
  snprintf(name, sizeof name, "rfull_%s", tag), out_path(name, full, sizeof full);
  snprintf(name, sizeof name, "rpart_%s", tag), out_path(name, part, sizeof part);
  snprintf(steps, sizeof steps, "train.max_steps=%d", 2 * n);
  snprintf(stop, sizeof stop, "train.stop_after=%d", n);
  const char *sets[24];
  memcpy(sets, extra, (size_t)n_extra * sizeof *sets);
  sets[n_extra] = steps, sets[n_extra + 1] = stop;
  vkp_diffusion_train_summary s;
  vkp_error err = {0};
  for (int run = 0; run < 2; run++) {
    cJSON *cfg = data_config(run ? part : full, sets, n_extra + 1 + run);
    if (vkp_diffusion_train(vkp_test_ctx(), cfg, NULL, true, &s, &err)) fail_msg("%s: %s", tag, err.msg);
    cJSON_Delete(cfg);
  }
  snprintf(a, sizeof a, "%s/config.json", part);   // the resumed run must not stop again
  cJSON *saved = NULL;
  if (vkp_config_resolve(vkp_diffusion_train_defaults, a, (const char *const[]){"train.stop_after=0"}, 1, &saved, &err)) fail_msg("%s", err.msg);
  char *text = cJSON_Print(saved);
  write_text(a, text);
  free(text), cJSON_Delete(saved);
  if (vkp_diffusion_train(vkp_test_ctx(), NULL, part, true, &s, &err)) fail_msg("%s resume: %s", tag, err.msg);
  assert_int_equal(s.steps, 2 * n);
  snprintf(a, sizeof a, "%s/adapter/adapter_model.safetensors", full);
  snprintf(b, sizeof b, "%s/adapter/adapter_model.safetensors", part);
  assert_same_tensors(a, b);
  vkp_metrics_log *la = metrics_of(full), *lb = metrics_of(part);
  const vkp_metric_series *x = vkp_metrics_find(la, "loss_weighted"), *y = vkp_metrics_find(lb, "loss_weighted");
  assert_int_equal(x->n, 2 * n), assert_int_equal(y->n, 2 * n);
  for (int i = 0; i < 2 * n; i++)
    if (x->value[i] != y->value[i]) fail_msg("%s step %d: loss %.9g in one run, %.9g resumed", tag, i + 1, x->value[i], y->value[i]);
  vkp_metrics_log_free(la), vkp_metrics_log_free(lb);
  printf("  %s: %d + %d resumed steps = %d steps in one run, bit for bit\n", tag, n, n, 2 * n);
}

static void test_buckets_resume(void **state) {
  (void)state;
  char reg[500];
  snprintf(reg, sizeof reg, "data.reg=%s", reg_dir);
  // cached latents with flips, regularisation images; 10 batches an epoch: the resumed half crosses an epoch
  const char *cached[] = {"data.buckets=true", reg, "train.prior_loss_weight=0.5", "data.hflip=0.5", "data.shuffle_captions=true",
                          "data.trigger=sks", "train.log_every=1"};
  resume_case("cached", cached, 7, 6);
  const char *random[] = {"data.buckets=true", "data.crop=random", "data.hflip=0.5", "train.log_every=1"};   // encoded per step
  resume_case("random_crop", random, 4, 2);
}

// ---- (c) regularisation images ----------------------------------------------------------------------------

static void test_reg(void **state) {
  (void)state;
  char reg[500], reg3[500];
  snprintf(reg, sizeof reg, "data.reg=%s", reg_dir);
  snprintf(reg3, sizeof reg3, "data.reg=%s", reg3_dir);
  // kohya's repeats: 12 training samples (6 images x 2); 5 reg images x 1 -> 3, 3, 2, 2, 2
  cJSON *cfg;
  vkp_diffusion_trainer *t = new_trainer("reg_rule", (const char *const[]){reg3}, 1, &cfg);
  // 5 images x 3 = 15 >= 12: the first four (3 each) are used, the fifth is not
  assert_int_equal(t->dx.num_train_images, 12), assert_int_equal(t->dx.num_reg_images, 15);
  assert_int_equal(t->n_train, N_AR + 4);
  for (int j = 0; j < N_REG; j++) assert_int_equal(t->train->repeats[t->dx.n_base + j], 3);
  assert_int_equal(vkp_dtrain_epoch_samples(t), 24);   // 12 training + 12 reg samples
  vkp_diffusion_trainer_free(t), cJSON_Delete(cfg);
  const double weights[2] = {0.5, 0};
  for (int w = 0; w < 2; w++) {
    char plw[64], tag[32];
    snprintf(plw, sizeof plw, "train.prior_loss_weight=%g", weights[w]);
    snprintf(tag, sizeof tag, "reg_w%d", w);
    t = new_trainer(tag, (const char *const[]){reg, plw, "train.min_snr_gamma=5", "train.masked_loss=true", "data.trigger=sks"}, 5, &cfg);
    const int want_rep[N_REG] = {3, 3, 2, 2, 2};
    assert_int_equal(t->dx.num_reg_images, 5);
    for (int j = 0; j < N_REG; j++) assert_int_equal(t->train->repeats[t->dx.n_base + j], want_rep[j]);
    vkp_diffusion_trainer_record(t, true);
    int mixed = 0;
    double loss;
    vkp_error err = {0};
    for (int s = 0; s < 8 && mixed < 2; s++) {
      if (vkp_diffusion_trainer_step(t, &loss, &err)) fail_msg("%s", err.msg);
      const vkp_diffusion_batch_record *rec = vkp_diffusion_trainer_last_batch(t);
      int nreg = 0;
      for (int k = 0; k < rec->n_images; k++) {
        bool is_reg = rec->images[k] >= (size_t)N_AR;
        nreg += is_reg;
        assert_true(rec->sample_weight[k] == (is_reg ? (float)weights[w] : 1.0f));
      }
      expect_close("objective with regularisation images", rec->loss, ref_objective(rec), 1e-4);
      if (nreg > 0 && nreg < rec->n_images) {
        mixed++;
        if (weights[w] == 0) {   // the training samples alone, summed here without any sample weight, over the whole batch
          const size_t hw = (size_t)rec->height * rec->width, item = hw * rec->channels;
          double without = 0;
          for (int k = 0; k < rec->n_images; k++) {
            if (rec->images[k] >= (size_t)N_AR) continue;
            double se = 0;
            for (size_t i = 0; i < item; i++) se += rec->mask[k * hw + i % hw] * pow((double)rec->pred[k * item + i] - rec->target[k * item + i], 2);
            without += rec->snr_weight[k] * se / (double)item;
          }
          without /= rec->n_images;
          expect_close("prior_loss_weight 0: the training samples' objective", rec->loss, without, 1e-4);
          printf("  prior_loss_weight 0: loss %.6g = float64 over the %d training samples (/ %d) %.6g\n", rec->loss, rec->n_images - nreg,
                 rec->n_images, without);
        } else {
          printf("  prior_loss_weight %g: batch of %d reg + %d training images, loss %.6g, float64 %.6g\n", weights[w], nreg,
                 rec->n_images - nreg, rec->loss, ref_objective(rec));
        }
      }
    }
    if (!mixed) fail_msg("no batch mixed training and regularisation images in 8 steps");
    vkp_diffusion_trainer_free(t), cJSON_Delete(cfg);
  }
}

// ---- (d) metrics and kohya metadata ---------------------------------------------------------------------------

static void expect_meta(const vkp_safetensors *f, const char *key, const char *want) {
  const char *v = vkp_safetensors_metadata(f, key);
  if (!v || strcmp(v, want)) fail_msg("%s = %s\n  want %s", key, v ? v : "(none)", want);
}

static void test_metadata_metrics(void **state) {
  (void)state;
  char dir[400], reg[500], p[600], steps[48], logs[48];
  out_path("meta", dir, sizeof dir);
  snprintf(reg, sizeof reg, "data.reg=%s", reg_dir);
  // one epoch (buckets 4, 16, 4 samples at batch 3: 2 + 6 + 2 batches) in one log window
  snprintf(steps, sizeof steps, "train.max_steps=%d", 10);
  snprintf(logs, sizeof logs, "train.log_every=%d", 10);
  cJSON *cfg = data_config(dir, (const char *const[]){"data.buckets=true", reg, "train.prior_loss_weight=0.25", steps, logs}, 5);
  vkp_diffusion_train_summary s;
  vkp_error err = {0};
  if (vkp_diffusion_train(vkp_test_ctx(), cfg, NULL, true, &s, &err)) fail_msg("%s", err.msg);
  cJSON_Delete(cfg);
  vkp_metrics_log *log = metrics_of(dir);
  const vkp_metric_series *share = vkp_metrics_find(log, "reg_share"), *lr = vkp_metrics_find(log, "loss_reg");
  if (!share || !lr || share->n != 1 || lr->n != 1) fail_msg("no reg_share / loss_reg record");
  printf("  one epoch: reg_share %.4f, loss_reg %.5f\n", share->value[0], lr->value[0]);
  assert_true(share->value[0] == 0.5);   // as many regularisation samples as training samples an epoch
  assert_true(isfinite(lr->value[0]) && lr->value[0] > 0);
  vkp_metrics_log_free(log);
  snprintf(p, sizeof p, "%s/lora.safetensors", dir);
  vkp_safetensors *f = NULL;
  if (vkp_safetensors_open(p, &f, &err)) fail_msg("%s", err.msg);
  // buckets: 12 training samples and 12 reg samples (5 images, repeats 3 3 2 2 2, all 16x16)
  ref_reso r[64];
  int nr = ref_resos(RES, 8, 32, 8, r);
  int64_t count[64] = {0};
  double err_sum = 0;
  for (int i = 0; i < N_AR + N_REG; i++) {
    int rw, rh;
    double e;
    ref_reso b = i < N_AR ? ref_select(r, nr, AR_W[i], AR_H[i], &rw, &rh, &e) : ref_select(r, nr, 16, 16, &rw, &rh, &e);
    err_sum += fabs(e);
    for (int k = 0; k < nr; k++) count[k] += r[k].w == b.w && r[k].h == b.h ? (i < N_AR ? 2 : i - N_AR < 2 ? 3 : 2) : 0;
  }
  char info[512] = "{\"buckets\": {", fl[40];
  for (int k = 0, id = 0; k < nr; k++)
    if (count[k])
      snprintf(info + strlen(info), sizeof info - strlen(info), "%s\"%d\": {\"resolution\": [%d, %d], \"count\": %lld}", id ? ", " : "", id,
               r[k].w, r[k].h, (long long)count[k]),
          id++;
  vkp_dtrain_py_float(err_sum / (N_AR + N_REG), fl, sizeof fl);
  snprintf(info + strlen(info), sizeof info - strlen(info), "}, \"mean_img_ar_error\": %s}", fl);
  expect_meta(f, "ss_bucket_info", info);
  expect_meta(f, "ss_enable_bucket", "True");
  expect_meta(f, "ss_bucket_no_upscale", "False");
  expect_meta(f, "ss_min_bucket_reso", "8");
  expect_meta(f, "ss_max_bucket_reso", "32");
  expect_meta(f, "ss_num_train_images", "12");
  expect_meta(f, "ss_num_reg_images", "5");
  expect_meta(f, "ss_prior_loss_weight", "0.25");
  expect_meta(f, "ss_num_batches_per_epoch", "10");
  expect_meta(f, "ss_dataset_dirs", "{\"2_ar\": {\"n_repeats\": 2, \"img_count\": 6}}");
  expect_meta(f, "ss_reg_dataset_dirs", "{\"1_cls\": {\"n_repeats\": 1, \"img_count\": 5}}");
  expect_meta(f, "ss_tag_frequency",
              "{\"2_ar\": {\"red\": 2, \"circle\": 3, \"flat icon\": 6, \"green\": 2, \"square\": 3, \"blue\": 2}, "
              "\"1_cls\": {\"a shape\": 5, \"plain\": 5}}");
  vkp_safetensors_free(f);
  snprintf(p, sizeof p, "%s/buckets.json", dir);
  char *text = NULL;
  size_t len = 0;
  if (vkp_file_read_all(p, 1 << 20, &text, &len, &err)) fail_msg("%s", err.msg);
  if (strncmp(text, info, strlen(info))) fail_msg("%s: %s", p, text);
  free(text);
  printf("  ss_bucket_info %s\n", info);
}

// ---- (e) bad bucket settings ------------------------------------------------------------------------------------

static void test_bad_buckets(void **state) {
  (void)state;
  char base[2000], args[2600];
  snprintf(base, sizeof base, "train --quiet --set task=diffusion --set model.pretrained=%s --set data.resolution=16 --set data.train=%s "
           "--set data.cache_dir=%s --set train.max_steps=1 --set output_dir=%s/bad_buckets --set data.buckets=true", pipe_dir, ar_dir, cache_dir,
           tmp_root);
  const char *cases[][2] = {{"data.bucket_reso_steps=12", "data.bucket_reso_steps"},   // not a multiple of 8
                            {"data.min_bucket_reso=32 --set data.max_bucket_reso=16", "data.min_bucket_reso"},
                            {"data.max_bucket_reso=8 --set data.min_bucket_reso=8", "data.max_bucket_reso"},   // below data.resolution
                            {"data.min_bucket_reso=12", "data.min_bucket_reso"}};                           // not a multiple of the steps
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    snprintf(args, sizeof args, "%s --set %s", base, cases[i][0]);
    vkp_cli_expect(args, 2, cases[i][1]);
    printf("  %s: %s", cases[i][0], vkp_cli_output());
  }
  snprintf(args, sizeof args, "%s/bad_buckets/config.json", tmp_root);
  if (!access(args, F_OK)) fail_msg("%s written by a run that failed its checks", args);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_buckets),          cmocka_unit_test(test_buckets_resume), cmocka_unit_test(test_reg),
      cmocka_unit_test(test_metadata_metrics), cmocka_unit_test(test_bad_buckets),
  };
  return cmocka_run_group_tests(tests, setup_group, remove_fixture);
}
