// test_loader.c — the batch loader: every worker's output is complete and equals a serial
// reference, batches are identical for a seed whatever the worker count, orders differ across
// seeds and epochs, resuming at (epoch, step) and seeking give exactly the next batch, subsets and
// drop_last, and the throughput on Fashion-MNIST (28x28 -> 32x32, batches of 64, 2 threads).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vkp_data.h"

// n images of 28x28 whose first two pixels encode the index; label = index % 10.
static vkp_dataset *synthetic(size_t n) {
  vkp_dataset *ds = NULL;
  assert_int_equal(vkp_dataset_new(n, 28, 28, 1, 10, &ds, NULL), VKP_OK);
  for (size_t i = 0; i < n; i++) {
    uint8_t *p = ds->pixels + ds->offsets[i];
    for (int q = 0; q < 784; q++) p[q] = (uint8_t)(i * 7 + (size_t)q * 3);
    p[0] = (uint8_t)i;
    p[1] = (uint8_t)(i >> 8);
    ds->labels[i] = (int32_t)(i % 10);
  }
  return ds;
}

static const vkp_data_transform AUG = {
    .out_w = 32, .out_h = 32, .crop = VKP_CROP_RANDOM_PAD, .pad = 4, .hflip = 0.5f,
    .mean = {0.3f}, .std = {0.25f}};

typedef struct saved {
  int n;
  int64_t epoch, step;
  float *pixels;
  int32_t *labels;
  size_t *indices;
} saved;

static saved save(const vkp_batch *b) {
  size_t per = (size_t)b->channels * b->height * b->width;
  saved s = {b->n, b->epoch, b->step, malloc((size_t)b->n * per * sizeof(float)),
             malloc((size_t)b->n * sizeof(int32_t)), malloc((size_t)b->n * sizeof(size_t))};
  memcpy(s.pixels, b->pixels, (size_t)b->n * per * sizeof(float));
  memcpy(s.labels, b->labels, (size_t)b->n * sizeof(int32_t));
  memcpy(s.indices, b->indices, (size_t)b->n * sizeof(size_t));
  return s;
}

static void unsave(saved *s) {
  free(s->pixels);
  free(s->labels);
  free(s->indices);
}

static void assert_same(const saved *a, const vkp_batch *b) {
  assert_int_equal(a->n, b->n);
  assert_int_equal(a->epoch, b->epoch);
  assert_int_equal(a->step, b->step);
  assert_memory_equal(a->indices, b->indices, (size_t)b->n * sizeof(size_t));
  assert_memory_equal(a->labels, b->labels, (size_t)b->n * sizeof(int32_t));
  assert_memory_equal(a->pixels, b->pixels,
                      (size_t)b->n * b->channels * b->height * b->width * sizeof(float));
}

static vkp_loader *make(const vkp_dataset *ds, const vkp_data_transform *t, vkp_loader_opts o) {
  vkp_loader *l = NULL;
  vkp_error e;
  vkp_status st = vkp_loader_new(ds, t, &o, &l, &e);
  if (st != VKP_OK) fail_msg("%s", e.msg);
  return l;
}

static void next(vkp_loader *l, vkp_batch *b) {
  vkp_error e;
  vkp_status st = vkp_loader_next(l, b, &e);
  if (st != VKP_OK) fail_msg("%s", e.msg);
}

// One epoch covers every sample exactly once, and every batch equals the serial reference.
static void test_complete_and_correct(void **state) {
  (void)state;
  const size_t N = 203;
  vkp_dataset *ds = synthetic(N);
  for (int workers = 0; workers <= 4; workers += 2) {
    vkp_loader *l = make(ds, &AUG, (vkp_loader_opts){.batch_size = 16, .shuffle = true,
                                                     .seed = 5, .n_workers = workers});
    assert_int_equal(vkp_loader_steps_per_epoch(l), 13);
    assert_int_equal(vkp_loader_epoch_samples(l), N);
    float *ref = malloc(16 * 32 * 32 * sizeof(float));
    int32_t ref_lab[16];
    for (int epoch = 0; epoch < 2; epoch++) {
      char *seen = calloc(N, 1);
      for (int step = 0; step < 13; step++) {
        vkp_batch b;
        next(l, &b);
        assert_int_equal(b.epoch, epoch);
        assert_int_equal(b.step, step);
        assert_int_equal(b.n, step < 12 ? 16 : 203 - 12 * 16);
        assert_int_equal(b.channels, 1);
        assert_int_equal(b.height, 32);
        for (int k = 0; k < b.n; k++) {
          assert_true(b.indices[k] < N);
          seen[b.indices[k]]++;
        }
        vkp_error e;
        assert_int_equal(vkp_data_batch_fill(ds, &AUG, b.indices, (size_t)b.n, 5, epoch, ref,
                                             ref_lab, &e),
                         VKP_OK);
        assert_memory_equal(b.labels, ref_lab, (size_t)b.n * sizeof(int32_t));
        assert_memory_equal(b.pixels, ref, (size_t)b.n * 32 * 32 * sizeof(float));
      }
      for (size_t i = 0; i < N; i++) assert_int_equal(seen[i], 1);
      free(seen);
    }
    free(ref);
    vkp_loader_free(l);
  }
  vkp_loader_free(NULL);
  vkp_dataset_free(ds);
}

