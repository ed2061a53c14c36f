// clip_eval_embed.c — CLIP preprocessing and batched, L2-normalised image / text embeddings with
// compiled graphs kept per batch shape (see vkp_clip_eval.h).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "vkp_clip_eval.h"
#include "vkp_json.h"
#include "vkp_ops.h"

const float vkp_clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
const float vkp_clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

void vkp_clip_transform(int image_size, vkp_data_transform *t) {
  memset(t, 0, sizeof *t);
  t->out_w = t->out_h = image_size;
  t->out_channels = 3;
  t->crop = VKP_CROP_CENTER;
  t->resize_short = image_size;
  t->fill = 255.0f;
  for (int c = 0; c < 3; c++) t->mean[c] = vkp_clip_mean[c], t->std[c] = vkp_clip_std[c];
}

vkp_status vkp_clip_preprocess(const vkp_dataset *ds, const size_t *idx, size_t n, const vkp_data_transform *tf,
                               float *pixels, vkp_error *err) {
  if (!ds || (n && !pixels) || !tf || tf->out_w < 1 || tf->out_h < 1 || tf->out_channels != 3)
    return vkp_error_set(err, VKP_ERR_INVALID, "clip preprocess: bad arguments (the transform must give 3 channels)");
  const vkp_data_transform t = *tf;
  uint8_t *rgb = NULL;
  size_t rgb_cap = 0, plane = (size_t)3 * t.out_w * t.out_h;
  vkp_status st = VKP_OK;
  for (size_t k = 0; k < n && !st; k++) {
    size_t i = idx ? idx[k] : k;
    if (i >= ds->count) {
      st = vkp_error_set(err, VKP_ERR_INVALID, "clip preprocess: image index %zu out of range (%zu images)", i, ds->count);
      break;
    }
    const uint8_t *img = vkp_dataset_image(ds, i);
    int w = ds->widths[i], h = ds->heights[i], c = ds->channels;
    if (c == 4) {   // composite on white, as an emoji or icon looks on a page
      size_t need = (size_t)w * h * 3;
      if (need > rgb_cap) {
        uint8_t *nb = realloc(rgb, need);
        if (!nb) {
          st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
          break;
        }
        rgb = nb, rgb_cap = need;
      }
      vkp_data_rgba_to_rgb(img, (size_t)w * h, VKP_ALPHA_WHITE, rgb);
      img = rgb, c = 3;
    }
    st = vkp_data_transform_apply(&t, img, w, h, c, 0, pixels + k * plane, err);
  }
  free(rgb);
  return st;
}

// A number, or the first number of a list (HF writes both).
static bool json_num(const cJSON *j, int i, double *v) {
  if (cJSON_IsArray(j)) j = cJSON_GetArrayItem(j, cJSON_GetArraySize(j) > i ? i : 0);
  if (!cJSON_IsNumber(j)) return false;
  *v = j->valuedouble;
  return true;
}

// size / crop_size: an int, or {"shortest_edge": n} / {"height": h, "width": w}.
static int json_size(const cJSON *j) {
  if (cJSON_IsNumber(j)) return j->valueint;
  const cJSON *k = cJSON_GetObjectItemCaseSensitive(j, "shortest_edge");
  if (!k) k = cJSON_GetObjectItemCaseSensitive(j, "height");
  return cJSON_IsNumber(k) ? k->valueint : 0;
}

