// test_crash_safety.c — kill -9 at any moment never costs a good output (issue 11). `vkpeft train`
// killed at named points of its checkpoint writes and final outputs (the test-only hook
// VKPEFT_CRASH_AT, vkp_fileio.h) and at seeded random moments, then `train --resume`: the adapter is
// bit for bit the uninterrupted run's, metrics.jsonl has each record once, the checkpoints are
// intact, no temporary file is left. A killed `export` leaves the old folder or the complete new
// one; a killed `generate` never replaces a good PNG. The diffusion trainer resumes exactly after a
// kill mid-checkpoint.
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../diffusion/train_fixture.h"
#include "vkp_checkpoint.h"
#include "vkp_rng.h"
#include "vkp_sha256.h"
#include "vkp_strbuf.h"

#define KILLED 137   // 128 + SIGKILL

static char *slurp(const char *path, size_t *len) {
  char *t = NULL;
  size_t n = 0;
  vkp_error err = {0};
  if (vkp_file_read_all(path, (size_t)1 << 30, &t, &n, &err)) fail_msg("%s", err.msg);
  if (len) *len = n;
  return t;
}

static void assert_same_bytes(const char *a, const char *b) {
  size_t na, nb;
  char *x = slurp(a, &na), *y = slurp(b, &nb);
  if (na != nb || memcmp(x, y, na)) fail_msg("%s and %s differ (%zu and %zu bytes)", a, b, na, nb);
  free(x), free(y);
}

// Fails when anything under dir is named like a temporary file (`*.tmp*`).
static void assert_no_tmp(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) fail_msg("cannot open %s", dir);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char sub[1200];
    snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
    if (strstr(e->d_name, ".tmp")) fail_msg("temporary file left behind: %s", sub);
    struct stat sb;
    if (lstat(sub, &sb) == 0 && S_ISDIR(sb.st_mode)) assert_no_tmp(sub);
  }
  closedir(d);
}

// Every checkpoints/step-N folder of the run reads as intact (`lenient`: those that do not, a
// half-pruned or a damaged one, are passed over); returns the newest intact step (-1: none).
static long long checkpoints_intact(const char *run, bool lenient) {
  char dir[700];
  snprintf(dir, sizeof dir, "%s/checkpoints", run);
  DIR *d = opendir(dir);
  long long newest = -1;
  struct dirent *e;
  while (d && (e = readdir(d))) {
    long long s;
    char tail;
    if (sscanf(e->d_name, "step-%lld%c", &s, &tail) != 1) continue;
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    vkp_checkpoint ck;
    vkp_error err = {0};
    if (vkp_checkpoint_read(p, &ck, &err)) {
      if (lenient) continue;
      fail_msg("checkpoint not intact: %s", err.msg);
    }
    vkp_checkpoint_clear(&ck);
    if (s > newest) newest = s;
  }
  if (d) closedir(d);
  return newest;
}

// Runs `vkpeft args` with VKPEFT_CRASH_AT=site: it must die there.
static void run_crashing(const char *site, const char *args) {
  setenv("VKPEFT_CRASH_AT", site, 1);
  int rc = vkp_cli_run(args);
  unsetenv("VKPEFT_CRASH_AT");
  if (rc != KILLED || !strstr(vkp_cli_output(), "VKPEFT_CRASH_AT"))
    fail_msg("VKPEFT_CRASH_AT=%s vkpeft %s: exit %d, not killed at the crash point:\n%s", site, args, rc, vkp_cli_output());
}

// The run's records of the keys that do not depend on timing, one line per record, as text.
static char *records(const char *run) {
  static const char *const keys[] = {"loss", "lr", "grad_norm", "epoch", "val_accuracy", "val_loss", "test_accuracy",
                                     "test_loss", "val_loss_weighted"};
  vkp_metrics_log *log = metrics_of(run);
  vkp_strbuf b = {0};
  for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
    const vkp_metric_series *s = vkp_metrics_find(log, keys[k]);
    for (int32_t i = 0; s && i < s->n; i++) vkp_strbuf_printf(&b, "%s@%g=%.9g\n", keys[k], s->step[i], s->value[i]);
  }
  vkp_metrics_log_free(log);
  return b.p ? b.p : strdup("");
}

