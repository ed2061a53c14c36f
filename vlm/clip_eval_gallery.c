// clip_eval_gallery.c — the retrieval gallery: for a few captions, the top-k images by similarity
// in a row (best first, the right one framed green), and the right image with its rank at the end.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vkp_clip_eval.h"
#include "vkp_plot.h"

#define MARGIN 12
#define GAP 8
#define FRAME 3
#define SEP 24   // space before the "right image" column

static void fill_rect(vkp_image *img, int x0, int y0, int w, int h, uint32_t rgb) {
  size_t stride = vkp_image_stride(img);
  for (int y = y0 < 0 ? 0 : y0; y < y0 + h && y < img->height; y++)
    for (int x = x0 < 0 ? 0 : x0; x < x0 + w && x < img->width; x++) {
      uint8_t *p = img->data + (size_t)y * stride + (size_t)x * img->channels;
      p[0] = (uint8_t)(rgb >> 16), p[1] = (uint8_t)(rgb >> 8), p[2] = (uint8_t)rgb;
    }
}

// Draws dataset image i, composited on white and resized to cell x cell (shorter side, centre
// crop), at (x, y).
static vkp_status draw_cell(vkp_image *img, const vkp_dataset *ds, size_t i, int x, int y, int cell, float *buf,
                            vkp_error *err) {
  vkp_data_transform t = {.out_w = cell, .out_h = cell, .out_channels = 3, .crop = VKP_CROP_CENTER, .resize_short = cell,
                          .fill = 255.0f};
  for (int c = 0; c < 3; c++) t.std[c] = 1.0f / 255.0f;   // output = pixel value
  const uint8_t *src = vkp_dataset_image(ds, i);
  int w = ds->widths[i], h = ds->heights[i], ch = ds->channels;
  uint8_t *rgb = NULL;
  if (ch == 4 || ch == 2) {
    rgb = malloc((size_t)w * h * 3);
    if (!rgb) return vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
    vkp_data_alpha_to_rgb(src, (size_t)w * h, ch, VKP_ALPHA_WHITE, rgb);
    src = rgb, ch = 3;
  }
  vkp_status st = vkp_data_transform_apply(&t, src, w, h, ch, 0, buf, err);
  free(rgb);
  if (st) return st;
  size_t stride = vkp_image_stride(img), plane = (size_t)cell * cell;
  for (int yy = 0; yy < cell; yy++)
    for (int xx = 0; xx < cell; xx++) {
      if (y + yy >= img->height || x + xx >= img->width) continue;
      uint8_t *p = img->data + (size_t)(y + yy) * stride + (size_t)(x + xx) * img->channels;
      for (int c = 0; c < 3; c++) {
        float v = buf[c * plane + (size_t)yy * cell + xx] + 0.5f;
        p[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
      }
    }
  return VKP_OK;
}

// text cut with an ellipsis to fit max_w pixels (into out, cap bytes).
static void fit_text(const char *text, int max_w, char *out, size_t cap) {
  if (out != text) snprintf(out, cap, "%s", text);
  // line breaks as spaces; curly quotes (not in the font) as straight ones
  char *d = out;
  for (const char *s = out; *s;) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] == 0xE2 && u[1] == 0x80 && u[2] >= 0x98 && u[2] <= 0x9D) *d++ = u[2] <= 0x9B ? '\'' : '"', s += 3;
    else if (*s == '\n') *d++ = ' ', s++;
    else *d++ = *s++;
  }
  *d = '\0';
  int w, h;
  vkp_text_size(out, 1, false, &w, &h);
  size_t n = strlen(out);
  while (w > max_w && n > 0) {
    do n--;
    while (n > 0 && ((unsigned char)out[n] & 0xC0) == 0x80);   // whole UTF-8 characters
    if (n + 4 > cap) continue;
    memcpy(out + n, "\xE2\x80\xA6", 4);   // "…"
    vkp_text_size(out, 1, false, &w, &h);
  }
}

