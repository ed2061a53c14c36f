// loader.c — the batch loader: a shuffled, augmented, resumable stream of (N, C, H, W) batches,
// prepared by worker threads ahead of the consumer.
//
// Batches are numbered globally: seq = epoch * steps_per_epoch + step. Batch seq holds positions
// [step*B, step*B + n) of epoch `epoch`'s order, a Fisher-Yates shuffle of the samples keyed by
// (seed, epoch); sample i's augmentation is keyed by (seed, epoch, i). So a batch's contents
// depend on (seed, epoch, step) alone: not on the worker count, the timing or where a run resumed.
// With repeats, the sample list holds copies (image i, copy c < repeats[i]); copy c's key is
// vkp_data_sample_copy_key(seed, epoch, i, c), which also draws its caption.
//
// Concurrency: a ring of `n_slots` batch buffers. A worker takes the lowest unassigned seq and a
// free slot under the mutex, fills the slot without the lock, and marks it ready. The consumer
// waits for the slot holding next_consume, keeps it (state HELD) until its next call, then frees
// it. Seeking bumps a generation counter: slots filled for an older generation are dropped when
// their worker finishes. Epoch orders are built once and shared through a small refcounted cache.
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data_internal.h"
#include "vkp_data.h"

enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_HELD };

typedef struct slot {
  int state;
  int64_t seq;
  uint64_t gen;
  int n;
  float *pixels;     // (B, C, H, W)
  int32_t *labels;   // (B)
  size_t *indices;   // (B)
  uint64_t *keys;    // (B) transform key of each sample
  size_t *captions;  // (B) caption index of each sample (with caption_start)
  vkp_status st;
  vkp_error err;
} slot;

typedef struct perm {
  int64_t epoch;
  size_t *order;  // (n_samples) positions in the sample list
  int refs;
  int valid;
} perm;

struct vkp_loader {
  const vkp_dataset *ds;  // borrowed
  vkp_data_transform t;
  vkp_loader_opts o;
  size_t *samples;        // (n_samples) the sample list (dataset indices); owned
  uint32_t *copies;       // (n_samples) copy number of each sample (repeats), or NULL; owned
  size_t *caption_start;  // (ds->count + 1) copied from the options, or NULL; owned
  size_t n_samples;
  size_t epoch_samples;   // n_samples, or rounded down to whole batches with drop_last
  int64_t steps;          // batches per epoch
  int C;                  // output channels
  size_t per_sample;      // floats per sample
  pthread_mutex_t mu;
  pthread_cond_t work_cv;   // a slot became free, or quit/seek
  pthread_cond_t ready_cv;  // a slot became ready
  slot *slots;
  int n_slots;
  perm *perms;
  int n_perms;
  int64_t next_assign, next_consume;
  uint64_t gen;
  int quit;
  int held;               // slot held by the consumer, -1 if none
  pthread_t *threads;
  int n_threads;
  int sync_init;          // mutex/conds initialised
};

// ---- epoch orders --------------------------------------------------------------------------------

static void build_order(const vkp_loader *l, int64_t epoch, size_t *order) {
  for (size_t k = 0; k < l->n_samples; k++) order[k] = k;
  vkp_rng r = vkp_rng_new(vkp_rng_key(l->o.seed, VKP_DATA_STREAM_ORDER, (uint64_t)epoch));
  vkp_rng_shuffle(&r, order, l->n_samples, sizeof *order, l->n_samples);   // torch.randperm order
}

// The order of `epoch` with a reference taken; called with the mutex held.
static perm *perm_acquire(vkp_loader *l, int64_t epoch) {
  perm *spare = NULL;
  for (int i = 0; i < l->n_perms; i++) {
    perm *p = &l->perms[i];
    if (p->valid && p->epoch == epoch) {
      p->refs++;
      return p;
    }
    if (p->refs == 0 && (!spare || !p->valid)) spare = p;
  }
  // n_perms > slots in flight, so a spare always exists.
  spare->epoch = epoch;
  spare->valid = 1;
  spare->refs = 1;
  build_order(l, epoch, spare->order);
  return spare;
}

// ---- filling one batch ---------------------------------------------------------------------------

static void seq_position(const vkp_loader *l, int64_t seq, int64_t *epoch, int64_t *step) {
  *epoch = seq / l->steps;
  *step = seq % l->steps;
}