// Fails naming the first record that differs between two records() texts.
static void assert_same_records(const char *dir, const char *got, const char *want) {
  size_t i = 0, line = 0;
  for (; got[i] && got[i] == want[i]; i++) line = got[i] == '\n' ? i + 1 : line;
  if (!got[i] && !want[i]) return;
  fail_msg("%s: metrics.jsonl is not the uninterrupted run's: has '%.*s', want '%.*s' (a record duplicated or lost)", dir,
           (int)strcspn(got + line, "\n"), got + line, (int)strcspn(want + line, "\n"), want + line);
}

// ---- classification training --------------------------------------------------------------------

#define STEPS 12
static const char *const CLASSIFY =
    "train --quiet --set data.train=%s/px --set data.test=%s/px --set data.limit_test=48 "
    "--set data.val_fraction=0.125 --set train.val_limit=32 --set data.workers=1 --set model.init.image_size=8 "
    "--set model.init.patch_size=4 --set model.init.hidden_size=16 --set model.init.num_hidden_layers=1 "
    "--set model.init.num_attention_heads=2 --set model.init.intermediate_size=32 --set train.batch_size=16 "
    "--set train.max_steps=12 --set train.log_every=1 --set train.checkpoint_every=4 "
    "--set train.keep_last=2 --set train.warmup_steps=2 --set output_dir=%s";

static char ref_run[400], *ref_records;

static const char *run_dir(const char *name) {
  static char buf[4][400];
  static int k;
  char *b = buf[k++ % 4];
  snprintf(b, sizeof buf[0], "%s/%s", tmp_root, name);
  return b;
}

static void train_args(const char *dir, char *args, size_t cap) { snprintf(args, cap, CLASSIFY, tmp_root, tmp_root, dir); }

// px/<class>/<i>.png: 4 classes of 32 noisy 8x8 grey images (a bright quadrant each).
static void write_images(void) {
  vkp_rng rng = vkp_rng_new(5);
  vkp_error err = {0};
  vkp_image *img;
  if (vkp_image_new(8, 8, 1, &img, &err)) fail_msg("%s", err.msg);
  for (int c = 0; c < 4; c++)
    for (int i = 0; i < 32; i++) {
      for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++)
          img->data[y * 8 + x] = (uint8_t)((((y / 4) * 2 + x / 4) == c ? 150 : 40) + vkp_rng_u32(&rng) % 100);
      char p[600];
      snprintf(p, sizeof p, "%s/px/%c", tmp_root, 'a' + c);
      if (vkp_dir_create(p, &err)) fail_msg("%s", err.msg);
      snprintf(p, sizeof p, "%s/px/%c/%d.png", tmp_root, 'a' + c, i);
      if (vkp_png_write(p, img, NULL, 0, &err)) fail_msg("%s", err.msg);
    }
  vkp_image_free(img);
}

// The run reached the uninterrupted run's end exactly, its log has each record once, every
// checkpoint is intact and no temporary file is left.
static void assert_like_reference(const char *dir) {
  char a[700], b[700];
  snprintf(a, sizeof a, "%s/adapter/adapter_model.safetensors", ref_run);
  snprintf(b, sizeof b, "%s/adapter/adapter_model.safetensors", dir);
  assert_same_bytes(a, b);
  snprintf(a, sizeof a, "%s/adapter/adapter_config.json", ref_run);
  snprintf(b, sizeof b, "%s/adapter/adapter_config.json", dir);
  assert_same_bytes(a, b);
  char *got = records(dir);
  assert_same_records(dir, got, ref_records);
  free(got);
  assert_int_equal(checkpoints_intact(dir, false), STEPS);
  assert_no_tmp(dir);
}

static void resume(const char *dir) {
  char args[600];
  snprintf(args, sizeof args, "train --resume %s --quiet", dir);
  vkp_cli_expect(args, 0, NULL);
}