vkp_status vkp_clip_transform_load(const char *model_dir, const char *aux_dir, int image_size, vkp_data_transform *t,
                                   vkp_error *err) {
  vkp_clip_transform(image_size, t);
  char path[4200] = "";
  const char *dirs[2] = {aux_dir, model_dir};
  for (int i = 0; i < 2 && !path[0]; i++) {
    if (!dirs[i]) continue;
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dirs[i]);
    if (access(path, F_OK)) path[0] = '\0';
  }
  if (!path[0]) return VKP_OK;
  cJSON *j = NULL;
  VKP_TRY(vkp_json_load_object(path, 1 << 20, &j, err));
  vkp_status st = VKP_OK;
  const cJSON *crop = cJSON_GetObjectItemCaseSensitive(j, "do_center_crop");
  const cJSON *norm = cJSON_GetObjectItemCaseSensitive(j, "do_normalize");
  int crop_size = json_size(cJSON_GetObjectItemCaseSensitive(j, "crop_size"));
  int short_edge = json_size(cJSON_GetObjectItemCaseSensitive(j, "size"));
  if (crop && !cJSON_IsBool(crop)) st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: key 'do_center_crop' must be true or false", path);
  else if (cJSON_IsFalse(crop)) t->crop = VKP_CROP_NONE, t->resize_short = 0;
  else {
    if (crop_size && crop_size != image_size)
      st = vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'crop_size' is %d, but the model's image_size is %d", path, crop_size,
                         image_size);
    if (short_edge >= image_size) t->resize_short = short_edge;
  }
  if (!st && cJSON_IsFalse(norm))
    for (int c = 0; c < 3; c++) t->mean[c] = 0, t->std[c] = 1;
  else if (!st) {
    const cJSON *mean = cJSON_GetObjectItemCaseSensitive(j, "image_mean"), *sd = cJSON_GetObjectItemCaseSensitive(j, "image_std");
    for (int c = 0; c < 3 && !st; c++) {
      double m = t->mean[c], s = t->std[c];
      if ((mean && !json_num(mean, c, &m)) || (sd && (!json_num(sd, c, &s) || s <= 0)))
        st = vkp_error_set(err, VKP_ERR_FORMAT, "%s: keys 'image_mean' / 'image_std' must be numbers or lists of numbers (std > 0)", path);
      t->mean[c] = (float)m, t->std[c] = (float)s;
    }
  }
  cJSON_Delete(j);
  return st;
}

vkp_status vkp_clip_tokenizer_for_model(const char *model_dir, vkp_clip_tokenizer **out, vkp_error *err) {
  char path[4200];
  struct stat sb;
  const char *cands[] = {"vocab.json", "tokenizer/vocab.json"};
  for (int i = 0; model_dir && i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s", model_dir, cands[i]);
    if (!stat(path, &sb)) return vkp_clip_tokenizer_load(model_dir, out, err);
  }
  return vkp_clip_tokenizer_load(NULL, out, err);
}

int vkp_clip_embed_dim(const vkp_clip *c) {
  const vkp_clip_config *cfg = &c->cfg;
  if (cfg->has_vision) return c->visual_projection ? cfg->projection_dim : cfg->vision.hidden_size;
  return c->text_projection ? cfg->projection_dim : cfg->text.hidden_size;
}

// ---- the embedder -------------------------------------------------------------------------------

#define EMB_MAX_GRAPHS 6

typedef struct emb_graph {
  vkp_graph *g;
  vkp_clip_inputs in;
  vkp_tensor *out;        // (B, P) embeds, or (B, C) pooled (normalised on the host)
  bool normalise;         // out is not normalised yet (no projection)
  bool text;
  int64_t B, T;
  uint64_t used;          // last use (for eviction)
} emb_graph;

struct vkp_clip_embedder {
  vkp_clip *c;
  int batch;
  vkp_data_transform tf;   // images of vkp_clip_embedder_dataset
  emb_graph graphs[EMB_MAX_GRAPHS];
  uint64_t clock;
};

vkp_clip *vkp_clip_embedder_model(const vkp_clip_embedder *e) { return e ? e->c : NULL; }

void vkp_clip_embedder_set_transform(vkp_clip_embedder *e, const vkp_data_transform *t) { e->tf = *t; }

vkp_status vkp_clip_embedder_new(vkp_clip *c, int batch, vkp_clip_embedder **out, vkp_error *err) {
  *out = NULL;
  if (!c) return vkp_error_set(err, VKP_ERR_INVALID, "clip embedder: no model");
  vkp_clip_embedder *e = calloc(1, sizeof *e);
  if (!e) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  e->c = c;
  e->batch = batch > 0 ? batch : 64;
  if (c->cfg.has_vision) vkp_clip_transform(c->cfg.vision.image_size, &e->tf);
  *out = e;
  return VKP_OK;
}