// order: positions in the sample list (a shuffle), or NULL for the list's own order.
static void fill_slot(vkp_loader *l, slot *s, const size_t *order) {
  int64_t epoch, step;
  seq_position(l, s->seq, &epoch, &step);
  size_t B = (size_t)l->o.batch_size, first = (size_t)step * B;
  size_t n = l->epoch_samples - first < B ? l->epoch_samples - first : B;
  s->n = (int)n;
  for (size_t k = 0; k < n; k++) {
    size_t pos = order ? order[first + k] : first + k, i = l->samples[pos];
    uint64_t key = vkp_data_sample_copy_key(l->o.seed, epoch, i, l->copies ? l->copies[pos] : 0);
    s->indices[k] = i;
    s->keys[k] = key;
    if (l->caption_start) {
      size_t c0 = l->caption_start[i], nc = l->caption_start[i + 1] - c0;
      s->captions[k] = c0 + (l->o.first_caption
                                 ? 0
                                 : (size_t)(vkp_rng_key(key, VKP_DATA_STREAM_CAPTION, 0) % nc));
    }
  }
  vkp_error_clear(&s->err);
  s->st = vkp_data_batch_fill_keys(l->ds, &l->t, s->indices, s->keys, n, s->pixels, s->labels,
                                   &s->err);
}

// Fills s (state FILLING, seq set) outside the lock; called with the mutex held, returns with it.
static void produce(vkp_loader *l, slot *s) {
  int64_t epoch, step;
  seq_position(l, s->seq, &epoch, &step);
  perm *p = l->o.shuffle ? perm_acquire(l, epoch) : NULL;
  const size_t *order = p ? p->order : NULL;
  pthread_mutex_unlock(&l->mu);
  fill_slot(l, s, order);
  pthread_mutex_lock(&l->mu);
  if (p) p->refs--;
}

static void *worker_main(void *arg) {
  vkp_loader *l = arg;
  pthread_mutex_lock(&l->mu);
  while (!l->quit) {
    slot *s = NULL;
    for (int i = 0; i < l->n_slots && !s; i++)
      if (l->slots[i].state == SLOT_FREE) s = &l->slots[i];
    if (!s) {
      pthread_cond_wait(&l->work_cv, &l->mu);
      continue;
    }
    s->state = SLOT_FILLING;
    s->seq = l->next_assign++;
    s->gen = l->gen;
    produce(l, s);
    if (s->gen != l->gen) {  // a seek happened meanwhile: drop it
      s->state = SLOT_FREE;
      pthread_cond_signal(&l->work_cv);
    } else {
      s->state = SLOT_READY;
      pthread_cond_broadcast(&l->ready_cv);
    }
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

// ---- public API ----------------------------------------------------------------------------------

static void *alloc_aligned(size_t bytes) {
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
  return p;
}

void vkp_loader_free(vkp_loader *l) {
  if (!l) return;
  if (l->sync_init) {
    pthread_mutex_lock(&l->mu);
    l->quit = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->n_threads; i++) pthread_join(l->threads[i], NULL);
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->ready_cv);
    pthread_mutex_destroy(&l->mu);
  }
  for (int i = 0; l->slots && i < l->n_slots; i++) {
    free(l->slots[i].pixels);
    free(l->slots[i].labels);
    free(l->slots[i].indices);
    free(l->slots[i].keys);
    free(l->slots[i].captions);
  }
  for (int i = 0; l->perms && i < l->n_perms; i++) free(l->perms[i].order);
  free(l->slots);
  free(l->perms);
  free(l->threads);
  free(l->samples);
  free(l->copies);
  free(l->caption_start);
  free(l);
}

static vkp_status check_position(const vkp_loader *l, int64_t epoch, int64_t step, vkp_error *err) {
  if (epoch < 0 || step < 0 || step >= l->steps || epoch > INT64_MAX / l->steps - 1)
    return vkp_error_set(err, VKP_ERR_INVALID,
                         "loader: position (epoch %lld, step %lld) invalid (%lld steps per epoch)",
                         (long long)epoch, (long long)step, (long long)l->steps);
  return VKP_OK;
}

