// plot.c — charts rendered into RGB vkp_images: line, scatter, bar, confusion matrix, image grid.
//
// Drawing model: the image is the canvas (white). Crisp 1-pixel things (grid, frame, ticks, bars)
// are filled rectangles. Lines and markers are anti-aliased by coverage: a stroke is a chain of
// capsules (segments with round ends); each pixel's coverage is max over the capsules of
// clamp(half_width + 0.5 - distance, 0, 1), accumulated in a float buffer and composited once per
// series, so joints are not drawn twice (no dark knots where segments meet, even when translucent).
// Text is the embedded bitmap font (font.c) drawn at integer scales, optionally rotated 90 degrees.
#include "vkp_plot.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- style ------------------------------------------------------------------------------------
#define C_WHITE VKP_RGB(0xFFFFFF)
#define C_TITLE VKP_RGB(0x1A1A1A)
#define C_LABEL VKP_RGB(0x2B2B2B)
#define C_TICK_LABEL VKP_RGB(0x4A4A4A)
#define C_TICK VKP_RGB(0x8A8A8A)
#define C_FRAME VKP_RGB(0xA8A8A8)
#define C_GRID VKP_RGB(0xE9E9E9)
#define C_GRID_MINOR VKP_RGB(0xF4F4F4)
#define C_LEGEND_BORDER VKP_RGB(0xD4D4D4)
#define C_CAPTION VKP_RGB(0x333333)
#define C_CELL_BORDER VKP_RGB(0xDADADA)

#define PAD 14          // outer margin
#define TICK_LEN 5      // outward tick marks
#define TITLE_SCALE 1.5  // title font scale (area-sampled, anti-aliased)
#define TITLE_BOLD true
#define TITLE_H ((int)ceil((VKP_FONT_ASCENT + 2) * TITLE_SCALE))
#define MAX_TICKS 32
#define MAX_MINOR 256

static const uint32_t palette_rgb[10] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                         0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};

uint32_t vkp_plot_palette(int i) {
  if (i < 0) i = -i;
  return VKP_RGB(palette_rgb[i % 10]);
}

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }
static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
static int maxi(int a, int b) { return a > b ? a : b; }
static int mini(int a, int b) { return a < b ? a : b; }

// ---- pixels -----------------------------------------------------------------------------------

// Blends `color` with coverage a (0..1) into pixel (x, y) of an image with any channel count
// (grey images get the colour's luminance; alpha images are composited "over").
static void blend(vkp_image *img, int x, int y, uint32_t color, float a) {
  if (x < 0 || y < 0 || x >= img->width || y >= img->height || !(a > 0.0f)) return;
  if (a > 1.0f) a = 1.0f;
  int nc = img->channels;
  uint8_t *p = img->data + (size_t)y * vkp_image_stride(img) + (size_t)x * (size_t)nc;
  float src[3] = {(float)((color >> 16) & 255), (float)((color >> 8) & 255),
                  (float)(color & 255)};
  int ncol = nc >= 3 ? 3 : 1;
  if (ncol == 1) src[0] = 0.299f * src[0] + 0.587f * src[1] + 0.114f * src[2];
  bool has_alpha = nc == 2 || nc == 4;
  float da = has_alpha ? p[nc - 1] / 255.0f : 1.0f;
  if (da >= 1.0f) {
    for (int c = 0; c < ncol; c++) p[c] = (uint8_t)lrintf(p[c] + (src[c] - p[c]) * a);
    return;
  }
  float oa = a + da * (1.0f - a);
  for (int c = 0; c < ncol; c++)
    p[c] = (uint8_t)lrintf(oa > 0 ? (src[c] * a + p[c] * da * (1.0f - a)) / oa : 0.0f);
  p[nc - 1] = (uint8_t)lrintf(oa * 255.0f);
}

// Fills [x0, x1) x [y0, y1) (clipped to the image) with color at opacity a.
static void fill_rect(vkp_image *img, int x0, int y0, int x1, int y1, uint32_t color, float a) {
  x0 = maxi(x0, 0);
  y0 = maxi(y0, 0);
  x1 = mini(x1, img->width);
  y1 = mini(y1, img->height);
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) blend(img, x, y, color, a);
}

static void stroke_rect(vkp_image *img, int x0, int y0, int x1, int y1, uint32_t color) {
  fill_rect(img, x0, y0, x1, y0 + 1, color, 1);
  fill_rect(img, x0, y1 - 1, x1, y1, color, 1);
  fill_rect(img, x0, y0, x0 + 1, y1, color, 1);
  fill_rect(img, x1 - 1, y0, x1, y1, color, 1);
}

// ---- text -------------------------------------------------------------------------------------