void vkp_clip_embedder_reset(vkp_clip_embedder *e) {
  if (!e) return;
  for (int i = 0; i < EMB_MAX_GRAPHS; i++) {
    vkp_graph_free(e->graphs[i].g);
    memset(&e->graphs[i], 0, sizeof e->graphs[i]);
  }
}

void vkp_clip_embedder_free(vkp_clip_embedder *e) {
  if (!e) return;
  vkp_clip_embedder_reset(e);
  free(e);
}

// The message of a failed graph build/compile/run: the graph's, else the context's.
static vkp_status graph_fail(vkp_clip *c, vkp_graph *g, vkp_status st, vkp_error *err) {
  const char *m = g && vkp_graph_error(g) && *vkp_graph_error(g) ? vkp_graph_error(g) : vkp_ctx_error(c->model->ctx);
  return vkp_error_set(err, st, "clip embed: %s", m && *m ? m : vkp_status_name(st));
}

// The compiled graph for (text, B, T), built on first use.
static vkp_status get_graph(vkp_clip_embedder *e, bool text, int64_t B, int64_t T, emb_graph **out, vkp_error *err) {
  emb_graph *slot = NULL;
  for (int i = 0; i < EMB_MAX_GRAPHS; i++) {
    emb_graph *x = &e->graphs[i];
    if (x->g && x->text == text && x->B == B && x->T == T) {
      x->used = ++e->clock;
      *out = x;
      return VKP_OK;
    }
    if (!slot || !x->g || (slot->g && x->used < slot->used)) slot = x;
  }
  vkp_graph_free(slot->g);
  memset(slot, 0, sizeof *slot);
  vkp_clip *c = e->c;
  vkp_ctx *ctx = c->model->ctx;
  vkp_graph *g = NULL;
  vkp_status st = vkp_graph_new(ctx, &g);
  if (st) return graph_fail(c, NULL, st, err);
  vkp_clip_inputs in;
  vkp_clip_outputs o;
  st = vkp_clip_inputs_new(c, g, text ? 0 : B, text ? B : 0, T, text, &in);
  if (!st) st = vkp_clip_forward(c, g, &in, &o);
  vkp_tensor *t = NULL;
  bool normalise = false;
  if (!st) {
    t = text ? o.text_embeds : o.image_embeds;
    if (!t) t = text ? o.text_pooled : o.vision_pooled, normalise = true;
    vkp_graph_output(g, t);
    st = vkp_graph_compile(g);
  }
  if (st) {
    graph_fail(c, g, st, err);
    vkp_graph_free(g);
    return st;
  }
  *slot = (emb_graph){.g = g, .in = in, .out = t, .normalise = normalise, .text = text, .B = B, .T = T, .used = ++e->clock};
  *out = slot;
  return VKP_OK;
}

static void l2_rows(float *x, int64_t n, int64_t d) {
  for (int64_t i = 0; i < n; i++) {
    double s = 0;
    for (int64_t k = 0; k < d; k++) s += (double)x[i * d + k] * x[i * d + k];
    float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
    for (int64_t k = 0; k < d; k++) x[i * d + k] *= inv;
  }
}

// Runs one batch (rows [0, n) of the data; the rest of the graph's batch is padding) and copies
// the first n output rows to out.
static vkp_status run_batch(vkp_clip_embedder *e, emb_graph *x, const float *pixels, const int32_t *ids, const float *mask,
                            int64_t n, float *buf, float *out, vkp_error *err) {
  vkp_clip *c = e->c;
  vkp_status st = vkp_clip_inputs_set(c, x->g, &x->in, pixels, ids, mask);
  if (!st) st = vkp_graph_run(x->g);
  if (!st) st = vkp_graph_read(x->g, x->out, buf, vkp_tensor_nbytes(x->out));
  if (st) return graph_fail(c, x->g, st, err);
  int64_t d = x->out->shape[1];
  if (x->normalise) l2_rows(buf, n, d);
  memcpy(out, buf, (size_t)(n * d) * sizeof *out);
  return VKP_OK;
}

