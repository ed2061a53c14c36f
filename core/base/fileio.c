// fileio.c — whole-file reads and atomic whole-file writes (temp file, fsync, rename, fsync dir).
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include "vkp_fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// Writes all n bytes, retrying on EINTR and short writes. Returns 0 or -1 with errno set.
static int write_full(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    size_t chunk = n > (1u << 30) ? (1u << 30) : n;
    ssize_t w = write(fd, p, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (w == 0) {
      errno = EIO;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

// A random 32-bit value for temp-file names; collisions are handled by O_EXCL and a retry.
static uint32_t tmp_name_random(unsigned attempt) {
  uint32_t r;
  if (getrandom(&r, sizeof r, GRND_NONBLOCK) == (ssize_t)sizeof r) return r;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint32_t)ts.tv_nsec ^ ((uint32_t)getpid() << 16) ^ (attempt * 2654435761u);
}

// Copies the directory part of path ("." when there is none) into a new string.
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return strdup(".");
  size_t n = slash == path ? 1 : (size_t)(slash - path);
  char *d = malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, path, n);
  d[n] = '\0';
  return d;
}

// True for "<base>.tmp.XXXXXXXX" (8 lower-case hex digits): a temporary file of ours for <base>;
// base NULL: for any base.
static bool is_tmp_name_of(const char *name, const char *base) {
  size_t b = base ? strlen(base) : strlen(name) >= 13 ? strlen(name) - 13 : 0;
  if (b == 0 || (base && strncmp(name, base, b)) || strncmp(name + b, ".tmp.", 5)) return false;
  const char *h = name + b + 5;
  for (int i = 0; i < 8; i++)
    if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f'))) return false;
  return h[8] == '\0';
}

// Removes dir/name (a file, or a folder transaction's folder) unless a running writer holds its
// flock: a writer holds an exclusive lock on its temporary file or folder until it is renamed,
// and locks die with their process.
static void remove_if_unlocked(DIR *d, const char *dir, const char *name) {
  int dfd = dirfd(d);
  int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return;
  struct stat sb;
  if (fstat(fd, &sb) == 0 && flock(fd, LOCK_EX | LOCK_NB) == 0) {
    if (S_ISREG(sb.st_mode)) {
      (void)unlinkat(dfd, name, 0);
    } else if (S_ISDIR(sb.st_mode)) {   // a folder transaction's (vkp_dir_txn)
      size_t n = strlen(dir) + strlen(name) + 2;
      char *sub = malloc(n);
      if (sub) {
        snprintf(sub, n, "%s/%s", dir, name);
        (void)vkp_path_remove_all(sub, NULL);
        free(sub);
      }
    }
  }
  close(fd);   // releases the lock
}

// Removes the temporary files that earlier writes of `path` left behind when they were killed.
static void remove_stale_tmp(const char *path) {
  char *dir = dir_of(path);
  if (!dir) return;
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (is_tmp_name_of(e->d_name, base)) remove_if_unlocked(d, dir, e->d_name);
  if (d) closedir(d);
  free(dir);
}

static void sweep_tmp(const char *dir, int depth) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (is_tmp_name_of(e->d_name, NULL)) {
      remove_if_unlocked(d, dir, e->d_name);
      continue;
    }
    struct stat sb;
    if (depth <= 0 || fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(sb.st_mode)) continue;
    size_t n = strlen(dir) + strlen(e->d_name) + 2;
    char *sub = malloc(n);
    if (!sub) break;
    snprintf(sub, n, "%s/%s", dir, e->d_name);
    sweep_tmp(sub, depth - 1);
    free(sub);
  }
  closedir(d);
}

void vkp_dir_remove_stale_tmp(const char *dir, int depth) {
  if (dir && dir[0]) sweep_tmp(dir, depth);
}

// ---- the test-only crash hook (VKPEFT_CRASH_AT; see vkp_fileio.h) --------------------------------

void vkp_crash_point(const char *site, const char *path) {
  const char *spec = getenv("VKPEFT_CRASH_AT");
  if (!spec || !spec[0] || !site) return;
  // <site>[@<text>][:<n>]
  size_t sn = strcspn(spec, "@:");
  if (sn != strlen(site) || strncmp(spec, site, sn)) return;
  const char *rest = spec + sn;
  if (*rest == '@') {
    size_t fn = strcspn(rest + 1, ":");
    char filter[256];
    snprintf(filter, sizeof filter, "%.*s", (int)(fn < sizeof filter ? fn : sizeof filter - 1), rest + 1);
    if (!path || !strstr(path, filter)) return;
    rest += 1 + fn;
  }
  long n = *rest == ':' ? strtol(rest + 1, NULL, 10) : 1;
  static long hits;   // per process: the n-th matching point is the one that crashes
  if (++hits < n) return;
  fprintf(stderr, "vkpeft: VKPEFT_CRASH_AT=%s: SIGKILL at crash point %s (%s)\n", spec, site, path ? path : "");
  fflush(stderr);
  raise(SIGKILL);
}

