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
// Only a regular file is replaced: when `path` is a symbolic link, a FIFO, a device or a directory
// the write is refused (VKP_ERR_IO, the message says what it is), never done through the link.
// Temporary files of `path` left by writers that were killed (`path.tmp.XXXXXXXX`, no longer
// locked by a running writer: each writer holds a flock on its own) are removed first.
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

// Removes, in `dir` and its folders down to `depth` levels (symbolic links are not followed), every
// temporary file or folder of vkp_file_write_atomic / vkp_dir_txn (`NAME.tmp.XXXXXXXX`) that no
// running writer holds: what killed writers left behind. Resuming a run sweeps its directory.
void vkp_dir_remove_stale_tmp(const char *dir, int depth);

// ---- test-only crash hook ----------------------------------------------------------------------
// When the environment variable VKPEFT_CRASH_AT is `SITE[@TEXT][:N]`, the N-th time (default 1)
// this process reaches crash point SITE with a path containing TEXT (any path when absent), it
// kills itself with SIGKILL, as a power cut or `kill -9` would at that moment. It exists for the
// crash-safety tests (tests/tools/test_crash_safety.c) and is never set in normal use. Sites:
//   write        vkp_file_write_atomic: half the bytes are in the temporary file
//   rename       vkp_file_write_atomic: the temporary file is complete and synced, not yet renamed
//   folder       vkp_dir_txn_commit: the new folder is complete, not yet in place
//   folder-old   vkp_dir_txn_commit: the new folder is in place, the old one not yet removed
//   checkpoint   vkp_checkpoint_save: every file of step-N.tmp/ is written, not yet renamed
//   checkpoint-old  vkp_checkpoint_save: an existing step-N/ is moved aside, the new one not yet in place
//   prune        vkp_checkpoint_save: the new checkpoint is in place, older ones not yet pruned
void vkp_crash_point(const char *site, const char *path);

// Creates a directory and its missing parents (mkdir -p); an existing directory is fine.
vkp_status vkp_dir_create(const char *path, vkp_error *err);

// Removes a file, or a directory and everything below it (rm -rf; symbolic links are removed, not
// followed). A path that does not exist is fine. Errors: VKP_ERR_IO (something could not be
// removed; the rest is still removed).
vkp_status vkp_path_remove_all(const char *path, vkp_error *err);

// ---- a whole folder, written atomically --------------------------------------------------------
// Writes a folder of files so that `path` is either the old folder or the complete new one, never
// a mix: the files go into a new sibling folder `path.tmp.XXXXXXXX` (locked with flock while it is
// written, so the next transaction on `path` removes the folders of killed writers), which then
// replaces `path` in one rename (renameat2 RENAME_EXCHANGE; where the filesystem lacks it, two
// renames with the old folder moved aside first). Usage:
//   vkp_dir_txn t;  VKP_TRY(vkp_dir_txn_begin(&t, out, err));
//   st = write files under t.tmp ...;  st = st ? (vkp_dir_txn_abort(&t), st) : vkp_dir_txn_commit(&t, err);
#define VKP_DIR_TXN_PATH_MAX 4096
typedef struct vkp_dir_txn {
  char path[VKP_DIR_TXN_PATH_MAX];   // the folder being replaced
  char tmp[VKP_DIR_TXN_PATH_MAX];    // where the new contents go
  int lock_fd;                       // open, flock'ed descriptor of tmp (-1 when none)
} vkp_dir_txn;

// Creates t->tmp (and the parents of `path`). Errors: VKP_ERR_INVALID (path too long),
// VKP_ERR_IO (`path` exists and is not a directory, or the folder cannot be created).
vkp_status vkp_dir_txn_begin(vkp_dir_txn *t, const char *path, vkp_error *err);
// Puts t->tmp in place of t->path and removes the old folder. On failure t->path is unchanged and
// t->tmp is removed. Errors: VKP_ERR_IO.
vkp_status vkp_dir_txn_commit(vkp_dir_txn *t, vkp_error *err);
// Removes t->tmp and everything in it; t->path is untouched.
void vkp_dir_txn_abort(vkp_dir_txn *t);

#endif