vkp_status vkp_loader_new(const vkp_dataset *ds, const vkp_data_transform *t,
                          const vkp_loader_opts *opts, vkp_loader **out, vkp_error *err) {
  if (!out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_loader_new: out is NULL");
  *out = NULL;
  if (!ds || !t || !opts)
    return vkp_error_set(err, VKP_ERR_INVALID, "vkp_loader_new: NULL dataset, transform or options");
  VKP_TRY(vkp_data_transform_check(t, ds->channels, err));
  if (opts->batch_size < 1)
    return vkp_error_set(err, VKP_ERR_INVALID, "loader: batch size %d < 1", opts->batch_size);
  if (opts->indices && opts->n_indices == 0)
    return vkp_error_set(err, VKP_ERR_INVALID, "loader: empty index list");
  size_t n = opts->indices ? opts->n_indices : ds->count;
  if (n == 0) return vkp_error_set(err, VKP_ERR_INVALID, "%s: no samples", ds->name);
  for (size_t k = 0; opts->indices && k < n; k++)
    if (opts->indices[k] >= ds->count)
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: loader index %zu out of range (%zu images)",
                           ds->name, opts->indices[k], ds->count);
  size_t n_images = n;  // samples before repeats
  if (opts->repeats) {
    n = 0;
    for (size_t k = 0; k < n_images; k++) {
      size_t i = opts->indices ? opts->indices[k] : k;
      int32_t r = opts->repeats[i];
      if (r < 1)
        return vkp_error_set(err, VKP_ERR_INVALID, "%s: image %zu has repeat count %d (want >= 1)",
                             ds->name, i, (int)r);
      if (n > SIZE_MAX / 2 / sizeof(size_t) - (size_t)r)
        return vkp_error_set(err, VKP_ERR_INVALID, "%s: too many samples with repeats", ds->name);
      n += (size_t)r;
    }
  }
  for (size_t k = 0; opts->caption_start && k < n_images; k++) {
    size_t i = opts->indices ? opts->indices[k] : k;
    if (opts->caption_start[i + 1] <= opts->caption_start[i])
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: image %zu has no caption", ds->name, i);
  }
  size_t B = (size_t)opts->batch_size;
  if (opts->drop_last && n < B)
    return vkp_error_set(err, VKP_ERR_INVALID,
                         "%s: %zu samples, fewer than one batch of %zu with drop_last", ds->name, n,
                         B);

  vkp_loader *l = calloc(1, sizeof *l);
  if (!l) return vkp_error_set(err, VKP_ERR_OOM, "loader: out of memory");
  l->ds = ds;
  l->t = *t;
  l->o = *opts;
  l->o.indices = NULL;
  l->o.repeats = NULL;
  l->o.caption_start = NULL;
  l->held = -1;
  l->n_samples = n;
  l->steps = (int64_t)(opts->drop_last ? n / B : (n + B - 1) / B);
  l->epoch_samples = opts->drop_last ? (size_t)l->steps * B : n;
  l->C = vkp_data_transform_channels(t, ds->channels);
  l->per_sample = (size_t)l->C * (size_t)t->out_w * (size_t)t->out_h;
  vkp_status st = check_position(l, opts->start_epoch, opts->start_step, err);
  if (st != VKP_OK) goto fail;
  l->next_assign = l->next_consume = opts->start_epoch * l->steps + opts->start_step;

  int workers = opts->n_workers;
  if (workers < 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    workers = cpus > 1 ? (int)cpus - 1 : 1;
    if (workers > 8) workers = 8;
  }
  if (workers > 256) workers = 256;
  int prefetch = opts->prefetch > 0 ? opts->prefetch : 2 * workers;
  l->n_slots = workers == 0 ? 1 : (prefetch > workers ? prefetch : workers) + 1;
  l->n_perms = l->n_slots + 2;
  l->samples = malloc(n * sizeof *l->samples);
  if (opts->repeats && !(l->copies = malloc(n * sizeof *l->copies))) goto oom;
  if (opts->caption_start) {
    if (!(l->caption_start = malloc((ds->count + 1) * sizeof *l->caption_start))) goto oom;
    memcpy(l->caption_start, opts->caption_start, (ds->count + 1) * sizeof *l->caption_start);
  }
  l->slots = calloc((size_t)l->n_slots, sizeof *l->slots);
  l->perms = calloc((size_t)l->n_perms, sizeof *l->perms);
  l->threads = calloc((size_t)(workers ? workers : 1), sizeof *l->threads);
  if (!l->samples || !l->slots || !l->perms || !l->threads) goto oom;
  for (size_t k = 0, pos = 0; k < n_images; k++) {
    size_t i = opts->indices ? opts->indices[k] : k;
    int32_t r = opts->repeats ? opts->repeats[i] : 1;
    for (int32_t c = 0; c < r; c++, pos++) {
      l->samples[pos] = i;
      if (l->copies) l->copies[pos] = (uint32_t)c;
    }
  }
  if (B > SIZE_MAX / sizeof(float) / (l->per_sample ? l->per_sample : 1)) goto oom;
  for (int i = 0; i < l->n_slots; i++) {
    slot *s = &l->slots[i];
    s->pixels = alloc_aligned(B * l->per_sample * sizeof *s->pixels);
    s->labels = alloc_aligned(B * sizeof *s->labels);
    s->indices = alloc_aligned(B * sizeof *s->indices);
    s->keys = alloc_aligned(B * sizeof *s->keys);
    s->captions = alloc_aligned(B * sizeof *s->captions);
    if (!s->pixels || !s->labels || !s->indices || !s->keys || !s->captions) goto oom;
  }
  if (opts->shuffle)
    for (int i = 0; i < l->n_perms; i++)
      if (!(l->perms[i].order = malloc(n * sizeof *l->perms[i].order))) goto oom;

  if (pthread_mutex_init(&l->mu, NULL) != 0) goto threads;
  if (pthread_cond_init(&l->work_cv, NULL) != 0) {
    pthread_mutex_destroy(&l->mu);
    goto threads;
  }
  if (pthread_cond_init(&l->ready_cv, NULL) != 0) {
    pthread_cond_destroy(&l->work_cv);
    pthread_mutex_destroy(&l->mu);
    goto threads;
  }
  l->sync_init = 1;
  for (int i = 0; i < workers; i++) {
    if (pthread_create(&l->threads[i], NULL, worker_main, l) != 0) goto threads;
    l->n_threads++;
  }
  *out = l;
  return VKP_OK;
threads:
  st = vkp_error_set(err, VKP_ERR_UNSUPPORTED, "loader: cannot start %d worker threads", workers);
  goto fail;
oom:
  st = vkp_error_set(err, VKP_ERR_OOM, "loader: out of memory for %d batches of %zu floats",
                     l->n_slots, B * l->per_sample);
fail:
  vkp_loader_free(l);
  return st;
}