vkp_status vkp_clip_embedder_images(vkp_clip_embedder *e, const float *pixels, int64_t n, float *out, vkp_error *err) {
  if (!e || n < 0 || (n && (!pixels || !out))) return vkp_error_set(err, VKP_ERR_INVALID, "clip embed: bad arguments");
  vkp_clip *c = e->c;
  if (!c->cfg.has_vision) return vkp_error_set(err, VKP_ERR_INVALID, "clip embed: the model has no vision tower");
  if (!n) return VKP_OK;
  const vkp_clip_vision_config *v = &c->cfg.vision;
  int64_t B = n < e->batch ? n : e->batch, per = (int64_t)v->num_channels * v->image_size * v->image_size;
  emb_graph *x;
  VKP_TRY(get_graph(e, false, B, 0, &x, err));
  int64_t d = x->out->shape[1];
  float *buf = malloc((size_t)(B * d) * sizeof *buf), *pad = NULL;
  vkp_status st = buf ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (int64_t s = 0; s < n && !st; s += B) {
    int64_t m = n - s < B ? n - s : B;
    const float *px = pixels + s * per;
    if (m < B) {   // the last, partial batch: zero images after the data
      pad = calloc((size_t)(B * per), sizeof *pad);
      if (!pad) {
        st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
        break;
      }
      memcpy(pad, px, (size_t)(m * per) * sizeof *pad);
      px = pad;
    }
    st = run_batch(e, x, px, NULL, NULL, m, buf, out + s * d, err);
  }
  free(pad), free(buf);
  return st;
}

