// checkpoint.c — training checkpoints (see vkp_checkpoint.h).
#include "vkp_checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vkp_device.h"
#include "vkp_fileio.h"
#include "vkp_json.h"
#include "vkp_vec.h"

#define STATE_MAX_BYTES (16u << 20)

void vkp_checkpoint_path(const char *run_dir, int64_t step, char *out, size_t cap) {
  snprintf(out, cap, "%s/checkpoints/step-%08lld", run_dir, (long long)step);
}

// The step of a folder named step-N (exactly), else -1.
static int64_t folder_step(const char *name) {
  long long s;
  char tail;
  return sscanf(name, "step-%lld%c", &s, &tail) == 1 && s >= 0 ? (int64_t)s : -1;
}

typedef VKP_VEC(int64_t) step_list;

// Steps of the checkpoint folders of run_dir, newest first. A missing folder is an empty list.
static vkp_status list_steps(const char *run_dir, step_list *out, vkp_error *err) {
  char dir[VKP_CHECKPOINT_PATH_MAX];
  snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? VKP_OK : vkp_error_set(err, VKP_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
  struct dirent *e;
  vkp_status st = VKP_OK;
  while (!st && (e = readdir(d))) {
    int64_t s = folder_step(e->d_name);
    if (s >= 0 && vkp_vec_push(out, s)) st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", dir);
  }
  closedir(d);
  for (int32_t i = 1; i < out->n; i++)   // insertion sort, descending (few entries)
    for (int32_t j = i; j > 0 && out->v[j] > out->v[j - 1]; j--) {
      int64_t t = out->v[j];
      out->v[j] = out->v[j - 1];
      out->v[j - 1] = t;
    }
  return st;
}

static vkp_status sync_dir(const char *dir, vkp_error *err) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  if (rc != 0 && e != EINVAL && e != ENOTSUP) return vkp_error_set(err, VKP_ERR_IO, "%s: fsync failed: %s", dir, strerror(e));
  return VKP_OK;
}

// ---- manifest: every regular file below the folder, with its size ------------------------------

static vkp_status manifest_add(const char *root, const char *rel, cJSON *files, int depth, vkp_error *err) {
  char path[VKP_CHECKPOINT_PATH_MAX];
  snprintf(path, sizeof path, "%s%s%s", root, rel[0] ? "/" : "", rel);
  DIR *d = opendir(path);
  if (!d) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  vkp_status st = VKP_OK;
  struct dirent *e;
  while (!st && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, VKP_CHECKPOINT_STATE_FILE))
      continue;
    char sub[VKP_CHECKPOINT_PATH_MAX], full[2 * VKP_CHECKPOINT_PATH_MAX];
    int ns = snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
    int nf = snprintf(full, sizeof full, "%s/%s", root, sub);
    struct stat sb;
    if (ns < 0 || nf < 0 || (size_t)ns >= sizeof sub || (size_t)nf >= sizeof full) {
      st = vkp_error_set(err, VKP_ERR_INVALID, "%s/%s: path too long", path, e->d_name);
    } else if (lstat(full, &sb) != 0) {
      st = vkp_error_set(err, VKP_ERR_IO, "%s: cannot stat: %s", full, strerror(errno));
    } else if (S_ISDIR(sb.st_mode)) {
      st = depth < 8 ? manifest_add(root, sub, files, depth + 1, err)
                     : vkp_error_set(err, VKP_ERR_INVALID, "%s: checkpoint folders nest too deep", full);
    } else if (S_ISREG(sb.st_mode)) {
      if (!cJSON_AddNumberToObject(files, sub, (double)sb.st_size)) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    }
  }
  closedir(d);
  return st;
}

