// vkp_plot.h — charts rendered to images in plain C: line charts (training curves), scatter and
// bar charts (PEFT method comparisons), confusion-matrix heat maps and captioned image grids.
//
// Every chart function returns a new RGB vkp_image (free with vkp_image_free; write it with
// vkp_png_write). Lines and markers are anti-aliased; text uses the embedded bitmap font (a
// proportional pixel font, cap height 9 px: crisp at 1x for labels, titles bold at 1.5x with
// area-sampled anti-aliasing). Zero-initialised
// option structs give sensible defaults (800 x 500, automatic ranges, palette colours, grid,
// automatically placed legend), so callers set only what they need:
//
//   vkp_plot_series s[2] = {{.label = "loss", .x = steps, .y = loss, .n = n, .opacity = 0.3f},
//                           {.label = "loss (smoothed)", .x = steps, .y = ema, .n = n}};
//   vkp_line_chart c = {.title = "Training loss", .x = {.label = "step"},
//                       .y = {.label = "loss", .log = true}, .series = s, .n_series = 2};
//   vkp_image *img;  VKP_TRY(vkp_plot_line(&c, &img, NULL, err));
#ifndef VKP_PLOT_H
#define VKP_PLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vkp_png.h"
#include "vkp_status.h"

// ---- colours ------------------------------------------------------------------------------------
// A colour is 0xRRGGBB tagged with bit 24, so that 0 (zero-initialised) can mean "automatic".
#define VKP_RGB(hex) (0x1000000u | ((uint32_t)(hex)&0xFFFFFFu))
#define VKP_PLOT_AUTO 0u

// The i-th colour of the qualitative palette (Tableau 10, as in matplotlib): blue, orange, green,
// red, purple, brown, pink, grey, olive, cyan; repeats after 10. Returned tagged (VKP_RGB).
uint32_t vkp_plot_palette(int i);

// ---- bitmap font and text -----------------------------------------------------------------------
// Glyph rows are ASCII art ('#' = ink), all of the glyph's width; rows[k] is the pixel row
// `top + k` counted from the top of a capital letter; the baseline is below row 8.
#define VKP_FONT_ASCENT 9   // cap height: rows 0..8
#define VKP_FONT_DESCENT 2  // rows 9..10
#define VKP_FONT_LINE 13    // line spacing at scale 1
typedef struct vkp_glyph {
  uint32_t codepoint;
  uint8_t top;               // first row drawn
  const char *rows[11];      // NULL-terminated when shorter than 11 rows
} vkp_glyph;

// The glyph for a Unicode code point: printable ASCII plus ° ± µ × … ← → − (U+2212); anything
// else maps to a replacement box. Never NULL.
const vkp_glyph *vkp_font_glyph(uint32_t codepoint);

// Size in pixels of UTF-8 `text` (lines separated by '\n') drawn at `scale` (1, 2, ...), bold or
// not: width of the widest line, height = lines * VKP_FONT_LINE * scale - 2 * scale.
void vkp_text_size(const char *text, int scale, bool bold, int *width, int *height);

// Draws UTF-8 text onto an RGB or RGBA image with its bounding box's top-left corner at (x, y)
// (the top of capital letters on the first line); `color` is VKP_RGB(...). Pixels outside the
// image are skipped. A bold face is the glyph drawn twice, one pixel apart.
void vkp_image_draw_text(vkp_image *img, int x, int y, const char *text, uint32_t color,
                         int scale, bool bold);

// ---- ticks --------------------------------------------------------------------------------------
// "Nice" tick values for a linear axis [lo, hi]: every multiple of step = {1, 2, 5} x 10^k inside
// the range, with the smallest such step that gives at most max_ticks ticks. Writes up to `cap`
// values to ticks (ascending) and the step to *step (may be NULL); returns the count (0 when
// lo >= hi or not finite).
int vkp_plot_ticks(double lo, double hi, int max_ticks, double *ticks, int cap, double *step);

// Ticks for a logarithmic axis [lo, hi] (lo > 0): powers of ten (every 2nd, 5th, ... decade on wide
// ranges); 1-2-5 multiples inside each decade when that gives at most max_ticks and there would
// otherwise be fewer than 3; linear nice ticks on ranges narrower than a decade. Returns the count.
int vkp_plot_log_ticks(double lo, double hi, int max_ticks, double *ticks, int cap);

// Formats a tick value as short text: decimals from `step` (0.25 never shows as 0.2500), an SI
// suffix when `ref` (the largest |value| on the axis) is >= 1e4 ("20k", "1.5M"), scientific
// notation when ref < 1e-3 ("2e-4", "1.5e-4"), "0" for zero. For a log axis pass step = ref = v.
void vkp_plot_format_tick(double v, double step, double ref, char *buf, size_t size);

// Exponential moving average as TensorBoard draws it ("smoothing" weight in [0, 1), e.g. 0.9),
// debiased so the first values are not pulled towards 0. NaN inputs give NaN and do not update
// the average. out may equal y.
void vkp_plot_smooth_ema(const double *y, int n, double weight, double *out);

// ---- line charts --------------------------------------------------------------------------------
typedef enum vkp_plot_style {
  VKP_PLOT_LINE = 0,      // solid line
  VKP_PLOT_DASHED,        // dashed line
  VKP_PLOT_MARKERS,       // points only
  VKP_PLOT_LINE_MARKERS,  // line with a point at every value
} vkp_plot_style;

