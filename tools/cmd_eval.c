// cmd_eval.c — `vkpeft eval --model DIR [--adapter DIR[:scale]]... --data SPEC [--batch N] [--json]`
// plus CLIP's options (zero-shot templates, linear probe, WiSE-FT interpolation, gallery).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_model.h"
#include "vkpeft_cli.h"

static int usage(void) {
  fprintf(stderr,
          "usage: vkpeft eval --model DIR [--adapter DIR[:scale]]... [--merge] --data SPEC [--batch N] [--json]\n"
          "                   [--templates FILE] [--probe] [--probe-data SPEC] [--interpolate A [--tuned DIR]]\n"
          "                   [--gallery OUT.png]\n"
          "  Image classifiers (ViT): accuracy, top-5 accuracy, loss, per-class precision/recall and the\n"
          "  confusion matrix. SPEC: fashion-mnist:test, mnist:test, digits, an image folder or a .csv/.jsonl list.\n"
          "  CLIP: retrieval recall@1/5/10 and mean/median rank both ways (image-text pairs), zero-shot\n"
          "  accuracy (class names x prompt templates), linear-probe accuracy (--probe), next to chance.\n"
          "  SPEC: emoji-noto, emoji-emojione, icons-paper|oxygen|tango, a caption folder, a pair list,\n"
          "  or a labelled set as above; add :val / :train [:FRACTION[:SEED]] for a held-out split.\n"
          "  --templates FILE   one prompt per line, \"{}\" where the class name goes\n"
          "  --probe-data SPEC  the linear probe's training set (default: the other side of the split)\n"
          "  --interpolate A    WiSE-FT: evaluate the weights (1-A)*zero-shot + A*tuned: --model with its\n"
          "                     --adapter merged is the tuned model, or --tuned DIR is (a full checkpoint)\n"
          "  --gallery OUT.png  the text->image retrieval gallery (top-5 per caption, right image framed)\n");
  return VKP_EXIT_BAD_INPUT;
}

int cmd_eval(int argc, char **argv) {
  vkp_cli_model cm = {0};
  vkp_eval_request req = {.batch = 256};
  bool have_alpha = false;
  for (int i = 1; i < argc; i++) {
    int r = vkp_cli_model_arg(&cm, argc, argv, &i);
    if (r < 0) return usage();
    if (r) continue;
    const char *a = argv[i];
    bool val = i + 1 < argc;
    if (!strcmp(a, "--data") && val) req.data = argv[++i];
    else if (!strcmp(a, "--batch") && val) {
      if (sscanf(argv[++i], "%d", &req.batch) != 1 || req.batch < 1) return usage();
    } else if (!strcmp(a, "--json")) req.json = true;
    else if (!strcmp(a, "--templates") && val) req.templates = argv[++i];
    else if (!strcmp(a, "--probe")) req.probe = true;
    else if (!strcmp(a, "--probe-data") && val) req.probe_data = argv[++i], req.probe = true;
    else if (!strcmp(a, "--tuned") && val) req.tuned = argv[++i];
    else if (!strcmp(a, "--gallery") && val) req.gallery = argv[++i];
    else if (!strcmp(a, "--interpolate") && val) {
      char *end;
      req.interpolate = strtof(argv[++i], &end);
      if (*end || !isfinite(req.interpolate)) {
        fprintf(stderr, "vkpeft eval: --interpolate %s: not a number\n", argv[i]);
        return VKP_EXIT_BAD_INPUT;
      }
      have_alpha = true;
    } else return usage();
  }
  if (!cm.model_dir || !req.data) return usage();
  if (req.tuned && !have_alpha) return vkp_cli_fail("eval", VKP_ERR_INVALID, "--tuned DIR needs --interpolate A");
  if (have_alpha && !req.tuned && !cm.n_adapters)
    return vkp_cli_fail("eval", VKP_ERR_INVALID, "--interpolate needs --adapter DIR (merged at scale A) or --tuned DIR (a full checkpoint)");
  if (have_alpha && req.tuned && cm.n_adapters)
    return vkp_cli_fail("eval", VKP_ERR_INVALID, "--interpolate: give --adapter or --tuned, not both");
  // WiSE-FT with adapters: the adapters are merged, and the family mixes the weights with a fresh
  // copy of --model's (for weight-level methods that is exactly θ + A·ΔW).
  if (have_alpha && cm.n_adapters) cm.merge = true;
  req.wise = have_alpha;
  req.model_dir = cm.model_dir;
  req.aux_dir = cm.n_adapters ? cm.adapters[0] : NULL;
  vkp_error err = {0};
  vkp_ctx *ctx = NULL;
  if (vkp_ctx_new(NULL, &ctx, &err)) return vkp_cli_fail("eval", err.status, err.msg);
  vkp_loaded_model lm = {0};
  vkp_status st = vkp_cli_model_load(ctx, &cm, &lm, &err);
  if (!st && !lm.family->eval)
    st = vkp_error_set(&err, VKP_ERR_UNSUPPORTED, "%s: %s models have no evaluation", cm.model_dir, lm.family->name);
  if (!st) st = lm.family->eval(&lm, &req, &err);
  vkp_loaded_model_free(&lm);
  vkp_ctx_free(ctx);
  return st ? vkp_cli_fail("eval", st, err.msg) : VKP_EXIT_OK;
}