// Checks that every file of the manifest is there with its size; the reason goes to err.
static vkp_status manifest_check(const char *dir, const cJSON *files, vkp_error *err) {
  const cJSON *f;
  cJSON_ArrayForEach(f, files) {
    char path[VKP_CHECKPOINT_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, f->string);
    struct stat sb;
    if (!cJSON_IsNumber(f))
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s/%s: key 'files.%s' must be a size", dir, VKP_CHECKPOINT_STATE_FILE,
                           f->string);
    if (stat(path, &sb) != 0) return vkp_error_set(err, VKP_ERR_FORMAT, "%s: missing (%s)", path, strerror(errno));
    if ((double)sb.st_size != f->valuedouble)
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s: %lld bytes, the checkpoint recorded %.0f (truncated?)", path,
                           (long long)sb.st_size, f->valuedouble);
  }
  return VKP_OK;
}

// ---- trainer_state.json ----------------------------------------------------------------------------

#define F(member) offsetof(vkp_train_state, member)
static const vkp_json_field state_fields[] = {
    {"step", VKP_JSON_INT64, F(step), .lo = 0, .hi = 9007199254740992.0, .flags = VKP_JSON_REQUIRED},
    {"micro_step", VKP_JSON_INT64, F(micro_step), .lo = 0, .hi = 9007199254740992.0},
    {"loader_epoch", VKP_JSON_INT64, F(loader_epoch), .lo = 0, .hi = 9007199254740992.0},
    {"loader_step", VKP_JSON_INT64, F(loader_step), .lo = 0, .hi = 9007199254740992.0},
    {"best_metric", VKP_JSON_DOUBLE, F(best_metric), .def = -1, .flags = VKP_JSON_NULL_DEFAULT},
    {"best_step", VKP_JSON_INT64, F(best_step), .lo = -1, .hi = 9007199254740992.0, .def = -1},
};
#undef F
#define N_STATE_FIELDS ((int)(sizeof state_fields / sizeof *state_fields))

static cJSON *state_to_json(const vkp_train_state *s, const cJSON *extra) {
  cJSON *j = extra ? cJSON_Duplicate(extra, true) : cJSON_CreateObject();
  if (!j) return NULL;
  for (int i = 0; i < N_STATE_FIELDS; i++) cJSON_DeleteItemFromObjectCaseSensitive(j, state_fields[i].key);
  cJSON_AddNumberToObject(j, "step", (double)s->step);
  cJSON_AddNumberToObject(j, "micro_step", (double)s->micro_step);
  cJSON_AddNumberToObject(j, "loader_epoch", (double)s->loader_epoch);
  cJSON_AddNumberToObject(j, "loader_step", (double)s->loader_step);
  cJSON_AddNumberToObject(j, "best_metric", s->best_metric);
  cJSON_AddNumberToObject(j, "best_step", (double)s->best_step);
  cJSON_DeleteItemFromObjectCaseSensitive(j, "rng");
  if (s->has_rng) {
    uint32_t w[VKP_RNG_STATE_WORDS];
    vkp_rng_get_state(&s->rng, w);
    cJSON *a = cJSON_AddArrayToObject(j, "rng");
    for (int i = 0; a && i < VKP_RNG_STATE_WORDS; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(w[i]));
  }
  return j;
}

static vkp_status state_from_json(const cJSON *j, const char *where, vkp_train_state *s, vkp_error *err) {
  memset(s, 0, sizeof *s);
  if (vkp_json_read_fields(j, where, state_fields, N_STATE_FIELDS, s, err)) {   // a damaged checkpoint
    if (err) err->status = VKP_ERR_FORMAT;
    return VKP_ERR_FORMAT;
  }
  const cJSON *legacy = cJSON_GetObjectItemCaseSensitive(j, "best_val_accuracy");   // before best_metric
  if (!cJSON_GetObjectItemCaseSensitive(j, "best_metric") && cJSON_IsNumber(legacy)) s->best_metric = legacy->valuedouble;
  const cJSON *rng = cJSON_GetObjectItemCaseSensitive(j, "rng");
  if (!rng || cJSON_IsNull(rng)) return VKP_OK;
  if (!cJSON_IsArray(rng) || cJSON_GetArraySize(rng) != VKP_RNG_STATE_WORDS)
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: key 'rng' must be a list of %d numbers", where, VKP_RNG_STATE_WORDS);
  uint32_t w[VKP_RNG_STATE_WORDS];
  int i = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, rng) {
    if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 4294967295.0 || e->valuedouble != (double)(uint32_t)e->valuedouble)
      return vkp_error_set(err, VKP_ERR_FORMAT, "%s: key 'rng' entry %d is not a 32-bit unsigned integer", where, i);
    w[i++] = (uint32_t)e->valuedouble;
  }
  vkp_error e2 = {0};
  if (vkp_rng_set_state(&s->rng, w, &e2)) return vkp_error_set(err, VKP_ERR_FORMAT, "%s: %s", where, e2.msg);
  s->has_rng = true;
  return VKP_OK;
}

