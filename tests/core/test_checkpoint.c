// test_checkpoint.c — core/train's checkpoints without a device: save (params through the
// callback, trainer state, RNG state, trainer keys), load, keep-last-N plus the best, and resuming
// from the newest *intact* checkpoint when newer ones are damaged (a truncated file, a truncated
// trainer_state.json, a crash that left a .tmp folder).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vkp_checkpoint.h"
#include "vkp_fileio.h"
#include "vkp_json.h"
#include "vkp_test.h"

// The "parameters" of a fake trainer: a file whose size and content depend on the step, in a
// subfolder as adapters are.
typedef struct fake {
  int64_t step;
} fake;

static vkp_status save_params(void *user, const char *dir, vkp_error *err) {
  const fake *f = user;
  char path[4200], text[64];
  snprintf(path, sizeof path, "%s/adapter", dir);
  VKP_TRY(vkp_dir_create(path, err));
  snprintf(path, sizeof path, "%s/adapter/weights.bin", dir);
  int n = snprintf(text, sizeof text, "weights of step %lld\n", (long long)f->step);
  const void *chunks[1] = {text};
  size_t sizes[1] = {(size_t)n};
  return vkp_file_write_atomic(path, chunks, sizes, 1, err);
}

static vkp_train_state state_at(int64_t step, int64_t best_step) {
  vkp_train_state s = {.step = step, .micro_step = 4 * step, .loader_epoch = step / 25, .loader_step = step % 25,
                       .best_metric = 0.5 + 0.001 * (double)best_step, .best_step = best_step, .has_rng = true};
  s.rng = vkp_rng_new(1234);
  for (int64_t i = 0; i < step; i++) (void)vkp_rng_u32(&s.rng);   // a position that depends on the step
  (void)vkp_rng_normal(&s.rng);                                     // and a cached normal
  return s;
}

static void save(const char *run, int64_t step, int64_t best_step, int keep_last) {
  fake f = {step};
  cJSON *extra = cJSON_CreateObject();
  cJSON_AddStringToObject(extra, "trainer", "fake");
  vkp_checkpoint_save_opts o = {.run_dir = run, .keep_last = keep_last, .save_params = save_params, .user = &f,
                                .extra = extra};
  vkp_train_state s = state_at(step, best_step);
  vkp_error err = {0};
  if (vkp_checkpoint_save(&o, &s, &err)) fail_msg("save step %lld: %s", (long long)step, err.msg);
  cJSON_Delete(extra);
}

static bool exists(const char *run, int64_t step) {
  char p[4200];
  vkp_checkpoint_path(run, step, p, sizeof p);
  return access(p, F_OK) == 0;
}

static void truncate_file(const char *path, off_t size) {
  if (truncate(path, size) != 0) fail_msg("cannot truncate %s", path);
}

static void test_save_load(void **state) {
  const char *run = ((vkp_test_dir *)*state)->dir;
  vkp_checkpoint ck;
  vkp_error err = {0};
  assert_int_equal(vkp_checkpoint_find_latest(run, &ck, &err), VKP_ERR_NOT_FOUND);
  save(run, 10, -1, 3);
  assert_int_equal(vkp_checkpoint_find_latest(run, &ck, &err), VKP_OK);
  assert_int_equal(ck.skipped, 0);
  vkp_train_state want = state_at(10, -1);
  assert_int_equal(ck.state.step, 10);
  assert_int_equal(ck.state.micro_step, 40);
  assert_int_equal(ck.state.loader_epoch, 0);
  assert_int_equal(ck.state.loader_step, 10);
  assert_int_equal(ck.state.best_step, -1);
  assert_true(ck.state.best_metric == want.best_metric);
  assert_true(ck.state.has_rng);
  assert_memory_equal(&ck.state.rng, &want.rng, sizeof want.rng);   // the exact RNG position
  assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ck.json, "trainer")), "fake");
  char p[4400];
  snprintf(p, sizeof p, "%s/adapter/weights.bin", ck.dir);
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(vkp_file_read_all(p, 1024, &text, &len, &err), VKP_OK);
  assert_string_equal(text, "weights of step 10\n");
  free(text);
  vkp_checkpoint_clear(&ck);
  // Saving the same step again replaces it.
  save(run, 10, -1, 3);
  assert_true(exists(run, 10));
  snprintf(p, sizeof p, "%s/checkpoints/step-00000010.old", run);
  assert_int_not_equal(access(p, F_OK), 0);
}

static void test_keep_last_and_best(void **state) {
  const char *run = ((vkp_test_dir *)*state)->dir;
  save(run, 10, 10, 2);
  save(run, 20, 10, 2);
  save(run, 30, 10, 2);   // keeps 20, 30 (newest two) and 10 (best)
  assert_true(exists(run, 10) && exists(run, 20) && exists(run, 30));
  save(run, 40, 10, 2);
  assert_true(exists(run, 10) && !exists(run, 20) && exists(run, 30) && exists(run, 40));
  save(run, 50, 40, 2);   // a new best: the old best goes
  assert_true(!exists(run, 10) && !exists(run, 30) && exists(run, 40) && exists(run, 50));
  save(run, 60, 40, 1);
  assert_true(exists(run, 40) && !exists(run, 50) && exists(run, 60));
}

