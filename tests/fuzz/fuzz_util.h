// fuzz_util.h — what the libFuzzer targets share: the input as a file (readers that take a path),
// a private scratch folder for readers that take a folder or resolve paths next to a list, and
// splitting one input into several files at a separator.
#ifndef VKP_FUZZ_UTIL_H
#define VKP_FUZZ_UTIL_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// An in-memory file (memfd) reached by its /proc path holding head[0..head_n) then data[0..size),
// extended with zeros to `total` bytes when that is more (a sparse tail: costs no memory until
// read). `slot` (0..3) picks one of four files, so a target can hand a reader several at once. The
// path stays valid for the process; NULL if the file cannot be written.
static inline const char *fuzz_memfile_ext(int slot, const void *head, size_t head_n, const uint8_t *data, size_t size,
                                           size_t total) {
  static int fds[4] = {-1, -1, -1, -1};
  static char paths[4][64];
  if (fds[slot] < 0) {
    fds[slot] = memfd_create("fuzz", MFD_CLOEXEC);
    if (fds[slot] < 0) return NULL;
    snprintf(paths[slot], sizeof paths[slot], "/proc/self/fd/%d", fds[slot]);
  }
  if (ftruncate(fds[slot], 0) != 0 || (head_n && pwrite(fds[slot], head, head_n, 0) != (ssize_t)head_n) ||
      (size && pwrite(fds[slot], data, size, (off_t)head_n) != (ssize_t)size) ||
      (total > head_n + size && ftruncate(fds[slot], (off_t)total) != 0))
    return NULL;
  return paths[slot];
}

// data[0..size) as an in-memory file (see fuzz_memfile_ext).
static inline const char *fuzz_memfile(int slot, const uint8_t *data, size_t size) {
  return fuzz_memfile_ext(slot, NULL, 0, data, size, 0);
}

static char fuzz_dir_path[256];

static inline void fuzz_dir_remove(void) {
  DIR *d = opendir(fuzz_dir_path);
  if (!d) return;
  char p[600];
  for (struct dirent *e; (e = readdir(d));)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(p, sizeof p, "%s/%s", fuzz_dir_path, e->d_name);
      unlink(p);
    }
  closedir(d);
  rmdir(fuzz_dir_path);
}

// A private folder (under /dev/shm when there is one: no disk writes), created on the first call
// and removed with its files when the process exits. Aborts if it cannot be made.
static inline const char *fuzz_dir(void) {
  if (!fuzz_dir_path[0]) {
    snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/vkpeft-fuzz-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(fuzz_dir_path)) abort();
    atexit(fuzz_dir_remove);
  }
  return fuzz_dir_path;
}

// Writes data[0..size) to fuzz_dir()/name (replacing it); size (size_t)-1 removes the file instead.
// Returns the path (a static buffer per call site is the caller's business: copy it if needed).
static inline const char *fuzz_dir_file(const char *name, const void *data, size_t size, char *path, size_t cap) {
  snprintf(path, cap, "%s/%s", fuzz_dir(), name);
  if (size == (size_t)-1) {
    unlink(path);
    return path;
  }
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (size && fwrite(data, 1, size, f) != size) abort();
  fclose(f);
  return path;
}

// Splits data at every occurrence of `sep` into at most max parts (the last takes the rest);
// returns the number of parts (>= 1).
typedef struct fuzz_part {
  const uint8_t *p;
  size_t n;
} fuzz_part;

static inline int fuzz_split(const uint8_t *data, size_t size, const char *sep, fuzz_part *parts, int max) {
  size_t k = strlen(sep);
  int n = 0;
  while (n + 1 < max) {
    const uint8_t *hit = memmem(data, size, sep, k);
    if (!hit) break;
    parts[n++] = (fuzz_part){data, (size_t)(hit - data)};
    size -= (size_t)(hit - data) + k;
    data = hit + k;
  }
  parts[n++] = (fuzz_part){data, size};
  return n;
}

// A NUL-terminated copy of a part (free()); aborts on OOM.
static inline char *fuzz_strdup(fuzz_part part) {
  char *s = malloc(part.n + 1);
  if (!s) abort();
  memcpy(s, part.p, part.n);
  s[part.n] = '\0';
  return s;
}

#endif
