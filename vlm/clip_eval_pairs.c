// clip_eval_pairs.c — evaluation of an image–text pair set: retrieval both ways over every caption,
// zero-shot over the images' names, the retrieval gallery (the trainer's validation and `vkpeft eval`).
#include <stdlib.h>
#include <string.h>

#include "vkp_clip_eval.h"

vkp_status vkp_clip_eval_pairs(vkp_clip *c, const vkp_clip_tokenizer *tok, const vkp_pairs *p, const size_t *idx,
                               size_t n, const vkp_clip_eval_opts *opts, vkp_clip_eval_result *out, vkp_error *err) {
  memset(out, 0, sizeof *out);
  vkp_clip_eval_opts o = opts ? *opts : (vkp_clip_eval_opts){0};
  if (!c || !tok || !p) return vkp_error_set(err, VKP_ERR_INVALID, "clip eval: bad arguments");
  if (!idx) n = vkp_pairs_count(p);
  if (!n) return vkp_error_set(err, VKP_ERR_INVALID, "clip eval: no images to evaluate");
  if (!c->cfg.has_text || !c->cfg.has_vision)
    return vkp_error_set(err, VKP_ERR_INVALID, "clip eval: retrieval needs a model with both towers");
  for (size_t k = 0; idx && k < n; k++)
    if (idx[k] >= vkp_pairs_count(p)) return vkp_error_set(err, VKP_ERR_INVALID, "clip eval: image index %zu out of range", idx[k]);
  vkp_clip_embedder *own = NULL, *e = o.embedder;
  if (!e) {
    VKP_TRY(vkp_clip_embedder_new(c, o.batch, &own, err));
    e = own;
    if (o.transform) vkp_clip_embedder_set_transform(e, o.transform);
  }
  int64_t d = vkp_clip_embed_dim(c), nt = 0;
  for (size_t k = 0; k < n; k++) nt += (int64_t)vkp_pairs_n_captions(p, idx ? idx[k] : k);
  float *img = malloc(n * (size_t)d * sizeof *img), *txt = malloc((size_t)(nt * d) * sizeof *txt), *cls = NULL;
  const char **texts = malloc((size_t)nt * sizeof *texts);
  int64_t *text_image = malloc((size_t)nt * sizeof *text_image);
  int32_t *labels = malloc(n * sizeof *labels), *remap = NULL;
  const char **names = NULL;
  vkp_status st = img && txt && texts && text_image && labels ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  int64_t t = 0;
  for (size_t k = 0; k < n && !st; k++) {
    size_t i = idx ? idx[k] : k;
    for (size_t j = 0; j < vkp_pairs_n_captions(p, i); j++) texts[t] = vkp_pairs_caption(p, i, j), text_image[t++] = (int64_t)k;
  }
  if (!st) st = vkp_clip_embedder_dataset(e, p->images, idx, n, img, err);
  if (!st) st = vkp_clip_embedder_texts(e, tok, texts, nt, txt, err);
  if (!st) st = vkp_clip_retrieval(img, (int64_t)n, txt, nt, text_image, d, &out->retrieval, NULL, NULL, err);
  // zero-shot over the distinct names of these images (compact ids in the set's name order)
  int n_cls = 0, n_all = p->images->n_classes;
  if (!st && o.zero_shot && n_all > 0) {
    remap = malloc((size_t)n_all * sizeof *remap);
    names = malloc((size_t)n_all * sizeof *names);
    if (!remap || !names) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    for (int k = 0; !st && k < n_all; k++) remap[k] = -1;
    for (size_t k = 0; !st && k < n; k++) {
      int32_t y = p->images->labels[idx ? idx[k] : k];
      if (y >= 0 && y < n_all) remap[y] = 0;
    }
    for (int k = 0; !st && k < n_all; k++)
      if (remap[k] == 0) names[n_cls] = p->images->class_names[k], remap[k] = n_cls++;
    for (size_t k = 0; !st && k < n; k++) {
      int32_t y = p->images->labels[idx ? idx[k] : k];
      labels[k] = y >= 0 && y < n_all ? remap[y] : -1;
    }
  }
  if (!st && n_cls >= 2) {
    cls = malloc((size_t)n_cls * (size_t)d * sizeof *cls);
    if (!cls) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    if (!st) st = vkp_clip_zero_shot_classifier(c, e, tok, names, n_cls, o.templates, o.templates ? o.n_templates : 0, cls, err);
    if (!st) st = vkp_clip_zero_shot(img, (int64_t)n, labels, cls, n_cls, d, &out->zero_shot, NULL, NULL, err);
    if (!st) out->has_zero_shot = true;
  }
  if (!st && o.gallery_path) {
    vkp_clip_gallery g = {.images = p->images, .image_index = idx, .image_embeds = img, .n_images = (int64_t)n,
                          .text_embeds = txt, .texts = texts, .text_image = text_image, .n_texts = nt, .dim = d,
                          .n_queries = o.gallery_queries};
    st = vkp_clip_gallery_png(&g, o.gallery_path, err);
  }
  free(img), free(txt), free(cls), free(texts), free(text_image), free(labels), free(remap), free(names);
  vkp_clip_embedder_free(own);
  return st;
}