vkp_status vkp_file_write_atomic(const char *path, const void *const *chunks, const size_t *sizes,
                                 int nchunks, vkp_error *err) {
  if (!path || !path[0]) return vkp_error_set(err, VKP_ERR_INVALID, "atomic write: empty path");
  if (nchunks < 0 || (nchunks > 0 && (!chunks || !sizes)))
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: atomic write: bad chunk list", path);
  for (int i = 0; i < nchunks; i++) {
    if (!chunks[i] && sizes[i] > 0)
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: atomic write: chunk %d is NULL", path, i);
  }

  // Only a regular file (or nothing) is replaced: a symbolic link, FIFO, device or directory at
  // `path` is refused rather than silently replaced by a regular file (or written through).
  struct stat target;
  if (lstat(path, &target) == 0 && !S_ISREG(target.st_mode))
    return vkp_error_set(err, VKP_ERR_IO, "%s: exists and is not a regular file (%s); vkpeft replaces files "
                         "atomically and will not replace it: remove it or choose another output path", path,
                         S_ISLNK(target.st_mode) ? "a symbolic link" : S_ISDIR(target.st_mode) ? "a directory"
                         : S_ISFIFO(target.st_mode) ? "a FIFO" : "a special file");
  remove_stale_tmp(path);

  vkp_status st = VKP_OK;
  size_t plen = strlen(path);
  char *tmp = malloc(plen + sizeof ".tmp.XXXXXXXX");
  if (!tmp) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", path);

  int fd = -1;
  for (unsigned attempt = 0; attempt < 32 && fd < 0; attempt++) {
    snprintf(tmp, plen + sizeof ".tmp.XXXXXXXX", "%s.tmp.%08x", path,
             (unsigned)tmp_name_random(attempt));
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST && errno != EINTR) break;
    if (fd < 0) continue;
    // Hold the lock that tells remove_stale_tmp this file is in use. Another writer's cleanup
    // may have taken the lock and removed the name between open and flock: then start over.
    struct stat a, b;
    if (flock(fd, LOCK_EX) != 0 || fstat(fd, &a) != 0 || stat(tmp, &b) != 0 || a.st_ino != b.st_ino ||
        a.st_dev != b.st_dev) {
      close(fd);
      fd = -1;
      errno = EEXIST;
    }
  }
  if (fd < 0) {
    st = vkp_error_set(err, VKP_ERR_IO, "%s: cannot create temporary file: %s", path,
                       strerror(errno));
    goto free_tmp_name;
  }

  // Keep the permissions of the file being replaced (best effort).
  struct stat old;
  if (stat(path, &old) == 0 && S_ISREG(old.st_mode)) (void)fchmod(fd, old.st_mode & 07777);

  // The bytes go out in two halves, with the crash hook's "write" point between them.
  size_t total = 0, done = 0;
  for (int i = 0; i < nchunks; i++) total += sizes[i];
  for (int half = 0; half < 2; half++) {
    size_t until = half ? total : total / 2, at = 0;
    for (int i = 0; i < nchunks && done < until; at += sizes[i], i++) {
      if (at + sizes[i] <= done) continue;
      size_t from = done - at, n = (at + sizes[i] < until ? at + sizes[i] : until) - done;
      if (write_full(fd, (const unsigned char *)chunks[i] + from, n) != 0) {
        st = vkp_error_set(err, VKP_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        goto close_tmp;
      }
      done += n;
    }
    if (!half) vkp_crash_point("write", path);
  }
  if (fsync(fd) != 0) {
    st = vkp_error_set(err, VKP_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    goto close_tmp;
  }
  vkp_crash_point("rename", path);
  // Renamed while still open (and locked), so no cleanup of stale files can take it away first;
  // the data is already synced, so closing afterwards loses nothing.
  if (rename(tmp, path) != 0) {
    st = vkp_error_set(err, VKP_ERR_IO, "%s: cannot rename temporary file into place: %s", path,
                       strerror(errno));
    goto close_tmp;
  }
  close(fd);
  fd = -1;

  // The new file is in place; make the rename durable. Filesystems that cannot sync a directory
  // (EINVAL, ENOTSUP) are accepted; an I/O error is reported, although the file is replaced.
  char *dir = dir_of(path);
  if (dir) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      if (fsync(dfd) != 0 && errno == EIO)
        st = vkp_error_set(err, VKP_ERR_IO, "%s: written, but syncing directory %s failed: %s",
                           path, dir, strerror(errno));
      close(dfd);
    }
    free(dir);
  }
  free(tmp);
  return st;