// Same seed -> the same batches with 0, 1 or 3 workers; other seed or epoch -> another order.
static void test_determinism(void **state) {
  (void)state;
  vkp_dataset *ds = synthetic(150);
  const int steps = 3 * 10;  // 3 epochs of 10 batches of 15
  saved *ref = calloc(steps, sizeof *ref);
  vkp_loader *l = make(ds, &AUG, (vkp_loader_opts){.batch_size = 15, .shuffle = true, .seed = 11});
  for (int s = 0; s < steps; s++) {
    vkp_batch b;
    next(l, &b);
    ref[s] = save(&b);
  }
  vkp_loader_free(l);
  const int workers[] = {1, 3, 8};
  for (int w = 0; w < 3; w++) {
    l = make(ds, &AUG, (vkp_loader_opts){.batch_size = 15, .shuffle = true, .seed = 11,
                                         .n_workers = workers[w], .prefetch = w + 1});
    for (int s = 0; s < steps; s++) {
      vkp_batch b;
      next(l, &b);
      assert_same(&ref[s], &b);
    }
    vkp_loader_free(l);
  }
  // Epochs have different orders; a different seed gives a different order.
  assert_true(memcmp(ref[0].indices, ref[10].indices, 15 * sizeof(size_t)) != 0);
  assert_true(memcmp(ref[10].indices, ref[20].indices, 15 * sizeof(size_t)) != 0);
  l = make(ds, &AUG, (vkp_loader_opts){.batch_size = 15, .shuffle = true, .seed = 12, .n_workers = 2});
  vkp_batch b;
  next(l, &b);
  assert_true(memcmp(ref[0].indices, b.indices, 15 * sizeof(size_t)) != 0);
  vkp_loader_free(l);
  // Without shuffle: dataset order, and augmentation still varies by epoch.
  l = make(ds, &AUG, (vkp_loader_opts){.batch_size = 15, .seed = 11, .n_workers = 2});
  saved first;
  next(l, &b);
  first = save(&b);
  for (int k = 0; k < 15; k++) assert_int_equal(b.indices[k], (size_t)k);
  for (int s = 1; s < 10; s++) next(l, &b);
  next(l, &b);
  assert_int_equal(b.epoch, 1);
  assert_memory_equal(b.indices, first.indices, 15 * sizeof(size_t));
  assert_true(memcmp(b.pixels, first.pixels, 15 * 32 * 32 * sizeof(float)) != 0);
  unsave(&first);
  vkp_loader_free(l);
  for (int s = 0; s < steps; s++) unsave(&ref[s]);
  free(ref);
  vkp_dataset_free(ds);
}

// A run interrupted after k batches and resumed from vkp_loader_tell sees the same next batches;
// seeking back replays, seeking forward skips.
static void test_resume_and_seek(void **state) {
  (void)state;
  vkp_dataset *ds = synthetic(100);
  vkp_loader_opts o = {.batch_size = 12, .shuffle = true, .seed = 3, .n_workers = 2};
  vkp_loader *a = make(ds, &AUG, o);
  assert_int_equal(vkp_loader_steps_per_epoch(a), 9);
  saved hist[25];
  for (int s = 0; s < 25; s++) {
    vkp_batch b;
    next(a, &b);
    hist[s] = save(&b);
  }
  // "Checkpoint" after 13 batches: position (1, 4).
  vkp_loader *first_run = make(ds, &AUG, o);
  for (int s = 0; s < 13; s++) {
    vkp_batch b;
    next(first_run, &b);
  }
  int64_t epoch, step;
  vkp_loader_tell(first_run, &epoch, &step);
  assert_int_equal(epoch, 1);
  assert_int_equal(step, 4);
  vkp_loader_free(first_run);
  for (int workers = 0; workers <= 3; workers += 3) {
    vkp_loader_opts r = o;
    r.n_workers = workers;
    r.start_epoch = epoch;
    r.start_step = step;
    vkp_loader *resumed = make(ds, &AUG, r);
    for (int s = 13; s < 25; s++) {
      vkp_batch b;
      next(resumed, &b);
      assert_same(&hist[s], &b);
    }
    vkp_loader_free(resumed);
  }
  // Seek back and forward on the running loader (with batches already prefetched).
  vkp_error e;
  assert_int_equal(vkp_loader_seek(a, 0, 3, &e), VKP_OK);
  vkp_batch b;
  next(a, &b);
  assert_same(&hist[3], &b);
  next(a, &b);
  assert_same(&hist[4], &b);
  assert_int_equal(vkp_loader_seek(a, 2, 0, &e), VKP_OK);
  next(a, &b);
  assert_same(&hist[18], &b);
  vkp_loader_tell(a, &epoch, &step);
  assert_int_equal(epoch, 2);
  assert_int_equal(step, 1);
  assert_int_equal(vkp_loader_seek(a, 0, 9, &e), VKP_ERR_INVALID);
  assert_int_equal(vkp_loader_seek(a, -1, 0, &e), VKP_ERR_INVALID);
  next(a, &b);  // still usable after a rejected seek
  assert_same(&hist[19], &b);
  vkp_loader_free(a);
  for (int s = 0; s < 25; s++) unsave(&hist[s]);
  vkp_dataset_free(ds);
}