static void test_reference_run(void **state) {
  (void)state;
  char args[2000];
  write_images();
  snprintf(ref_run, sizeof ref_run, "%s/ref", tmp_root);
  train_args(ref_run, args, sizeof args);
  vkp_cli_expect(args, 0, NULL);
  ref_records = records(ref_run);
  // The reference itself: every training step logged once, validation at the end, the test once.
  const char *want[] = {"loss@1=", "loss@12=", "val_accuracy@12=", "test_accuracy@12="};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    if (!strstr(ref_records, want[i])) fail_msg("reference log lacks %s:\n%s", want[i], ref_records);
  int n = 0;
  for (const char *p = ref_records; (p = strstr(p, "loss@")); p++) n += p == ref_records || p[-1] == '\n';
  assert_int_equal(n, STEPS);
  assert_int_equal(checkpoints_intact(ref_run, false), STEPS);
  assert_no_tmp(ref_run);
}

// Killed at named points, one after the other in one run (the first kill in the fresh run, each
// next one in the resumed run, so resuming after a kill is itself killed): mid-file, before the
// rename, between the files of a checkpoint, while the resumed run rewrites metrics.jsonl, before
// the checkpoint folder's rename, while pruning, during the final outputs. After each kill the
// newest intact checkpoint is `kept`, the one before the interrupted save is untouched (the same
// bytes as the uninterrupted run's); the last resume ends as the uninterrupted run.
static void test_train_crash_points(void **state) {
  (void)state;
  static const struct {
    const char *site;
    long long kept;
  } points[] = {
      {"write@optimizer.safetensors:3", 8},   // mid-file, in the third checkpoint (step 12) of the fresh run
      {"rename@trainer_state.json", 8},       // resumed from 8: step 12's last file complete, not yet renamed
      {"rename@step-00000012.tmp/adapter/adapter_model", 8},   // between the files of the checkpoint
      {"write@metrics.jsonl", 8},             // cutting the log back to the checkpoint (records 9.. are there)
      {"checkpoint", 8},                      // the whole folder written, not yet in place
      {"prune", 12},                          // step 12 in place, step 4 half removed
      {"rename@adapter_model.safetensors", 12},   // final outputs: between the adapter's files
      {"write@report.html", 12},              // final outputs: after the test records
      {"checkpoint-old", 8},                  // step 12 damaged by hand (below): resumed from 8, the new
                                              // step 12 written, the damaged one moved aside
  };
  char args[2000], a[700], b[700];
  const char *dir = run_dir("points");
  for (size_t i = 0; i < sizeof points / sizeof *points; i++) {
    if (i == 0) train_args(dir, args, sizeof args);
    else snprintf(args, sizeof args, "train --resume %s --quiet", dir);
    if (!strcmp(points[i].site, "checkpoint-old")) {   // a truncated optimizer file: step 12 is damaged
      snprintf(a, sizeof a, "%s/checkpoints/step-00000012/optimizer.safetensors", dir);
      assert_int_equal(truncate(a, 100), 0);
    }
    run_crashing(points[i].site, args);
    long long kept = checkpoints_intact(dir, true);
    if (kept != points[i].kept) fail_msg("%s: newest intact checkpoint %lld, want %lld", points[i].site, kept, points[i].kept);
    for (int f = 0; f < 2 && kept == 8; f++) {   // the previous checkpoint is as it was written
      const char *file = f ? "optimizer.safetensors" : "adapter/adapter_model.safetensors";
      snprintf(a, sizeof a, "%s/checkpoints/step-00000008/%s", ref_run, file);
      snprintf(b, sizeof b, "%s/checkpoints/step-00000008/%s", dir, file);
      assert_same_bytes(a, b);
    }
    printf("  killed at %s: newest intact checkpoint step %lld\n", points[i].site, kept);
  }
  resume(dir);
  assert_like_reference(dir);
}

// Number of complete records in dir/metrics.jsonl whose step is at least `step`, or -1 when the
// test record is there.
static int log_reached(const char *dir, int step) {
  char path[700];
  snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[4096];
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    if (!strchr(line, '\n')) break;   // torn
    if (strstr(line, "test_accuracy")) n = -1;
    int s;
    if (n >= 0 && sscanf(line, "{\"step\":%d", &s) == 1 && s >= step) n++;
  }
  fclose(f);
  return n;
}