// Decodes one UTF-8 character and advances *s; malformed bytes give U+FFFD.
static uint32_t utf8_next(const char **s) {
  const unsigned char *p = (const unsigned char *)*s;
  uint32_t c = p[0];
  if (c < 0x80) {
    *s += 1;
    return c;
  }
  int n = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
  if (n == 0 || c >= 0xF8) {
    *s += 1;
    return 0xFFFD;
  }
  uint32_t cp = c & (0x3Fu >> n);
  for (int i = 1; i <= n; i++) {
    if ((p[i] & 0xC0) != 0x80) {
      *s += i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  *s += n + 1;
  return cp;
}

static int glyph_width(const vkp_glyph *g) { return (int)strlen(g->rows[0]); }

// Unscaled width of text[0..len) (one line).
static int line_width(const char *s, size_t len, bool bold) {
  const char *end = s + len;
  int w = 0, n = 0;
  while (s < end && *s) {
    w += glyph_width(vkp_font_glyph(utf8_next(&s))) + 1 + (bold ? 1 : 0);
    n++;
  }
  return n ? w - 1 : 0;
}

// Unscaled size of text: width of the widest line, height of all lines.
static void text_size_1(const char *text, bool bold, int *width, int *height) {
  int w = 0, lines = 1;
  if (!text) text = "";
  for (const char *s = text;;) {
    const char *nl = strchr(s, '\n');
    size_t len = nl ? (size_t)(nl - s) : strlen(s);
    w = maxi(w, line_width(s, len, bold));
    if (!nl) break;
    lines++;
    s = nl + 1;
  }
  if (width) *width = w;
  if (height) *height = lines * VKP_FONT_LINE - 2;
}

// Size at a (possibly fractional) scale.
static void text_size_f(const char *text, double scale, bool bold, int *width, int *height) {
  int w, h;
  text_size_1(text, bold, &w, &h);
  if (width) *width = (int)ceil(w * scale - 1e-9);
  if (height) *height = (int)ceil(h * scale - 1e-9);
}

void vkp_text_size(const char *text, int scale, bool bold, int *width, int *height) {
  text_size_f(text, scale < 1 ? 1 : scale, bold, width, height);
}

// Walks the ink pixels of a text in unscaled text coordinates (u right, v down).
typedef struct ink_iter {
  const char *s;       // next character
  const vkp_glyph *g;  // current glyph (NULL: fetch the next one)
  int line, pen, gw, r, c, b;
  bool bold;
} ink_iter;

static ink_iter ink_begin(const char *text, bool bold) {
  ink_iter it;
  memset(&it, 0, sizeof it);
  it.s = text ? text : "";
  it.bold = bold;
  return it;
}

static bool ink_next(ink_iter *it, int *u, int *v) {
  for (;;) {
    if (!it->g) {
      if (!*it->s) return false;
      if (*it->s == '\n') {
        it->line++;
        it->pen = 0;
        it->s++;
        continue;
      }
      it->g = vkp_font_glyph(utf8_next(&it->s));
      it->gw = glyph_width(it->g);
      it->r = it->c = it->b = 0;
    }
    const vkp_glyph *g = it->g;
    while (it->r < 11 && g->rows[it->r]) {
      while (it->c < it->gw) {
        int c = it->c, b = it->b;
        if (++it->b > (it->bold ? 1 : 0)) {
          it->b = 0;
          it->c++;
        }
        if (g->rows[it->r][c] == '#') {
          *u = it->pen + c + b;
          *v = it->line * VKP_FONT_LINE + g->top + it->r;
          return true;
        }
      }
      it->c = 0;
      it->r++;
    }
    it->pen += it->gw + 1 + (it->bold ? 1 : 0);
    it->g = NULL;
  }
}

// Draws text with the top-left of its bounding box at (x, y). rot = 1: rotated 90 degrees
// counter-clockwise (reads bottom to top); the bounding box is then height x width.
// Integer scales draw crisp blocks; fractional scales (e.g. 1.5 for titles) area-sample the
// glyph pixels into a coverage mask, which gives smooth, anti-aliased edges.
static void draw_text_f(vkp_image *img, int x, int y, const char *text, uint32_t color,
                        double scale, bool bold, int rot) {
  if (!text || !text[0]) return;
  if (!(scale >= 1)) scale = 1;
  int tw, th;
  text_size_f(text, scale, bold, &tw, &th);
  int is = (int)scale;
  float *mask = NULL;
  if (scale != is) {
    mask = calloc((size_t)tw * (size_t)th, sizeof *mask);
    if (!mask) is = (int)lround(scale);  // no memory: fall back to crisp integer scaling
  }
  if (!mask) {
    text_size_f(text, is, bold, &tw, &th);
    ink_iter it = ink_begin(text, bold);
    int u, v;
    while (ink_next(&it, &u, &v)) {
      for (int sy = 0; sy < is; sy++)
        for (int sx = 0; sx < is; sx++) {
          int tx = u * is + sx, ty = v * is + sy;
          if (rot)
            blend(img, x + ty, y + (tw - 1 - tx), color, 1.0f);
          else
            blend(img, x + tx, y + ty, color, 1.0f);
        }
    }
    return;
  }
  ink_iter it = ink_begin(text, bold);
  int u, v;
  while (ink_next(&it, &u, &v)) {
    double x0 = u * scale, x1 = (u + 1) * scale, y0 = v * scale, y1 = (v + 1) * scale;
    for (int ty = (int)floor(y0); ty < (int)ceil(y1) && ty < th; ty++) {
      double oy = fmin(y1, ty + 1) - fmax(y0, ty);
      for (int tx = (int)floor(x0); tx < (int)ceil(x1) && tx < tw; tx++) {
        double ox = fmin(x1, tx + 1) - fmax(x0, tx);
        if (ox > 0 && oy > 0) mask[(size_t)ty * tw + tx] += (float)(ox * oy);
      }
    }
  }
  for (int ty = 0; ty < th; ty++)
    for (int tx = 0; tx < tw; tx++) {
      float a = mask[(size_t)ty * tw + tx];
      if (a <= 0) continue;
      a = a > 1 ? 1 : a;
      if (rot)
        blend(img, x + ty, y + (tw - 1 - tx), color, a);
      else
        blend(img, x + tx, y + ty, color, a);
    }
  free(mask);
}

void vkp_image_draw_text(vkp_image *img, int x, int y, const char *text, uint32_t color,
                         int scale, bool bold) {
  if (!img || !img->data) return;
  draw_text_f(img, x, y, text, color, scale < 1 ? 1 : scale, bold, 0);
}

enum { AL_START = 0, AL_CENTER = 1, AL_END = 2 };

// Draws text anchored at (ax, ay): ha/va choose which edge or centre of the text sits on the
// anchor. Vertical centring uses the cap height (numbers and capitals look centred).
static void text_at(vkp_image *img, double ax, double ay, int ha, int va, const char *text,
                    uint32_t color, double scale, bool bold, int rot) {
  int tw, th;
  text_size_f(text, scale, bold, &tw, &th);
  int single = strchr(text, '\n') == NULL;
  double vis_h = single ? VKP_FONT_ASCENT * scale : th;  // visual height for centring
  double x, y;
  if (!rot) {
    x = ha == AL_START ? ax : ha == AL_CENTER ? ax - tw / 2.0 : ax - tw;
    y = va == AL_START ? ay : va == AL_CENTER ? ay - vis_h / 2.0 : ay - vis_h;
  } else {  // box is th wide, tw tall; the glyph tops face left
    x = ha == AL_START ? ax : ha == AL_CENTER ? ax - vis_h / 2.0 : ax - th;
    y = va == AL_START ? ay : va == AL_CENTER ? ay - tw / 2.0 : ay - tw;
  }
  draw_text_f(img, (int)lround(x), (int)lround(y), text, color, scale, bold, rot);
}

// Copies src into dst (size cap) cut so that it fits max_w pixels at scale 1, ending in "…".
static void fit_text(const char *src, int max_w, char *dst, size_t cap) {
  snprintf(dst, cap, "%s", src);
  int w;
  vkp_text_size(dst, 1, false, &w, NULL);
  if (w <= max_w) return;
  static const char ell[] = "\xE2\x80\xA6";
  size_t n = strlen(dst);
  while (n > 0) {
    n--;
    while (n > 0 && ((unsigned char)dst[n] & 0xC0) == 0x80) n--;  // whole characters only
    if (n + sizeof ell > cap) continue;
    memcpy(dst + n, ell, sizeof ell);
    vkp_text_size(dst, 1, false, &w, NULL);
    if (w <= max_w) return;
  }
  dst[0] = '\0';
}

// ---- anti-aliased strokes ---------------------------------------------------------------------

typedef struct cov_buf {
  float *a;            // (h, w) coverage, zero outside the dirty box
  int w, h;
  int x0, y0, x1, y1;  // dirty box [x0, x1) x [y0, y1)
} cov_buf;

typedef struct rectd {
  double x0, y0, x1, y1;
} rectd;

static void cov_reset_box(cov_buf *c) {
  c->x0 = c->w;
  c->y0 = c->h;
  c->x1 = 0;
  c->y1 = 0;
}

static int cov_init(cov_buf *c, int w, int h) {
  c->a = calloc((size_t)w * (size_t)h, sizeof *c->a);
  c->w = w;
  c->h = h;
  cov_reset_box(c);
  return c->a ? 0 : -1;
}

// Capsule from a to b with half width hw (a == b: a disc), limited to the pixels of clip.
static void cov_capsule(cov_buf *c, double ax, double ay, double bx, double by, double hw,
                        rectd clip) {
  double ext = hw + 1.0;
  int px0 = (int)floor(fmax(fmin(ax, bx) - ext, fmax(clip.x0, 0)));
  int py0 = (int)floor(fmax(fmin(ay, by) - ext, fmax(clip.y0, 0)));
  int px1 = (int)ceil(fmin(fmax(ax, bx) + ext, fmin(clip.x1, c->w)));
  int py1 = (int)ceil(fmin(fmax(ay, by) + ext, fmin(clip.y1, c->h)));
  if (px0 >= px1 || py0 >= py1) return;
  double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
  for (int py = py0; py < py1; py++) {
    float *row = c->a + (size_t)py * (size_t)c->w;
    double cy = py + 0.5;
    for (int px = px0; px < px1; px++) {
      double cx = px + 0.5;
      double t = len2 > 0 ? ((cx - ax) * dx + (cy - ay) * dy) / len2 : 0.0;
      t = clampd(t, 0.0, 1.0);
      double ex = ax + t * dx - cx, ey = ay + t * dy - cy;
      double cov = hw + 0.5 - sqrt(ex * ex + ey * ey);
      if (cov <= 0) continue;
      if (cov > 1) cov = 1;
      if ((float)cov > row[px]) row[px] = (float)cov;
    }
  }
  c->x0 = mini(c->x0, px0);
  c->y0 = mini(c->y0, py0);
  c->x1 = maxi(c->x1, px1);
  c->y1 = maxi(c->y1, py1);
}

// Composites the accumulated coverage with color x opacity and clears it.
static void cov_flush(cov_buf *c, vkp_image *img, uint32_t color, float opacity) {
  for (int y = c->y0; y < c->y1; y++) {
    float *row = c->a + (size_t)y * (size_t)c->w;
    for (int x = c->x0; x < c->x1; x++) {
      if (row[x] > 0) {
        blend(img, x, y, color, row[x] * opacity);
        row[x] = 0;
      }
    }
  }
  cov_reset_box(c);
}

// Liang-Barsky: clips segment a-b to r; returns 0 when nothing is left.
static int clip_segment(double *ax, double *ay, double *bx, double *by, rectd r) {
  double x0 = *ax, y0 = *ay, dx = *bx - x0, dy = *by - y0;
  double t0 = 0, t1 = 1;
  double p[4] = {-dx, dx, -dy, dy}, q[4] = {x0 - r.x0, r.x1 - x0, y0 - r.y0, r.y1 - y0};
  for (int i = 0; i < 4; i++) {
    if (p[i] == 0) {
      if (q[i] < 0) return 0;
      continue;
    }
    double t = q[i] / p[i];
    if (p[i] < 0) {
      if (t > t1) return 0;
      if (t > t0) t0 = t;
    } else {
      if (t < t0) return 0;
      if (t < t1) t1 = t;
    }
  }
  *ax = x0 + t0 * dx;
  *ay = y0 + t0 * dy;
  *bx = x0 + t1 * dx;
  *by = y0 + t1 * dy;
  return 1;
}

// Strokes segment a-b, dashed when dash_on > 0 (dash_pos carries the pattern phase along a
// polyline).
static void cov_segment(cov_buf *c, double ax, double ay, double bx, double by, double hw,
                        rectd clip, double dash_on, double dash_off, double *dash_pos) {
  rectd big = {clip.x0 - hw - 2, clip.y0 - hw - 2, clip.x1 + hw + 2, clip.y1 + hw + 2};
  double len = hypot(bx - ax, by - ay);
  if (dash_on <= 0) {
    if (clip_segment(&ax, &ay, &bx, &by, big)) cov_capsule(c, ax, ay, bx, by, hw, clip);
    return;
  }
  double period = dash_on + dash_off, s = 0;
  while (s < len) {
    double phase = fmod(*dash_pos + s, period);
    double run = phase < dash_on ? dash_on - phase : period - phase;
    double e = fmin(len, s + run);
    if (phase < dash_on && len > 0) {
      double t0 = s / len, t1 = e / len;
      double sx = ax + (bx - ax) * t0, sy = ay + (by - ay) * t0;
      double ex = ax + (bx - ax) * t1, ey = ay + (by - ay) * t1;
      if (clip_segment(&sx, &sy, &ex, &ey, big)) cov_capsule(c, sx, sy, ex, ey, hw, clip);
    }
    s = e;
  }
  *dash_pos += len;
}

// ---- ticks ------------------------------------------------------------------------------------

// Number of multiples of st inside [lo, hi].
static double tick_count(double lo, double hi, double st) {
  return floor(hi / st + 1e-9) - ceil(lo / st - 1e-9) + 1;
}

int vkp_plot_ticks(double lo, double hi, int max_ticks, double *ticks, int cap, double *step) {
  if (step) *step = 0;
  if (!(lo < hi) || !isfinite(lo) || !isfinite(hi) || max_ticks < 2) return 0;
  // A step of at least span / (max_ticks - 1) always fits; smaller 1-2-5 steps may fit too when
  // the range does not start on a multiple, so start one decade below and take the first that fits.
  double raw = (hi - lo) / (max_ticks - 1);
  double mag = pow(10.0, floor(log10(raw)) - 1);
  static const double nice[3] = {1, 2, 5};
  double st = 0;
  for (int i = 0; i < 12 && st == 0; i++) {
    double cand = nice[i % 3] * mag * pow(10.0, i / 3);
    if (tick_count(lo, hi, cand) <= max_ticks) st = cand;
  }
  if (st == 0) return 0;
  double k0 = ceil(lo / st - 1e-9), k1 = floor(hi / st + 1e-9);
  int n = 0;
  for (double k = k0; k <= k1 && n < cap; k++) {
    double v = k * st;
    if (fabs(v) < st * 1e-9) v = 0;  // no -0 or 1e-17 for zero
    ticks[n++] = v;
  }
  if (step) *step = st;
  return n;
}

int vkp_plot_log_ticks(double lo, double hi, int max_ticks, double *ticks, int cap) {
  if (!(lo > 0) || !(lo < hi) || !isfinite(hi) || max_ticks < 2) return 0;
  int k0 = (int)ceil(log10(lo) - 1e-9), k1 = (int)floor(log10(hi) + 1e-9);
  int decades = k1 - k0 + 1;
  int n = 0;
  if (decades >= 3) {
    static const int strides[] = {1, 2, 3, 5, 10, 20, 50, 100};
    int stride = 100;
    for (size_t i = 0; i < sizeof strides / sizeof strides[0]; i++) {
      int s = strides[i];
      int first = (int)ceil((double)k0 / s) * s;
      int count = first > k1 ? 0 : (k1 - first) / s + 1;
      if (count <= max_ticks) {
        stride = s;
        break;
      }
    }
    int first = (int)ceil((double)k0 / stride) * stride;
    for (int k = first; k <= k1 && n < cap; k += stride) ticks[n++] = pow(10.0, k);
    return n;
  }
  // Narrow ranges: 1-2-5 multiples of each decade, if they fit.
  static const double m125[3] = {1, 2, 5};
  int count = 0;
  for (int k = k0 - 1; k <= k1; k++)
    for (int i = 0; i < 3; i++) {
      double v = m125[i] * pow(10.0, k);
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) count++;
    }
  if (count >= 2 && count <= max_ticks) {
    for (int k = k0 - 1; k <= k1; k++)
      for (int i = 0; i < 3; i++) {
        double v = m125[i] * pow(10.0, k);
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9) && n < cap) ticks[n++] = v;
      }
    return n;
  }
  if (decades >= 2) {
    for (int k = k0; k <= k1 && n < cap; k++) ticks[n++] = pow(10.0, k);
    return n;
  }
  return vkp_plot_ticks(lo, hi, max_ticks, ticks, cap, NULL);
}