// ---- saving ----------------------------------------------------------------------------------------

static vkp_status prune(const char *run_dir, int keep_last, int64_t best_step, vkp_error *err) {
  step_list steps = {0};
  vkp_status st = list_steps(run_dir, &steps, err);
  for (int32_t i = keep_last; !st && i < steps.n; i++) {   // newest first: the first keep_last stay
    if (steps.v[i] == best_step) continue;
    char path[VKP_CHECKPOINT_PATH_MAX], state[VKP_CHECKPOINT_PATH_MAX + 64];
    vkp_checkpoint_path(run_dir, steps.v[i], path, sizeof path);
    // The state file first: a checkpoint removed halfway is never taken for an intact one.
    snprintf(state, sizeof state, "%s/%s", path, VKP_CHECKPOINT_STATE_FILE);
    if (unlink(state) != 0 && errno != ENOENT)
      st = vkp_error_set(err, VKP_ERR_IO, "%s: cannot remove: %s", state, strerror(errno));
    vkp_crash_point("prune", path);
    if (!st) st = vkp_path_remove_all(path, err);
  }
  free(steps.v);
  return st;
}

vkp_status vkp_checkpoint_save(const vkp_checkpoint_save_opts *o, const vkp_train_state *s, vkp_error *err) {
  if (!o || !o->run_dir || !s || o->keep_last < 1 || s->step < 0 || (o->opt && !o->ctx))
    return vkp_error_set(err, VKP_ERR_INVALID, "checkpoint: bad options (run_dir, keep_last >= 1, step >= 0, ctx with opt)");
  char base[VKP_CHECKPOINT_PATH_MAX], tmp[VKP_CHECKPOINT_PATH_MAX + 8], old[VKP_CHECKPOINT_PATH_MAX + 8],
      path[VKP_CHECKPOINT_PATH_MAX + 64];
  vkp_checkpoint_path(o->run_dir, s->step, base, sizeof base);
  snprintf(tmp, sizeof tmp, "%s.tmp", base);
  snprintf(old, sizeof old, "%s.old", base);
  VKP_TRY(vkp_path_remove_all(tmp, err));   // left by a crash
  VKP_TRY(vkp_path_remove_all(old, err));
  VKP_TRY(vkp_dir_create(tmp, err));
  vkp_status st = o->save_params ? o->save_params(o->user, tmp, err) : VKP_OK;
  if (!st && o->opt) {
    snprintf(path, sizeof path, "%s/%s", tmp, VKP_CHECKPOINT_OPTIMIZER_FILE);
    if (vkp_optimizer_save(o->opt, path)) st = vkp_error_set(err, VKP_ERR_IO, "%s", vkp_ctx_error(o->ctx));
  }
  // trainer_state.json last, with the manifest of everything above.
  cJSON *j = st ? NULL : state_to_json(s, o->extra);
  cJSON *files = j ? cJSON_AddObjectToObject(j, "files") : NULL;
  if (!st) st = files ? manifest_add(tmp, "", files, 0, err) : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  // The run's log as it is now: resuming from here drops what was appended after this moment.
  struct stat log;
  snprintf(path, sizeof path, "%s/%s", o->run_dir, VKP_CHECKPOINT_LOG_FILE);
  if (!st && stat(path, &log) == 0 && !cJSON_AddNumberToObject(j, "log_bytes", (double)log.st_size))
    st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  snprintf(path, sizeof path, "%s/%s", tmp, VKP_CHECKPOINT_STATE_FILE);
  if (!st) st = vkp_json_write_atomic(path, j, err);
  cJSON_Delete(j);
  if (st) {
    (void)vkp_path_remove_all(tmp, NULL);   // a failed save leaves nothing behind
    return st;
  }
  vkp_crash_point("checkpoint", base);
  // Into place: an existing folder of this step is moved aside first (rename cannot replace a
  // non-empty directory), so some complete step-N exists at every moment but the two renames
  // (and a crash between them leaves step-N.old, which vkp_checkpoint_recover puts back).
  struct stat sb;
  bool had_old = stat(base, &sb) == 0;
  if (had_old && rename(base, old) != 0)
    return vkp_error_set(err, VKP_ERR_IO, "%s: cannot move the old checkpoint aside: %s", base, strerror(errno));
  if (had_old) vkp_crash_point("checkpoint-old", base);
  if (rename(tmp, base) != 0) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot rename checkpoint: %s", base, strerror(errno));
  snprintf(path, sizeof path, "%s/checkpoints", o->run_dir);
  VKP_TRY(sync_dir(path, err));
  if (had_old) VKP_TRY(vkp_path_remove_all(old, err));
  return prune(o->run_dir, o->keep_last, s->best_step, err);
}