// Killed at seeded random moments (polled, not slept: when the log reaches a random step, or the
// final records are written), then resumed.
static void test_train_random_kills(void **state) {
  (void)state;
  vkp_rng rng = vkp_rng_new(11);
  char args[2200];
  for (int round = 0; round < 2; round++) {
    char name[32];
    snprintf(name, sizeof name, "random%d", round);
    const char *dir = run_dir(name);
    int at = round ? 9 + (int)(vkp_rng_u32(&rng) % 5) : 5 + (int)(vkp_rng_u32(&rng) % 4);   // 5..8, 9..13 (final outputs)
    train_args(dir, args, sizeof args);
    pid_t pid = vkp_cli_spawn(args);
    int status = 0;
    bool killed = false;
    for (long polls = 0; polls < 120000 && !killed; polls++) {   // up to 2 minutes
      int n = log_reached(dir, at > STEPS ? STEPS : at);
      if ((at > STEPS && n < 0) || (at <= STEPS && n != 0)) {
        kill(pid, SIGKILL);
        killed = true;
      } else if (waitpid(pid, &status, WNOHANG) == pid) {
        break;   // finished before the moment came: nothing to resume
      } else {
        nanosleep(&(struct timespec){0, 1000000L}, NULL);
      }
    }
    if (killed) waitpid(pid, &status, 0);
    if (!killed) fail_msg("round %d: the run ended (status %d) before step %d was logged", round, status, at);
    if (checkpoints_intact(dir, true) < 4) fail_msg("round %d: no intact checkpoint after a kill at step %d", round, at);
    resume(dir);
    assert_like_reference(dir);
    printf("  killed at step %d%s, resumed: the uninterrupted run's adapter and log\n", at, at > STEPS ? " (final outputs)" : "");
  }
}

// ---- export ------------------------------------------------------------------------------------

// All files of a folder, by name, as one text (name, size and SHA-256 of each).
static char *folder_bytes(const char *dir) {
  struct dirent **names;
  int n = scandir(dir, &names, NULL, alphasort);
  if (n < 0) fail_msg("cannot list %s", dir);
  vkp_strbuf b = {0};
  for (int i = 0; i < n; i++) {
    if (names[i]->d_name[0] != '.') {
      char p[1200];
      snprintf(p, sizeof p, "%s/%s", dir, names[i]->d_name);
      struct stat sb;
      char hex[65];
      vkp_error err = {0};
      if (stat(p, &sb) || vkp_sha256_file(p, 0, hex, &err)) fail_msg("%s: %s", p, err.msg);
      vkp_strbuf_printf(&b, "%s %lld %s\n", names[i]->d_name, (long long)sb.st_size, hex);
    }
    free(names[i]);
  }
  free(names);
  return b.p;
}

static void test_export_crash_points(void **state) {
  (void)state;
  const char *fmt = "export --model %s/vit/model --adapter %s/vit/adapters/%s --merge --output %s";
  char args[2000], out[400], other[400];
  snprintf(out, sizeof out, "%s/export", tmp_root);
  snprintf(other, sizeof other, "%s/export_ia3", tmp_root);
  snprintf(args, sizeof args, fmt, VKP_FIXTURES_DIR, VKP_FIXTURES_DIR, "ia3", other);
  vkp_cli_expect(args, 0, "exported");
  char *ia3 = folder_bytes(other);
  snprintf(args, sizeof args, fmt, VKP_FIXTURES_DIR, VKP_FIXTURES_DIR, "lora", out);
  vkp_cli_expect(args, 0, "exported");
  char *lora = folder_bytes(out);
  assert_string_not_equal(lora, ia3);
  // Before the new folder is in place the old one is untouched; after, the new one is complete.
  static const struct {
    const char *site;
    bool replaced;
  } points[] = {{"write@model.safetensors", false}, {"folder", false}, {"folder-old", true}};
  for (size_t i = 0; i < sizeof points / sizeof *points; i++) {
    char *before = folder_bytes(out);
    snprintf(args, sizeof args, fmt, VKP_FIXTURES_DIR, VKP_FIXTURES_DIR, strcmp(before, lora) ? "lora" : "ia3", out);
    run_crashing(points[i].site, args);
    char *now = folder_bytes(out);
    const char *want = points[i].replaced ? (strcmp(before, lora) ? lora : ia3) : before;
    if (strcmp(now, want))
      fail_msg("export killed at %s: the folder is not the %s export:\n%s\nwant:\n%s", points[i].site,
               points[i].replaced ? "new" : "old", now, want);
    free(now), free(before);
  }
  // The next export cleans up what the killed ones left.
  snprintf(args, sizeof args, fmt, VKP_FIXTURES_DIR, VKP_FIXTURES_DIR, "lora", out);
  vkp_cli_expect(args, 0, "exported");
  char *now = folder_bytes(out);
  assert_string_equal(now, lora);
  free(now), free(lora), free(ia3);
  DIR *d = opendir(tmp_root);
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (!strncmp(e->d_name, "export.tmp", 10)) fail_msg("left behind: %s/%s", tmp_root, e->d_name);
  if (d) closedir(d);
}

