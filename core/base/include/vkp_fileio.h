// vkp_fileio.h — whole-file reads and crash-safe (atomic) whole-file writes.
//
// Every writer of run outputs (checkpoints, configs, metrics snapshots, PNGs) goes through
// vkp_file_write_atomic so that a crash, a full disk or a bad input never leaves a half-written
// file where a good one was.
#ifndef VKP_FILEIO_H
#define VKP_FILEIO_H

#include <stddef.h>

#include "vkp_status.h"

// Writes the concatenation of `nchunks` chunks (chunks[i] of sizes[i] bytes; a chunk may be NULL
// only if its size is 0) to `path` atomically: the bytes go to a new file `path.tmp.XXXXXXXX` in
// the same directory, which is fsynced, closed and renamed over `path`; then the directory is
// fsynced. On any failure the temporary file is removed and an existing file at `path` is left
// untouched. A new file gets mode 0666 & ~umask; a replaced regular file keeps its mode.
// If `path` is a symbolic link, the link itself is replaced.
// Errors: VKP_ERR_INVALID (bad arguments), VKP_ERR_IO (create/write/sync/rename failed).
vkp_status vkp_file_write_atomic(const char *path, const void *const *chunks, const size_t *sizes,
                                 int nchunks, vkp_error *err);

// Reads the whole file at `path` into a new buffer *out (caller frees with free()); the buffer
// is NUL-terminated (the NUL is not counted in *len), so text files can be used as C strings.
// Works for regular files and for pipes / procfs files of unknown size.
// Errors: VKP_ERR_IO (cannot open / read), VKP_ERR_FORMAT (larger than max_bytes),
// VKP_ERR_OOM. On error *out is NULL and *len is 0.
vkp_status vkp_file_read_all(const char *path, size_t max_bytes, char **out, size_t *len,
                             vkp_error *err);

// Creates a directory and its missing parents (mkdir -p); an existing directory is fine.
vkp_status vkp_dir_create(const char *path, vkp_error *err);

// Removes a file, or a directory and everything below it (rm -rf; symbolic links are removed, not
// followed). A path that does not exist is fine. Errors: VKP_ERR_IO (something could not be
// removed; the rest is still removed).
vkp_status vkp_path_remove_all(const char *path, vkp_error *err);

#endif