// ---- reading -----------------------------------------------------------------------------------------

void vkp_checkpoint_clear(vkp_checkpoint *ck) {
  if (!ck) return;
  cJSON_Delete(ck->json);
  ck->json = NULL;
}

vkp_status vkp_checkpoint_read(const char *dir, vkp_checkpoint *out, vkp_error *err) {
  memset(out, 0, sizeof *out);
  if (snprintf(out->dir, sizeof out->dir, "%s", dir) >= (int)sizeof out->dir)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: path too long", dir);
  char path[VKP_CHECKPOINT_PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s", dir, VKP_CHECKPOINT_STATE_FILE);
  cJSON *j = NULL;
  vkp_error e = {0};
  vkp_status st = vkp_json_load_object(path, STATE_MAX_BYTES, &j, &e);
  if (st) st = vkp_error_set(err, VKP_ERR_FORMAT, "%s", e.msg);   // missing or unreadable: not intact
  if (!st) st = state_from_json(j, path, &out->state, err);
  const char *slash = strrchr(dir, '/');
  int64_t named = folder_step(slash ? slash + 1 : dir);
  if (!st && named >= 0 && named != out->state.step)
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: key 'step' is %lld, the folder is step %lld", path,
                       (long long)out->state.step, (long long)named);
  const cJSON *files = j ? cJSON_GetObjectItemCaseSensitive(j, "files") : NULL;
  if (!st && files && !cJSON_IsObject(files))
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: key 'files' must be an object", path);
  if (!st && files) st = manifest_check(dir, files, err);   // checkpoints before the manifest: none
  if (st) {
    cJSON_Delete(j);
    return st;
  }
  out->json = j;
  return VKP_OK;
}

