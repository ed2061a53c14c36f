// cmd_embed.c — `vkpeft embed --model DIR [--adapter DIR[:scale]]... [--merge] (--images SPEC |
// --text "..."... | --texts FILE) --output OUT.safetensors [--batch N]`: CLIP image and/or text
// embeddings (L2-normalised) written to a safetensors file, `image_embeds` (N, P) and
// `text_embeds` (M, P) f32, with the image files and texts, in order, as JSON arrays in the
// `__metadata__` ("images", "texts"). The file is written atomically.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli_model.h"
#include "vkp_clip_eval.h"
#include "vkp_safetensors.h"
#include "vkpeft_cli.h"

#define MAX_TEXT_ARGS 4096

static int usage(void) {
  fprintf(stderr,
          "usage: vkpeft embed --model DIR [--adapter DIR[:scale]]... [--merge] [--batch N]\n"
          "                    (--images SPEC | --text TEXT... | --texts FILE)... --output OUT.safetensors\n"
          "  Writes image_embeds (N, P) and/or text_embeds (M, P), L2-normalised, and the image files /\n"
          "  texts in the file's __metadata__ (\"images\", \"texts\": JSON arrays). SPEC as for eval\n"
          "  (emoji-noto, a caption folder, an image folder, a list, ...[:val|:train]); FILE: one text a line.\n");
  return VKP_EXIT_BAD_INPUT;
}