typedef struct vkp_plot_series {
  const char *label;     // legend text; NULL = not in the legend
  const double *x;       // (n) x values; NULL = 0, 1, ..., n-1
  const double *y;       // (n) y values; NaN/inf (or <= 0 on a log axis) break the line
  int n;
  uint32_t color;        // VKP_RGB(...), or VKP_PLOT_AUTO: palette colour of the series' index
  float line_width;      // pixels; 0 = 2
  float opacity;         // 0 = 1 (opaque); e.g. 0.3 for raw values under a smoothed curve
  vkp_plot_style style;
} vkp_plot_series;

typedef struct vkp_plot_axis {
  const char *label;     // axis title; NULL = none
  double min, max;       // fixed range when min < max, else fitted to the data (with a margin)
  bool log;              // logarithmic scale
} vkp_plot_axis;

typedef enum vkp_plot_legend {
  VKP_LEGEND_AUTO = 0,   // the inside corner that hides the fewest data points
  VKP_LEGEND_NONE,
  VKP_LEGEND_UPPER_RIGHT,
  VKP_LEGEND_UPPER_LEFT,
  VKP_LEGEND_LOWER_LEFT,
  VKP_LEGEND_LOWER_RIGHT,
} vkp_plot_legend;

typedef struct vkp_line_chart {
  const char *title;     // NULL = none
  int width, height;     // pixels; 0 = 800 x 500
  vkp_plot_axis x, y;
  const vkp_plot_series *series;  // (n_series)
  int n_series;
  vkp_plot_legend legend;
  bool no_grid;          // omit the grid lines
} vkp_line_chart;

// Where the data area of a chart ended up, in continuous pixel coordinates (pixel (i, j) covers
// [i, i+1) x [j, j+1)): x_min maps to `left`, x_max to `right`, y_max to `top`, y_min to
// `bottom` (in log10 space for a log axis).
typedef struct vkp_plot_frame {
  double left, top, right, bottom;
  double x_min, x_max, y_min, y_max;
  bool log_x, log_y;
} vkp_plot_frame;

// Renders a line chart. *out: new RGB image; frame (optional) receives the data area.
// Errors: VKP_ERR_INVALID (bad sizes, n < 0, NULL y with n > 0, bad fixed range on a log axis),
// VKP_ERR_OOM.
vkp_status vkp_plot_line(const vkp_line_chart *chart, vkp_image **out, vkp_plot_frame *frame,
                         vkp_error *err);

// ---- scatter chart (e.g. accuracy vs trainable parameters, one labelled point per method) -------
typedef struct vkp_scatter_point {
  double x, y;
  const char *label;     // drawn next to the point (placed to avoid other labels); NULL = none
  uint32_t color;        // VKP_RGB(...) or VKP_PLOT_AUTO (palette colour of the point's index)
} vkp_scatter_point;

typedef struct vkp_scatter_chart {
  const char *title;
  int width, height;     // 0 = 800 x 500
  vkp_plot_axis x, y;
  const vkp_scatter_point *points;  // (n_points)
  int n_points;
  float radius;          // marker radius in pixels; 0 = 5
  bool no_grid;
} vkp_scatter_chart;

vkp_status vkp_plot_scatter(const vkp_scatter_chart *chart, vkp_image **out,
                            vkp_plot_frame *frame, vkp_error *err);

// ---- horizontal bar chart (a value per named category) ------------------------------------------
typedef struct vkp_bar_chart {
  const char *title;
  const char *value_label;       // title of the value axis; NULL = none
  int width;                     // 0 = 800; the height follows from the number of bars
  const char *const *labels;     // (n) category names
  const double *values;          // (n)
  const uint32_t *colors;        // (n) or NULL: all bars palette colour 0
  int n;
  double min, max;               // fixed value range when min < max, else [0 or min, max] + margin
  const char *value_format;      // printf format of the value printed after each bar ("%.1f%%");
                                 // NULL = "%g" with 4 significant digits; "" = none
} vkp_bar_chart;

vkp_status vkp_plot_bars(const vkp_bar_chart *chart, vkp_image **out, vkp_error *err);

// ---- confusion matrix heat map ------------------------------------------------------------------
typedef struct vkp_confusion_chart {
  const char *title;             // NULL = "Confusion matrix"
  int n_classes;
  const char *const *class_names;  // (n_classes) or NULL: class indices
  const int64_t *counts;         // (n_classes, n_classes): row = true class, column = predicted
  bool color_by_count;           // shade cells by count / largest count instead of by the
                                 // fraction of their row (per-class recall)
  int cell_size;                 // pixels; 0 = automatic (56 for 10 classes)
} vkp_confusion_chart;

vkp_status vkp_plot_confusion(const vkp_confusion_chart *chart, vkp_image **out, vkp_error *err);

// ---- image grid (misclassified examples, generated samples) -------------------------------------
typedef struct vkp_image_grid {
  const char *title;               // NULL = none
  const vkp_image *images;         // (n) any channel count, sizes may differ (cells fit the largest)
  const char *const *captions;     // (n) or NULL; an entry may be NULL; '\n' starts a new line
  const uint32_t *caption_colors;  // (n) or NULL: dark grey (e.g. red for wrong predictions)
  int n;
  int cols;                        // 0 = about square
  int scale;                       // integer nearest-neighbour upscale; 0 = auto (cells >= 64 px)
} vkp_image_grid;

// Alpha channels are composited over the white background. Captions wider than a cell are cut
// with an ellipsis. Errors: VKP_ERR_INVALID (n < 1, bad image), VKP_ERR_OOM.
vkp_status vkp_plot_image_grid(const vkp_image_grid *grid, vkp_image **out, vkp_error *err);

#endif
