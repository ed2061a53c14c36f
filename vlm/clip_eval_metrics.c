// clip_eval_metrics.c — retrieval recall / ranks both ways and zero-shot accuracy from embeddings
// (host, double arithmetic).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_clip_eval.h"
#include "vkp_peft.h"

static double dot(const float *a, const float *b, int64_t d) {
  double s = 0;
  for (int64_t k = 0; k < d; k++) s += (double)a[k] * b[k];
  return s;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

// recall@1/5/10, mean and median of ranks[0..n-1] (1-based).
static void summarise(int64_t *ranks, int64_t n, double *r1, double *r5, double *r10, double *mean, double *median) {
  int64_t h1 = 0, h5 = 0, h10 = 0;
  double sum = 0;
  for (int64_t i = 0; i < n; i++) {
    h1 += ranks[i] <= 1, h5 += ranks[i] <= 5, h10 += ranks[i] <= 10;
    sum += (double)ranks[i];
  }
  *r1 = (double)h1 / n, *r5 = (double)h5 / n, *r10 = (double)h10 / n, *mean = sum / n;
  qsort(ranks, (size_t)n, sizeof *ranks, cmp_i64);
  *median = n % 2 ? (double)ranks[n / 2] : 0.5 * ((double)ranks[n / 2 - 1] + (double)ranks[n / 2]);
}

vkp_status vkp_clip_retrieval(const float *image_embeds, int64_t n_images, const float *text_embeds, int64_t n_texts,
                              const int64_t *text_image, int64_t dim, vkp_clip_retrieval_result *out,
                              int64_t *i2t_rank, int64_t *t2i_rank, vkp_error *err) {
  memset(out, 0, sizeof *out);
  if (n_images < 1 || n_texts < 1 || dim < 1 || !image_embeds || !text_embeds || !text_image)
    return vkp_error_set(err, VKP_ERR_INVALID, "clip retrieval: needs images, texts and their pairing");
  for (int64_t t = 0; t < n_texts; t++)
    if (text_image[t] < 0 || text_image[t] >= n_images)
      return vkp_error_set(err, VKP_ERR_INVALID, "clip retrieval: text %lld names image %lld of %lld", (long long)t,
                           (long long)text_image[t], (long long)n_images);
  double *s = malloc((size_t)(n_images * n_texts) * sizeof *s);   // (n_images, n_texts)
  double *best = malloc((size_t)n_images * sizeof *best);         // best positive score per image
  int64_t *ri = malloc((size_t)n_images * sizeof *ri), *rt = malloc((size_t)n_texts * sizeof *rt);
  if (!s || !best || !ri || !rt) {
    free(s), free(best), free(ri), free(rt);
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  for (int64_t i = 0; i < n_images; i++)
    for (int64_t t = 0; t < n_texts; t++) s[i * n_texts + t] = dot(image_embeds + i * dim, text_embeds + t * dim, dim);
  // image -> text: the best positive against every negative text
  for (int64_t i = 0; i < n_images; i++) best[i] = -INFINITY, ri[i] = 0;
  for (int64_t t = 0; t < n_texts; t++) {
    int64_t i = text_image[t];
    if (s[i * n_texts + t] > best[i] || ri[i] == 0) best[i] = s[i * n_texts + t];
    ri[i] = 1;   // has a text
  }
  int64_t n_with = 0;
  for (int64_t i = 0; i < n_images; i++) {
    if (!ri[i]) continue;
    int64_t r = 1;
    for (int64_t t = 0; t < n_texts; t++) r += text_image[t] != i && s[i * n_texts + t] >= best[i];
    ri[i] = r;
    n_with++;
  }
  if (i2t_rank) memcpy(i2t_rank, ri, (size_t)n_images * sizeof *ri);
  // text -> image
  for (int64_t t = 0; t < n_texts; t++) {
    int64_t r = 1, gt = text_image[t];
    double pos = s[gt * n_texts + t];
    for (int64_t i = 0; i < n_images; i++) r += i != gt && s[i * n_texts + t] >= pos;
    rt[t] = r;
  }
  if (t2i_rank) memcpy(t2i_rank, rt, (size_t)n_texts * sizeof *rt);
  // compact the images with texts, then summarise
  int64_t k = 0;
  for (int64_t i = 0; i < n_images; i++)
    if (ri[i]) ri[k++] = ri[i];
  out->n_images = n_with, out->n_texts = n_texts;
  summarise(ri, n_with, &out->i2t_r1, &out->i2t_r5, &out->i2t_r10, &out->i2t_mean_rank, &out->i2t_median_rank);
  summarise(rt, n_texts, &out->t2i_r1, &out->t2i_r5, &out->t2i_r10, &out->t2i_mean_rank, &out->t2i_median_rank);
  free(s), free(best), free(ri), free(rt);
  return VKP_OK;
}

vkp_status vkp_clip_zero_shot(const float *image_embeds, int64_t n, const int32_t *labels, const float *class_embeds,
                              int n_classes, int64_t dim, vkp_clip_zero_shot_result *out, double *per_class,
                              int32_t *pred, vkp_error *err) {
  memset(out, 0, sizeof *out);
  if (n < 0 || n_classes < 1 || dim < 1 || (n && (!image_embeds || !labels)) || !class_embeds)
    return vkp_error_set(err, VKP_ERR_INVALID, "clip zero-shot: bad arguments");
  int64_t *hits = calloc((size_t)n_classes, sizeof *hits), *count = calloc((size_t)n_classes, sizeof *count);
  double *sc = malloc((size_t)n_classes * sizeof *sc);
  if (!hits || !count || !sc) {
    free(hits), free(count), free(sc);
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  vkp_status st = VKP_OK;
  int64_t top1 = 0, top5 = 0, scored = 0;
  for (int64_t i = 0; i < n; i++) {
    const float *x = image_embeds + i * dim;
    int best = 0;
    for (int c = 0; c < n_classes; c++) {
      sc[c] = dot(x, class_embeds + (int64_t)c * dim, dim);
      if (sc[c] > sc[best]) best = c;
    }
    int y = labels[i];
    if (y >= n_classes) {
      st = vkp_error_set(err, VKP_ERR_INVALID, "clip zero-shot: label %d of image %lld is not below %d classes", y, (long long)i,
                         n_classes);
      break;
    }
    if (y >= 0 && sc[best] == sc[y]) {   // ties go against the true class
      for (int c = 0; c < n_classes; c++)
        if (c != y && sc[c] == sc[y]) {
          best = c;
          break;
        }
    }
    if (pred) pred[i] = best;
    if (y < 0) continue;
    int64_t rank = 1;   // 1 + classes scoring at least as high as the true one
    for (int c = 0; c < n_classes; c++) rank += c != y && sc[c] >= sc[y];
    scored++;
    count[y]++;
    top1 += rank == 1, top5 += rank <= 5;
    hits[y] += rank == 1;
  }
  if (!st && !scored) st = vkp_error_set(err, VKP_ERR_INVALID, "clip zero-shot: no labelled image");
  if (!st) {
    out->n = scored, out->n_classes = n_classes;
    out->top1 = (double)top1 / scored, out->top5 = (double)top5 / scored;
    double sum = 0;
    int present = 0;
    for (int c = 0; c < n_classes; c++) {
      double a = count[c] ? (double)hits[c] / count[c] : NAN;
      if (per_class) per_class[c] = a;
      if (count[c]) sum += a, present++;
    }
    out->mean_per_class = sum / present;
  }
  free(hits), free(count), free(sc);
  return st;
}

// ---- templates and the zero-shot classifier -----------------------------------------------------

const char *const vkp_clip_default_templates[] = {
    "{}", "a photo of a {}.", "an emoji of {}.", "an icon of {}.", "a picture of {}.", NULL,
};

int vkp_clip_default_template_count(void) {
  int n = 0;
  while (vkp_clip_default_templates[n]) n++;
  return n;
}

// With a CoOp adapter the learned contexts are the template: the caption is the class name and ".".
static const char *const coop_templates[] = {"{}.", NULL};

int vkp_clip_coop_tokens(const vkp_clip *c) {
  int n = 0;
  for (int i = 0; c && i < vkp_peft_count(c->model); i++) {
    const vkp_peft_config *pc = vkp_adapter_config(vkp_peft_get(c->model, i));
    if (pc->method == VKP_PEFT_COOP) n += pc->n_ctx;
  }
  return n;
}

const char *const *vkp_clip_zero_shot_templates(const vkp_clip *c, int *n) {
  if (vkp_clip_coop_tokens(c) > 0) return *n = 1, coop_templates;
  return *n = vkp_clip_default_template_count(), vkp_clip_default_templates;
}

vkp_status vkp_clip_coop_resolve(const vkp_clip_tokenizer *tok, vkp_peft_config *cfg, const char *where, vkp_error *err) {
  if (cfg->method != VKP_PEFT_COOP || !cfg->ctx_init[0] || cfg->n_ctx_init_ids) return VKP_OK;
  int32_t ids[VKP_PEFT_MAX_CTX_IDS];
  int n = 0;
  vkp_status st = vkp_clip_encode(tok, cfg->ctx_init, ids, VKP_PEFT_MAX_CTX_IDS, &n);
  if (st) return vkp_error_set(err, st, "%s: key 'ctx_init': cannot tokenize \"%s\"", where, cfg->ctx_init);
  if (n < 1 || n > VKP_PEFT_MAX_CTX_IDS)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: key 'ctx_init': \"%s\" is %d tokens (1 to %d)", where, cfg->ctx_init, n,
                         VKP_PEFT_MAX_CTX_IDS);
  for (int i = 0; i < n; i++) cfg->ctx_init_ids[i] = ids[i];
  cfg->n_ctx_init_ids = cfg->n_ctx = n;
  return VKP_OK;
}

vkp_status vkp_clip_templates_load(const char *path, char ***out, int *n, vkp_error *err) {
  *out = NULL, *n = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return vkp_error_set(err, VKP_ERR_IO, "%s: cannot open", path);
  char *text = NULL;
  size_t len = 0, cap = 0;
  char chunk[4096];
  size_t got;
  while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (len + got + 1 > cap) {
      cap = (len + got + 1) * 2;
      char *nt = realloc(text, cap);
      if (!nt) {
        free(text), fclose(f);
        return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
      }
      text = nt;
    }
    memcpy(text + len, chunk, got);
    len += got;
  }
  bool bad = ferror(f);
  fclose(f);
  if (bad) {
    free(text);
    return vkp_error_set(err, VKP_ERR_IO, "%s: read error", path);
  }
  // Two passes over the lines: count and check, then copy into one allocation.
  size_t lines = 0, bytes = 0;
  char *p = text ? text : "";
  if (text) text[len] = '\0';
  if (len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3;
  int lineno = 0;
  for (char *s = p; *s;) {
    char *e = strchr(s, '\n');
    if (!e) e = s + strlen(s);
    lineno++;
    char *a = s, *b = e;
    while (a < b && (*a == ' ' || *a == '\t' || *a == '\r')) a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r')) b--;
    if (b > a && *a != '#') {
      char save = *b;
      *b = '\0';
      bool has = strstr(a, "{}") != NULL;
      *b = save;
      if (!has) {
        free(text);
        return vkp_error_set(err, VKP_ERR_FORMAT, "%s:%d: a template must hold \"{}\" (where the class name goes)", path, lineno);
      }
      lines++, bytes += (size_t)(b - a) + 1;
    }
    s = *e ? e + 1 : e;
  }
  if (!lines) {
    free(text);
    return vkp_error_set(err, VKP_ERR_FORMAT, "%s: no templates", path);
  }
  char **arr = malloc(lines * sizeof *arr + bytes);
  if (!arr) {
    free(text);
    return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  char *dst = (char *)(arr + lines);
  size_t k = 0;
  for (char *s = p; *s;) {
    char *e = strchr(s, '\n');
    if (!e) e = s + strlen(s);
    char *a = s, *b = e;
    while (a < b && (*a == ' ' || *a == '\t' || *a == '\r')) a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r')) b--;
    if (b > a && *a != '#') {
      arr[k++] = dst;
      memcpy(dst, a, (size_t)(b - a));
      dst += b - a;
      *dst++ = '\0';
    }
    s = *e ? e + 1 : e;
  }
  free(text);
  *out = arr, *n = (int)lines;
  return VKP_OK;
}

// tmpl with every "{}" replaced by name (new string).
static char *fill_template(const char *tmpl, const char *name) {
  size_t n = 0, ln = strlen(name);
  for (const char *s = tmpl; *s;) {
    if (s[0] == '{' && s[1] == '}') n += ln, s += 2;
    else n++, s++;
  }
  char *out = malloc(n + 1), *d = out;
  if (!out) return NULL;
  for (const char *s = tmpl; *s;) {
    if (s[0] == '{' && s[1] == '}') memcpy(d, name, ln), d += ln, s += 2;
    else *d++ = *s++;
  }
  *d = '\0';
  return out;
}

vkp_status vkp_clip_zero_shot_classifier(vkp_clip *c, vkp_clip_embedder *e, const vkp_clip_tokenizer *tok,
                                         const char *const *class_names, int n_classes, const char *const *templates,
                                         int n_templates, float *class_embeds, vkp_error *err) {
  if (!c || !tok || !class_names || n_classes < 1 || !class_embeds)
    return vkp_error_set(err, VKP_ERR_INVALID, "clip zero-shot: bad arguments");
  if (!templates) templates = vkp_clip_zero_shot_templates(c, &n_templates);
  if (n_templates < 1) return vkp_error_set(err, VKP_ERR_INVALID, "clip zero-shot: no templates");
  vkp_clip_embedder *own = NULL;
  if (!e) {
    VKP_TRY(vkp_clip_embedder_new(c, 64, &own, err));
    e = own;
  }
  int64_t nt = (int64_t)n_classes * n_templates, d = vkp_clip_embed_dim(c);
  char **texts = calloc((size_t)nt, sizeof *texts);
  float *emb = malloc((size_t)(nt * d) * sizeof *emb);
  vkp_status st = texts && emb ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (int64_t i = 0; i < nt && !st; i++) {   // class-major: class k's texts are k*n_templates ..
    texts[i] = fill_template(templates[i % n_templates], class_names[i / n_templates]);
    if (!texts[i]) st = vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  }
  if (!st) st = vkp_clip_embedder_texts(e, tok, (const char *const *)texts, nt, emb, err);
  for (int k = 0; k < n_classes && !st; k++) {
    double norm = 0;
    for (int64_t j = 0; j < d; j++) {
      double s = 0;
      for (int t = 0; t < n_templates; t++) s += emb[((int64_t)k * n_templates + t) * d + j];
      s /= n_templates;
      class_embeds[k * d + j] = (float)s;
      norm += s * s;
    }
    float inv = norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
    for (int64_t j = 0; j < d; j++) class_embeds[k * d + j] *= inv;
  }
  for (int64_t i = 0; texts && i < nt; i++) free(texts[i]);
  free(texts), free(emb);
  vkp_clip_embedder_free(own);
  return st;
}