// Lines of a text file (non-empty, without the line break). *buf holds the text (free it).
static vkp_status read_lines(const char *path, char **buf, const char ***lines, int64_t *n, vkp_error *err) {
  *buf = NULL, *lines = NULL, *n = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot open", path);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *t = len >= 0 ? malloc((size_t)len + 1) : NULL;
  if (!t || fread(t, 1, (size_t)len, f) != (size_t)len) {
    free(t), fclose(f);
    return vkp_error_set(err, len < 0 ? VKP_ERR_IO : VKP_ERR_OOM, "%s: cannot read", path);
  }
  fclose(f);
  t[len] = '\0';
  if (strlen(t) != (size_t)len) {
    free(t);
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: not a text file (it holds a NUL byte)", path);
  }
  int64_t cap = 1;
  for (long i = 0; i < len; i++) cap += t[i] == '\n';
  const char **ls = malloc((size_t)cap * sizeof *ls);
  if (!ls) {
    free(t);
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  int64_t k = 0;
  for (char *s = t; *s;) {
    char *e = strchr(s, '\n');
    char *next = e ? e + 1 : s + strlen(s);
    if (e) *e = '\0';
    size_t l = strlen(s);
    if (l && s[l - 1] == '\r') s[--l] = '\0';
    if (l) ls[k++] = s;
    s = next;
  }
  if (!k) {
    free(t), free(ls);
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: no texts (one per line)", path);
  }
  *buf = t, *lines = ls, *n = k;
  return VKP_OK;
}

static char *json_array(const char *const *s, int64_t n) {
  cJSON *a = cJSON_CreateArray();
  for (int64_t i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(s[i]));
  char *out = a ? cJSON_PrintUnformatted(a) : NULL;
  cJSON_Delete(a);
  return out;
}

int cmd_embed(int argc, char **argv) {
  vkp_cli_model cm = {0};
  const char *images = NULL, *texts_file = NULL, *output = NULL;
  const char **texts = calloc(MAX_TEXT_ARGS, sizeof *texts);
  int64_t n_text_args = 0;
  int batch = 64;
  if (!texts) return vkp_cli_fail("embed", VKP_ERR_OOM, "out of host memory");
  for (int i = 1; i < argc; i++) {
    int r = vkp_cli_model_arg(&cm, argc, argv, &i);
    if (r < 0) return free(texts), usage();
    if (r) continue;
    const char *a = argv[i];
    bool val = i + 1 < argc;
    if (!strcmp(a, "--images") && val) images = argv[++i];
    else if (!strcmp(a, "--texts") && val) texts_file = argv[++i];
    else if (!strcmp(a, "--output") && val) output = argv[++i];
    else if (!strcmp(a, "--batch") && val) {
      if (sscanf(argv[++i], "%d", &batch) != 1 || batch < 1) return free(texts), usage();
    } else if (!strcmp(a, "--text") && val) {
      // --text takes every following argument up to the next option
      while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) && n_text_args < MAX_TEXT_ARGS) texts[n_text_args++] = argv[++i];
    } else return free(texts), usage();
  }
  if (!cm.model_dir || !output || (!images && !texts_file && !n_text_args)) return free(texts), usage();
  if (texts_file && n_text_args) {
    free(texts);
    return vkp_cli_fail("embed", VKP_ERR_INVALID, "give --text or --texts FILE, not both");
  }
  vkp_error err = {0};
  vkp_ctx *ctx = NULL;
  vkp_loaded_model lm = {0};
  vkp_clip_tokenizer *tok = NULL;
  vkp_clip_embedder *e = NULL;
  vkp_clip_eval_data d = {0};
  vkp_safetensors_writer *w = NULL;
  char *file_buf = NULL, *meta = NULL;
  const char **file_lines = NULL, **names = NULL;
  float *img = NULL, *txt = NULL;
  int64_t nt = n_text_args;
  const char *const *tx = texts;
  vkp_status st = VKP_OK;
  if (texts_file) {
    st = read_lines(texts_file, &file_buf, &file_lines, &nt, &err);
    tx = file_lines;
  }
  if (!st) st = vkp_ctx_new(NULL, &ctx, &err);
  if (!st) st = vkp_cli_model_load(ctx, &cm, &lm, &err);
  if (!st && strcmp(lm.family->name, "clip"))
    st = vkp_error_set(&err, VKP_ERR_UNSUPPORTED, "%s: embed needs a CLIP model (this is %s)", cm.model_dir, lm.family->name);
  vkp_clip *c = st ? NULL : lm.impl;
  if (!st && images && !c->cfg.has_vision) st = vkp_error_set(&err, VKP_ERR_INVALID, "%s: --images: the model has no vision tower", cm.model_dir);
  if (!st && nt && !c->cfg.has_text) st = vkp_error_set(&err, VKP_ERR_INVALID, "%s: texts given, but the model has no text tower", cm.model_dir);
  if (!st) st = vkp_clip_embedder_new(c, batch, &e, &err);
  if (!st && c->cfg.has_vision) {   // the preprocessing the model (or its adapter) was trained with
    vkp_data_transform tf;
    st = vkp_clip_transform_load(cm.model_dir, cm.n_adapters ? cm.adapters[0] : NULL, c->cfg.vision.image_size, &tf, &err);
    if (!st) vkp_clip_embedder_set_transform(e, &tf);
  }
  if (!st) st = vkp_safetensors_writer_new(&w, &err);
  int64_t P = c ? vkp_clip_embed_dim(c) : 0;
  if (!st && images) {
    st = vkp_clip_eval_data_load(images, &d, &err);
    const vkp_dataset *ds = st ? NULL : vkp_clip_eval_data_images(&d);
    size_t n = st ? 0 : vkp_clip_eval_data_count(&d);
    if (!st) {
      img = malloc((n ? n : 1) * (size_t)P * sizeof *img);
      names = malloc((n ? n : 1) * sizeof *names);
      if (!img || !names) st = vkp_error_set(&err, VKP_ERR_OOM, "out of host memory");
    }
    for (size_t k = 0; !st && k < n; k++) {
      size_t i = d.idx ? d.idx[k] : k;
      names[k] = ds->paths && ds->paths[i] ? ds->paths[i] : d.pairs ? d.pairs->keys[i] : "";
    }
    if (!st) st = vkp_clip_embedder_dataset(e, ds, d.idx, n, img, &err);
    if (!st) st = vkp_safetensors_writer_add_f32(w, "image_embeds", VKP_DTYPE_F32, 2, (int64_t[]){(int64_t)n, P}, img, &err);
    if (!st && !(meta = json_array(names, (int64_t)n))) st = vkp_error_set(&err, VKP_ERR_OOM, "out of host memory");
    if (!st) st = vkp_safetensors_writer_set_metadata(w, "images", meta, &err);
    free(meta), meta = NULL;
  }
  if (!st && nt) {
    st = vkp_clip_tokenizer_for_model(cm.model_dir, &tok, &err);
    if (!st && !(txt = malloc((size_t)(nt * P) * sizeof *txt))) st = vkp_error_set(&err, VKP_ERR_OOM, "out of host memory");
    if (!st) st = vkp_clip_embedder_texts(e, tok, tx, nt, txt, &err);
    if (!st) st = vkp_safetensors_writer_add_f32(w, "text_embeds", VKP_DTYPE_F32, 2, (int64_t[]){nt, P}, txt, &err);
    if (!st && !(meta = json_array(tx, nt))) st = vkp_error_set(&err, VKP_ERR_OOM, "out of host memory");
    if (!st) st = vkp_safetensors_writer_set_metadata(w, "texts", meta, &err);
  }
  if (!st) st = vkp_safetensors_writer_set_metadata(w, "model", cm.model_dir, &err);
  if (!st) st = vkp_safetensors_writer_save(w, output, &err);
  if (!st) {
    fprintf(stderr, "vkpeft embed: wrote %s", output);
    if (images) fprintf(stderr, " (image_embeds %zu x %lld)", vkp_clip_eval_data_count(&d), (long long)P);
    if (nt) fprintf(stderr, " (text_embeds %lld x %lld)", (long long)nt, (long long)P);
    fprintf(stderr, "\n");
  }
  free(meta), free(img), free(txt), free(names), free(file_buf), free(file_lines), free(texts);
  vkp_safetensors_writer_free(w);
  vkp_clip_eval_data_free(&d);
  vkp_clip_tokenizer_free(tok);
  vkp_clip_embedder_free(e);
  vkp_loaded_model_free(&lm);
  vkp_ctx_free(ctx);
  return st ? vkp_cli_fail("embed", st, err.msg) : VKP_EXIT_OK;
}