static void test_damaged_latest(void **state) {
  const char *run = ((vkp_test_dir *)*state)->dir;
  for (int64_t s = 10; s <= 40; s += 10) save(run, s, -1, 10);
  vkp_checkpoint ck;
  vkp_error err = {0};
  char p[4400];
  // A truncated parameter file in the newest: step 30 is used.
  vkp_checkpoint_path(run, 40, p, sizeof p);
  strcat(p, "/adapter/weights.bin");
  truncate_file(p, 5);
  assert_int_equal(vkp_checkpoint_find_latest(run, &ck, &err), VKP_OK);
  assert_int_equal(ck.state.step, 30);
  assert_int_equal(ck.skipped, 1);
  vkp_checkpoint_clear(&ck);
  assert_int_equal(vkp_checkpoint_read(p, &ck, &err), VKP_ERR_FORMAT);   // not a checkpoint folder
  vkp_checkpoint_path(run, 40, p, sizeof p);
  assert_int_equal(vkp_checkpoint_read(p, &ck, &err), VKP_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "weights.bin"));
  // A truncated trainer_state.json in step 30: step 20.
  vkp_checkpoint_path(run, 30, p, sizeof p);
  strcat(p, "/" VKP_CHECKPOINT_STATE_FILE);
  truncate_file(p, 40);
  assert_int_equal(vkp_checkpoint_find_latest(run, &ck, &err), VKP_OK);
  assert_int_equal(ck.state.step, 20);
  assert_int_equal(ck.skipped, 2);
  vkp_checkpoint_clear(&ck);
  // A folder left by a crash mid-save is not a checkpoint; a state naming another step is damaged.
  snprintf(p, sizeof p, "%s/checkpoints/step-00000050.tmp", run);
  assert_int_equal(vkp_dir_create(p, &err), VKP_OK);
  vkp_checkpoint_path(run, 20, p, sizeof p);
  char q[4400];
  vkp_checkpoint_path(run, 25, q, sizeof q);
  assert_int_equal(rename(p, q), 0);
  assert_int_equal(vkp_checkpoint_find_latest(run, &ck, &err), VKP_OK);
  assert_int_equal(ck.state.step, 10);
  assert_int_equal(ck.skipped, 3);
  vkp_checkpoint_clear(&ck);
  // Nothing intact: not found, saying why.
  vkp_checkpoint_path(run, 10, p, sizeof p);
  strcat(p, "/" VKP_CHECKPOINT_STATE_FILE);
  assert_int_equal(unlink(p), 0);
  assert_int_equal(vkp_checkpoint_find_latest(run, &ck, &err), VKP_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "4 damaged"));
  // Saving again cleans the stale .tmp and works.
  save(run, 50, -1, 10);
  snprintf(p, sizeof p, "%s/checkpoints/step-00000050.tmp", run);
  assert_int_not_equal(access(p, F_OK), 0);
  assert_int_equal(vkp_checkpoint_find_latest(run, &ck, &err), VKP_OK);
  assert_int_equal(ck.state.step, 50);
  vkp_checkpoint_clear(&ck);
}

// A checkpoint written before the manifest and the RNG existed (vkpeft's first trainer_state.json)
// still resumes; a state file with a bad value names the file and the key.
static void test_legacy_and_bad_state(void **state) {
  const char *run = ((vkp_test_dir *)*state)->dir;
  char dir[4200], path[4400];
  vkp_checkpoint_path(run, 20, dir, sizeof dir);
  vkp_error err = {0};
  assert_int_equal(vkp_dir_create(dir, &err), VKP_OK);
  snprintf(path, sizeof path, "%s/%s", dir, VKP_CHECKPOINT_STATE_FILE);
  const char *legacy = "{\"step\": 20, \"micro_step\": 40, \"loader_epoch\": 1, \"loader_step\": 3, "
                       "\"best_val_accuracy\": 0.75, \"best_step\": 20, \"adapters\": 1}";
  const void *chunks[1] = {legacy};
  size_t sizes[1] = {strlen(legacy)};
  assert_int_equal(vkp_file_write_atomic(path, chunks, sizes, 1, &err), VKP_OK);
  vkp_checkpoint ck;
  assert_int_equal(vkp_checkpoint_find_latest(run, &ck, &err), VKP_OK);
  assert_int_equal(ck.state.step, 20);
  assert_int_equal(ck.state.loader_epoch, 1);
  assert_true(ck.state.best_metric == 0.75);
  assert_false(ck.state.has_rng);
  vkp_checkpoint_clear(&ck);
  static const char *const bad[][2] = {
      {"{\"step\": 20, \"micro_step\": -4}", "'micro_step'"},
      // "step": -5 (issue 11: it resumed and duplicated records).
      {"{\"step\": -5, \"micro_step\": 40, \"adapters\": 1}", "'step'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    chunks[0] = bad[i][0];
    sizes[0] = strlen(bad[i][0]);
    assert_int_equal(vkp_file_write_atomic(path, chunks, sizes, 1, &err), VKP_OK);
    assert_int_equal(vkp_checkpoint_read(dir, &ck, &err), VKP_ERR_FORMAT);
    assert_non_null(strstr(err.msg, bad[i][1]));
    assert_non_null(strstr(err.msg, VKP_CHECKPOINT_STATE_FILE));
    assert_int_equal(vkp_checkpoint_find_latest(run, &ck, &err), VKP_ERR_NOT_FOUND);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_save_load, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_keep_last_and_best, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_damaged_latest, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_legacy_and_bad_state, vkp_test_dir_setup, vkp_test_dir_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
