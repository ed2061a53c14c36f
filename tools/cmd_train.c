// cmd_train.c — `vkpeft train CONFIG.json [--set key=value]... | --resume RUN_DIR`: dispatches on
// the config's `task` ("classify", the default: ViT image classification; "clip": CLIP contrastive
// training, vlm/vkp_clip_train.h; "diffusion": LoRA training of a diffusion pipeline's UNet,
// diffusion/vkp_diffusion_train.h; "vae": AutoencoderKL training, diffusion/vkp_vae_train.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_classify.h"
#include "vkp_clip_train.h"
#include "vkp_config.h"
#include "vkp_diffusion_train.h"
#include "vkp_json.h"
#include "vkp_vae_train.h"
#include "vkpeft_cli.h"

static int usage(void) {
  fprintf(stderr,
          "usage: vkpeft train [CONFIG.json] [--set key=value]... [--quiet]   (no CONFIG: the defaults)\n"
          "       vkpeft train --resume RUN_DIR [--quiet]\n"
          "  Fine-tunes with PEFT methods per the config's \"task\": \"classify\" (default: a ViT image\n"
          "  classifier), \"clip\" (CLIP contrastive training / linear probe on image–text pairs) or\n"
          "  \"diffusion\" (LoRA etc. on a diffusers pipeline's UNet from image–caption pairs) or \"vae\"\n"
          "  (an AutoencoderKL from random weights or a vae/ folder);\n"
          "  writes a run directory (config.json, metrics.jsonl, checkpoints/, adapter/, plots/, report.html).\n"
          "  Keys: docs/TRAINING.md, docs/CLIP.md, README.md (diffusion); e.g. --set task=clip --set train.lr=3e-4 --set peft.0.r=16\n");
  return VKP_EXIT_BAD_INPUT;
}

typedef enum task { TASK_CLASSIFY = 0, TASK_CLIP, TASK_DIFFUSION, TASK_VAE } task;

// The task a config names: the last `--set task=...`, else the file's "task" key, else classify.
// A run directory's config.json (resume) has "task": "clip" / "diffusion" for those runs.
static vkp_status find_task(const char *path, const char *const *sets, int nsets, task *out, vkp_error *err) {
  const char *name = NULL;
  cJSON *doc = NULL;
  for (int i = 0; i < nsets; i++)
    if (!strncmp(sets[i], "task=", 5)) name = sets[i] + 5;
  if (!name && path) {
    VKP_TRY(vkp_json_load(path, 16 << 20, &doc, err));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "task");
    if (t && !cJSON_IsString(t)) {
      cJSON_Delete(doc);
      return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'task' must be a string, not %s", path, vkp_json_kind(t));
    }
    name = t ? t->valuestring : NULL;
  }
  vkp_status st = VKP_OK;
  if (!name || !strcmp(name, "classify") || !strcmp(name, "\"classify\"")) *out = TASK_CLASSIFY;
  else if (!strcmp(name, "clip") || !strcmp(name, "\"clip\"")) *out = TASK_CLIP;
  else if (!strcmp(name, "diffusion") || !strcmp(name, "\"diffusion\"")) *out = TASK_DIFFUSION;
  else if (!strcmp(name, "vae") || !strcmp(name, "\"vae\"")) *out = TASK_VAE;
  else st = vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'task' must be \"classify\", \"clip\", \"diffusion\" or \"vae\", not \"%s\"", path ? path : "--set", name);
  cJSON_Delete(doc);
  return st;
}

// The classification config: vkp_classify_defaults <- the file without its "task" key <- the
// sets other than task=.
static vkp_status classify_config(const char *path, const char *const *sets, int nsets, cJSON **out, vkp_error *err) {
  *out = NULL;
  cJSON *user = NULL, *cfg = cJSON_Parse(vkp_classify_defaults);
  if (!cfg) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  vkp_status st = path ? vkp_json_load(path, 16 << 20, &user, err) : VKP_OK;
  if (user) cJSON_DeleteItemFromObjectCaseSensitive(user, "task");
  if (!st && user) st = vkp_config_merge(cfg, user, path, err);
  for (int i = 0; i < nsets && !st; i++)
    if (strncmp(sets[i], "task=", 5)) st = vkp_config_apply_set(cfg, sets[i], err);
  if (!st && !cJSON_IsArray(vkp_config_get(cfg, "peft")))
    st = vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'peft' must be a list of adapters", path ? path : "config");
  cJSON_Delete(user);
  if (st) cJSON_Delete(cfg);
  else *out = cfg;
  return st;
}

static void print_summary_classify(const vkp_train_summary *s) {
  if (s->test_acc > 0) printf("test accuracy %.2f%% (top-5 %.2f%%)\n", 100 * s->test_acc, 100 * s->test_top5);
  printf("%lld steps in %.1f s (%.1f images/s); report: %s/report.html\n", (long long)s->steps, s->seconds, s->images_per_s,
         s->run_dir);
}