// Removes trailing zeros after a decimal point ("1.50" -> "1.5", "2.0" -> "2").
static void trim_zeros(char *s) {
  char *dot = strchr(s, '.');
  if (!dot) return;
  char *e = s + strlen(s);
  while (e > dot + 1 && e[-1] == '0') e--;
  if (e == dot + 1) e = dot;
  *e = '\0';
}

// Prints v with the fewest decimals >= d0 that represent it to 1e-9 relative precision.
static void print_fixed(double v, int d0, char *buf, size_t size) {
  for (int d = clampi(d0, 0, 12); d <= 12; d++) {
    snprintf(buf, size, "%.*f", d, v);
    if (fabs(strtod(buf, NULL) - v) <= 1e-9 * fmax(fabs(v), 1e-300)) return;
  }
}

void vkp_plot_format_tick(double v, double step, double ref, char *buf, size_t size) {
  if (!buf || size == 0) return;
  if (!isfinite(v)) {
    snprintf(buf, size, "%s", isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
    return;
  }
  if (v == 0) {
    snprintf(buf, size, "0");
    return;
  }
  step = fabs(step) > 0 ? fabs(step) : fabs(v);
  ref = fabs(ref) > 0 ? fabs(ref) : fabs(v);
  if (ref >= 1e4) {  // SI suffix chosen by the largest value on the axis
    double div = ref >= 1e9 ? 1e9 : ref >= 1e6 ? 1e6 : 1e3;
    const char *suffix = ref >= 1e9 ? "G" : ref >= 1e6 ? "M" : "k";
    char num[48];
    print_fixed(v / div, (int)fmax(0, -floor(log10(step / div) + 1e-9)), num, sizeof num);
    snprintf(buf, size, "%s%s", num, suffix);
    return;
  }
  if (ref < 1e-3) {  // scientific: mantissa digits from the step
    int e = (int)floor(log10(fabs(v)) + 1e-9);
    double m = v / pow(10.0, e);
    int d = (int)fmax(0, e - floor(log10(step) + 1e-9));
    char num[48];
    print_fixed(m, d, num, sizeof num);
    trim_zeros(num);
    snprintf(buf, size, "%se%d", num, e);
    return;
  }
  print_fixed(v, (int)fmax(0, -floor(log10(step) + 1e-9)), buf, size);
}

void vkp_plot_smooth_ema(const double *y, int n, double weight, double *out) {
  if (!y || !out || n <= 0) return;
  weight = clampd(weight, 0.0, 0.999999);
  double last = 0, wpow = 1;
  for (int i = 0; i < n; i++) {
    double v = y[i];
    if (!isfinite(v)) {
      out[i] = NAN;
      continue;
    }
    last = last * weight + (1 - weight) * v;
    wpow *= weight;
    out[i] = wpow < 1 ? last / (1 - wpow) : v;
  }
}

// ---- axes and frames ----------------------------------------------------------------------------

typedef struct axis_info {
  double lo, hi;  // range in data units
  bool log;
  int n;
  double t[MAX_TICKS];
  char lab[MAX_TICKS][32];
  int n_minor;
  double minor[MAX_MINOR];
} axis_info;

typedef struct chart_frame {
  int x0, y0, x1, y1;  // data area: pixels [x0, x1) x [y0, y1)
  axis_info ax, ay;
} chart_frame;

static double axis_frac(const axis_info *a, double v) {
  if (a->log) return (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo));
  return (v - a->lo) / (a->hi - a->lo);
}

static double fx(const chart_frame *f, double v) {
  return f->x0 + axis_frac(&f->ax, v) * (f->x1 - f->x0);
}
static double fy(const chart_frame *f, double v) {
  return f->y1 - axis_frac(&f->ay, v) * (f->y1 - f->y0);
}

static bool usable(const axis_info *a, double v) { return isfinite(v) && (!a->log || v > 0); }

// Sets the axis range: the fixed one from spec, else [dmin, dmax] widened by `margin` of the span.
static void axis_fit(axis_info *a, const vkp_plot_axis *spec, double dmin, double dmax,
                     double margin) {
  a->log = spec->log;
  if (spec->min < spec->max) {
    a->lo = spec->min;
    a->hi = spec->max;
    return;
  }
  if (!(dmin <= dmax)) {
    a->lo = a->log ? 1 : 0;
    a->hi = a->log ? 10 : 1;
    return;
  }
  if (a->log) {
    double l0 = log10(dmin), l1 = log10(dmax);
    if (l1 - l0 < 1e-9) {
      l0 -= 0.5;
      l1 += 0.5;
    }
    double pad = (l1 - l0) * margin;
    a->lo = pow(10.0, l0 - pad);
    a->hi = pow(10.0, l1 + pad);
    return;
  }
  double span = dmax - dmin;
  if (span <= 1e-12 * fmax(fabs(dmin), fabs(dmax)) || span == 0) {
    double h = dmin != 0 ? fabs(dmin) * 0.1 : 1.0;
    a->lo = dmin - h;
    a->hi = dmax + h;
    return;
  }
  a->lo = dmin - span * margin;
  a->hi = dmax + span * margin;
}

