// clip_eval_cmd.c — `vkpeft eval` on a CLIP model (the family's eval hook): zero-shot accuracy,
// retrieval recall both ways, linear-probe accuracy, WiSE-FT with a full checkpoint, the gallery;
// printed as a table or one JSON object, with chance levels beside the measured numbers.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "vkp_clip_eval.h"

typedef struct probe_side {
  vkp_clip_eval_data own;       // when loaded from another spec
  const vkp_dataset *ds;
  const size_t *idx;
  size_t n;
} probe_side;

// Label of image i of a data set (name id for pairs), mapped into names[] (appended when new).
static int32_t map_label(const vkp_dataset *ds, size_t i, const char ***names, int *n_names, int *cap) {
  int32_t y = ds->labels[i];
  if (y < 0 || y >= ds->n_classes) return -1;
  const char *name = ds->class_names[y];
  for (int k = 0; k < *n_names; k++)
    if (!strcmp((*names)[k], name)) return k;
  if (*n_names == *cap) {
    int nc = *cap ? *cap * 2 : 64;
    const char **nn = realloc(*names, (size_t)nc * sizeof *nn);
    if (!nn) return -2;
    *names = nn, *cap = nc;
  }
  (*names)[*n_names] = name;
  return (*n_names)++;
}

static vkp_status run_probe(vkp_clip_embedder *e, const vkp_clip_eval_data *d, const vkp_eval_request *req,
                            vkp_clip_probe_result *res, int64_t *n_train, int64_t *n_test, vkp_error *err) {
  const vkp_dataset *ds = vkp_clip_eval_data_images(d);
  probe_side tr = {0};
  size_t *half_tr = NULL, *half_te = NULL, n_half_tr = 0, n_half_te = 0;
  const size_t *te_idx = d->idx;
  size_t te_n = vkp_clip_eval_data_count(d);
  vkp_status st = VKP_OK;
  const char *other = req->probe_data ? req->probe_data : d->other_named[0] ? d->other_named : NULL;
  if (other) {
    st = vkp_clip_eval_data_load(other, &tr.own, err);
    if (!st) tr.ds = vkp_clip_eval_data_images(&tr.own), tr.idx = tr.own.idx, tr.n = vkp_clip_eval_data_count(&tr.own);
  } else if (d->split) {
    tr.ds = ds, tr.idx = d->other_idx, tr.n = d->n_other;
  } else {   // no training side: a stratified half of the evaluated images trains, the other half tests
    vkp_dataset *sub = NULL;
    if (d->idx) st = vkp_dataset_subset(ds, d->idx, d->n, &sub, err);
    if (!st) st = vkp_dataset_split(sub ? sub : ds, 0.5, 0, true, &half_tr, &n_half_tr, &half_te, &n_half_te, err);
    for (size_t k = 0; !st && d->idx && k < n_half_tr; k++) half_tr[k] = d->idx[half_tr[k]];
    for (size_t k = 0; !st && d->idx && k < n_half_te; k++) half_te[k] = d->idx[half_te[k]];
    vkp_dataset_free(sub);
    tr.ds = ds, tr.idx = half_tr, tr.n = n_half_tr, te_idx = half_te, te_n = n_half_te;
  }
  int64_t dim = vkp_clip_embed_dim(vkp_clip_embedder_model(e));
  float *xtr = NULL, *xte = NULL;
  int32_t *ytr = NULL, *yte = NULL;
  const char **names = NULL;
  int n_names = 0, cap = 0;
  if (!st && (!tr.n || !te_n)) st = vkp_error_set(err, VKP_ERR_INVALID, "linear probe: an empty training or test side");
  if (!st) {
    xtr = malloc(tr.n * (size_t)dim * sizeof *xtr), xte = malloc(te_n * (size_t)dim * sizeof *xte);
    ytr = malloc(tr.n * sizeof *ytr), yte = malloc(te_n * sizeof *yte);
    if (!xtr || !xte || !ytr || !yte) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  for (size_t k = 0; !st && k < te_n; k++)
    if ((yte[k] = map_label(ds, te_idx ? te_idx[k] : k, &names, &n_names, &cap)) == -2) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (size_t k = 0; !st && k < tr.n; k++)
    if ((ytr[k] = map_label(tr.ds, tr.idx ? tr.idx[k] : k, &names, &n_names, &cap)) == -2) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  if (!st && n_names < 2) st = vkp_error_set(err, VKP_ERR_INVALID, "linear probe: %s has fewer than 2 labelled classes", d->spec);
  if (!st) st = vkp_clip_embedder_dataset(e, tr.ds, tr.idx, tr.n, xtr, err);
  if (!st) st = vkp_clip_embedder_dataset(e, ds, te_idx, te_n, xte, err);
  if (!st) st = vkp_clip_linear_probe(xtr, ytr, (int64_t)tr.n, xte, yte, (int64_t)te_n, dim, n_names, NULL, res, NULL, err);
  *n_train = (int64_t)tr.n, *n_test = (int64_t)te_n;
  free(xtr), free(xte), free(ytr), free(yte), free(names), free(half_tr), free(half_te);
  vkp_clip_eval_data_free(&tr.own);
  return st;
}

static cJSON *recall_json(double r1, double r5, double r10, double mean, double median) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "r1", r1);
  cJSON_AddNumberToObject(o, "r5", r5);
  cJSON_AddNumberToObject(o, "r10", r10);
  cJSON_AddNumberToObject(o, "mean_rank", mean);
  cJSON_AddNumberToObject(o, "median_rank", median);
  return o;
}