vkp_status vkp_clip_gallery_render(const vkp_clip_gallery *g, vkp_image **out, vkp_error *err) {
  *out = NULL;
  if (!g || !g->images || !g->image_embeds || !g->text_embeds || !g->texts || !g->text_image || g->n_images < 1 ||
      g->n_texts < 1 || g->dim < 1)
    return vkp_error_set(err, VKP_ERR_INVALID, "clip gallery: needs images, texts and their embeddings");
  int nq = g->n_queries > 0 ? g->n_queries : 6, k = g->top_k > 0 ? g->top_k : 5, cell = g->cell > 0 ? g->cell : 64;
  if (!g->queries && nq > g->n_texts) nq = (int)g->n_texts;
  if (k > g->n_images) k = (int)g->n_images;
  for (int64_t i = 0; i < g->n_images; i++) {
    size_t di = g->image_index ? g->image_index[i] : (size_t)i;
    if (di >= g->images->count) return vkp_error_set(err, VKP_ERR_INVALID, "clip gallery: image index %zu out of range", di);
  }
  int box = cell + 2 * FRAME, line = VKP_FONT_LINE;
  int width = 2 * MARGIN + k * box + (k - 1) * GAP + SEP + box;
  int row_h = line + 4 + box + line + GAP + 6;
  int title_h = line + 10;
  int height = MARGIN + title_h + nq * row_h + MARGIN - GAP;
  vkp_image *img;
  VKP_TRY(vkp_image_new(width, height, 3, &img, err));
  memset(img->data, 255, vkp_image_stride(img) * (size_t)height);
  char title[256];
  snprintf(title, sizeof title, "%s", g->title ? g->title : "Text -> image retrieval: top-5 per caption, the right image framed green");
  fit_text(title, width - 2 * MARGIN, title, sizeof title);
  vkp_image_draw_text(img, MARGIN, MARGIN, title, VKP_RGB(0x202020), 1, true);
  double *sim = malloc((size_t)g->n_images * sizeof *sim);
  int64_t *top = malloc((size_t)k * sizeof *top);
  float *buf = malloc((size_t)3 * cell * cell * sizeof *buf);
  vkp_status st = sim && top && buf ? VKP_OK : vkp_error_set(err, VKP_ERR_OOM, "out of host memory");
  for (int q = 0; q < nq && !st; q++) {
    int64_t t = g->queries ? g->queries[q] : (int64_t)q * g->n_texts / nq;
    if (t < 0 || t >= g->n_texts || g->text_image[t] < 0 || g->text_image[t] >= g->n_images) {
      st = vkp_error_set(err, VKP_ERR_INVALID, "clip gallery: query %d (text %lld) out of range", q, (long long)t);
      break;
    }
    int64_t right = g->text_image[t];
    const float *te = g->text_embeds + t * g->dim;
    for (int64_t i = 0; i < g->n_images; i++) {
      double s = 0;
      for (int64_t j = 0; j < g->dim; j++) s += (double)te[j] * g->image_embeds[i * g->dim + j];
      sim[i] = s;
    }
    int64_t rank = 1;
    for (int64_t i = 0; i < g->n_images; i++) rank += i != right && sim[i] >= sim[right];
    // top-k by selection (ties: lower index first)
    for (int r = 0; r < k; r++) {
      int64_t b = -1;
      for (int64_t i = 0; i < g->n_images; i++) {
        bool taken = false;
        for (int u = 0; u < r && !taken; u++) taken = top[u] == i;
        if (!taken && (b < 0 || sim[i] > sim[b])) b = i;
      }
      top[r] = b;
    }
    int y0 = MARGIN + title_h + q * row_h;
    char cap[512], text[600];
    snprintf(text, sizeof text, "\"%s\"", g->texts[t]);
    fit_text(text, width - 2 * MARGIN, cap, sizeof cap);
    vkp_image_draw_text(img, MARGIN, y0, cap, VKP_RGB(0x202020), 1, false);
    int yi = y0 + line + 4;
    for (int r = 0; r <= k && !st; r++) {
      int64_t i = r < k ? top[r] : right;
      int x = MARGIN + r * (box + GAP) + (r == k ? SEP - GAP : 0);
      bool ok = i == right;
      fill_rect(img, x, yi, box, box, ok ? 0x2CA02C : 0xC8C8C8);
      st = draw_cell(img, g->images, g->image_index ? g->image_index[i] : (size_t)i, x + FRAME, yi + FRAME, cell, buf, err);
      char lab[64];
      if (r < k) snprintf(lab, sizeof lab, "#%d %.2f", r + 1, sim[i]);
      else snprintf(lab, sizeof lab, "right: #%lld", (long long)rank);
      fit_text(lab, box, lab, sizeof lab);
      vkp_image_draw_text(img, x, yi + box + 3, lab, ok ? VKP_RGB(0x1A7A1A) : VKP_RGB(0x505050), 1, ok);
    }
  }
  free(sim), free(top), free(buf);
  if (st) {
    vkp_image_free(img);
    return st;
  }
  *out = img;
  return VKP_OK;
}

vkp_status vkp_clip_gallery_png(const vkp_clip_gallery *g, const char *path, vkp_error *err) {
  vkp_image *img;
  VKP_TRY(vkp_clip_gallery_render(g, &img, err));
  vkp_status st = vkp_png_write(path, img, NULL, 0, err);
  vkp_image_free(img);
  return st;
}
