// clip_train_eval.c — evaluation during CLIP training, on the embeddings of vkp_clip_eval.h's
// embedder: retrieval recall over the held-out pairs and the contrastive loss over chunks of
// them, or the linear probe's cross-entropy and accuracy.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_clip_train.h"

// Symmetric InfoNCE of n pairs: embeddings ie, te (n, P), rows normalised, scale = exp(logit_scale);
// logits: scratch (n, n).
static double infonce(const float *ie, const float *te, size_t n, int64_t P, double scale, double *logits) {
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++) {
      double s = 0;
      for (int64_t k = 0; k < P; k++) s += (double)ie[i * P + k] * te[j * P + k];
      logits[i * n + j] = scale * s;   // logits_per_image[i][j]
    }
  double total = 0;
  for (int dir = 0; dir < 2; dir++)
    for (size_t i = 0; i < n; i++) {
      double mx = -INFINITY, sum = 0;
      for (size_t j = 0; j < n; j++) mx = fmax(mx, dir ? logits[j * n + i] : logits[i * n + j]);
      for (size_t j = 0; j < n; j++) sum += exp((dir ? logits[j * n + i] : logits[i * n + j]) - mx);
      total += mx + log(sum) - logits[i * n + i];
    }
  return total / (2.0 * (double)n);
}

// The loss over q chunks of about `chunk` pairs each (q = n / chunk, at least 1), as in training.
static vkp_status chunked_loss(const float *ie, const float *te, size_t n, int64_t P, double scale, int chunk,
                               double *out, vkp_error *err) {
  size_t q = chunk > 0 && n / (size_t)chunk > 1 ? n / (size_t)chunk : 1, big = (n + q - 1) / q;
  double *logits = malloc(big * big * sizeof *logits), total = 0;
  if (!logits) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (size_t k = 0; k < q; k++) {
    size_t s0 = k * n / q, s1 = (k + 1) * n / q;
    total += (double)(s1 - s0) * infonce(ie + s0 * (size_t)P, te + s0 * (size_t)P, s1 - s0, P, scale, logits);
  }
  free(logits);
  *out = total / (double)n;
  return VKP_OK;
}

// The probe head on the host: logits = W e + b per image; cross-entropy and accuracy over the
// images with a name the head knows.
static vkp_status probe_scores(vkp_clip *c, const vkp_pairs *p, const size_t *idx, size_t n, const float *ie,
                               vkp_clip_val_result *out, vkp_error *err) {
  vkp_module *head = vkp_model_find_module(c->model, "classifier");
  if (!head) return vkp_error_set(err, VKP_ERR_INVALID, "clip: no classifier module for the linear probe");
  int64_t K = head->weight->shape[0], P = head->weight->shape[1];
  float *W = malloc((size_t)(K * P) * sizeof *W), *b = malloc((size_t)K * sizeof *b);
  double *z = malloc((size_t)K * sizeof *z);
  vkp_status st = W && b && z ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  if (!st && (vkp_param_read_f32(c->model, head->weight, W) || vkp_param_read_f32(c->model, head->bias, b)))
    st = vkp_error_set(err, VKP_ERR_IO, "reading the probe head: %s", vkp_ctx_error(c->model->ctx));
  double loss = 0;
  int64_t hits = 0, counted = 0;
  for (size_t i = 0; i < n && !st; i++) {
    int32_t y = p->images->labels[idx ? idx[i] : i];
    if (y < 0 || y >= K) continue;
    double mx = -INFINITY, sum = 0;
    int64_t arg = 0;
    for (int64_t k = 0; k < K; k++) {
      z[k] = b[k];
      for (int64_t j = 0; j < P; j++) z[k] += (double)W[k * P + j] * ie[i * P + j];
      if (z[k] > mx) mx = z[k], arg = k;
    }
    for (int64_t k = 0; k < K; k++) sum += exp(z[k] - mx);
    loss += mx + log(sum) - z[y];
    hits += arg == y, counted++;
  }
  out->count = counted;
  out->loss = counted ? loss / (double)counted : NAN;
  out->accuracy = counted ? (double)hits / (double)counted : NAN;
  free(W), free(b), free(z);
  return st;
}

vkp_status vkp_clip_evaluate(vkp_clip_embedder *e, const vkp_clip_tokenizer *tok, bool probe, const vkp_pairs *p,
                             const char *const *texts, const size_t *idx, size_t n, int chunk, vkp_clip_val_result *out,
                             vkp_error *err) {
  *out = (vkp_clip_val_result){.loss = NAN, .i2t_r1 = NAN, .i2t_r5 = NAN, .t2i_r1 = NAN, .t2i_r5 = NAN, .accuracy = NAN};
  if (!idx) n = vkp_pairs_count(p);
  if (n == 0) return VKP_OK;
  vkp_clip *c = vkp_clip_embedder_model(e);
  int64_t P = vkp_clip_embed_dim(c);
  bool was_training = c->model->training;
  c->model->training = false;
  out->count = (int64_t)n;
  out->image_embeds = malloc(n * (size_t)P * sizeof *out->image_embeds);
  out->text_embeds = probe ? NULL : malloc(n * (size_t)P * sizeof *out->text_embeds);
  const char **tx = probe ? NULL : malloc(n * sizeof *tx);
  int64_t *text_image = probe ? NULL : malloc(n * sizeof *text_image);
  vkp_status st = out->image_embeds && (probe || (out->text_embeds && tx && text_image))
                      ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  if (!st) st = vkp_clip_embedder_dataset(e, p->images, idx, n, out->image_embeds, err);
  if (!st && probe) st = probe_scores(c, p, idx, n, out->image_embeds, out, err);
  if (!st && !probe) {
    for (size_t i = 0; i < n; i++) tx[i] = texts[idx ? idx[i] : i], text_image[i] = (int64_t)i;
    st = vkp_clip_embedder_texts(e, tok, tx, (int64_t)n, out->text_embeds, err);
    vkp_clip_retrieval_result rr;
    if (!st) st = vkp_clip_retrieval(out->image_embeds, (int64_t)n, out->text_embeds, (int64_t)n, text_image, P, &rr, NULL, NULL, err);
    if (!st) out->i2t_r1 = rr.i2t_r1, out->i2t_r5 = rr.i2t_r5, out->t2i_r1 = rr.t2i_r1, out->t2i_r5 = rr.t2i_r5;
    float ls = 0;
    if (!st && c->logit_scale && vkp_param_read_f32(c->model, c->logit_scale->weight, &ls))
      st = vkp_error_set(err, VKP_ERR_IO, "reading logit_scale: %s", vkp_ctx_error(c->model->ctx));
    if (!st) st = chunked_loss(out->image_embeds, out->text_embeds, n, P, exp((double)ls), chunk, &out->loss, err);
  }
  free(tx), free(text_image);
  c->model->training = was_training;
  if (st) vkp_clip_val_result_clear(out);
  return st;
}

void vkp_clip_val_result_clear(vkp_clip_val_result *r) {
  free(r->image_embeds), free(r->text_embeds);
  r->image_embeds = r->text_embeds = NULL;
}