// ---- generate ----------------------------------------------------------------------------------

static void test_generate_crash_points(void **state) {
  (void)state;
  const char *fmt = "generate --model %s --prompt 'red, circle' --sampler ddim --steps 1 --seed %d --width 16 --height 16 "
                    "--output %s";
  char args[2000], png[400], folder[400];
  snprintf(png, sizeof png, "%s/gen/cat.png", tmp_root);
  snprintf(folder, sizeof folder, "%s/gen/many", tmp_root);
  vkp_dir_create(folder, NULL);
  snprintf(args, sizeof args, fmt, pipe_dir, 1, png);
  vkp_cli_expect(args, 0, NULL);
  size_t n_good, n;
  char *good = slurp(png, &n_good);
  // Killed with half the new PNG written: the good one stays as it was.
  snprintf(args, sizeof args, fmt, pipe_dir, 2, png);
  run_crashing("write@cat.png", args);
  char *now = slurp(png, &n);
  if (n != n_good || memcmp(now, good, n)) fail_msg("generate killed mid-write: the PNG was replaced");
  free(now), free(good);
  // A numbered output folder: the killed image's temporary file neither stays nor takes a number.
  snprintf(args, sizeof args, fmt, pipe_dir, 3, folder);
  run_crashing("write@.png", args);
  vkp_cli_expect(args, 0, NULL);
  char first[600];
  snprintf(first, sizeof first, "%s/00000-3.png", folder);
  vkp_image_free(read_png(first));
  assert_no_tmp(folder);
}

// ---- diffusion training ------------------------------------------------------------------------

static void test_diffusion_train_crash(void **state) {
  (void)state;
  const char *fmt = "train --quiet --set task=diffusion --set model.pretrained=%s --set data.train=%s --set data.resolution=16 "
                    "--set data.cache_dir=%s --set data.first_caption=true --set train.batch_size=2 --set train.max_steps=4 "
                    "--set train.checkpoint_every=2 --set train.log_every=1 --set train.val_limit=2 --set train.eval_batch=2 "
                    "--set output_dir=%s";
  char args[3000], ref[400], dir[400], a[700], b[700];
  snprintf(ref, sizeof ref, "%s/dref", tmp_root);
  snprintf(dir, sizeof dir, "%s/dkill", tmp_root);
  snprintf(args, sizeof args, fmt, pipe_dir, pairs_dir, cache_dir, ref);
  vkp_cli_expect(args, 0, NULL);
  snprintf(args, sizeof args, fmt, pipe_dir, pairs_dir, cache_dir, dir);
  run_crashing("rename@trainer_state.json:2", args);   // the step-4 checkpoint complete but its state file
  assert_int_equal(checkpoints_intact(dir, false), 2);
  snprintf(args, sizeof args, "train --resume %s --quiet", dir);
  vkp_cli_expect(args, 0, NULL);
  snprintf(a, sizeof a, "%s/adapter/adapter_model.safetensors", ref);
  snprintf(b, sizeof b, "%s/adapter/adapter_model.safetensors", dir);
  assert_same_tensors(a, b);
  char *want = records(ref), *got = records(dir);
  assert_same_records(dir, got, want);
  free(want), free(got);
  assert_int_equal(checkpoints_intact(dir, false), 4);
  assert_no_tmp(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reference_run),        cmocka_unit_test(test_train_crash_points),
      cmocka_unit_test(test_train_random_kills),   cmocka_unit_test(test_export_crash_points),
      cmocka_unit_test(test_generate_crash_points), cmocka_unit_test(test_diffusion_train_crash),
  };
  return cmocka_run_group_tests(tests, make_fixture, remove_fixture);
}
