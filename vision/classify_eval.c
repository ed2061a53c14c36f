// classify_eval.c — evaluation (accuracy, top-5, loss, per-class precision/recall, confusion
// matrix, misclassified examples) and prediction with a compiled inference graph.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_classify.h"
#include "vkp_metrics.h"

typedef struct infer_graph {
  vkp_graph *g;
  vkp_tensor *px, *logits;
  int batch, classes;
} infer_graph;

static vkp_status infer_new(vkp_vit *v, int batch, infer_graph *ig, vkp_error *err) {
  vkp_ctx *ctx = v->model->ctx;
  memset(ig, 0, sizeof *ig);
  const vkp_vit_config *c = &v->cfg;
  VKP_TRY(vkp_graph_new(ctx, &ig->g));
  bool training = v->model->training;
  v->model->training = false;
  ig->px = vkp_tensor_input(ig->g, "pixel_values", VKP_DTYPE_F32, 4, (int64_t[]){batch, c->num_channels, c->image_size, c->image_size});
  vkp_vit_outputs out;
  vkp_vit_forward(v, ig->g, ig->px, &out);
  v->model->training = training;
  ig->logits = vkp_softmax(ig->g, out.logits);
  vkp_graph_output(ig->g, ig->logits);
  ig->batch = batch;
  ig->classes = c->num_labels;
  if (vkp_graph_compile(ig->g) != VKP_OK) {
    vkp_error_set(err, VKP_ERR_DEVICE, "%s", vkp_ctx_error(ctx));
    vkp_graph_free(ig->g);
    ig->g = NULL;
    return err->status;
  }
  return VKP_OK;
}

// Runs n (<= batch) images; probs gets n * classes values.
static vkp_status infer_run(infer_graph *ig, const float *pixels, int n, float *pixel_buf, float *probs, vkp_error *err) {
  vkp_ctx *ctx = vkp_graph_ctx(ig->g);
  size_t per = (size_t)(vkp_tensor_numel(ig->px) / ig->batch);
  memcpy(pixel_buf, pixels, (size_t)n * per * sizeof(float));
  memset(pixel_buf + (size_t)n * per, 0, (size_t)(ig->batch - n) * per * sizeof(float));
  vkp_status st = vkp_graph_set_input(ig->g, ig->px, pixel_buf, vkp_tensor_nbytes(ig->px));
  if (!st) st = vkp_graph_run(ig->g);
  float *all = malloc((size_t)ig->batch * ig->classes * sizeof *all);
  if (!all) return VKP_ERR_OOM;
  if (!st) st = vkp_graph_read(ig->g, ig->logits, all, (size_t)ig->batch * ig->classes * sizeof *all);
  if (!st) memcpy(probs, all, (size_t)n * ig->classes * sizeof *probs);
  free(all);
  if (st) vkp_error_set(err, st, "%s", vkp_ctx_error(ctx));
  return st;
}

static void top_k(const float *p, int classes, int k, int32_t *idx) {
  for (int j = 0; j < k; j++) {
    int best = -1;
    for (int c = 0; c < classes; c++) {
      bool taken = false;
      for (int q = 0; q < j; q++) taken |= idx[q] == c;
      if (!taken && (best < 0 || p[c] > p[best])) best = c;
    }
    idx[j] = best;
  }
}

void vkp_eval_result_free(vkp_eval_result *r) {
  free(r->confusion);
  free(r->precision);
  free(r->recall);
  free(r->wrong);
  free(r->wrong_pred);
  memset(r, 0, sizeof *r);
}