// Computes ticks for an axis `pixels` long, at most one per `spacing` pixels, and their labels.
static void axis_ticks(axis_info *a, double pixels, double spacing) {
  int max_t = clampi((int)(pixels / spacing) + 1, 2, MAX_TICKS);
  double step = 0;
  a->n = a->log ? vkp_plot_log_ticks(a->lo, a->hi, max_t, a->t, MAX_TICKS)
                : vkp_plot_ticks(a->lo, a->hi, max_t, a->t, MAX_TICKS, &step);
  bool linear_labels = !a->log;
  if (a->log && a->n >= 2) {  // a narrow log range may have fallen back to linear ticks
    double r = a->t[1] / a->t[0];
    bool decades = fabs(log10(r) - floor(log10(r) + 0.5)) < 1e-9;
    bool m125 = true;
    for (int i = 0; i < a->n; i++) {
      double m = a->t[i] / pow(10.0, floor(log10(a->t[i]) + 1e-9));
      if (fabs(m - 1) > 1e-6 && fabs(m - 2) > 1e-6 && fabs(m - 5) > 1e-6) m125 = false;
    }
    if (!decades && !m125) {
      linear_labels = true;
      step = a->t[1] - a->t[0];
    }
  }
  double ref = 0;
  for (int i = 0; i < a->n; i++) ref = fmax(ref, fabs(a->t[i]));
  for (int i = 0; i < a->n; i++) {
    if (linear_labels)
      vkp_plot_format_tick(a->t[i], step, ref, a->lab[i], sizeof a->lab[i]);
    else
      vkp_plot_format_tick(a->t[i], a->t[i], a->t[i], a->lab[i], sizeof a->lab[i]);
  }
  // Minor grid on log axes: 2..9 x 10^k when the major ticks are consecutive decades.
  a->n_minor = 0;
  if (a->log && a->n >= 2 && fabs(a->t[1] / a->t[0] - 10) < 1e-6) {
    for (int k = (int)floor(log10(a->lo)); k <= (int)ceil(log10(a->hi)); k++)
      for (int m = 2; m <= 9 && a->n_minor < MAX_MINOR; m++) {
        double v = m * pow(10.0, k);
        if (v > a->lo && v < a->hi) a->minor[a->n_minor++] = v;
      }
  }
}

static int max_label_width(const axis_info *a) {
  int w = 0;
  for (int i = 0; i < a->n; i++) {
    int lw;
    vkp_text_size(a->lab[i], 1, false, &lw, NULL);
    w = maxi(w, lw);
  }
  return w;
}

// Ticks for the x axis: as many as fit without labels touching.
static void axis_ticks_x(axis_info *a, double pixels) {
  double spacing = 80;
  for (int tries = 0; tries < 8; tries++) {
    axis_ticks(a, pixels, spacing);
    int w = max_label_width(a);
    if (a->n < 2) return;
    double px_step = pixels * fabs(axis_frac(a, a->t[1]) - axis_frac(a, a->t[0]));
    if (px_step >= w + 16 || a->n <= 2) return;
    spacing *= 1.4;
  }
}

// Lays out the data area of a W x H chart with optional title and axis labels, and the ticks.
static void frame_layout(chart_frame *f, int W, int H, const char *title, const char *xlabel,
                         const char *ylabel) {
  int title_h = title ? TITLE_H : 0;
  f->y0 = PAD + (title ? title_h + 16 : 8);
  f->y1 = H - PAD - (xlabel ? VKP_FONT_ASCENT + 12 : 0) - (VKP_FONT_ASCENT + 2) - 6 - TICK_LEN;
  if (f->y1 < f->y0 + 20) f->y1 = f->y0 + 20;
  axis_ticks(&f->ay, f->y1 - f->y0, 44);
  int lw = max_label_width(&f->ay);
  f->x0 = PAD + (ylabel ? VKP_FONT_ASCENT + 14 : 0) + lw + 6 + TICK_LEN;
  f->x1 = W - PAD - 12;
  if (f->x1 < f->x0 + 20) f->x1 = f->x0 + 20;
  axis_ticks_x(&f->ax, f->x1 - f->x0);
}

// Pixel column/row of a value on the frame, clamped to the data area (for crisp 1 px lines).
static int col_of(const chart_frame *f, double v) {
  return clampi((int)floor(fx(f, v)), f->x0, f->x1 - 1);
}
static int row_of(const chart_frame *f, double v) {
  return clampi((int)floor(fy(f, v)), f->y0, f->y1 - 1);
}

static void draw_grid(vkp_image *img, const chart_frame *f) {
  for (int i = 0; i < f->ax.n_minor; i++) {
    int x = col_of(f, f->ax.minor[i]);
    fill_rect(img, x, f->y0, x + 1, f->y1, C_GRID_MINOR, 1);
  }
  for (int i = 0; i < f->ay.n_minor; i++) {
    int y = row_of(f, f->ay.minor[i]);
    fill_rect(img, f->x0, y, f->x1, y + 1, C_GRID_MINOR, 1);
  }
  for (int i = 0; i < f->ax.n; i++) {
    int x = col_of(f, f->ax.t[i]);
    fill_rect(img, x, f->y0, x + 1, f->y1, C_GRID, 1);
  }
  for (int i = 0; i < f->ay.n; i++) {
    int y = row_of(f, f->ay.t[i]);
    fill_rect(img, f->x0, y, f->x1, y + 1, C_GRID, 1);
  }
}

// Frame, tick marks, tick labels, axis labels and title.
static void draw_axes(vkp_image *img, const chart_frame *f, const char *title, const char *xlabel,
                      const char *ylabel) {
  stroke_rect(img, f->x0 - 1, f->y0 - 1, f->x1 + 1, f->y1 + 1, C_FRAME);
  int label_top = f->y1 + 1 + TICK_LEN + 5;
  for (int i = 0; i < f->ax.n; i++) {
    int x = col_of(f, f->ax.t[i]);
    fill_rect(img, x, f->y1 + 1, x + 1, f->y1 + 1 + TICK_LEN, C_TICK, 1);
    text_at(img, x + 0.5, label_top, AL_CENTER, AL_START, f->ax.lab[i], C_TICK_LABEL, 1, false, 0);
  }
  int ymax_lw = 0;
  for (int i = 0; i < f->ay.n; i++) {
    int y = row_of(f, f->ay.t[i]);
    fill_rect(img, f->x0 - 1 - TICK_LEN, y, f->x0 - 1, y + 1, C_TICK, 1);
    text_at(img, f->x0 - 1 - TICK_LEN - 5, y + 0.5, AL_END, AL_CENTER, f->ay.lab[i], C_TICK_LABEL,
            1, false, 0);
  }
  ymax_lw = max_label_width(&f->ay);
  if (xlabel)
    text_at(img, (f->x0 + f->x1) / 2.0, label_top + VKP_FONT_ASCENT + 10, AL_CENTER, AL_START,
            xlabel, C_LABEL, 1, false, 0);
  if (ylabel)
    text_at(img, f->x0 - 1 - TICK_LEN - 5 - ymax_lw - 10, (f->y0 + f->y1) / 2.0, AL_END, AL_CENTER,
            ylabel, C_LABEL, 1, false, 1);
  if (title)
    text_at(img, (f->x0 + f->x1) / 2.0, PAD, AL_CENTER, AL_START, title, C_TITLE, TITLE_SCALE,
            TITLE_BOLD, 0);
}

static vkp_plot_frame public_frame(const chart_frame *f) {
  vkp_plot_frame p = {f->x0, f->y0, f->x1, f->y1, f->ax.lo, f->ax.hi, f->ay.lo, f->ay.hi,
                      f->ax.log, f->ay.log};
  return p;
}

static vkp_status check_axis(const vkp_plot_axis *a, const char *name, vkp_error *err) {
  if (a->min < a->max && a->log && !(a->min > 0))
    return vkp_error_set(err, VKP_ERR_INVALID, "plot: %s axis is logarithmic but its range starts "
                         "at %g (must be > 0)", name, a->min);
  if (a->min < a->max && (!isfinite(a->min) || !isfinite(a->max)))
    return vkp_error_set(err, VKP_ERR_INVALID, "plot: %s axis range is not finite", name);
  return VKP_OK;
}

static vkp_status new_canvas(int w, int h, const char *what, vkp_image **out, vkp_error *err) {
  if (w < 120 || h < 80 || w > 16384 || h > 16384)
    return vkp_error_set(err, VKP_ERR_INVALID, "%s: size %dx%d out of range (120x80..16384)",
                         what, w, h);
  VKP_TRY(vkp_image_new(w, h, 3, out, err));
  memset((*out)->data, 255, (size_t)h * (*out)->stride);
  return VKP_OK;
}