vkp_status vkp_checkpoint_recover(const char *run_dir, vkp_error *err) {
  char dir[VKP_CHECKPOINT_PATH_MAX];
  snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
  DIR *d = opendir(dir);
  vkp_status st = VKP_OK;
  if (!d && errno != ENOENT) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
  struct dirent *e;
  while (!st && d && (e = readdir(d))) {
    long long step;
    int n = 0;
    char kind[8] = "", left[VKP_CHECKPOINT_PATH_MAX + 300], base[VKP_CHECKPOINT_PATH_MAX];
    snprintf(left, sizeof left, "%s/%s", dir, e->d_name);
    if (folder_step(e->d_name) >= 0) {   // a checkpoint without its state file: pruning was killed
      char state[VKP_CHECKPOINT_PATH_MAX + 400];
      snprintf(state, sizeof state, "%s/%s", left, VKP_CHECKPOINT_STATE_FILE);
      struct stat sb;
      if (lstat(state, &sb) != 0 && errno == ENOENT) st = vkp_path_remove_all(left, err);
      continue;
    }
    if (sscanf(e->d_name, "step-%lld.%7[a-z]%n", &step, kind, &n) != 2 || e->d_name[n] || step < 0) continue;
    vkp_checkpoint_path(run_dir, step, base, sizeof base);
    struct stat sb;
    if (!strcmp(kind, "old") && stat(base, &sb) != 0) {   // killed between the two renames: the old one back
      if (rename(left, base) != 0)
        st = vkp_error_set(err, VKP_ERR_IO, "%s: cannot rename to %s: %s", left, base, strerror(errno));
    } else if (!strcmp(kind, "tmp") || !strcmp(kind, "old")) {   // an unfinished save, or a replaced copy
      st = vkp_path_remove_all(left, err);
    }
  }
  if (d) closedir(d);
  if (!st) vkp_dir_remove_stale_tmp(run_dir, 4);
  return st;
}

vkp_status vkp_checkpoint_trim_log(const vkp_checkpoint *ck, const char *run_dir, vkp_error *err) {
  const cJSON *n = ck->json ? cJSON_GetObjectItemCaseSensitive(ck->json, "log_bytes") : NULL;
  if (!cJSON_IsNumber(n) || n->valuedouble < 0 || n->valuedouble > 9007199254740992.0) return VKP_OK;   // older checkpoints
  char path[VKP_CHECKPOINT_PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s", run_dir, VKP_CHECKPOINT_LOG_FILE);
  size_t keep = (size_t)n->valuedouble, len = 0;
  char *text = NULL;
  struct stat sb;
  if (stat(path, &sb) != 0 || (uintmax_t)sb.st_size <= keep) return VKP_OK;   // nothing appended after the checkpoint
  VKP_TRY(vkp_file_read_all(path, (size_t)1 << 31, &text, &len, err));
  vkp_status st = VKP_OK;
  if (len > keep && (keep == 0 || text[keep - 1] == '\n')) {   // else not the log the checkpoint saw: leave it
    const void *chunks[1] = {text};
    size_t sizes[1] = {keep};
    st = vkp_file_write_atomic(path, chunks, sizes, 1, err);
  }
  free(text);
  return st;
}

vkp_status vkp_checkpoint_find_latest(const char *run_dir, vkp_checkpoint *out, vkp_error *err) {
  memset(out, 0, sizeof *out);
  step_list steps = {0};
  VKP_TRY(list_steps(run_dir, &steps, err));
  vkp_error first = {0};
  vkp_status st = VKP_ERR_NOT_FOUND;
  int skipped = 0;
  for (int32_t i = 0; i < steps.n && st; i++) {
    char dir[VKP_CHECKPOINT_PATH_MAX];
    vkp_checkpoint_path(run_dir, steps.v[i], dir, sizeof dir);
    vkp_error e = {0};
    st = vkp_checkpoint_read(dir, out, &e);
    if (st && !skipped++) first = e;
  }
  free(steps.v);
  if (st) {
    if (!skipped) return vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: no checkpoints to resume from", run_dir);
    return vkp_error_set(err, VKP_ERR_NOT_FOUND, "%s: no intact checkpoint to resume from (%d damaged; newest: %s)", run_dir,
                         skipped, first.msg);
  }
  out->skipped = skipped;
  return VKP_OK;
}

vkp_status vkp_checkpoint_load_optimizer(const vkp_checkpoint *ck, vkp_ctx *ctx, vkp_optimizer *opt, vkp_error *err) {
  char path[VKP_CHECKPOINT_PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s", ck->dir, VKP_CHECKPOINT_OPTIMIZER_FILE);
  if (vkp_optimizer_load(opt, path)) return vkp_error_set(err, VKP_ERR_FORMAT, "%s", vkp_ctx_error(ctx));
  return VKP_OK;
}
