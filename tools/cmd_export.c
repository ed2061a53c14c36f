// cmd_export.c — `vkpeft export --model DIR --adapter DIR... --merge --output DIR`: a standalone
// checkpoint (HF layout of the model's family) with the adapters folded into the weights. The folder
// is written beside --output and renamed into place: it is the old folder or the complete new one.
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "vkp_fileio.h"

#include "cli_model.h"
#include "vkpeft_cli.h"

static int usage(void) {
  fprintf(stderr, "usage: vkpeft export --model DIR --adapter DIR[:scale]... --merge --output DIR\n"
                  "  Writes the checkpoint folder (config.json, weights, preprocessing) with the adapters merged.\n");
  return VKP_EXIT_BAD_INPUT;
}

// An existing --output is replaced as a whole, so it must look like a model folder (or be
// empty): a folder of other files is refused rather than deleted.
static vkp_status check_output(const char *out, vkp_error *err) {
  struct stat sb;
  if (lstat(out, &sb) != 0) return VKP_OK;
  if (!S_ISDIR(sb.st_mode))
    return vkp_error_set(err, VKP_ERR_IO, "%s: --output exists and is not a folder%s", out,
                         S_ISLNK(sb.st_mode) ? " (a symbolic link)" : "");
  DIR *d = opendir(out);
  if (!d) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot read the folder: %s", out, strerror(errno));
  bool empty = true, model = false;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    empty = false;
    model |= !strcmp(e->d_name, "config.json") || !strcmp(e->d_name, "model_index.json");
  }
  closedir(d);
  if (empty || model) return VKP_OK;
  return vkp_error_set(err, VKP_ERR_IO, "%s: --output exists and is not a model folder (no config.json); export "
                       "replaces the whole folder: remove it or choose another path", out);
}

int cmd_export(int argc, char **argv) {
  vkp_cli_model cm = {0};
  const char *output = NULL;
  for (int i = 1; i < argc; i++) {
    int r = vkp_cli_model_arg(&cm, argc, argv, &i);
    if (r < 0) return usage();
    if (r) continue;
    if (!strcmp(argv[i], "--output") && i + 1 < argc) output = argv[++i];
    else return usage();
  }
  if (!cm.model_dir || !output || !cm.merge) return usage();
  vkp_error err = {0};
  vkp_ctx *ctx = NULL;
  if (vkp_ctx_new(NULL, &ctx, &err)) return vkp_cli_fail("export", err.status, err.msg);
  vkp_loaded_model lm = {0};
  vkp_status st = vkp_cli_model_load(ctx, &cm, &lm, &err);
  // The folder appears complete or not at all: written beside it, then renamed into place.
  vkp_dir_txn txn;
  if (!st) st = check_output(output, &err);
  if (!st) st = vkp_dir_txn_begin(&txn, output, &err);
  if (!st) {
    st = lm.family->save(&lm, txn.tmp, &err);
    if (st) {
      // Messages name the output folder, not the temporary one.
      char msg[VKP_ERROR_MSG_MAX];
      const char *at = strstr(err.msg, txn.tmp);
      if (at) {
        snprintf(msg, sizeof msg, "%.*s%s%s", (int)(at - err.msg), err.msg, output, at + strlen(txn.tmp));
        snprintf(err.msg, sizeof err.msg, "%s", msg);
      }
      vkp_dir_txn_abort(&txn);
    } else {
      st = vkp_dir_txn_commit(&txn, &err);
    }
  }
  if (!st) printf("exported %s (%d adapter%s merged)\n", output, cm.n_adapters, cm.n_adapters == 1 ? "" : "s");
  vkp_loaded_model_free(&lm);
  vkp_ctx_free(ctx);
  return st ? vkp_cli_fail("export", st, err.msg) : VKP_EXIT_OK;
}

int cmd_merge(int argc, char **argv) {
  char *args[256];
  if (argc > 250) return usage();
  for (int i = 0; i < argc; i++) args[i] = argv[i];
  args[argc] = "--merge";
  return cmd_export(argc + 1, args);
}