// ---- legend -------------------------------------------------------------------------------------

#define LEGEND_ROW 17
#define LEGEND_SAMPLE 24

static void draw_legend(vkp_image *img, cov_buf *cov, const chart_frame *f,
                        const vkp_line_chart *c, const uint32_t *colors) {
  int n = 0, lw = 0;
  for (int i = 0; i < c->n_series; i++) {
    if (!c->series[i].label) continue;
    int w;
    vkp_text_size(c->series[i].label, 1, false, &w, NULL);
    lw = maxi(lw, w);
    n++;
  }
  if (n == 0 || c->legend == VKP_LEGEND_NONE) return;
  int bw = 10 + LEGEND_SAMPLE + 8 + lw + 10, bh = 8 + n * LEGEND_ROW + 2;
  int inset = 10;
  int cx[4] = {f->x1 - inset - bw, f->x0 + inset, f->x0 + inset, f->x1 - inset - bw};
  int cy[4] = {f->y0 + inset, f->y0 + inset, f->y1 - inset - bh, f->y1 - inset - bh};
  int pick = 0;  // upper right, upper left, lower left, lower right
  if (c->legend >= VKP_LEGEND_UPPER_RIGHT && c->legend <= VKP_LEGEND_LOWER_RIGHT) {
    pick = c->legend - VKP_LEGEND_UPPER_RIGHT;
  } else {  // the corner covering the fewest data points (and line pieces between them)
    long best = -1;
    static const int order[4] = {0, 1, 3, 2};
    for (int oi = 0; oi < 4; oi++) {
      int k = order[oi];
      long hits = 0;
      for (int s = 0; s < c->n_series; s++) {
        const vkp_plot_series *se = &c->series[s];
        double px = NAN, py = NAN;
        for (int i = 0; i < se->n; i++) {
          double xv = se->x ? se->x[i] : i, yv = se->y[i];
          if (!usable(&f->ax, xv) || !usable(&f->ay, yv)) {
            px = NAN;
            continue;
          }
          double qx = fx(f, xv), qy = fy(f, yv);
          // sample the segment from the previous point every ~4 px
          int steps = isnan(px) ? 1 : clampi((int)(hypot(qx - px, qy - py) / 4) + 1, 1, 512);
          for (int j = 1; j <= steps; j++) {
            double t = (double)j / steps;
            double sx = isnan(px) ? qx : px + (qx - px) * t, sy = isnan(px) ? qy : py + (qy - py) * t;
            if (sx >= cx[k] - 4 && sx < cx[k] + bw + 4 && sy >= cy[k] - 4 && sy < cy[k] + bh + 4)
              hits++;
          }
          px = qx;
          py = qy;
        }
      }
      if (best < 0 || hits < best) {
        best = hits;
        pick = k;
      }
    }
  }
  int bx = cx[pick], by = cy[pick];
  fill_rect(img, bx, by, bx + bw, by + bh, C_WHITE, 0.88f);
  stroke_rect(img, bx, by, bx + bw, by + bh, C_LEGEND_BORDER);
  int row = 0;
  rectd clip = {0, 0, img->width, img->height};
  for (int i = 0; i < c->n_series; i++) {
    const vkp_plot_series *se = &c->series[i];
    if (!se->label) continue;
    double yc = by + 6 + row * LEGEND_ROW + LEGEND_ROW / 2;  // integer: 2 px lines stay crisp
    double lwid = se->line_width > 0 ? se->line_width : 2.0;
    float op = se->opacity > 0 ? fminf(se->opacity, 1.0f) : 1.0f;
    double x0 = bx + 10, x1 = bx + 10 + LEGEND_SAMPLE;
    if (se->style != VKP_PLOT_MARKERS) {
      double dash = 0;
      cov_segment(cov, x0, yc, x1, yc, lwid / 2, clip, se->style == VKP_PLOT_DASHED ? 3 * lwid : 0,
                  2.5 * lwid, &dash);
    }
    if (se->style == VKP_PLOT_MARKERS || se->style == VKP_PLOT_LINE_MARKERS)
      cov_capsule(cov, (x0 + x1) / 2, yc, (x0 + x1) / 2, yc, fmax(3.0, lwid * 1.6), clip);
    cov_flush(cov, img, colors[i], op);
    text_at(img, x1 + 8, yc, AL_START, AL_CENTER, se->label, C_LABEL, 1, false, 0);
    row++;
  }
}

// ---- line chart ---------------------------------------------------------------------------------

vkp_status vkp_plot_line(const vkp_line_chart *c, vkp_image **out, vkp_plot_frame *frame,
                         vkp_error *err) {
  if (out) *out = NULL;
  if (!c || !out) return vkp_error_set(err, VKP_ERR_INVALID, "line chart: NULL argument");
  if (c->n_series < 0 || (c->n_series > 0 && !c->series))
    return vkp_error_set(err, VKP_ERR_INVALID, "line chart: bad series list");
  for (int s = 0; s < c->n_series; s++) {
    const vkp_plot_series *se = &c->series[s];
    if (se->n < 0 || (se->n > 0 && !se->y))
      return vkp_error_set(err, VKP_ERR_INVALID, "line chart: series %d (%s) has no values", s,
                           se->label ? se->label : "unnamed");
  }
  VKP_TRY(check_axis(&c->x, "x", err));
  VKP_TRY(check_axis(&c->y, "y", err));
  int W = c->width > 0 ? c->width : 800, H = c->height > 0 ? c->height : 500;

  chart_frame f;
  memset(&f, 0, sizeof f);
  f.ax.log = c->x.log;
  f.ay.log = c->y.log;
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (int s = 0; s < c->n_series; s++) {
    const vkp_plot_series *se = &c->series[s];
    for (int i = 0; i < se->n; i++) {
      double xv = se->x ? se->x[i] : i, yv = se->y[i];
      if (!usable(&f.ax, xv) || !usable(&f.ay, yv)) continue;
      // With a fixed range on one axis, fit the other to the points inside it.
      if (c->x.min < c->x.max && (xv < c->x.min || xv > c->x.max)) continue;
      if (c->y.min < c->y.max && (yv < c->y.min || yv > c->y.max)) continue;
      xmin = fmin(xmin, xv);
      xmax = fmax(xmax, xv);
      ymin = fmin(ymin, yv);
      ymax = fmax(ymax, yv);
    }
  }
  axis_fit(&f.ax, &c->x, xmin, xmax, 0.02);
  axis_fit(&f.ay, &c->y, ymin, ymax, 0.05);

  vkp_image *img = NULL;
  VKP_TRY(new_canvas(W, H, "line chart", &img, err));
  cov_buf cov;
  uint32_t *colors = calloc((size_t)c->n_series + 1, sizeof *colors);
  if (cov_init(&cov, W, H) != 0 || !colors) {
    free(cov.a);
    free(colors);
    vkp_image_free(img);
    return vkp_error_set(err, VKP_ERR_OOM, "line chart: out of memory");
  }
  frame_layout(&f, W, H, c->title, c->x.label, c->y.label);
  if (!c->no_grid) draw_grid(img, &f);

  rectd clip = {f.x0, f.y0, f.x1, f.y1};
  for (int s = 0; s < c->n_series; s++) {
    const vkp_plot_series *se = &c->series[s];
    colors[s] = se->color ? se->color : vkp_plot_palette(s);
    double lw = se->line_width > 0 ? se->line_width : 2.0;
    float op = se->opacity > 0 ? fminf(se->opacity, 1.0f) : 1.0f;
    bool line = se->style != VKP_PLOT_MARKERS;
    bool markers = se->style == VKP_PLOT_MARKERS || se->style == VKP_PLOT_LINE_MARKERS;
    double dash_on = se->style == VKP_PLOT_DASHED ? 3 * lw : 0, dash_off = 2.5 * lw;
    double px = NAN, py = NAN, dash = 0;
    int run = 0;  // points in the current unbroken run
    for (int i = 0; i <= se->n; i++) {
      bool ok = false;
      double qx = 0, qy = 0;
      if (i < se->n) {
        double xv = se->x ? se->x[i] : i, yv = se->y[i];
        ok = usable(&f.ax, xv) && usable(&f.ay, yv);
        if (ok) {
          qx = clampd(fx(&f, xv), -1e7, 1e7);
          qy = clampd(fy(&f, yv), -1e7, 1e7);
        }
      }
      if (!ok) {
        if (line && run == 1) cov_capsule(&cov, px, py, px, py, lw / 2, clip);  // lone point
        run = 0;
        dash = 0;
        continue;
      }
      if (line && run > 0) cov_segment(&cov, px, py, qx, qy, lw / 2, clip, dash_on, dash_off, &dash);
      px = qx;
      py = qy;
      run++;
    }
    if (markers) {
      for (int i = 0; i < se->n; i++) {
        double xv = se->x ? se->x[i] : i, yv = se->y[i];
        if (!usable(&f.ax, xv) || !usable(&f.ay, yv)) continue;
        double qx = fx(&f, xv), qy = fy(&f, yv);
        if (qx < f.x0 - 10 || qx > f.x1 + 10 || qy < f.y0 - 10 || qy > f.y1 + 10) continue;
        cov_capsule(&cov, qx, qy, qx, qy, fmax(3.0, lw * 1.6), clip);
      }
    }
    cov_flush(&cov, img, colors[s], op);
  }
  draw_axes(img, &f, c->title, c->x.label, c->y.label);
  draw_legend(img, &cov, &f, c, colors);
  if (frame) *frame = public_frame(&f);
  free(cov.a);
  free(colors);
  *out = img;
  return VKP_OK;
}