static double chance_at(int64_t k, int64_t n) { return n > 0 ? (double)(k < n ? k : n) / (double)n : NAN; }

vkp_status vkp_clip_eval_command(vkp_clip *c, const vkp_eval_request *req, vkp_error *err) {
  if (!c->cfg.has_vision) return vkp_error_set(err, VKP_ERR_INVALID, "eval: %s has no vision tower", req->model_dir ? req->model_dir : "the model");
  vkp_clip_eval_data d;
  VKP_TRY(vkp_clip_eval_data_load(req->data, &d, err));
  vkp_clip_tokenizer *tok = NULL;
  vkp_clip_embedder *e = NULL;
  char **tmpl = NULL;
  int n_tmpl = 0;
  float *img = NULL, *cls = NULL;
  int32_t *labels = NULL;
  vkp_status st = VKP_OK;
  if (req->templates) st = vkp_clip_templates_load(req->templates, &tmpl, &n_tmpl, err);
  // WiSE-FT: c is the zero-shot model and `tuned` the fine-tuned one, or c (adapters merged) is the
  // tuned model and model_dir the zero-shot one.
  if (!st && req->wise && req->tuned) st = vkp_clip_interpolate_dir(c, req->tuned, req->interpolate, err);
  else if (!st && req->wise) st = vkp_clip_interpolate_dir(c, req->model_dir, 1.0f - req->interpolate, err);
  if (!st && c->cfg.has_text) st = vkp_clip_tokenizer_for_model(req->model_dir, &tok, err);
  if (!st) st = vkp_clip_embedder_new(c, req->batch > 0 ? req->batch : 64, &e, err);
  if (!st) {   // the preprocessing the model (or its adapter) was trained with
    vkp_data_transform tf;
    st = vkp_clip_transform_load(req->model_dir, req->aux_dir, c->cfg.vision.image_size, &tf, err);
    if (!st) vkp_clip_embedder_set_transform(e, &tf);
  }
  const vkp_dataset *ds = vkp_clip_eval_data_images(&d);
  size_t n = st ? 0 : vkp_clip_eval_data_count(&d);
  vkp_clip_eval_result pr = {0};
  bool has_ret = false, has_zs = false, has_probe = false;
  vkp_clip_zero_shot_result zs = {0};
  double *per_class = NULL;
  int n_cls = 0;
  int64_t probe_train = 0, probe_test = 0;
  vkp_clip_probe_result probe = {0};
  if (!st && d.pairs && tok) {
    vkp_clip_eval_opts o = {.embedder = e, .zero_shot = true, .templates = (const char *const *)tmpl,
                            .n_templates = n_tmpl, .gallery_path = req->gallery};
    st = vkp_clip_eval_pairs(c, tok, d.pairs, d.idx, n, &o, &pr, err);
    has_ret = !st, has_zs = !st && pr.has_zero_shot, zs = pr.zero_shot;
  } else if (!st && d.labelled && tok) {   // labelled images: zero-shot over the class names
    n_cls = ds->n_classes;
    int64_t dim = vkp_clip_embed_dim(c);
    img = malloc(n * (size_t)dim * sizeof *img), cls = malloc((size_t)n_cls * (size_t)dim * sizeof *cls);
    labels = malloc(n * sizeof *labels), per_class = malloc((size_t)n_cls * sizeof *per_class);
    if (!img || !cls || !labels || !per_class) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    for (size_t k = 0; !st && k < n; k++) labels[k] = ds->labels[d.idx ? d.idx[k] : k];
    if (!st) st = vkp_clip_embedder_dataset(e, ds, d.idx, n, img, err);
    if (!st)
      st = vkp_clip_zero_shot_classifier(c, e, tok, (const char *const *)ds->class_names, n_cls, (const char *const *)tmpl,
                                         n_tmpl, cls, err);
    if (!st) st = vkp_clip_zero_shot(img, (int64_t)n, labels, cls, n_cls, dim, &zs, per_class, NULL, err);
    has_zs = !st;
    if (!st && req->gallery)
      fprintf(stderr, "vkpeft eval: note: --gallery needs image–text pairs; %s is a labelled set, no gallery written\n", req->data);
  }
  if (!st && req->probe) {
    st = run_probe(e, &d, req, &probe, &probe_train, &probe_test, err);
    has_probe = !st;
  }
  if (!st && !has_ret && !has_zs && !has_probe)
    st = vkp_error_set(err, VKP_ERR_INVALID, "eval: nothing to evaluate on %s (a vision-only model needs --probe)", req->data);
  if (!st) {
    int n_templates = n_tmpl;
    if (!tmpl) vkp_clip_zero_shot_templates(c, &n_templates);
    const vkp_clip_retrieval_result *r = &pr.retrieval;
    if (req->json) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "data", req->data);
      cJSON_AddNumberToObject(o, "images", (double)n);
      if (req->wise) cJSON_AddNumberToObject(o, "interpolate", req->interpolate);
      if (has_ret) {
        cJSON *ro = cJSON_AddObjectToObject(o, "retrieval");
        cJSON_AddNumberToObject(ro, "images", (double)r->n_images);
        cJSON_AddNumberToObject(ro, "texts", (double)r->n_texts);
        cJSON_AddItemToObject(ro, "image_to_text", recall_json(r->i2t_r1, r->i2t_r5, r->i2t_r10, r->i2t_mean_rank, r->i2t_median_rank));
        cJSON_AddItemToObject(ro, "text_to_image", recall_json(r->t2i_r1, r->t2i_r5, r->t2i_r10, r->t2i_mean_rank, r->t2i_median_rank));
        cJSON_AddItemToObject(ro, "chance_text_to_image",
                              recall_json(chance_at(1, r->n_images), chance_at(5, r->n_images), chance_at(10, r->n_images),
                                          (r->n_images + 1) / 2.0, (r->n_images + 1) / 2.0));
      }
      if (has_zs) {
        cJSON *zo = cJSON_AddObjectToObject(o, "zero_shot");
        cJSON_AddNumberToObject(zo, "classes", zs.n_classes);
        cJSON_AddNumberToObject(zo, "templates", n_templates);
        cJSON_AddNumberToObject(zo, "top1", zs.top1);
        cJSON_AddNumberToObject(zo, "top5", zs.top5);
        cJSON_AddNumberToObject(zo, "mean_per_class", zs.mean_per_class);
        cJSON_AddNumberToObject(zo, "chance_top1", 1.0 / zs.n_classes);
        if (per_class && n_cls <= 100) {
          cJSON *pc = cJSON_AddObjectToObject(zo, "per_class");
          for (int k = 0; k < n_cls; k++)
            if (!isnan(per_class[k])) cJSON_AddNumberToObject(pc, ds->class_names[k], per_class[k]);
        }
      }
      if (has_probe) {
        cJSON *po = cJSON_AddObjectToObject(o, "linear_probe");
        cJSON_AddNumberToObject(po, "train_images", (double)probe_train);
        cJSON_AddNumberToObject(po, "test_images", (double)probe_test);
        cJSON_AddNumberToObject(po, "test_accuracy", probe.test_acc);
        cJSON_AddNumberToObject(po, "test_top5", probe.test_top5);
        cJSON_AddNumberToObject(po, "train_accuracy", probe.train_acc);
        cJSON_AddNumberToObject(po, "iterations", probe.iterations);
      }
      if (req->gallery && has_ret) cJSON_AddStringToObject(o, "gallery", req->gallery);
      char *s = cJSON_PrintUnformatted(o);
      if (s) printf("%s\n", s);
      free(s);
      cJSON_Delete(o);
    } else {
      printf("CLIP evaluation on %s: %zu images", req->data, n);
      if (has_ret) printf(", %lld captions", (long long)r->n_texts);
      if (req->wise) printf(" (WiSE-FT: %g x %s)", req->interpolate, req->tuned ? req->tuned : "the adapters");
      printf("\n");
      if (has_ret) {
        printf("  retrieval        R@1      R@5      R@10     mean rank  median rank\n");
        printf("  image -> text  %6.2f%%  %6.2f%%  %6.2f%%  %9.1f  %11.1f\n", 100 * r->i2t_r1, 100 * r->i2t_r5,
               100 * r->i2t_r10, r->i2t_mean_rank, r->i2t_median_rank);
        printf("  text -> image  %6.2f%%  %6.2f%%  %6.2f%%  %9.1f  %11.1f\n", 100 * r->t2i_r1, 100 * r->t2i_r5,
               100 * r->t2i_r10, r->t2i_mean_rank, r->t2i_median_rank);
        printf("  chance         %6.2f%%  %6.2f%%  %6.2f%%  %9.1f\n", 100 * chance_at(1, r->n_images),
               100 * chance_at(5, r->n_images), 100 * chance_at(10, r->n_images), (r->n_images + 1) / 2.0);
      }
      if (has_zs) {
        printf("  zero-shot (%d classes, %d templates): top-1 %.2f%%, top-5 %.2f%%, mean per class %.2f%% (chance %.2f%%)\n",
               zs.n_classes, n_templates, 100 * zs.top1, 100 * zs.top5, 100 * zs.mean_per_class, 100.0 / zs.n_classes);
        if (per_class && n_cls <= 20)
          for (int k = 0; k < n_cls; k++)
            if (!isnan(per_class[k])) printf("    %-24s %6.2f%%\n", ds->class_names[k], 100 * per_class[k]);
      }
      if (has_probe)
        printf("  linear probe (%lld train, %lld test images): test top-1 %.2f%%, top-5 %.2f%%, train %.2f%% (%d L-BFGS iterations)\n",
               (long long)probe_train, (long long)probe_test, 100 * probe.test_acc, 100 * probe.test_top5,
               100 * probe.train_acc, probe.iterations);
      if (req->gallery && has_ret) printf("  gallery: %s\n", req->gallery);
    }
    fflush(stdout);
  }
  free(img), free(cls), free(labels), free(per_class), free(tmpl);
  vkp_clip_embedder_free(e);
  vkp_clip_tokenizer_free(tok);
  vkp_clip_eval_data_free(&d);
  return st;
}
