// train_reg.c — regularisation images for the diffusion trainer (DreamBooth prior preservation,
// kohya's reg_data_dir + prior_loss_weight) and kohya's dataset metadata (ss_dataset_dirs,
// ss_reg_dataset_dirs, ss_tag_frequency as train_network.py writes them, json.dumps'd).
//
// kohya's rule, followed here: the regularisation images are part of the training set; their
// repeats are set so that an epoch holds as many regularisation samples as training samples
// (num_train_images, repeats included): the images are taken in order with their folders' repeats
// until that count is reached (images after that point are not used), then, while it is not
// reached, each image's repeats grow by one in turn. A regularisation sample's loss is multiplied
// by train.prior_loss_weight; the batch mean is over all samples.
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"
#include "vkp_clip_train.h"
#include "vkp_strbuf.h"

// ---- Python's str() and json.dumps ----------------------------------------------------------------------

void vkp_dtrain_py_float(double v, char *out, size_t cap) {
  if (isfinite(v) && v == floor(v) && fabs(v) < 1e16) {
    snprintf(out, cap, "%.1f", v);
    return;
  }
  for (int p = 1; p <= 17; p++) {   // repr: the shortest string that reads back as v
    snprintf(out, cap, "%.*g", p, v);
    if (strtod(out, NULL) == v) return;
  }
}

// s as json.dumps writes a string (ensure_ascii: non-ASCII as \uXXXX, UTF-16 surrogate pairs above U+FFFF).
static void py_json_string(vkp_strbuf *b, const char *s) {
  vkp_strbuf_puts(b, "\"");
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    unsigned c = *p;
    if (c == '"' || c == '\\') vkp_strbuf_printf(b, "\\%c", c), p++;
    else if (c == '\n') vkp_strbuf_puts(b, "\\n"), p++;
    else if (c == '\r') vkp_strbuf_puts(b, "\\r"), p++;
    else if (c == '\t') vkp_strbuf_puts(b, "\\t"), p++;
    else if (c < 0x20 || c == 0x7f) vkp_strbuf_printf(b, "\\u%04x", c), p++;
    else if (c < 0x80) vkp_strbuf_put(b, (const char *)p++, 1);
    else {   // UTF-8 sequence (a malformed byte is written as U+FFFD)
      int n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : -1;
      unsigned cp = n == 3 ? c & 7 : n == 2 ? c & 15 : c & 31;
      int k = 1;
      for (; n > 0 && k <= n && (p[k] & 0xc0) == 0x80; k++) cp = cp << 6 | (p[k] & 0x3f);
      if (n < 0 || k <= n) cp = 0xfffd, k = 1;
      if (cp >= 0x10000) vkp_strbuf_printf(b, "\\u%04x\\u%04x", 0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
      else vkp_strbuf_printf(b, "\\u%04x", cp);
      p += k;
    }
  }
  vkp_strbuf_puts(b, "\"");
}

// ---- kohya's dataset metadata ----------------------------------------------------------------------------

typedef struct tag_count {
  char *tag;
  long count;
} tag_count;

typedef struct dir_info {
  char *name;            // the folder's base name (kohya: os.path.basename(subset.image_dir))
  bool reg;
  int32_t repeats;       // its images' repeats as read (kohya's n_repeats)
  long images;
  tag_count *tags;       // in first-seen order, as a Python dict keeps them
  size_t n_tags;
} dir_info;

// The base name of the folder holding image i of p.
static void dir_name(const vkp_pairs *p, size_t i, char *out, size_t cap) {
  const char *path = p->images->paths && p->images->paths[i] ? p->images->paths[i] : "";
  const char *slash = strrchr(path, '/');
  if (!slash) {
    snprintf(out, cap, ".");
    return;
  }
  const char *start = slash;
  while (start > path && start[-1] != '/') start--;
  snprintf(out, cap, "%.*s", (int)(slash - start), start);
}

static bool count_tags(dir_info *d, const char *caption) {
  for (const char *p = caption; *p;) {
    const char *e = strchr(p, ',');
    if (!e) e = p + strlen(p);
    const char *a = p, *z = e;
    while (a < z && isspace((unsigned char)*a)) a++;
    while (z > a && isspace((unsigned char)z[-1])) z--;
    if (z > a) {
      char *tag = strndup(a, (size_t)(z - a));
      if (!tag) return false;
      for (char *q = tag; *q; q++) *q = (char)tolower((unsigned char)*q);   // kohya lower-cases (ASCII here)
      size_t k = 0;
      while (k < d->n_tags && strcmp(d->tags[k].tag, tag)) k++;
      if (k < d->n_tags) {
        d->tags[k].count++, free(tag);
      } else {
        tag_count *g = realloc(d->tags, (d->n_tags + 1) * sizeof *g);
        if (!g) return free(tag), false;
        d->tags = g, d->tags[d->n_tags++] = (tag_count){tag, 1};
      }
    }
    p = *e ? e + 1 : e;
  }
  return true;
}