close_tmp:
  close(fd);
  unlink(tmp);
free_tmp_name:
  free(tmp);
  return st;
}

vkp_status vkp_file_read_all(const char *path, size_t max_bytes, char **out, size_t *len,
                             vkp_error *err) {
  if (out) *out = NULL;
  if (len) *len = 0;
  if (!path || !out || !len)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: read: bad arguments", path ? path : "(null)");

  vkp_status st = VKP_OK;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));

  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    st = vkp_error_set(err, VKP_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    goto close_fd;
  }
  if (S_ISDIR(sb.st_mode)) {
    st = vkp_error_set(err, VKP_ERR_IO, "%s: is a directory", path);
    goto close_fd;
  }
  if (S_ISREG(sb.st_mode) && (uintmax_t)sb.st_size > max_bytes) {
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: file size %jd exceeds the limit of %zu bytes",
                       path, (intmax_t)sb.st_size, max_bytes);
    goto close_fd;
  }

  // Regular files: one allocation of the right size (plus one byte to detect growth).
  size_t cap = S_ISREG(sb.st_mode) ? (size_t)sb.st_size + 1 : 4096;
  if (cap > max_bytes + 1 && max_bytes < SIZE_MAX) cap = max_bytes + 1;
  if (cap == 0) cap = 1;
  char *buf = malloc(cap + 1);
  if (!buf) {
    st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory reading file", path);
    goto close_fd;
  }
  size_t n = 0;
  for (;;) {
    if (n == cap) {
      if (n > max_bytes) break;
      size_t ncap = cap < SIZE_MAX / 2 ? cap * 2 : SIZE_MAX - 1;
      if (max_bytes < SIZE_MAX && ncap > max_bytes + 1) ncap = max_bytes + 1;
      char *nb = realloc(buf, ncap + 1);
      if (!nb) {
        st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory reading file", path);
        goto free_buf;
      }
      buf = nb;
      cap = ncap;
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0) {
      if (errno == EINTR) continue;
      st = vkp_error_set(err, VKP_ERR_IO, "%s: read failed: %s", path, strerror(errno));
      goto free_buf;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  if (n > max_bytes) {
    st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: file exceeds the limit of %zu bytes", path,
                       max_bytes);
    goto free_buf;
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  close(fd);
  return VKP_OK;

free_buf:
  free(buf);
close_fd:
  close(fd);
  return st;
}

vkp_status vkp_dir_create(const char *path, vkp_error *err) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: path too long", path);
  for (char *p = tmp + 1;; p++) {
    bool end = *p == '\0';
    if (*p == '/' || end) {
      *p = '\0';
      struct stat sb;
      if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return vkp_error_set(err, VKP_ERR_IO, "%s: cannot create directory (%s)", tmp, strerror(errno));
      if (stat(tmp, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return vkp_error_set(err, VKP_ERR_IO, "%s: exists and is not a directory", tmp);
      if (end) break;
      *p = '/';
    }
  }
  return VKP_OK;
}

vkp_status vkp_path_remove_all(const char *path, vkp_error *err) {
  struct stat sb;
  if (lstat(path, &sb) != 0)
    return errno == ENOENT ? VKP_OK : vkp_error_set(err, VKP_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
  if (!S_ISDIR(sb.st_mode)) {
    if (unlink(path) != 0 && errno != ENOENT)
      return vkp_error_set(err, VKP_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
    return VKP_OK;
  }
  vkp_status st = VKP_OK;
  DIR *d = opendir(path);
  if (!d) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot open directory: %s", path, strerror(errno));
  size_t plen = strlen(path);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    size_t n = plen + strlen(e->d_name) + 2;
    char *sub = malloc(n);
    if (!sub) {
      st = vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", path);
      break;
    }
    snprintf(sub, n, "%s/%s", path, e->d_name);
    vkp_status s2 = vkp_path_remove_all(sub, err);
    if (!st) st = s2;
    free(sub);
  }
  closedir(d);
  if (rmdir(path) != 0 && !st) st = vkp_error_set(err, VKP_ERR_IO, "%s: cannot remove directory: %s", path, strerror(errno));
  return st;
}

// ---- folder transactions --------------------------------------------------------------------------

vkp_status vkp_dir_txn_begin(vkp_dir_txn *t, const char *path, vkp_error *err) {
  memset(t, 0, sizeof *t);
  t->lock_fd = -1;
  if (!path || !path[0] || strlen(path) + sizeof ".tmp.XXXXXXXX" > sizeof t->tmp)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: bad or too long folder path", path ? path : "(null)");
  snprintf(t->path, sizeof t->path, "%s", path);
  while (strlen(t->path) > 1 && t->path[strlen(t->path) - 1] == '/') t->path[strlen(t->path) - 1] = '\0';
  struct stat sb;
  if (lstat(t->path, &sb) == 0 && !S_ISDIR(sb.st_mode))
    return vkp_error_set(err, VKP_ERR_IO, "%s: exists and is not a folder (%s); remove it or choose another output path",
                         t->path, S_ISLNK(sb.st_mode) ? "a symbolic link" : "a file");
  char *parent = dir_of(t->path);
  if (!parent) return vkp_error_set(err, VKP_ERR_OOM, "%s: out of memory", t->path);
  vkp_status st = vkp_dir_create(parent, err);
  free(parent);
  if (st) return st;
  remove_stale_tmp(t->path);
  for (unsigned attempt = 0; attempt < 32; attempt++) {
    snprintf(t->tmp, sizeof t->tmp, "%s.tmp.%08x", t->path, (unsigned)tmp_name_random(attempt));
    if (mkdir(t->tmp, 0755) != 0) {
      if (errno == EEXIST || errno == EINTR) continue;
      break;
    }
    int fd = open(t->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat a, b;
    if (fd >= 0 && flock(fd, LOCK_EX) == 0 && fstat(fd, &a) == 0 && stat(t->tmp, &b) == 0 && a.st_ino == b.st_ino &&
        a.st_dev == b.st_dev) {
      t->lock_fd = fd;
      return VKP_OK;
    }
    if (fd >= 0) close(fd);   // taken away by another transaction's cleanup: try another name
    errno = EEXIST;
  }
  st = vkp_error_set(err, VKP_ERR_IO, "%s: cannot create a temporary folder beside it: %s", t->path, strerror(errno));
  t->tmp[0] = '\0';
  return st;
}

void vkp_dir_txn_abort(vkp_dir_txn *t) {
  if (t->tmp[0]) (void)vkp_path_remove_all(t->tmp, NULL);
  if (t->lock_fd >= 0) close(t->lock_fd);
  t->lock_fd = -1;
  t->tmp[0] = '\0';
}

vkp_status vkp_dir_txn_commit(vkp_dir_txn *t, vkp_error *err) {
  if (!t->tmp[0]) return vkp_error_set(err, VKP_ERR_INVALID, "%s: folder transaction was not begun", t->path);
  // The new files are durable before the folder appears under its name.
  int dfd = open(t->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)fsync(dfd);
    close(dfd);
  }
  vkp_crash_point("folder", t->path);
  struct stat sb;
  vkp_status st = VKP_OK;
  if (lstat(t->path, &sb) != 0) {   // nothing there yet
    if (rename(t->tmp, t->path) != 0)
      st = vkp_error_set(err, VKP_ERR_IO, "%s: cannot rename the new folder into place: %s", t->path, strerror(errno));
  } else if (!S_ISDIR(sb.st_mode)) {
    st = vkp_error_set(err, VKP_ERR_IO, "%s: exists and is not a folder; remove it or choose another output path", t->path);
  } else if (renameat2(AT_FDCWD, t->tmp, AT_FDCWD, t->path, RENAME_EXCHANGE) == 0) {
    vkp_crash_point("folder-old", t->path);   // the old folder is under the temporary name now
    (void)vkp_path_remove_all(t->tmp, NULL);   // now the old folder
  } else {
    // No atomic exchange here: move the old folder aside (under a name of ours, so a crash in
    // between leaves something the next transaction cleans up), the new one in, the old one out.
    char old[VKP_DIR_TXN_PATH_MAX + 16];
    snprintf(old, sizeof old, "%s.tmp.%08x", t->path, (unsigned)tmp_name_random(7));
    if (rename(t->path, old) != 0) {
      st = vkp_error_set(err, VKP_ERR_IO, "%s: cannot move the old folder aside: %s", t->path, strerror(errno));
    } else if (rename(t->tmp, t->path) != 0) {
      st = vkp_error_set(err, VKP_ERR_IO, "%s: cannot rename the new folder into place: %s", t->path, strerror(errno));
      (void)rename(old, t->path);
    } else {
      (void)vkp_path_remove_all(old, NULL);
    }
  }
  if (st) {
    vkp_dir_txn_abort(t);
    return st;
  }
  char *parent = dir_of(t->path);
  if (parent) {
    int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd >= 0) {
      (void)fsync(pfd);
      close(pfd);
    }
    free(parent);
  }
  if (t->lock_fd >= 0) close(t->lock_fd);
  t->lock_fd = -1;
  t->tmp[0] = '\0';
  return VKP_OK;
}