static void test_subset_drop_last_errors(void **state) {
  (void)state;
  vkp_dataset *ds = synthetic(50);
  size_t idx[23];
  for (int k = 0; k < 23; k++) idx[k] = (size_t)(2 * k + 1);  // odd images only
  vkp_loader *l = make(ds, &AUG, (vkp_loader_opts){.batch_size = 5, .shuffle = true, .drop_last = true,
                                                   .indices = idx, .n_indices = 23, .n_workers = 2});
  assert_int_equal(vkp_loader_steps_per_epoch(l), 4);
  assert_int_equal(vkp_loader_epoch_samples(l), 20);
  for (int s = 0; s < 8; s++) {
    vkp_batch b;
    next(l, &b);
    assert_int_equal(b.n, 5);
    assert_int_equal(b.step, s % 4);
    for (int k = 0; k < 5; k++) assert_true(b.indices[k] % 2 == 1);
  }
  vkp_loader_free(l);
  vkp_error e;
  vkp_loader *bad = NULL;
  vkp_data_transform t = AUG;
  assert_int_equal(vkp_loader_new(ds, &t, &(vkp_loader_opts){.batch_size = 0}, &bad, &e),
                   VKP_ERR_INVALID);
  assert_int_equal(vkp_loader_new(ds, &t, &(vkp_loader_opts){.batch_size = 64, .drop_last = true},
                                  &bad, &e),
                   VKP_ERR_INVALID);
  idx[3] = 50;
  assert_int_equal(vkp_loader_new(ds, &t, &(vkp_loader_opts){.batch_size = 4, .indices = idx, .n_indices = 23},
                                  &bad, &e),
                   VKP_ERR_INVALID);
  assert_int_equal(vkp_loader_new(ds, &t, &(vkp_loader_opts){.batch_size = 4, .start_step = 13},
                                  &bad, &e),
                   VKP_ERR_INVALID);
  t.out_w = 0;
  assert_int_equal(vkp_loader_new(ds, &t, &(vkp_loader_opts){.batch_size = 4}, &bad, &e),
                   VKP_ERR_INVALID);
  assert_null(bad);
  vkp_dataset_free(ds);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Throughput on the real Fashion-MNIST training set (or synthetic data if it is missing).
static void test_throughput(void **state) {
  (void)state;
  vkp_dataset *ds = NULL;
  vkp_error e;
  if (vkp_data_load_named("fashion-mnist", "train", &ds, &e) != VKP_OK) ds = synthetic(60000);
  float mean, sd;
  assert_int_equal(vkp_dataset_mean_std(ds, NULL, 0, &mean, &sd, &e), VKP_OK);
  printf("%s: %zu images, mean %.4f std %.4f\n", ds->name, ds->count, mean, sd);
  const struct {
    const char *what;
    vkp_data_transform t;
  } cases[] = {
      {"resize 28->32", {.out_w = 32, .out_h = 32, .mean = {mean}, .std = {sd}}},
      {"pad+crop+flip", {.out_w = 32, .out_h = 32, .crop = VKP_CROP_RANDOM_PAD, .pad = 4,
                         .hflip = 0.5f, .mean = {mean}, .std = {sd}}},
      {"rrc+flip 32", {.out_w = 32, .out_h = 32, .crop = VKP_CROP_RANDOM_RESIZED, .hflip = 0.5f,
                       .mean = {mean}, .std = {sd}}},
  };
  const int workers[] = {0, 1, 2};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
    for (int w = 0; w < 3; w++) {
      vkp_loader *l = make(ds, &cases[c].t, (vkp_loader_opts){.batch_size = 64, .shuffle = true,
                                                              .seed = 1, .n_workers = workers[w]});
      vkp_batch b;
      next(l, &b);  // warm up
      const int steps = 300;
      double t0 = now();
      double sum = 0;
      for (int s = 0; s < steps; s++) {
        next(l, &b);
        sum += b.pixels[0];
      }
      double dt = now() - t0;
      printf("loader %-14s batch 64, %d worker%s: %8.0f images/s (%.1f us/batch)%s\n",
             cases[c].what, workers[w], workers[w] == 1 ? " " : "s", steps * 64 / dt,
             dt / steps * 1e6, sum == 12345.678 ? "!" : "");
      vkp_loader_free(l);
    }
  vkp_dataset_free(ds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_complete_and_correct),
      cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_resume_and_seek),
      cmocka_unit_test(test_subset_drop_last_errors),
      cmocka_unit_test(test_throughput),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