// ---- scatter chart ------------------------------------------------------------------------------

typedef struct recti {
  int x0, y0, x1, y1;
} recti;

static long overlap(recti a, recti b) {
  int w = mini(a.x1, b.x1) - maxi(a.x0, b.x0), h = mini(a.y1, b.y1) - maxi(a.y0, b.y0);
  return w > 0 && h > 0 ? (long)w * h : 0;
}

vkp_status vkp_plot_scatter(const vkp_scatter_chart *c, vkp_image **out, vkp_plot_frame *frame,
                            vkp_error *err) {
  if (out) *out = NULL;
  if (!c || !out) return vkp_error_set(err, VKP_ERR_INVALID, "scatter chart: NULL argument");
  if (c->n_points < 0 || (c->n_points > 0 && !c->points))
    return vkp_error_set(err, VKP_ERR_INVALID, "scatter chart: bad point list");
  VKP_TRY(check_axis(&c->x, "x", err));
  VKP_TRY(check_axis(&c->y, "y", err));
  int W = c->width > 0 ? c->width : 800, H = c->height > 0 ? c->height : 500;
  chart_frame f;
  memset(&f, 0, sizeof f);
  f.ax.log = c->x.log;
  f.ay.log = c->y.log;
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (int i = 0; i < c->n_points; i++) {
    double xv = c->points[i].x, yv = c->points[i].y;
    if (!usable(&f.ax, xv) || !usable(&f.ay, yv)) continue;
    xmin = fmin(xmin, xv);
    xmax = fmax(xmax, xv);
    ymin = fmin(ymin, yv);
    ymax = fmax(ymax, yv);
  }
  axis_fit(&f.ax, &c->x, xmin, xmax, 0.08);
  axis_fit(&f.ay, &c->y, ymin, ymax, 0.10);

  vkp_image *img = NULL;
  VKP_TRY(new_canvas(W, H, "scatter chart", &img, err));
  cov_buf cov;
  recti *placed = calloc((size_t)c->n_points * 2 + 1, sizeof *placed);
  if (cov_init(&cov, W, H) != 0 || !placed) {
    free(cov.a);
    free(placed);
    vkp_image_free(img);
    return vkp_error_set(err, VKP_ERR_OOM, "scatter chart: out of memory");
  }
  frame_layout(&f, W, H, c->title, c->x.label, c->y.label);
  if (!c->no_grid) draw_grid(img, &f);
  rectd clip = {f.x0, f.y0, f.x1, f.y1};
  double r = c->radius > 0 ? c->radius : 5.0;
  int n_placed = 0;
  // Markers first (white halo, then colour), remembering their boxes for label placement.
  for (int i = 0; i < c->n_points; i++) {
    const vkp_scatter_point *p = &c->points[i];
    if (!usable(&f.ax, p->x) || !usable(&f.ay, p->y)) continue;
    double qx = fx(&f, p->x), qy = fy(&f, p->y);
    if (qx < f.x0 - 2 * r || qx > f.x1 + 2 * r || qy < f.y0 - 2 * r || qy > f.y1 + 2 * r) continue;
    cov_capsule(&cov, qx, qy, qx, qy, r + 1.5, clip);
    cov_flush(&cov, img, C_WHITE, 1.0f);
    cov_capsule(&cov, qx, qy, qx, qy, r, clip);
    cov_flush(&cov, img, p->color ? p->color : vkp_plot_palette(i), 1.0f);
    placed[n_placed++] = (recti){(int)(qx - r - 1), (int)(qy - r - 1), (int)(qx + r + 2),
                                 (int)(qy + r + 2)};
  }
  // Labels: each at the candidate position overlapping least with markers and earlier labels.
  for (int i = 0; i < c->n_points; i++) {
    const vkp_scatter_point *p = &c->points[i];
    if (!p->label || !usable(&f.ax, p->x) || !usable(&f.ay, p->y)) continue;
    double qx = fx(&f, p->x), qy = fy(&f, p->y);
    if (qx < f.x0 || qx > f.x1 || qy < f.y0 || qy > f.y1) continue;
    int tw, th;
    vkp_text_size(p->label, 1, false, &tw, &th);
    int g = (int)ceil(r) + 5, ch = VKP_FONT_ASCENT;
    int cand[8][2] = {
        {(int)qx + g, (int)qy - ch / 2},          {(int)qx - g - tw, (int)qy - ch / 2},
        {(int)qx - tw / 2, (int)qy - g - ch},     {(int)qx - tw / 2, (int)qy + g},
        {(int)qx + g - 3, (int)qy - g - ch + 3},  {(int)qx + g - 3, (int)qy + g - 3},
        {(int)qx - g - tw + 3, (int)qy - g - ch + 3}, {(int)qx - g - tw + 3, (int)qy + g - 3},
    };
    long best = -1;
    int bi = 0;
    for (int k = 0; k < 8; k++) {
      recti box = {cand[k][0] - 2, cand[k][1] - 2, cand[k][0] + tw + 2, cand[k][1] + th + 2};
      long score = 0;
      for (int j = 0; j < n_placed; j++) score += overlap(box, placed[j]);
      recti area = {f.x0, f.y0, f.x1, f.y1};
      long inside = overlap(box, area), total = (long)(box.x1 - box.x0) * (box.y1 - box.y0);
      score += (total - inside) * 4;
      score = score * 16 + k;  // prefer earlier candidates on ties
      if (best < 0 || score < best) {
        best = score;
        bi = k;
      }
    }
    recti box = {cand[bi][0] - 2, cand[bi][1] - 2, cand[bi][0] + tw + 2, cand[bi][1] + th + 2};
    fill_rect(img, box.x0 + 1, box.y0 + 1, box.x1 - 1, box.y1 - 1, C_WHITE, 0.7f);
    draw_text_f(img, cand[bi][0], cand[bi][1], p->label, C_LABEL, 1, false, 0);
    placed[n_placed++] = box;
  }
  draw_axes(img, &f, c->title, c->x.label, c->y.label);
  if (frame) *frame = public_frame(&f);
  free(cov.a);
  free(placed);
  *out = img;
  return VKP_OK;
}

// ---- horizontal bar chart -----------------------------------------------------------------------

