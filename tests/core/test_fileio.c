// test_fileio.c — atomic writes as an attacker or a crash meets them: a symbolic link, FIFO or
// directory at the target is refused (and left as it was), temporary files of killed writers are
// cleaned up by the next write of the same file, and a running writer's temporary file is not.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vkp_fileio.h"
#include "vkp_test.h"

static vkp_status write_text(const char *path, const char *text, vkp_error *err) {
  const void *chunks[1] = {text};
  size_t sizes[1] = {strlen(text)};
  return vkp_file_write_atomic(path, chunks, sizes, 1, err);
}

static void expect_refused(const char *path, const char *what) {
  vkp_error err = {0};
  assert_int_equal(write_text(path, "new", &err), VKP_ERR_IO);
  if (!strstr(err.msg, path) || !strstr(err.msg, what) || !strstr(err.msg, "not a regular file"))
    fail_msg("message for %s: '%s' (want the path and '%s')", path, err.msg, what);
}

static void test_refuses_non_regular_targets(void **state) {
  char target[256], link[256], fifo[256], dir[256];
  vkp_test_dir_path(state, "target.txt", target, sizeof target);
  vkp_test_dir_path(state, "link.txt", link, sizeof link);
  vkp_test_dir_path(state, "fifo", fifo, sizeof fifo);
  vkp_test_dir_path(state, "dir", dir, sizeof dir);
  vkp_error err = {0};
  assert_int_equal(write_text(target, "original", &err), VKP_OK);
  assert_int_equal(symlink(target, link), 0);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  assert_int_equal(mkdir(dir, 0700), 0);

  expect_refused(link, "symbolic link");
  expect_refused(fifo, "FIFO");   // before the fix: the FIFO was replaced by a regular file
  expect_refused(dir, "directory");

  // Everything stays as it was: the link is still a link to the untouched target.
  struct stat sb;
  assert_int_equal(lstat(link, &sb), 0);
  assert_true(S_ISLNK(sb.st_mode));
  assert_int_equal(lstat(fifo, &sb), 0);
  assert_true(S_ISFIFO(sb.st_mode));
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(vkp_file_read_all(target, 100, &text, &len, &err), VKP_OK);
  assert_string_equal(text, "original");
  free(text);
  // A dangling link is refused too (no file appears at its target).
  char dangling[256], nowhere[256];
  vkp_test_dir_path(state, "dangling.txt", dangling, sizeof dangling);
  vkp_test_dir_path(state, "nowhere.txt", nowhere, sizeof nowhere);
  assert_int_equal(symlink(nowhere, dangling), 0);
  expect_refused(dangling, "symbolic link");
  assert_int_equal(access(nowhere, F_OK), -1);
}

static int count_named(const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) n += !strncmp(e->d_name, prefix, strlen(prefix));
  closedir(d);
  return n;
}

static void make_file(const char *path) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("half-written", f);
  fclose(f);
}

static void test_stale_temporary_files(void **state) {
  vkp_test_dir *env = *state;
  char out[256], stale[300], other[300], lookalike[300], live[300];
  vkp_test_dir_path(state, "OUT", out, sizeof out);
  // Left by writers that were killed (kill -9 between create and rename): nobody holds a lock.
  snprintf(stale, sizeof stale, "%s.tmp.0badc0de", out);
  make_file(stale);
  // Another target's temporary file and a name that only looks similar are not ours to remove.
  vkp_test_dir_path(state, "OTHER.tmp.0badc0de", other, sizeof other);
  make_file(other);
  snprintf(lookalike, sizeof lookalike, "%s.tmp.notours", out);
  make_file(lookalike);
  // A writer that is still running (holds the flock on its temporary file) keeps its file.
  snprintf(live, sizeof live, "%s.tmp.1234abcd", out);
  int ready[2];
  assert_int_equal(pipe(ready), 0);
  pid_t child = fork();
  assert_true(child >= 0);
  if (child == 0) {
    int fd = open(live, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) _exit(1);
    if (write(ready[1], "x", 1) != 1) _exit(1);
    pause();
    _exit(0);
  }
  char c;
  assert_int_equal(read(ready[0], &c, 1), 1);

  vkp_error err = {0};
  assert_int_equal(write_text(out, "done", &err), VKP_OK);
  assert_int_equal(access(stale, F_OK), -1);   // removed
  assert_int_equal(access(other, F_OK), 0);
  assert_int_equal(access(lookalike, F_OK), 0);
  assert_int_equal(access(live, F_OK), 0);     // the running writer's file stays

  // Once that writer is killed, its lock is gone and the next write of OUT removes the file.
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  assert_int_equal(write_text(out, "again", &err), VKP_OK);
  assert_int_equal(access(live, F_OK), -1);
  assert_int_equal(count_named(env->dir, "OUT.tmp."), 1);   // only the look-alike
  close(ready[0]);
  close(ready[1]);
}

// A writer killed at a random moment never leaves OUT half-written, and the next write cleans up.
static void test_killed_writers(void **state) {
  vkp_test_dir *env = *state;
  char out[256];
  vkp_test_dir_path(state, "big.bin", out, sizeof out);
  size_t n = (size_t)8 << 20;
  char *a = malloc(n), *b = malloc(n);
  assert_non_null(a);
  assert_non_null(b);
  memset(a, 'A', n);
  memset(b, 'B', n);
  vkp_error err = {0};
  const void *chunks[1] = {a};
  size_t sizes[1] = {n};
  assert_int_equal(vkp_file_write_atomic(out, chunks, sizes, 1, &err), VKP_OK);
  for (int round = 0; round < 6; round++) {
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
      const void *cb[1] = {b};
      for (;;) vkp_file_write_atomic(out, cb, sizes, 1, NULL);
    }
    usleep(2000 + 3000 * (useconds_t)round);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(vkp_file_read_all(out, n, &text, &len, &err), VKP_OK);
    assert_int_equal(len, n);   // all A or all B, never a mix or a short file
    assert_true(memchr(text, text[0] == 'A' ? 'B' : 'A', n) == NULL);
    free(text);
  }
  assert_int_equal(vkp_file_write_atomic(out, chunks, sizes, 1, &err), VKP_OK);
  assert_int_equal(count_named(env->dir, "big.bin.tmp."), 0);
  free(a);
  free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_refuses_non_regular_targets, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_stale_temporary_files, vkp_test_dir_setup, vkp_test_dir_teardown),
      cmocka_unit_test_setup_teardown(test_killed_writers, vkp_test_dir_setup, vkp_test_dir_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