static vkp_status dataset_metadata(vkp_dtrainer *t, vkp_error *err) {
  const vkp_pairs *p = t->train;
  dir_info *dirs = NULL;
  size_t nd = 0;
  bool ok = true;
  char name[512];
  for (size_t i = 0; ok && i < vkp_pairs_count(p); i++) {
    dir_name(p, i, name, sizeof name);
    bool reg = vkp_dtrain_is_reg(t, i);
    size_t k = 0;
    while (k < nd && (dirs[k].reg != reg || strcmp(dirs[k].name, name))) k++;
    if (k == nd) {
      dir_info *g = realloc(dirs, (nd + 1) * sizeof *g);
      ok = g && (g[nd] = (dir_info){.name = strdup(name), .reg = reg, .repeats = p->repeats[i]}).name;
      if (g) dirs = g, nd += ok;
      if (!ok) break;
    }
    dirs[k].images++;
    ok = count_tags(&dirs[k], vkp_pairs_caption(p, i, 0));
  }
  vkp_strbuf s[3] = {{0}, {0}, {0}};   // dataset dirs, reg dirs, tag frequency
  for (int j = 0; j < 3; j++) vkp_strbuf_puts(&s[j], "{");
  size_t n_out[3] = {0};
  for (size_t k = 0; ok && k < nd; k++) {
    vkp_strbuf *b = &s[dirs[k].reg];
    if (n_out[dirs[k].reg]++) vkp_strbuf_puts(b, ", ");
    py_json_string(b, dirs[k].name);
    vkp_strbuf_printf(b, ": {\"n_repeats\": %d, \"img_count\": %ld}", dirs[k].repeats, dirs[k].images);
    if (n_out[2]++) vkp_strbuf_puts(&s[2], ", ");
    py_json_string(&s[2], dirs[k].name);
    vkp_strbuf_puts(&s[2], ": {");
    for (size_t g = 0; g < dirs[k].n_tags; g++) {
      if (g) vkp_strbuf_puts(&s[2], ", ");
      py_json_string(&s[2], dirs[k].tags[g].tag);
      vkp_strbuf_printf(&s[2], ": %ld", dirs[k].tags[g].count);
    }
    vkp_strbuf_puts(&s[2], "}");
  }
  for (int j = 0; j < 3; j++) vkp_strbuf_puts(&s[j], "}"), ok = ok && !s[j].oom;
  for (size_t k = 0; k < nd; k++) {
    for (size_t g = 0; g < dirs[k].n_tags; g++) free(dirs[k].tags[g].tag);
    free(dirs[k].tags), free(dirs[k].name);
  }
  free(dirs);
  t->dx.dataset_dirs = s[0].p, t->dx.reg_dataset_dirs = s[1].p, t->dx.tag_frequency = s[2].p;
  return ok ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
}

// ---- regularisation images --------------------------------------------------------------------------------

bool vkp_dtrain_is_reg(const vkp_dtrainer *t, size_t image) { return image >= t->dx.n_base; }

vkp_status vkp_dtrain_add_reg(vkp_dtrainer *t, vkp_pairs *reg, vkp_error *err) {
  vkp_dtrain_data_extra *x = &t->dx;
  x->n_base = vkp_pairs_count(t->train);
  x->num_train_images = 0;
  for (size_t j = 0; j < t->n_train; j++) x->num_train_images += t->train->repeats[t->train_idx[j]];
  if (reg) {
    vkp_pairs *joined = NULL;
    vkp_status st = vkp_clip_pairs_concat(t->train, reg, &joined, err);
    vkp_pairs_free(reg);
    if (st) return st;
    vkp_pairs_free(t->train);
    t->train = joined;
  }
  VKP_TRY(dataset_metadata(t, err));   // the folders' repeats as read
  size_t nr = vkp_pairs_count(t->train) - x->n_base, used = 0;
  int32_t *rep = t->train->repeats + x->n_base;
  x->num_reg_images = 0;
  for (size_t j = 0; j < nr; j++) x->num_reg_images += rep[j];
  int64_t n = 0;
  for (bool first = true; nr && n < x->num_train_images; first = false)
    for (size_t j = 0; j < nr && n < x->num_train_images; j++) {
      if (first) n += rep[j], used++;
      else rep[j]++, n++;
    }
  size_t *idx = realloc(t->train_idx, (t->n_train + used + 1) * sizeof *idx);
  if (!idx) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  t->train_idx = idx;
  for (size_t j = 0; j < used; j++) t->train_idx[t->n_train++] = x->n_base + j;
  if (!(x->sample_w = malloc((size_t)t->k.batch * sizeof *x->sample_w))) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  if (nr && !t->quiet)
    printf("vkpeft train: %zu of %zu regularisation images used, %lld samples per epoch beside %lld training samples (prior_loss_weight %g)\n",
           used, nr, (long long)n, (long long)x->num_train_images, x->prior_loss_weight);
  return VKP_OK;
}

void vkp_dtrain_reg_account(vkp_dtrainer *t, int n) {
  const size_t item = (size_t)t->latent_c * t->latent_h * t->latent_w;
  for (int s = 0; s < n; s++) {
    double se = 0;
    for (size_t i = 0; i < item; i++) {
      double d = (double)t->pred[s * item + i] - t->target[s * item + i];
      se += d * d;
    }
    if (vkp_dtrain_is_reg(t, t->images[s])) t->dx.win_reg_loss += se / (double)item, t->dx.win_reg_n++;
    t->dx.win_n++;
  }
}

int vkp_dtrain_reg_metrics(vkp_dtrainer *t, vkp_metric *m) {
  vkp_dtrain_data_extra *x = &t->dx;
  int k = 0;
  if (x->n_base < vkp_pairs_count(t->train) && x->win_n > 0) {
    m[k++] = (vkp_metric){"reg_share", x->win_reg_n / x->win_n};
    if (x->win_reg_n > 0) m[k++] = (vkp_metric){"loss_reg", x->win_reg_loss / x->win_reg_n};
  }
  x->win_reg_loss = x->win_reg_n = x->win_n = 0;
  return k;
}