vkp_status vkp_classify_evaluate(vkp_vit *v, const vkp_dataset *ds, const size_t *idx, size_t n,
                                 const vkp_data_transform *tf, int batch, vkp_eval_result *out, vkp_error *err) {
  memset(out, 0, sizeof *out);
  if (!idx) n = ds->count;
  int classes = v->cfg.num_labels;
  if (ds->n_classes > classes)
    return vkp_error_set(err, VKP_ERR_SHAPE, "evaluate: the data has %d classes, the model %d", ds->n_classes, classes);
  if (n == 0) return vkp_error_set(err, VKP_ERR_INVALID, "evaluate: no images");
  // The transform's output must be exactly the model's input, or batches would not fit it.
  int tf_channels = vkp_data_transform_channels(tf, ds->channels);
  if (tf->out_w != v->cfg.image_size || tf->out_h != v->cfg.image_size || tf_channels != v->cfg.num_channels)
    return vkp_error_set(err, VKP_ERR_SHAPE, "evaluate: the data is prepared as %dx%dx%d, the model takes %dx%dx%d images",
                         tf_channels, tf->out_h, tf->out_w, v->cfg.num_channels, v->cfg.image_size, v->cfg.image_size);
  if ((size_t)batch > n) batch = (int)n;
  infer_graph ig;
  VKP_TRY(infer_new(v, batch, &ig, err));
  size_t per = (size_t)(vkp_tensor_numel(ig.px) / batch);
  float *pixels = malloc((size_t)batch * per * sizeof *pixels), *buf = malloc((size_t)batch * per * sizeof *buf);
  float *probs = malloc((size_t)batch * classes * sizeof *probs);
  int32_t *labels = malloc((size_t)batch * sizeof *labels);
  size_t *sel = malloc((size_t)batch * sizeof *sel);
  out->n_classes = classes;
  out->confusion = calloc((size_t)classes * classes, sizeof *out->confusion);
  out->precision = calloc((size_t)classes, sizeof *out->precision);
  out->recall = calloc((size_t)classes, sizeof *out->recall);
  out->wrong = calloc(64, sizeof *out->wrong);
  out->wrong_pred = calloc(64, sizeof *out->wrong_pred);
  vkp_status st = pixels && buf && probs && labels && sel && out->confusion && out->precision && out->recall &&
                          out->wrong && out->wrong_pred
                      ? VKP_OK
                      : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  int64_t correct = 0, correct5 = 0;
  double loss = 0;
  for (size_t start = 0; start < n && !st; start += (size_t)batch) {
    int m = (int)(n - start < (size_t)batch ? n - start : (size_t)batch);
    for (int i = 0; i < m; i++) sel[i] = idx ? idx[start + (size_t)i] : start + (size_t)i;
    st = vkp_data_batch_fill(ds, tf, sel, (size_t)m, 0, 0, pixels, labels, err);
    if (!st) st = infer_run(&ig, pixels, m, buf, probs, err);
    for (int i = 0; i < m && !st; i++) {
      int32_t top[5];
      int k = classes < 5 ? classes : 5;
      top_k(probs + (size_t)i * classes, classes, k, top);
      int y = labels[i];
      correct += top[0] == y;
      for (int j = 0; j < k; j++) correct5 += top[j] == y;
      loss -= log(fmax(probs[(size_t)i * classes + y], 1e-30));
      out->confusion[(size_t)y * classes + top[0]]++;
      if (top[0] != y && out->n_wrong < 64) {
        out->wrong[out->n_wrong] = sel[i];
        out->wrong_pred[out->n_wrong++] = top[0];
      }
    }
  }
  if (!st) {
    out->count = (int64_t)n;
    out->accuracy = (double)correct / (double)n;
    out->top5 = (double)correct5 / (double)n;
    out->loss = loss / (double)n;
    vkp_class_stats *cs = malloc((size_t)classes * sizeof *cs);
    st = cs ? vkp_metrics_class_stats(out->confusion, classes, cs, NULL, NULL, err)
            : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    for (int c = 0; c < classes && !st; c++) {   // a class never predicted / never seen: 0, not NaN
      out->precision[c] = isnan(cs[c].precision) ? 0 : cs[c].precision;
      out->recall[c] = isnan(cs[c].recall) ? 0 : cs[c].recall;
    }
    free(cs);
  }
  free(pixels), free(buf), free(probs), free(labels), free(sel);
  vkp_graph_free(ig.g);
  if (st) vkp_eval_result_free(out);
  return st;
}

vkp_status vkp_classify_predict(vkp_vit *v, const float *pixels, int n, int k, int32_t *classes, float *probs,
                                vkp_error *err) {
  int nc = v->cfg.num_labels;
  if (k > nc) k = nc;
  infer_graph ig;
  VKP_TRY(infer_new(v, n, &ig, err));
  float *buf = malloc((size_t)vkp_tensor_nbytes(ig.px)), *p = malloc((size_t)n * nc * sizeof *p);
  vkp_status st = buf && p ? infer_run(&ig, pixels, n, buf, p, err) : VKP_ERR_OOM;
  for (int i = 0; i < n && !st; i++) {
    top_k(p + (size_t)i * nc, nc, k, classes + (size_t)i * k);
    for (int j = 0; j < k; j++) probs[(size_t)i * k + j] = p[(size_t)i * nc + classes[(size_t)i * k + j]];
  }
  free(buf), free(p);
  vkp_graph_free(ig.g);
  return st;
}