static void print_summary_diffusion(const vkp_diffusion_train_summary *s) {
  if (s->val_loss == s->val_loss) printf("validation loss %.5f\n", s->val_loss);
  printf("%lld steps in %.1f s (%.2f images/s); adapters in %s\n", (long long)s->steps, s->seconds, s->images_per_s, s->run_dir);
}

static void print_summary_clip(const vkp_clip_train_summary *s) {
  if (s->val_accuracy == s->val_accuracy) printf("validation accuracy %.2f%%\n", 100 * s->val_accuracy);
  else if (s->val_i2t_r1 == s->val_i2t_r1)
    printf("validation loss %.4f, R@1 image->text %.2f%%, text->image %.2f%%\n", s->val_loss, 100 * s->val_i2t_r1,
           100 * s->val_t2i_r1);
  if (s->test_accuracy == s->test_accuracy) printf("test accuracy %.2f%%\n", 100 * s->test_accuracy);
  else if (s->test_i2t_r1 == s->test_i2t_r1)
    printf("test loss %.4f, R@1 image->text %.2f%%, text->image %.2f%%\n", s->test_loss, 100 * s->test_i2t_r1, 100 * s->test_t2i_r1);
  printf("%lld steps in %.1f s (%.1f pairs/s); report: %s/report.html\n", (long long)s->steps, s->seconds, s->images_per_s,
         s->run_dir);
}

int cmd_train(int argc, char **argv) {
  const char *config = NULL, *resume = NULL;
  const char **sets = calloc((size_t)argc + 1, sizeof *sets);
  int nsets = 0;
  bool quiet = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--set") && i + 1 < argc) sets[nsets++] = argv[++i];
    else if (!strncmp(argv[i], "--set=", 6)) sets[nsets++] = argv[i] + 6;
    else if (!strcmp(argv[i], "--resume") && i + 1 < argc) resume = argv[++i];
    else if (!strcmp(argv[i], "--quiet")) quiet = true;
    else if (argv[i][0] == '-' || config) {
      free(sets);
      return usage();
    } else config = argv[i];
  }
  if ((config && resume) || (resume && nsets)) {
    free(sets);
    return usage();
  }
  vkp_error err = {0};
  char resume_cfg[4200];
  if (resume) snprintf(resume_cfg, sizeof resume_cfg, "%s/config.json", resume);
  task tk = TASK_CLASSIFY;
  cJSON *cfg = NULL;
  vkp_status st = find_task(resume ? resume_cfg : config, sets, nsets, &tk, &err);
  if (!st && !resume)
    st = tk == TASK_CLIP        ? vkp_clip_train_config(config, sets, nsets, &cfg, &err)
         : tk == TASK_DIFFUSION ? vkp_diffusion_train_config(config, sets, nsets, &cfg, &err)
         : tk == TASK_VAE       ? vkp_vae_train_config(config, sets, nsets, &cfg, &err)
                                : classify_config(config, sets, nsets, &cfg, &err);
  free(sets);
  if (st) return vkp_cli_fail("train", st, err.msg);
  vkp_ctx *ctx = NULL;
  if (vkp_ctx_new(NULL, &ctx, &err)) {
    cJSON_Delete(cfg);
    return vkp_cli_fail("train", err.status, err.msg);
  }
  vkp_train_summary cs;
  vkp_clip_train_summary ps;
  vkp_diffusion_train_summary ds;
  vkp_vae_train_summary vs;
  st = tk == TASK_CLIP        ? vkp_clip_train(ctx, cfg, resume, quiet, &ps, &err)
       : tk == TASK_DIFFUSION ? vkp_diffusion_train(ctx, cfg, resume, quiet, &ds, &err)
       : tk == TASK_VAE       ? vkp_vae_train(ctx, cfg, resume, quiet, &vs, &err)
                              : vkp_classify_train(ctx, cfg, resume, quiet, &cs, &err);
  cJSON_Delete(cfg);
  vkp_ctx_free(ctx);
  if (st) return vkp_cli_fail("train", st, err.msg);
  if (!quiet && tk == TASK_CLIP) print_summary_clip(&ps);
  else if (!quiet && tk == TASK_DIFFUSION) print_summary_diffusion(&ds);
  else if (!quiet && tk == TASK_VAE)
    printf("validation reconstruction loss %.5f; %lld steps in %.1f s (%.2f images/s); VAE in %s/vae\n", vs.val_rec,
           (long long)vs.steps, vs.seconds, vs.images_per_s, vs.run_dir);
  else if (!quiet) print_summary_classify(&cs);
  return VKP_EXIT_OK;
}
