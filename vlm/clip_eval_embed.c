// clip_eval_embed.c — CLIP preprocessing and batched, L2-normalised image / text embeddings with
// compiled graphs kept per batch shape (see vkp_clip_eval.h).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vkp_clip_eval.h"
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

vkp_status vkp_clip_preprocess(const vkp_dataset *ds, const size_t *idx, size_t n, int image_size, float *pixels,
                               vkp_error *err) {
  if (!ds || (n && !pixels) || image_size < 1) return vkp_error_set(err, VKP_ERR_INVALID, "clip preprocess: bad arguments");
  vkp_data_transform t;
  vkp_clip_transform(image_size, &t);
  uint8_t *rgb = NULL;
  size_t rgb_cap = 0, plane = (size_t)3 * image_size * image_size;
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
  emb_graph graphs[EMB_MAX_GRAPHS];
  uint64_t clock;
};

vkp_status vkp_clip_embedder_new(vkp_clip *c, int batch, vkp_clip_embedder **out, vkp_error *err) {
  *out = NULL;
  if (!c) return vkp_error_set(err, VKP_ERR_INVALID, "clip embedder: no model");
  vkp_clip_embedder *e = calloc(1, sizeof *e);
  if (!e) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  e->c = c;
  e->batch = batch > 0 ? batch : 64;
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
  int32_t empty_ids[VKP_CLIP_CONTEXT_LENGTH * 4], empty_mask[VKP_CLIP_CONTEXT_LENGTH * 4];
  if (!st && Tmax <= VKP_CLIP_CONTEXT_LENGTH * 4 && vkp_clip_tokenize(tok, "", (int)Tmax, info.default_pad, empty_ids, empty_mask, NULL))
    st = vkp_error_set(err, VKP_ERR_OOM, "clip embed: cannot tokenize the empty text");
  if (!st && Tmax > VKP_CLIP_CONTEXT_LENGTH * 4)
    st = vkp_error_set(err, VKP_ERR_UNSUPPORTED, "clip embed: more than %d text positions", VKP_CLIP_CONTEXT_LENGTH * 4);
  int64_t d = x ? x->out->shape[1] : 0;
  for (int64_t s = 0; s < n && !st; s += B) {
    int64_t m = n - s < B ? n - s : B;
    for (int64_t r = 0; r < B; r++) {
      const int32_t *ri = r < m ? ids + (s + r) * Tmax : empty_ids, *rm = r < m ? mask + (s + r) * Tmax : empty_mask;
      for (int64_t k = 0; k < T; k++) bids[r * T + k] = ri[k], fmask[r * T + k] = (float)rm[k];
    }
    st = run_batch(e, x, NULL, bids, fmask, m, buf, out + s * d, err);
  }
  free(ids), free(mask), free(bids), free(fmask), free(buf);
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