vkp_status vkp_plot_bars(const vkp_bar_chart *c, vkp_image **out, vkp_error *err) {
  if (out) *out = NULL;
  if (!c || !out) return vkp_error_set(err, VKP_ERR_INVALID, "bar chart: NULL argument");
  if (c->n < 1 || !c->values)
    return vkp_error_set(err, VKP_ERR_INVALID, "bar chart: no values");
  int W = c->width > 0 ? c->width : 800;
  const int bar_h = 20, gap = 9;
  int title_h = c->title ? TITLE_H + 16 : 6;
  int y0 = PAD + title_h;
  int y1 = y0 + c->n * (bar_h + gap) + gap;
  int H = y1 + TICK_LEN + 5 + VKP_FONT_ASCENT + 2 + (c->value_label ? VKP_FONT_ASCENT + 12 : 0) +
          PAD;
  if (c->n > 2000) return vkp_error_set(err, VKP_ERR_INVALID, "bar chart: too many bars (%d)", c->n);

  double vmin = INFINITY, vmax = -INFINITY;
  for (int i = 0; i < c->n; i++) {
    if (!isfinite(c->values[i])) continue;
    vmin = fmin(vmin, c->values[i]);
    vmax = fmax(vmax, c->values[i]);
  }
  chart_frame f;
  memset(&f, 0, sizeof f);
  if (c->min < c->max) {
    f.ax.lo = c->min;
    f.ax.hi = c->max;
  } else {
    if (!(vmin <= vmax)) vmin = vmax = 0;
    double lo = fmin(0, vmin), hi = fmax(0, vmax);
    if (hi - lo <= 0) hi = lo + 1;
    f.ax.lo = lo < 0 ? lo - (hi - lo) * 0.05 : lo;
    f.ax.hi = hi > 0 ? hi + (hi - lo) * 0.12 : hi;  // room for the value labels
  }
  int lab_w = 0;
  for (int i = 0; i < c->n; i++) {
    int w = 0;
    if (c->labels && c->labels[i]) vkp_text_size(c->labels[i], 1, false, &w, NULL);
    lab_w = maxi(lab_w, w);
  }
  lab_w = mini(lab_w, W / 3);
  f.x0 = PAD + lab_w + 10;
  f.x1 = W - PAD - 12;
  f.y0 = y0;
  f.y1 = y1;
  if (f.x1 < f.x0 + 40)
    return vkp_error_set(err, VKP_ERR_INVALID, "bar chart: width %d too small for the labels", W);
  f.ay.lo = 0;
  f.ay.hi = 1;
  vkp_image *img = NULL;
  VKP_TRY(new_canvas(W, H, "bar chart", &img, err));
  axis_ticks_x(&f.ax, f.x1 - f.x0);
  for (int i = 0; i < f.ax.n; i++) {
    int x = col_of(&f, f.ax.t[i]);
    fill_rect(img, x, f.y0, x + 1, f.y1, C_GRID, 1);
  }
  double zero = clampd(fx(&f, 0), f.x0, f.x1);
  for (int i = 0; i < c->n; i++) {
    int by = f.y0 + gap + i * (bar_h + gap);
    double v = c->values[i];
    uint32_t col = c->colors && c->colors[i] ? c->colors[i] : vkp_plot_palette(0);
    if (isfinite(v)) {
      double xv = clampd(fx(&f, v), f.x0, f.x1);
      int a = (int)lround(fmin(zero, xv)), b = (int)lround(fmax(zero, xv));
      if (b == a) b = a + 1;
      fill_rect(img, a, by, b, by + bar_h, col, 1.0f);
      const char *fmt = c->value_format ? c->value_format : NULL;
      char buf[64] = "";
      if (!fmt)
        snprintf(buf, sizeof buf, "%.4g", v);
      else if (fmt[0])
        snprintf(buf, sizeof buf, fmt, v);
      if (buf[0]) {
        int tw;
        vkp_text_size(buf, 1, false, &tw, NULL);
        double tx = v >= 0 ? b + 5 : a - 5 - tw;
        if (tx + tw > f.x1 - 2) tx = b - 5 - tw;  // no room outside: inside the bar, white
        bool inside = tx < b && tx + tw > a;
        text_at(img, tx, by + bar_h / 2.0, AL_START, AL_CENTER, buf,
                inside ? C_WHITE : C_LABEL, 1, false, 0);
      }
    }
    if (c->labels && c->labels[i]) {
      char cut[256];
      fit_text(c->labels[i], lab_w, cut, sizeof cut);
      text_at(img, f.x0 - 8, by + bar_h / 2.0, AL_END, AL_CENTER, cut, C_LABEL, 1, false, 0);
    }
  }
  // value axis
  fill_rect(img, f.x0, f.y1, f.x1, f.y1 + 1, C_FRAME, 1);
  fill_rect(img, (int)zero, f.y0, (int)zero + 1, f.y1, C_FRAME, 1);
  int label_top = f.y1 + 1 + TICK_LEN + 5;
  for (int i = 0; i < f.ax.n; i++) {
    int x = col_of(&f, f.ax.t[i]);
    fill_rect(img, x, f.y1 + 1, x + 1, f.y1 + 1 + TICK_LEN, C_TICK, 1);
    text_at(img, x + 0.5, label_top, AL_CENTER, AL_START, f.ax.lab[i], C_TICK_LABEL, 1, false, 0);
  }
  if (c->value_label)
    text_at(img, (f.x0 + f.x1) / 2.0, label_top + VKP_FONT_ASCENT + 10, AL_CENTER, AL_START,
            c->value_label, C_LABEL, 1, false, 0);
  if (c->title)
    text_at(img, W / 2.0, PAD, AL_CENTER, AL_START, c->title, C_TITLE, TITLE_SCALE, TITLE_BOLD, 0);
  *out = img;
  return VKP_OK;
}

// ---- confusion matrix ---------------------------------------------------------------------------

// ColorBrewer "Blues" (9 classes), interpolated; t in [0, 1].
static uint32_t blues(double t) {
  static const uint32_t stops[9] = {0xf7fbff, 0xdeebf7, 0xc6dbef, 0x9ecae1, 0x6baed6,
                                    0x4292c6, 0x2171b5, 0x08519c, 0x08306b};
  t = clampd(isfinite(t) ? t : 0, 0, 1) * 8;
  int i = mini((int)t, 7);
  double u = t - i;
  uint32_t a = stops[i], b = stops[i + 1], out = 0;
  for (int sh = 0; sh <= 16; sh += 8) {
    double ca = (a >> sh) & 255, cb = (b >> sh) & 255;
    out |= (uint32_t)lround(ca + (cb - ca) * u) << sh;
  }
  return VKP_RGB(out);
}

static double luminance(uint32_t c) {
  return (0.299 * ((c >> 16) & 255) + 0.587 * ((c >> 8) & 255) + 0.114 * (c & 255)) / 255.0;
}

static void format_count(int64_t v, char *buf, size_t size, int shortest) {
  if (!shortest || v < 10000)
    snprintf(buf, size, "%lld", (long long)v);
  else if (v < 10000000)
    snprintf(buf, size, "%lldk", (long long)((v + 500) / 1000));
  else
    snprintf(buf, size, "%lldM", (long long)((v + 500000) / 1000000));
}

vkp_status vkp_plot_confusion(const vkp_confusion_chart *c, vkp_image **out, vkp_error *err) {
  if (out) *out = NULL;
  if (!c || !out) return vkp_error_set(err, VKP_ERR_INVALID, "confusion matrix: NULL argument");
  int n = c->n_classes;
  if (n < 1 || n > 1000 || !c->counts)
    return vkp_error_set(err, VKP_ERR_INVALID, "confusion matrix: %d classes (1..1000 allowed)",
                         n);
  int cs = c->cell_size > 0 ? c->cell_size : clampi(560 / n, 8, 56);
  char name[64];
  int name_w = 0;  // widest class name
  for (int i = 0; i < n; i++) {
    if (c->class_names && c->class_names[i])
      snprintf(name, sizeof name, "%s", c->class_names[i]);
    else
      snprintf(name, sizeof name, "%d", i);
    int w;
    vkp_text_size(name, 1, false, &w, NULL);
    name_w = maxi(name_w, w);
  }
  name_w = mini(name_w, 180);
  bool rotate_x = name_w > cs - 4;
  int xlab_h = rotate_x ? name_w : VKP_FONT_ASCENT + 2;
  const char *title = c->title ? c->title : "Confusion matrix";
  int title_h = TITLE_H + 18;
  int gx0 = PAD + VKP_FONT_ASCENT + 14 + name_w + 8;  // "True" label, class names
  int gy0 = PAD + title_h;
  int gx1 = gx0 + n * cs, gy1 = gy0 + n * cs;
  int cb_x0 = gx1 + 18, cb_x1 = cb_x0 + 14;  // colour bar
  int W = cb_x1 + 6 + 40 + PAD;
  int H = gy1 + 8 + xlab_h + 10 + VKP_FONT_ASCENT + 2 + PAD;
  W = maxi(W, 260);

  // Shading value per cell and its maximum.
  int64_t max_count = 0;
  for (size_t i = 0; i < (size_t)n * (size_t)n; i++) {
    if (c->counts[i] < 0)
      return vkp_error_set(err, VKP_ERR_INVALID, "confusion matrix: negative count at %zu", i);
    if (c->counts[i] > max_count) max_count = c->counts[i];
  }
  vkp_image *img = NULL;
  VKP_TRY(new_canvas(W, H, "confusion matrix", &img, err));
  for (int r = 0; r < n; r++) {
    int64_t row_sum = 0;
    for (int k = 0; k < n; k++) row_sum += c->counts[(size_t)r * n + k];
    for (int k = 0; k < n; k++) {
      int64_t v = c->counts[(size_t)r * n + k];
      double t = c->color_by_count ? (max_count ? (double)v / max_count : 0)
                                   : (row_sum ? (double)v / row_sum : 0);
      uint32_t col = blues(t);
      int x = gx0 + k * cs, y = gy0 + r * cs;
      fill_rect(img, x, y, x + cs, y + cs, col, 1);
      if (cs >= 14) {
        char buf[32];
        format_count(v, buf, sizeof buf, 0);
        int tw;
        vkp_text_size(buf, 1, false, &tw, NULL);
        if (tw > cs - 4) format_count(v, buf, sizeof buf, 1);
        vkp_text_size(buf, 1, false, &tw, NULL);
        if (tw <= cs - 4)
          text_at(img, x + cs / 2.0, y + cs / 2.0, AL_CENTER, AL_CENTER, buf,
                  luminance(col) < 0.55 ? C_WHITE : VKP_RGB(0x1F2D3D), 1, r == k, 0);
      }
    }
  }
  if (cs >= 14)  // thin separators between cells
    for (int i = 1; i < n; i++) {
      fill_rect(img, gx0 + i * cs, gy0, gx0 + i * cs + 1, gy1, C_WHITE, 0.35f);
      fill_rect(img, gx0, gy0 + i * cs, gx1, gy0 + i * cs + 1, C_WHITE, 0.35f);
    }
  stroke_rect(img, gx0 - 1, gy0 - 1, gx1 + 1, gy1 + 1, C_FRAME);
  for (int i = 0; i < n; i++) {
    char cut[256];
    if (c->class_names && c->class_names[i])
      fit_text(c->class_names[i], name_w, cut, sizeof cut);
    else
      snprintf(cut, sizeof cut, "%d", i);
    if (cs >= 10 || i % 5 == 0) {
      text_at(img, gx0 - 7, gy0 + i * cs + cs / 2.0, AL_END, AL_CENTER, cut, C_LABEL, 1, false, 0);
      if (rotate_x)
        text_at(img, gx0 + i * cs + cs / 2.0, gy1 + 7, AL_CENTER, AL_START, cut, C_LABEL, 1, false,
                1);
      else
        text_at(img, gx0 + i * cs + cs / 2.0, gy1 + 7, AL_CENTER, AL_START, cut, C_LABEL, 1, false,
                0);
    }
  }
  text_at(img, (gx0 + gx1) / 2.0, gy1 + 8 + xlab_h + 10, AL_CENTER, AL_START, "Predicted",
          C_LABEL, 1, true, 0);
  text_at(img, PAD, (gy0 + gy1) / 2.0, AL_START, AL_CENTER, "True", C_LABEL, 1, true, 1);
  text_at(img, (gx0 + gx1) / 2.0, PAD, AL_CENTER, AL_START, title, C_TITLE, TITLE_SCALE, TITLE_BOLD,
          0);
  // Colour bar with its scale: fraction of the row (recall) or count.
  for (int y = gy0; y < gy1; y++)
    fill_rect(img, cb_x0, y, cb_x1, y + 1, blues(1.0 - (double)(y - gy0) / (gy1 - gy0 - 1)), 1);
  stroke_rect(img, cb_x0 - 1, gy0 - 1, cb_x1 + 1, gy1 + 1, C_FRAME);
  double top = c->color_by_count ? (double)(max_count > 0 ? max_count : 1) : 1.0;
  double ticks[MAX_TICKS], step = 0;
  int nt = vkp_plot_ticks(0, top, 6, ticks, MAX_TICKS, &step);
  for (int i = 0; i < nt; i++) {
    int y = clampi((int)floor(gy1 - ticks[i] / top * (gy1 - gy0)), gy0, gy1 - 1);
    fill_rect(img, cb_x1 + 1, y, cb_x1 + 4, y + 1, C_TICK, 1);
    char lab[32];
    if (c->color_by_count)
      vkp_plot_format_tick(ticks[i], step, top, lab, sizeof lab);
    else
      snprintf(lab, sizeof lab, "%.0f%%", ticks[i] * 100);
    text_at(img, cb_x1 + 7, y + 0.5, AL_START, AL_CENTER, lab, C_TICK_LABEL, 1, false, 0);
  }
  *out = img;
  return VKP_OK;
}