vkp_status vkp_loader_next(vkp_loader *l, vkp_batch *out, vkp_error *err) {
  if (!l || !out) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_loader_next: NULL argument");
  memset(out, 0, sizeof *out);
  slot *s = NULL;
  if (l->n_threads == 0) {
    s = &l->slots[0];
    s->seq = l->next_consume++;
    int64_t epoch, step;
    seq_position(l, s->seq, &epoch, &step);
    pthread_mutex_lock(&l->mu);
    perm *p = l->o.shuffle ? perm_acquire(l, epoch) : NULL;
    pthread_mutex_unlock(&l->mu);
    fill_slot(l, s, p ? p->order : NULL);
    pthread_mutex_lock(&l->mu);
    if (p) p->refs--;
    pthread_mutex_unlock(&l->mu);
  } else {
    pthread_mutex_lock(&l->mu);
    if (l->held >= 0) {
      l->slots[l->held].state = SLOT_FREE;
      l->held = -1;
      pthread_cond_signal(&l->work_cv);
    }
    for (;;) {
      for (int i = 0; i < l->n_slots && !s; i++)
        if (l->slots[i].state == SLOT_READY && l->slots[i].seq == l->next_consume &&
            l->slots[i].gen == l->gen)
          s = &l->slots[i];
      if (s) break;
      pthread_cond_wait(&l->ready_cv, &l->mu);
    }
    s->state = SLOT_HELD;
    l->held = (int)(s - l->slots);
    l->next_consume++;
    pthread_mutex_unlock(&l->mu);
  }
  if (s->st != VKP_OK) {
    if (err) *err = s->err;
    return s->st;
  }
  int64_t epoch, step;
  seq_position(l, s->seq, &epoch, &step);
  *out = (vkp_batch){s->pixels, s->labels, s->indices, s->n, l->C, l->t.out_h, l->t.out_w,
                     epoch, step, l->caption_start ? s->captions : NULL};
  return VKP_OK;
}

void vkp_loader_tell(const vkp_loader *l, int64_t *epoch, int64_t *step) {
  int64_t e = 0, s = 0;
  if (l) seq_position(l, l->next_consume, &e, &s);
  if (epoch) *epoch = e;
  if (step) *step = s;
}

vkp_status vkp_loader_seek(vkp_loader *l, int64_t epoch, int64_t step, vkp_error *err) {
  if (!l) return vkp_error_set(err, VKP_ERR_INVALID, "vkp_loader_seek: NULL loader");
  VKP_TRY(check_position(l, epoch, step, err));
  pthread_mutex_lock(&l->mu);
  l->gen++;
  l->next_assign = l->next_consume = epoch * l->steps + step;
  if (l->held >= 0) {
    l->slots[l->held].state = SLOT_FREE;
    l->held = -1;
  }
  for (int i = 0; i < l->n_slots; i++)
    if (l->slots[i].state == SLOT_READY) l->slots[i].state = SLOT_FREE;
  pthread_cond_broadcast(&l->work_cv);
  pthread_mutex_unlock(&l->mu);
  return VKP_OK;
}

int64_t vkp_loader_steps_per_epoch(const vkp_loader *l) { return l ? l->steps : 0; }

size_t vkp_loader_epoch_samples(const vkp_loader *l) { return l ? l->epoch_samples : 0; }