vkp_status vkp_clip_embedder_texts(vkp_clip_embedder *e, const vkp_clip_tokenizer *tok, const char *const *texts,
                                   int64_t n, float *out, vkp_error *err) {
  if (!e || !tok || n < 0 || (n && (!texts || !out))) return vkp_error_set(err, VKP_ERR_INVALID, "clip embed: bad arguments");
  vkp_clip *c = e->c;
  if (!c->cfg.has_text) return vkp_error_set(err, VKP_ERR_INVALID, "clip embed: the model has no text tower");
  if (!n) return VKP_OK;
  vkp_clip_tokenizer_info info;
  vkp_clip_tokenizer_get_info(tok, &info);
  int64_t Tmax = info.max_length < c->cfg.text.max_position_embeddings ? info.max_length : c->cfg.text.max_position_embeddings;
  Tmax -= vkp_clip_coop_tokens(c);   // CoOp's contexts take positions too
  if (Tmax < 2) return vkp_error_set(err, VKP_ERR_INVALID, "clip embed: the model has %d text positions", c->cfg.text.max_position_embeddings);
  int32_t *ids = malloc((size_t)(n * Tmax) * sizeof *ids), *mask = malloc((size_t)(n * Tmax) * sizeof *mask);
  float *fmask = NULL, *buf = NULL;
  int32_t *bids = NULL;
  vkp_status st = ids && mask ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  int64_t longest = 2;
  for (int64_t i = 0; i < n && !st; i++) {
    int nt = 0;
    if (!texts[i]) st = vkp_error_set(err, VKP_ERR_INVALID, "clip embed: text %lld is NULL", (long long)i);
    else if (vkp_clip_tokenize(tok, texts[i], (int)Tmax, info.default_pad, ids + i * Tmax, mask + i * Tmax, &nt))
      st = vkp_error_set(err, VKP_ERR_OOM, "clip embed: cannot tokenize text %lld", (long long)i);
    if (nt > longest) longest = nt;
  }
  // The sequence length: the longest text rounded up to 16 (graphs are shared between calls of
  // similar texts; padding is masked, so the embeddings do not depend on it).
  int64_t T = (longest + 15) / 16 * 16;
  if (T > Tmax) T = Tmax;
  int64_t B = n < e->batch ? n : e->batch;
  emb_graph *x = NULL;
  if (!st) st = get_graph(e, true, B, T, &x, err);
  if (!st) {
    bids = malloc((size_t)(B * T) * sizeof *bids);
    fmask = malloc((size_t)(B * T) * sizeof *fmask);
    buf = malloc((size_t)(B * x->out->shape[1]) * sizeof *buf);
    if (!bids || !fmask || !buf) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  // Padding rows: the empty text (start + end token).
  int32_t *empty_ids = malloc((size_t)Tmax * sizeof *empty_ids), *empty_mask = malloc((size_t)Tmax * sizeof *empty_mask);
  if (!st && (!empty_ids || !empty_mask)) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  if (!st && vkp_clip_tokenize(tok, "", (int)Tmax, info.default_pad, empty_ids, empty_mask, NULL))
    st = vkp_error_set(err, VKP_ERR_OOM, "clip embed: cannot tokenize the empty text");
  int64_t d = x ? x->out->shape[1] : 0;
  for (int64_t s = 0; s < n && !st; s += B) {
    int64_t m = n - s < B ? n - s : B;
    for (int64_t r = 0; r < B; r++) {
      const int32_t *ri = r < m ? ids + (s + r) * Tmax : empty_ids, *rm = r < m ? mask + (s + r) * Tmax : empty_mask;
      for (int64_t k = 0; k < T; k++) bids[r * T + k] = ri[k], fmask[r * T + k] = (float)rm[k];
    }
    st = run_batch(e, x, NULL, bids, fmask, m, buf, out + s * d, err);
  }
  free(ids), free(mask), free(bids), free(fmask), free(buf), free(empty_ids), free(empty_mask);
  return st;
}

vkp_status vkp_clip_embed_images(vkp_clip *c, const float *pixels, int64_t n, int batch, float *out, vkp_error *err) {
  vkp_clip_embedder *e;
  VKP_TRY(vkp_clip_embedder_new(c, batch, &e, err));
  vkp_status st = vkp_clip_embedder_images(e, pixels, n, out, err);
  vkp_clip_embedder_free(e);
  return st;
}

vkp_status vkp_clip_embed_texts(vkp_clip *c, const vkp_clip_tokenizer *tok, const char *const *texts, int64_t n, int batch,
                                float *out, vkp_error *err) {
  vkp_clip_embedder *e;
  VKP_TRY(vkp_clip_embedder_new(c, batch, &e, err));
  vkp_status st = vkp_clip_embedder_texts(e, tok, texts, n, out, err);
  vkp_clip_embedder_free(e);
  return st;
}

vkp_status vkp_clip_embedder_dataset(vkp_clip_embedder *e, const vkp_dataset *ds, const size_t *idx, size_t n, float *out,
                                     vkp_error *err) {
  if (!e || !ds || (n && !out)) return vkp_error_set(err, VKP_ERR_INVALID, "clip embed: bad arguments");
  vkp_clip *c = e->c;
  if (!c->cfg.has_vision) return vkp_error_set(err, VKP_ERR_INVALID, "clip embed: the model has no vision tower");
  int S = c->cfg.vision.image_size;
  if (e->tf.out_w != S || e->tf.out_h != S)
    return vkp_error_set(err, VKP_ERR_INVALID, "clip embed: the transform gives %dx%d images, the model takes %dx%d", e->tf.out_w,
                         e->tf.out_h, S, S);
  if (c->cfg.vision.num_channels != 3)
    return vkp_error_set(err, VKP_ERR_UNSUPPORTED, "clip embed: images need a 3-channel model (it has %d)", c->cfg.vision.num_channels);
  size_t chunk = (size_t)e->batch * 4, plane = (size_t)3 * S * S;
  if (chunk > n) chunk = n;
  float *px = malloc((chunk ? chunk : 1) * plane * sizeof *px);
  if (!px) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  int64_t d = vkp_clip_embed_dim(c);
  vkp_status st = VKP_OK;
  size_t *seq = NULL;
  for (size_t s = 0; s < n && !st; s += chunk) {
    size_t m = n - s < chunk ? n - s : chunk;
    if (!idx && !seq) {   // identity indices for this chunk
      seq = malloc(chunk * sizeof *seq);
      if (!seq) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    }
    if (st) break;
    if (!idx)
      for (size_t k = 0; k < m; k++) seq[k] = s + k;
    st = vkp_clip_preprocess(ds, idx ? idx + s : seq, m, &e->tf, px, err);
    if (!st) st = vkp_clip_embedder_images(e, px, (int64_t)m, out + s * d, err);
  }
  free(seq), free(px);
  return st;
}