// ---- image grid ---------------------------------------------------------------------------------

// Draws src scaled by s (nearest neighbour) with its top-left at (x, y); alpha over the canvas.
static void blit_scaled(vkp_image *dst, const vkp_image *src, int x, int y, int s) {
  size_t sstride = vkp_image_stride(src);
  int nc = src->channels;
  for (int sy = 0; sy < src->height; sy++) {
    const uint8_t *row = src->data + (size_t)sy * sstride;
    for (int sx = 0; sx < src->width; sx++) {
      const uint8_t *p = row + (size_t)sx * nc;
      uint32_t col;
      float a = 1.0f;
      if (nc >= 3)
        col = ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | p[2];
      else
        col = ((uint32_t)p[0] << 16) | ((uint32_t)p[0] << 8) | p[0];
      if (nc == 2 || nc == 4) a = p[nc - 1] / 255.0f;
      for (int dy = 0; dy < s; dy++)
        for (int dx = 0; dx < s; dx++) blend(dst, x + sx * s + dx, y + sy * s + dy, col, a);
    }
  }
}

vkp_status vkp_plot_image_grid(const vkp_image_grid *g, vkp_image **out, vkp_error *err) {
  if (out) *out = NULL;
  if (!g || !out) return vkp_error_set(err, VKP_ERR_INVALID, "image grid: NULL argument");
  if (g->n < 1 || !g->images)
    return vkp_error_set(err, VKP_ERR_INVALID, "image grid: no images");
  int mw = 0, mh = 0;
  for (int i = 0; i < g->n; i++) {
    const vkp_image *im = &g->images[i];
    if (!im->data || im->width < 1 || im->height < 1 || im->channels < 1 || im->channels > 4 ||
        im->width > 4096 || im->height > 4096)
      return vkp_error_set(err, VKP_ERR_INVALID, "image grid: image %d is not a valid image", i);
    mw = maxi(mw, im->width);
    mh = maxi(mh, im->height);
  }
  int s = g->scale > 0 ? g->scale : clampi((64 + maxi(mw, mh) - 1) / maxi(mw, mh), 1, 8);
  int iw = mw * s, ih = mh * s;
  int cap_lines = 0, cap_w = 0;
  for (int i = 0; g->captions && i < g->n; i++) {
    if (!g->captions[i]) continue;
    int w, h;
    vkp_text_size(g->captions[i], 1, false, &w, &h);
    cap_w = maxi(cap_w, w);
    cap_lines = maxi(cap_lines, (h + 2) / VKP_FONT_LINE);
  }
  int cw = maxi(iw, mini(cap_w, maxi(2 * iw, 160)));
  int cap_h = cap_lines ? 6 + cap_lines * VKP_FONT_LINE - 2 : 0;
  int ch = ih + cap_h;
  const int gap = 12;
  int cols = g->cols > 0 ? g->cols : (int)ceil(sqrt((double)g->n));
  int max_cols = maxi(1, (2400 - 2 * PAD + gap) / (cw + gap));
  if (g->cols <= 0) cols = clampi(cols, 1, max_cols);
  cols = mini(cols, g->n);
  int rows = (g->n + cols - 1) / cols;
  int title_h = g->title ? TITLE_H + 14 : 0;
  long W = 2L * PAD + (long)cols * cw + (long)(cols - 1) * gap;
  long H = 2L * PAD + title_h + (long)rows * ch + (long)(rows - 1) * gap;
  if (g->title) {
    int tw;
    text_size_f(g->title, TITLE_SCALE, TITLE_BOLD, &tw, NULL);
    W = W > tw + 2L * PAD ? W : tw + 2L * PAD;
  }
  if (W > 16384 || H > 16384)
    return vkp_error_set(err, VKP_ERR_INVALID, "image grid: %ldx%ld pixels is too large", W, H);
  vkp_image *img = NULL;
  VKP_TRY(new_canvas(maxi((int)W, 120), maxi((int)H, 80), "image grid", &img, err));
  if (g->title)
    text_at(img, img->width / 2.0, PAD, AL_CENTER, AL_START, g->title, C_TITLE, TITLE_SCALE, TITLE_BOLD,
            0);
  int left = (img->width - (int)(W - 2 * PAD)) / 2;
  for (int i = 0; i < g->n; i++) {
    const vkp_image *im = &g->images[i];
    int cx = left + (i % cols) * (cw + gap), cy = PAD + title_h + (i / cols) * (ch + gap);
    int x = cx + (cw - im->width * s) / 2, y = cy + (ih - im->height * s) / 2;
    blit_scaled(img, im, x, y, s);
    stroke_rect(img, x - 1, y - 1, x + im->width * s + 1, y + im->height * s + 1, C_CELL_BORDER);
    if (g->captions && g->captions[i]) {
      uint32_t col = g->caption_colors && g->caption_colors[i] ? g->caption_colors[i] : C_CAPTION;
      const char *s0 = g->captions[i];
      for (int line = 0; s0; line++) {
        const char *nl = strchr(s0, '\n');
        char buf[256], cut[256];
        size_t len = nl ? (size_t)(nl - s0) : strlen(s0);
        if (len >= sizeof buf) len = sizeof buf - 1;
        memcpy(buf, s0, len);
        buf[len] = '\0';
        fit_text(buf, cw, cut, sizeof cut);
        text_at(img, cx + cw / 2.0, cy + ih + 6 + line * VKP_FONT_LINE, AL_CENTER, AL_START, cut,
                col, 1, false, 0);
        s0 = nl ? nl + 1 : NULL;
      }
    }
  }
  *out = img;
  return VKP_OK;
}
