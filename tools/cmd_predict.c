// cmd_predict.c — `vkpeft predict --model DIR [--adapter DIR]... [--top K] IMAGE...`.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_model.h"
#include "vkp_vision_family.h"
#include "vkp_classify.h"
#include "vkp_png.h"
#include "vkpeft_cli.h"

#include <stb/stb_image.h>

static int usage(void) {
  fprintf(stderr, "usage: vkpeft predict --model DIR [--adapter DIR[:scale]]... [--top K] IMAGE...\n");
  return VKP_EXIT_BAD_INPUT;
}

int cmd_predict(int argc, char **argv) {
  vkp_cli_model cm = {0};
  int top = 5, n = 0;
  const char **files = calloc((size_t)argc, sizeof *files);
  for (int i = 1; i < argc; i++) {
    int r = vkp_cli_model_arg(&cm, argc, argv, &i);
    if (r < 0) return free(files), usage();
    if (r) continue;
    if (!strcmp(argv[i], "--top") && i + 1 < argc) {
      if (sscanf(argv[++i], "%d", &top) != 1 || top < 1) return free(files), usage();
    } else if (argv[i][0] == '-') return free(files), usage();
    else files[n++] = argv[i];
  }
  if (!cm.model_dir || n == 0) return free(files), usage();
  vkp_error err = {0};
  vkp_ctx *ctx = NULL;
  if (vkp_ctx_new(NULL, &ctx, &err)) return free(files), vkp_cli_fail("predict", err.status, err.msg);
  vkp_loaded_model lm = {0};
  vkp_status st = vkp_cli_model_load(ctx, &cm, &lm, &err);
  if (!st && lm.family != &vkp_family_vit)
    st = vkp_error_set(&err, VKP_ERR_UNSUPPORTED, "%s: predict classifies images: %s models are not image classifiers",
                       cm.model_dir, lm.family->name);
  vkp_vit *v = st ? NULL : ((vkp_vit_handle *)lm.impl)->vit;
  vkp_data_transform tf = st ? (vkp_data_transform){0} : ((vkp_vit_handle *)lm.impl)->tf;
  if (!st && ((vkp_vit_handle *)lm.impl)->tf_default)
    fprintf(stderr, "vkpeft: no preprocessor_config.json beside the model or adapter: pixels are only scaled to [0, 1]\n");
  int C = v ? v->cfg.num_channels : 0, S = v ? v->cfg.image_size : 0;
  float *pixels = v ? malloc((size_t)n * C * S * S * sizeof *pixels) : NULL;
  if (v && !pixels) st = vkp_error_set(&err, VKP_ERR_OOM, "out of host memory for %d images of %dx%d", n, S, S);
  for (int i = 0; i < n && !st; i++) {
    int w, h, c;
    // The declared size is checked before decoding (a small file may declare gigapixels), and
    // files stb_image 2.27 mishandles are refused as the data sets refuse them.
    if ((st = vkp_data_check_image_file(files[i], &err))) break;
    if (!stbi_info(files[i], &w, &h, &c)) {
      st = vkp_error_set(&err, VKP_ERR_FORMAT, "%s: cannot decode image (%s)", files[i], stbi_failure_reason());
      break;
    }
    if ((st = vkp_image_check_size(files[i], w, h, &err))) break;
    uint8_t *img = stbi_load(files[i], &w, &h, &c, C == 1 ? 1 : 3);
    if (!img) {
      st = vkp_error_set(&err, VKP_ERR_FORMAT, "%s: cannot decode image (%s)", files[i], stbi_failure_reason());
      break;
    }
    st = vkp_data_transform_apply(&tf, img, w, h, C == 1 ? 1 : 3, 0, pixels + (size_t)i * C * S * S, &err);
    stbi_image_free(img);
  }
  int k = v && top > v->cfg.num_labels ? v->cfg.num_labels : top;
  int32_t *cls = malloc((size_t)n * k * sizeof *cls);
  float *probs = malloc((size_t)n * k * sizeof *probs);
  if (!st && (!cls || !probs)) st = vkp_error_set(&err, VKP_ERR_OOM, "out of host memory");
  if (!st) st = vkp_classify_predict(v, pixels, n, k, cls, probs, &err);
  for (int i = 0; i < n && !st; i++) {
    printf("%s:", files[i]);
    for (int j = 0; j < k; j++) {
      char *label = vkp_cli_escape(v->cfg.labels[cls[i * k + j]], false);   // from config.json: no raw escape codes
      printf("%s %s %.1f%%", j ? "," : "", label ? label : "?", 100 * probs[i * k + j]);
      free(label);
    }
    printf("\n");
  }
  free(cls), free(probs), free(pixels), free(files);
  vkp_loaded_model_free(&lm);
  vkp_ctx_free(ctx);
  return st ? vkp_cli_fail("predict", st, err.msg) : VKP_EXIT_OK;
}
